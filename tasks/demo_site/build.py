"""Lay out and write the demo site: home -> letter pages -> package pages -> license pages, robots.txt, sitemap."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from gristmill.conf.schema import UserError
from gristmill.tasks.demo_site.packages import LicenseFile, PackageCollector, PackageDoc
from gristmill.tasks.demo_site.render import DescriptionRenderer, PageLayout, esc, paragraphs

logger = logging.getLogger("gristmill.demo_site")

PRIVATE_PATH = "/private/"
# Written into the output directory so a rebuild may clear it, but never a directory we did not make.
MARKER = ".gristmill-demo-site"


@dataclass(frozen=True)
class SiteStats:
    packages: int  # package pages written
    license_pages: int
    index_pages: int  # home + letter pages
    pages: int  # every HTML page, the /private/ one included
    bytes: int  # everything written, robots.txt and sitemap.xml included
    skipped: int  # distributions without a long description
    urls: tuple[str, ...] = field(default=(), repr=False)  # public page paths, as listed in the sitemap


class SiteWriter:
    """Writes the pages of the site under one root and keeps the counts for `SiteStats`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bytes = 0
        self.pages = 0

    def write(self, url_path: str, content: str) -> None:
        relative = url_path.lstrip("/")
        if not relative or relative.endswith("/"):
            relative += "index.html"
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode("utf-8")
        target.write_bytes(data)
        self.bytes += len(data)
        self.pages += relative.endswith(".html")


class DemoSiteBuilder:
    """Lays out the site: home -> letter pages -> package pages -> license pages, plus robots and sitemap."""

    def __init__(self, packages: list[PackageDoc], base_url: str | None = None) -> None:
        self.packages = packages
        # The sitemap protocol wants absolute URLs, but the port is often unknown before serving: without a
        # base_url, the sitemap and robots.txt use root-relative paths (gristmill's crawler resolves both).
        self.base = (base_url or "/").rstrip("/")
        self.letters = sorted({p.letter for p in packages})
        self.layout = PageLayout(self.letters)
        self.renderer = DescriptionRenderer()

    def build(self, writer: SiteWriter) -> list[str]:
        """Write every page; return the public page paths in sitemap order."""
        urls = ["/"]
        writer.write("/", self._home())
        for letter in self.letters:
            urls.append(f"/letters/{letter}.html")
            writer.write(urls[-1], self._letter(letter))
        for package in self.packages:
            urls.append(package.path)
            writer.write(package.path, self._package(package))
            for lic in package.licenses:
                urls.append(package.license_path(lic))
                writer.write(urls[-1], self._license(package, lic))
        writer.write(PRIVATE_PATH, self._private())
        writer.write("/robots.txt", self._robots())
        writer.write("/sitemap.xml", self._sitemap(urls))
        return urls

    def _home(self) -> str:
        letters = "".join(
            f'<li><a href="/letters/{esc(letter)}.html">Packages starting with {esc(letter.upper())}</a> '
            f"({sum(p.letter == letter for p in self.packages)})</li>\n"
            for letter in self.letters
        )
        body = (
            "<article><h1>Python package documentation</h1>\n"
            f"<p>This site collects the documentation of {len(self.packages)} Python distributions installed "
            "in one environment: for each one, the long description its authors wrote for the package index, "
            "and the license texts it ships with. It is generated locally, so it can be crawled without "
            "access to the internet.</p>\n"
            f"<h2>Browse by first letter</h2>\n<ul>\n{letters}</ul>\n"
            f'<p>Some pages are not meant for crawlers: <a href="{PRIVATE_PATH}">private notes</a>.</p>\n'
            "</article>\n"
        )
        return self.layout.page("Python package documentation", body)

    def _letter(self, letter: str) -> str:
        items = "".join(
            f'<li><a href="{esc(p.path)}">{esc(p.display_name)}</a> {esc(p.version)}'
            f"{' &mdash; ' + esc(p.summary) if p.summary else ''}</li>\n"
            for p in self.packages
            if p.letter == letter
        )
        body = f"<article><h1>Packages: {esc(letter.upper())}</h1>\n<ul>\n{items}</ul>\n</article>\n"
        return self.layout.page(f"Packages starting with {letter.upper()}", body)

    def _package(self, package: PackageDoc) -> str:
        url = esc(package.home_page)
        home = f'<p class="home-page">Home page: <a href="{url}">{url}</a></p>\n' if url else ""
        licenses = "".join(
            f'<li><a href="{esc(package.license_path(lic))}">{esc(PurePosixPath(lic.path).name)}</a></li>\n'
            for lic in package.licenses
        )
        description = self.renderer.render(package.description, package.content_type)
        license_block = (
            f'<aside class="licenses"><h2>License files</h2>\n<ul>\n{licenses}</ul></aside>\n' if licenses else ""
        )
        body = (
            f"<article>\n<header><h1>{esc(package.display_name)} {esc(package.version)}</h1>\n"
            f'<p class="summary">{esc(package.summary)}</p>\n{home}</header>\n'
            f'<section class="description">\n{description}</section>\n</article>\n{license_block}'
        )
        title = f"{package.display_name} {package.version}"
        return self.layout.page(f"{title} — {package.summary}" if package.summary else title, body)

    def _license(self, package: PackageDoc, lic: LicenseFile) -> str:
        name = PurePosixPath(lic.path).name
        body = (
            f"<article><h1>{esc(name)} of {esc(package.display_name)}</h1>\n"
            f'<p>License file shipped by <a href="{esc(package.path)}">{esc(package.display_name)} '
            f"{esc(package.version)}</a>.</p>\n{paragraphs(lic.text)}</article>\n"
        )
        return self.layout.page(f"{name} — {package.display_name}", body)

    def _private(self) -> str:
        body = (
            "<article><h1>Private notes</h1>\n<p>robots.txt disallows this directory, so a polite crawler "
            "never fetches this page. If its text shows up in a corpus, robots.txt was ignored.</p>"
            "</article>\n"
        )
        return self.layout.page("Private notes", body)

    def _robots(self) -> str:
        return f"User-agent: *\nDisallow: {PRIVATE_PATH}\n\nSitemap: {self.base}/sitemap.xml\n"

    def _sitemap(self, urls: list[str]) -> str:
        entries = "".join(f"  <url><loc>{esc(self.base + url)}</loc></url>\n" for url in urls)
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n{entries}</urlset>\n'
        )


def build_demo_site(out_dir: Path, max_packages: int = 0, base_url: str | None = None) -> SiteStats:
    """Generate the demo site under `out_dir` from the installed distributions; deterministic.

    `max_packages` > 0 keeps the first N distributions (by normalised name) that have a description.
    `base_url`, when known, makes the sitemap and robots.txt Sitemap line absolute, as the protocol wants.
    A previous demo site in `out_dir` is replaced; any other non-empty directory is refused.
    """
    out_dir = Path(out_dir)
    _prepare(out_dir)
    packages, skipped = PackageCollector().collect(max_packages)
    writer = SiteWriter(out_dir)
    urls = DemoSiteBuilder(packages, base_url).build(writer)
    (out_dir / MARKER).write_text("generated by gristmill.tasks.demo_site\n")
    stats = SiteStats(
        packages=len(packages),
        license_pages=sum(len(p.licenses) for p in packages),
        index_pages=1 + len({p.letter for p in packages}),
        pages=writer.pages,
        bytes=writer.bytes,
        skipped=skipped,
        urls=tuple(urls),
    )
    logger.info(
        "demo site: %d packages, %d license pages, %d pages, %.1f MB in %s",
        stats.packages, stats.license_pages, stats.pages, stats.bytes / 1e6, out_dir,
    )  # fmt: skip
    return stats


class DemoSiteError(UserError, FileExistsError):
    """The demo site's directory holds something else."""


def _prepare(out_dir: Path) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / MARKER).exists():
            raise DemoSiteError(
                f"{out_dir} is not empty and not a gristmill demo site; refusing to overwrite",
                fix="point `workspace` elsewhere, or move that directory away",
            )
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
