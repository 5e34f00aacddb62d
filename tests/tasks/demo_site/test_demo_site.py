"""The demo site, built from this very environment's installed distributions and served for real."""

from __future__ import annotations

import html
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from lxml import etree
from protego import Protego

from gristmill.tasks.demo_site.build import SiteStats, build_demo_site
from gristmill.tasks.demo_site.packages import PackageCollector
from gristmill.tasks.demo_site.render import DescriptionRenderer
from gristmill.tasks.demo_site.serve import serve_directory

SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SiteStats]:
    root = tmp_path_factory.mktemp("demo") / "site"
    return root, build_demo_site(root, max_packages=20)


def _file_for(root: Path, url_path: str) -> Path:
    relative = url_path.lstrip("/")
    return root / (relative + "index.html" if not relative or relative.endswith("/") else relative)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_builds_one_page_per_package_with_description(built: tuple[Path, SiteStats]) -> None:
    root, stats = built
    expected, _ = PackageCollector().collect(max_packages=20)
    assert stats.packages == len(expected) == 20
    for package in expected:
        page = _file_for(root, package.path).read_text()
        assert package.display_name in page
        assert "<nav" in page and "<footer" in page  # the boilerplate extraction must drop
    assert (root / "index.html").is_file()
    assert stats.pages == stats.packages + stats.license_pages + stats.index_pages + 1  # + /private/


def test_packages_are_sorted_by_normalised_name_and_unique(built: tuple[Path, SiteStats]) -> None:
    packages, _ = PackageCollector().collect(max_packages=20)
    names = [p.name for p in packages]
    assert names == sorted(set(names))
    assert all(p.description for p in packages)


def test_license_pages_exist_and_are_linked_from_their_package(built: tuple[Path, SiteStats]) -> None:
    root, stats = built
    packages, _ = PackageCollector().collect(max_packages=20)
    with_licenses = [p for p in packages if p.licenses]
    assert stats.license_pages > 0 and with_licenses, "installed wheels ship license files"
    for package in with_licenses:
        page = _file_for(root, package.path).read_text()
        for lic in package.licenses:
            assert f'href="{package.license_path(lic)}"' in page
            license_page = _file_for(root, package.license_path(lic)).read_text()
            assert html.escape(lic.text.split()[0]) in license_page


def test_robots_disallows_private_and_home_links_to_it(built: tuple[Path, SiteStats]) -> None:
    root, _ = built
    robots = Protego.parse((root / "robots.txt").read_text())
    assert not robots.can_fetch("http://127.0.0.1:1/private/", "gristmill")
    assert robots.can_fetch("http://127.0.0.1:1/packages/x/", "gristmill")
    assert list(robots.sitemaps) == ["/sitemap.xml"]
    assert 'href="/private/"' in (root / "index.html").read_text()
    assert (root / "private" / "index.html").is_file()


def test_sitemap_lists_every_public_page_and_only_those(built: tuple[Path, SiteStats]) -> None:
    root, stats = built
    sitemap = etree.parse(str(root / "sitemap.xml")).getroot()
    assert sitemap.tag == f"{SITEMAP_NS}urlset"
    locs = [loc.text for loc in sitemap.iter(f"{SITEMAP_NS}loc")]
    assert locs == list(stats.urls)
    assert "/private/" not in locs
    assert all(_file_for(root, loc).is_file() for loc in locs)
    html_files = {p for p in root.rglob("*.html")} - {root / "private" / "index.html"}
    assert {_file_for(root, loc) for loc in locs} == html_files


def test_base_url_makes_sitemap_absolute(tmp_path: Path) -> None:
    build_demo_site(tmp_path / "site", max_packages=2, base_url="http://example.test:8080/")
    robots = Protego.parse((tmp_path / "site" / "robots.txt").read_text())
    assert list(robots.sitemaps) == ["http://example.test:8080/sitemap.xml"]
    assert "<loc>http://example.test:8080/</loc>" in (tmp_path / "site" / "sitemap.xml").read_text()


def test_two_builds_are_identical(built: tuple[Path, SiteStats], tmp_path: Path) -> None:
    root, stats = built
    again = build_demo_site(tmp_path / "again", max_packages=20)
    assert again == stats
    assert _tree(tmp_path / "again") == _tree(root)


def test_rebuild_replaces_a_demo_site_but_refuses_other_directories(tmp_path: Path) -> None:
    site = tmp_path / "site"
    build_demo_site(site, max_packages=1)
    (site / "stale.html").write_text("old")
    build_demo_site(site, max_packages=1)
    assert not (site / "stale.html").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        build_demo_site(other, max_packages=1)
    assert (other / "notes.txt").read_text() == "mine"


def test_markdown_raw_html_is_reduced_to_escaped_text() -> None:
    rendered = DescriptionRenderer().render(
        '# Title\n\n<p align="center"><b>Logo</b> <script>alert(1)</script></p>\n\nText with <em>tag</em>.',
        "text/markdown",
    )
    assert "<h1>Title</h1>" in rendered
    assert "<script" not in rendered and "<b>" not in rendered and "<em>" not in rendered
    assert "Logo" in rendered


def test_rst_is_rendered_and_raw_directives_are_not_obeyed() -> None:
    renderer = DescriptionRenderer()
    rendered = renderer.render(
        "Title\n=====\n\nSome *emphasis*.\n\n.. raw:: html\n\n   <script>x()</script>\n", "text/x-rst"
    )
    assert "<em>emphasis</em>" in rendered
    assert "<script>" not in rendered
    broken = renderer.render("Title\n===\n\n.. include:: /etc/passwd\n\n`unclosed", "text/x-rst")
    assert "root:" not in broken  # file insertion is disabled


def test_plain_text_becomes_escaped_paragraphs() -> None:
    rendered = DescriptionRenderer().render("First <para>.\n\nSecond & last.", "text/plain")
    assert rendered == "<p>First &lt;para&gt;.</p>\n<p>Second &amp; last.</p>\n"


def test_serve_directory_serves_files_and_stops(built: tuple[Path, SiteStats]) -> None:
    root, _ = built
    with serve_directory(root) as base:
        assert base.startswith("http://127.0.0.1:") and base.endswith("/")
        with urllib.request.urlopen(base + "robots.txt", timeout=5) as response:
            assert b"Disallow: /private/" in response.read()
        with urllib.request.urlopen(base, timeout=5) as response:
            assert b"Python package documentation" in response.read()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(base + "robots.txt", timeout=2)


def test_relative_links_of_readmes_are_unlinked() -> None:
    renderer = DescriptionRenderer()
    rendered = renderer.render(
        "See [the license](LICENSE), [docs](https://x.org/d) and [below](#usage).", "text/markdown"
    )
    assert "<a>the license</a>" in rendered
    assert 'href="https://x.org/d"' in rendered and 'href="#usage"' in rendered
    rst = renderer.render("See `the license <LICENSE>`_ and `docs <https://x.org/d>`_.", "text/x-rst")
    assert 'href="LICENSE"' not in rst and "the license" in rst and 'href="https://x.org/d"' in rst
