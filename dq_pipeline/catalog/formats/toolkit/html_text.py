"""HTML descriptions reduced to text: DCAT and OpenMetadata write descriptions as HTML, and markup
is noise to an embedding model and to a reader of search results."""

from __future__ import annotations

import re
from html.parser import HTMLParser


def collapse(text: str | None) -> str | None:
    """Runs of whitespace as one space; None for blank text."""
    if text is None:
        return None
    return " ".join(text.split()) or None


_HTML_TAGS = frozenset(
    """a abbr acronym address article aside b bdi bdo big blockquote body br caption center cite code col
    colgroup dd del details dfn div dl dt em figcaption figure font footer h1 h2 h3 h4 h5 h6 head header hr
    html i img ins kbd label li main mark nav ol p pre q s samp section small span strike strong sub summary
    sup table tbody td tfoot th thead title tr tt u ul var wbr""".split()
)
_DROPPED = frozenset({"script", "style"})
_LOOKS_LIKE_HTML = re.compile(
    r"</?([A-Za-z][A-Za-z0-9]*)\b[^<>]*>|&(?:#[0-9]+|#[xX][0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]*);"
)


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.dropping = 0

    def _tag(self, tag: str, raw: str | None) -> None:
        if tag in _HTML_TAGS:
            self.parts.append(" ")  # tags separate words; whitespace is collapsed afterwards
        elif raw and not self.dropping:
            self.parts.append(raw)  # `<column_name>` in prose is text, not markup

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROPPED:
            self.dropping += 1
            return
        self._tag(tag, self.get_starttag_text())

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, self.get_starttag_text())

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROPPED:
            self.dropping = max(0, self.dropping - 1)
            return
        self._tag(tag, f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if not self.dropping:
            self.parts.append(data)


def html_to_text(text: str | None) -> str | None:
    """Tags stripped (unknown `<words>` kept as text), entities unescaped, whitespace collapsed."""
    if text is None:
        return None
    if not _LOOKS_LIKE_HTML.search(text):
        return collapse(text)
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    return collapse("".join(parser.parts))
