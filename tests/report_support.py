"""An HTML parser for the report tests: ids, links, images, the summary list, tables and paragraphs."""
from html.parser import HTMLParser
from pathlib import Path


class Page(HTMLParser):
    """The parts of a report page the tests look at."""

    def __init__(self):
        super().__init__()
        self.ids, self.links, self.imgs, self.paragraphs, self.headings = set(), [], [], [], []
        self.summary, self.tables = {}, []
        self._stack, self._text, self._dt = [], [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a":
            self.links.append(a.get("href", ""))
        elif tag == "img":
            self.imgs.append(a)
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        self._stack.append(tag)
        self._text = []

    def handle_data(self, data):
        self._text.append(data)

    def handle_endtag(self, tag):
        text = "".join(self._text).strip()
        if tag in ("td", "th") and self.tables and self.tables[-1]:
            self.tables[-1][-1].append(text)
        elif tag == "p":
            self.paragraphs.append(text)
        elif tag in ("h2", "h3"):
            self.headings.append(text)
        elif tag == "dt":
            self._dt = text
        elif tag == "dd" and self._dt is not None:
            self.summary[self._dt] = text
        if self._stack:
            self._stack.pop()
        self._text = []


def parse(path: Path) -> Page:
    page = Page()
    page.feed(Path(path).read_text())
    page.close()
    return page
