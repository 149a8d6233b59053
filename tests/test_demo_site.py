"""The demo study library `make dev` serves: every source page becomes an HTML page the
crawler reads back as its title and text."""

from __future__ import annotations

from pathlib import Path

from learning_platform.crawler.fetch import extract_main_text
from learning_platform.dev.demo_site import demo_pages, write_demo_site


def test_every_source_becomes_a_page_the_crawler_reads_back(tmp_path: Path) -> None:
    pages = demo_pages()
    assert len(pages) == 4
    site = write_demo_site(tmp_path / "site")
    for page in pages:
        assert len(page.paragraphs) >= 3, page.slug
        html = (site / f"{page.slug}.html").read_text()
        title, text = extract_main_text(html, page.url)
        assert title == page.title
        assert page.paragraphs[0] in text
        assert page.paragraphs[-1] in text


def test_text_is_escaped_into_the_template(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Less <than> & more\n\nOne <b>paragraph</b>.\n")
    (page,) = demo_pages(tmp_path)
    assert "<title>Less &lt;than&gt; &amp; more</title>" in page.html()
    assert "<p>One &lt;b&gt;paragraph&lt;/b&gt;.</p>" in page.html()
