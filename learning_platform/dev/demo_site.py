"""The demo study library `make dev` serves, so the ai-processing job has real pages to read
with no network: each `demo_pages/<slug>.txt` (a title line, then paragraphs separated by blank
lines) becomes `<slug>.html` in one template."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path
from string import Template

DEMO_SITE_PORT = 8011
DEMO_SITE = f"http://localhost:{DEMO_SITE_PORT}"
SOURCES_DIR = Path(__file__).resolve().parent / "demo_pages"

PAGE = Template("""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>$title</title></head>
<body>
  <nav>Demo study library</nav>
  <article>
    <h1>$title</h1>
$paragraphs
  </article>
  <footer>Served by `make dev` for the ai-processing job to read offline.</footer>
</body>
</html>
""")


@dataclass(frozen=True)
class DemoPage:
    slug: str
    title: str
    paragraphs: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"{DEMO_SITE}/{self.slug}.html"

    def html(self) -> str:
        paragraphs = "\n".join(f"    <p>{escape(p)}</p>" for p in self.paragraphs)
        return PAGE.substitute(title=escape(self.title), paragraphs=paragraphs)


def demo_pages(sources: Path = SOURCES_DIR) -> list[DemoPage]:
    pages = []
    for source in sorted(sources.glob("*.txt")):
        title, *paragraphs = [block.strip() for block in source.read_text().split("\n\n")]
        pages.append(DemoPage(source.stem, title, tuple(p for p in paragraphs if p)))
    return pages


def write_demo_site(directory: Path) -> Path:
    """The pages as HTML files in `directory` (made if missing), for `http.server` to serve."""
    directory.mkdir(parents=True, exist_ok=True)
    for page in demo_pages():
        (directory / f"{page.slug}.html").write_text(page.html())
    return directory
