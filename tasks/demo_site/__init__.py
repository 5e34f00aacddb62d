"""The embedded default corpus: a static website built from the installed distributions' documentation.

It needs no internet and no data in the repository, yet it is real-world text: every installed package's
long description, plus the license files they ship (many near-identical MIT/BSD/Apache texts, which is what
the dedup stage is there to find). Pages carry nav/footer boilerplate so that extraction has something to
drop, a robots.txt that disallows /private/ (linked from the home page, so a crawl can show it obeys), and
a sitemap.xml. Output is deterministic: same environment, same bytes.

`packages.py` reads the metadata, `render.py` turns it into HTML, `build.py` writes the site (`build_demo_site`),
`serve.py` serves it on 127.0.0.1 (`serve_directory`). The crawl stage uses it when `crawl.demo_site.enabled`;
tests and benchmarks use it as a real site to crawl.
"""
