"""The embedded default corpus: a static website built from the installed distributions' documentation.

It needs no internet and no data in the repository, yet it is real-world text: every installed package's
long description, plus the license files they ship (many near-identical MIT/BSD/Apache texts, which is what
the dedup stage is there to find). Pages carry nav/footer boilerplate so that extraction has something to
drop, a robots.txt that disallows /private/ (linked from the home page, so a crawl can show it obeys), and
a sitemap.xml. Output is deterministic: same environment, same bytes.
"""

from __future__ import annotations

import functools
import html
import importlib.metadata as importlib_metadata
import logging
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any

from gristmill.conf.schema import UserError

logger = logging.getLogger("gristmill.crawl.demo_site")

LICENSE_PREFIXES = ("LICENSE", "LICENCE", "COPYING", "NOTICE")
PRIVATE_PATH = "/private/"
# Written into the output directory so a rebuild may clear it, but never a directory we did not make.
MARKER = ".gristmill-demo-site"


@dataclass(frozen=True)
class LicenseFile:
    path: str  # as listed in the distribution's RECORD, e.g. "foo-1.0.dist-info/licenses/LICENSE"
    text: str

    @property
    def slug(self) -> str:
        # The dist-info directory name carries the version; drop it so URLs stay stable across upgrades.
        parts = PurePosixPath(self.path).parts
        if parts and parts[0].endswith(".dist-info"):
            parts = parts[1:]
        if len(parts) > 1 and parts[0] == "licenses":
            parts = parts[1:]
        return re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(parts)).strip("-").lower() or "license"


@dataclass(frozen=True)
class PackageDoc:
    name: str  # normalised (PEP 503)
    display_name: str
    version: str
    summary: str
    home_page: str
    description: str
    content_type: str  # media type only, e.g. text/markdown
    licenses: tuple[LicenseFile, ...] = ()

    @property
    def path(self) -> str:
        return f"/packages/{self.name}/"

    def license_path(self, lic: LicenseFile) -> str:
        return f"/packages/{self.name}/license/{lic.slug}.html"

    @property
    def letter(self) -> str:
        first = self.name[0]
        return first if first.isalpha() else "0-9"


@dataclass(frozen=True)
class SiteStats:
    packages: int  # package pages written
    license_pages: int
    index_pages: int  # home + letter pages
    pages: int  # every HTML page, the /private/ one included
    bytes: int  # everything written, robots.txt and sitemap.xml included
    skipped: int  # distributions without a long description
    urls: tuple[str, ...] = field(default=(), repr=False)  # public page paths, as listed in the sitemap


def normalise_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class PackageCollector:
    """Reads the installed distributions' metadata into `PackageDoc`s, sorted and deduplicated by name."""

    def collect(self, max_packages: int = 0) -> tuple[list[PackageDoc], int]:
        """Return (packages, skipped): the first `max_packages` (0 = all) with a description, by name."""
        packages: list[PackageDoc] = []
        skipped = 0
        for dist in self._unique_distributions():
            doc = self._read(dist)
            if doc is None:
                skipped += 1
                continue
            packages.append(doc)
            if max_packages and len(packages) >= max_packages:
                break
        return packages, skipped

    @staticmethod
    def _unique_distributions() -> list[importlib_metadata.Distribution]:
        # The first occurrence on sys.path wins, as it does for imports; sorting is stable so that holds.
        by_name: dict[str, importlib_metadata.Distribution] = {}
        for dist in importlib_metadata.distributions():
            name = dist.metadata.get("Name")
            if name:
                by_name.setdefault(normalise_name(name), dist)
        return [by_name[name] for name in sorted(by_name)]

    def _read(self, dist: importlib_metadata.Distribution) -> PackageDoc | None:
        meta = dist.metadata
        description = _description(meta)
        if not description:
            return None
        return PackageDoc(
            name=normalise_name(meta["Name"]),
            display_name=meta["Name"],
            version=meta.get("Version") or "",
            summary=(meta.get("Summary") or "").strip(),
            home_page=_home_page(meta),
            description=description,
            content_type=_media_type(meta.get("Description-Content-Type")),
            licenses=self._licenses(dist),
        )

    @staticmethod
    def _licenses(dist: importlib_metadata.Distribution) -> tuple[LicenseFile, ...]:
        found: dict[str, LicenseFile] = {}
        for entry in dist.files or []:
            if not PurePosixPath(str(entry)).name.upper().startswith(LICENSE_PREFIXES):
                continue
            try:
                text = entry.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue  # listed in RECORD but missing, or not text: nothing to publish
            if text.strip():
                lic = LicenseFile(path=str(entry).replace("\\", "/"), text=text)
                found.setdefault(lic.slug, lic)
        return tuple(found[slug] for slug in sorted(found))


def _description(meta: Any) -> str:
    # Metadata 2.1+ keeps the description in the message body; older files use a folded header.
    body = meta.get_payload()
    text = body if isinstance(body, str) and body.strip() else _unfold(meta.get("Description") or "")
    text = text.strip()
    return "" if text == "UNKNOWN" else text


def _unfold(value: str) -> str:
    # setuptools folds continuation lines with 8 spaces or "       |" (7 spaces and a bar).
    lines = value.splitlines()
    rest = [line[8:] if line.startswith(("        ", "       |")) else line for line in lines[1:]]
    return "\n".join(lines[:1] + rest)


def _home_page(meta: Any) -> str:
    if meta.get("Home-page") and meta["Home-page"] != "UNKNOWN":
        return meta["Home-page"].strip()
    for entry in meta.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip().lower().replace("-", "").replace(" ", "") in {"homepage", "home", "source"}:
            return url.strip()
    return ""


def _media_type(value: str | None) -> str:
    return (value or "text/plain").split(";")[0].strip().lower() or "text/plain"


class DescriptionRenderer:
    """Turns a long description into an HTML fragment according to its Description-Content-Type."""

    def __init__(self) -> None:
        from markdown_it import MarkdownIt

        # READMEs embed raw HTML (badges, centred logos, sometimes scripts). Parse it so it is recognised,
        # then publish only its text, escaped: no markup of theirs reaches the page and no tag soup the text.
        self._markdown = MarkdownIt("commonmark", {"html": True}).enable("table")
        self._markdown.add_render_rule("html_block", _html_block_as_text)
        self._markdown.add_render_rule("html_inline", lambda *args: "")

    def render(self, text: str, content_type: str) -> str:
        if content_type == "text/markdown":
            return _unlink_relative(self._markdown.render(text))
        if content_type == "text/x-rst":
            return _unlink_relative(self._rst(text))
        return paragraphs(text)

    @staticmethod
    def _rst(text: str) -> str:
        from docutils.core import publish_parts

        settings = {
            "report_level": 5,  # silence: broken READMEs are common and not our problem
            "halt_level": 5,
            "raw_enabled": False,  # `.. raw:: html` would bypass escaping
            "file_insertion_enabled": False,  # `.. include::` would read local files
            "_disable_config": True,  # no docutils.conf from the user: deterministic output
            "syntax_highlight": "none",
            "warning_stream": False,
        }
        try:
            return publish_parts(text, writer_name="html", settings_overrides=settings)["body"]
        except Exception:  # docutils raises many types on malformed input; any of them means "show as is"
            return f"<pre>{html.escape(text)}</pre>\n"


def _html_block_as_text(self: Any, tokens: list[Any], idx: int, options: Any, env: Any) -> str:
    import lxml.html
    from lxml.etree import ParserError

    try:
        text = lxml.html.fragment_fromstring(tokens[idx].content, create_parent="div").text_content()
    except (ParserError, ValueError):
        return ""
    text = " ".join(text.split())
    return f"<p>{html.escape(text)}</p>\n" if text else ""


# A relative href in a README points into its repository (LICENSE, docs/...), which the demo site does not
# have: keep the link text, drop the target, so that the site's link graph stays closed (no crawl of 404s).
_RELATIVE_HREF = re.compile(r'\shref="(?![A-Za-z][A-Za-z0-9+.-]*:|#|//)[^"]*"')


def _unlink_relative(fragment: str) -> str:
    return _RELATIVE_HREF.sub("", fragment)


def paragraphs(text: str) -> str:
    blocks = [block.strip() for block in re.split(r"\n\s*\n", text) if block.strip()]
    return "".join(f"<p>{html.escape(block)}</p>\n" for block in blocks)


class PageLayout:
    """The boilerplate shared by every page: head, nav with the letter index, footer."""

    def __init__(self, letters: list[str]) -> None:
        links = " | ".join(f'<a href="/letters/{_e(ltr)}.html">{_e(ltr.upper())}</a>' for ltr in letters)
        self._nav = (
            '<nav class="site-nav"><a href="/">Package documentation home</a>'
            f'<div class="letters">Browse: {links}</div></nav>'
        )
        self._footer = (
            '<footer class="site-footer"><p>Generated by gristmill from the metadata of installed Python '
            "distributions. Each text belongs to its authors under its own license.</p>"
            '<p><a href="/">Home</a></p></footer>'
        )

    def page(self, title: str, body: str) -> str:
        return (
            "<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title></head>\n'
            f"<body>\n{self._nav}\n<main>\n{body}</main>\n{self._footer}\n</body></html>\n"
        )


def _e(text: str) -> str:
    return html.escape(text, quote=True)


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
            f'<li><a href="/letters/{_e(letter)}.html">Packages starting with {_e(letter.upper())}</a> '
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
            f'<li><a href="{_e(p.path)}">{_e(p.display_name)}</a> {_e(p.version)}'
            f"{' &mdash; ' + _e(p.summary) if p.summary else ''}</li>\n"
            for p in self.packages
            if p.letter == letter
        )
        body = f"<article><h1>Packages: {_e(letter.upper())}</h1>\n<ul>\n{items}</ul>\n</article>\n"
        return self.layout.page(f"Packages starting with {letter.upper()}", body)

    def _package(self, package: PackageDoc) -> str:
        url = _e(package.home_page)
        home = f'<p class="home-page">Home page: <a href="{url}">{url}</a></p>\n' if url else ""
        licenses = "".join(
            f'<li><a href="{_e(package.license_path(lic))}">{_e(PurePosixPath(lic.path).name)}</a></li>\n'
            for lic in package.licenses
        )
        description = self.renderer.render(package.description, package.content_type)
        license_block = (
            f'<aside class="licenses"><h2>License files</h2>\n<ul>\n{licenses}</ul></aside>\n' if licenses else ""
        )
        body = (
            f"<article>\n<header><h1>{_e(package.display_name)} {_e(package.version)}</h1>\n"
            f'<p class="summary">{_e(package.summary)}</p>\n{home}</header>\n'
            f'<section class="description">\n{description}</section>\n</article>\n{license_block}'
        )
        title = f"{package.display_name} {package.version}"
        return self.layout.page(f"{title} — {package.summary}" if package.summary else title, body)

    def _license(self, package: PackageDoc, lic: LicenseFile) -> str:
        name = PurePosixPath(lic.path).name
        body = (
            f"<article><h1>{_e(name)} of {_e(package.display_name)}</h1>\n"
            f'<p>License file shipped by <a href="{_e(package.path)}">{_e(package.display_name)} '
            f"{_e(package.version)}</a>.</p>\n{paragraphs(lic.text)}</article>\n"
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
        entries = "".join(f"  <url><loc>{_e(self.base + url)}</loc></url>\n" for url in urls)
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
    (out_dir / MARKER).write_text("generated by gristmill.tasks.crawl.demo_site\n")
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


class _QuietHandler(SimpleHTTPRequestHandler):
    """Static files, logged to our logger at debug level instead of stderr."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        logger.debug("demo site %s - " + format, self.address_string(), *args)


@contextmanager
def serve_directory(root: Path, port: int = 0) -> Iterator[str]:
    """Serve `root` on 127.0.0.1 in a daemon thread; yield its base URL, ending in /.

    `port` 0 takes an ephemeral port; a given port that is taken falls back to an ephemeral one.
    """
    handler = functools.partial(_QuietHandler, directory=str(root))
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True  # a stuck client must not keep the process alive
    # A short poll interval makes shutdown() quick (the default 0.5 s is paid on every exit).
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="gristmill-demo-site", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
