"""Reading a catalog file's bytes into text, refusing what is not text; the nesting bound every reader keeps.

`read_text` decodes a whole file (JSON and YAML documents are parsed whole anyway); `text_lines`
decodes one line at a time, with the same refusals, for the line-based formats (CSV, JSON Lines).

Hostile input is refused by name in bounded memory and time: binary (NUL bytes, UTF-16/32) and
invalid UTF-8 here, nesting deeper than `MAX_NESTING` by every JSON and YAML reader (the C JSON
decoder stops at the recursion limit in constant memory; `deeper_than` then checks the parsed value,
`nesting_offset` names the line; the YAML composer and ijson streams count levels as they go).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .entry import CatalogError

# UTF-32 first: its little-endian mark starts with UTF-16's.
_WIDE_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))
_UTF8_BOM = b"\xef\xbb\xbf"


def line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _text_start(head: bytes, display: str) -> int:
    """Where the text of a file starting with `head` begins (after a UTF-8 BOM); a UTF-16/32 mark is refused."""
    for bom, encoding in _WIDE_BOMS:
        if head.startswith(bom):  # its NUL bytes would otherwise be reported as "not a text file"
            raise CatalogError.single(display, "line 1", f"{encoding} text (byte-order mark): save the file as UTF-8")
    return len(_UTF8_BOM) if head.startswith(_UTF8_BOM) else 0


def _decoded(data: bytes, display: str, start: int = 0, offset: int = 0, line: int = 1) -> str:
    """`data[start:]` decoded as UTF-8, refusing a NUL byte first, then an invalid byte.

    `data` is the file's bytes from absolute `offset`, starting on line `line` (a whole file, or one
    of its lines): refusals name the file's line and absolute offset.
    """
    nul = data.find(b"\x00", start)
    if nul >= 0:
        where = f"line {line_of_offset(data, nul) + line - 1}"
        raise CatalogError.single(display, where, f"NUL byte at offset {offset + nul}: not a text file")
    try:
        return str(memoryview(data)[start:], "utf-8")
    except UnicodeDecodeError as exc:
        bad = start + exc.start
        raise CatalogError.single(
            display,
            f"line {line_of_offset(data, bad) + line - 1}",
            f"invalid UTF-8 byte 0x{data[bad]:02x} at offset {offset + bad} (save the file as UTF-8)",
        ) from None


def read_text(path: Path, display: str) -> str:
    """Decode a catalog file as UTF-8 (a BOM is allowed), refusing NUL bytes and invalid bytes.

    CRLF is normalised to LF so every format parses a Windows-edited file like its original.
    """
    data = path.read_bytes()
    return _decoded(data, display, _text_start(data[:4], display)).replace("\r\n", "\n")


def _pieces(path: Path, display: str, block: int = 0) -> Iterator[tuple[bytes, int, int, int]]:
    """A file's bytes in pieces of whole lines (each line alone, or about `block` bytes of them: a
    character never spans two), each with where its text starts in it (after a UTF-8 BOM), its
    absolute offset and its first line's number; a UTF-16/32 mark is refused."""
    with path.open("rb") as f:
        pieces = iter(lambda: f.read(block) + f.readline(), b"") if block else f
        offset, number = 0, 1
        for piece in pieces:
            yield piece, _text_start(piece, display) if offset == 0 else 0, offset, number
            offset += len(piece)
            number += piece.count(b"\n")


_CHECK_BLOCK = 1 << 20


def text_lines(path: Path, display: str) -> Iterator[str]:
    """The lines of a catalog file, decoded and checked as `read_text` does, one at a time: memory is
    bounded by the longest line, not by the file.

    Each line keeps its LF (CRLF normalised to LF; a bare CR stays). The refusals are `read_text`'s,
    in its order (a UTF-16/32 mark, then the first NUL byte anywhere, then the first invalid byte),
    all before the first line: a check pass reads the file once, a block at a time, without keeping it.
    """
    invalid: CatalogError | None = None
    for piece, start, offset, number in _pieces(path, display, _CHECK_BLOCK):
        if b"\x00" in piece:
            _decoded(piece, display, start, offset, number)  # raises: a NUL byte anywhere comes first
        if invalid is None:
            try:
                _decoded(piece, display, start, offset, number)
            except CatalogError as exc:
                invalid = exc  # refused once the whole file is known to hold no NUL byte
    if invalid is not None:
        raise invalid
    for line, start, offset, number in _pieces(path, display):
        text = _decoded(line, display, start, offset, number)  # checked again: the file may have changed
        yield text[:-2] + "\n" if text.endswith("\r\n") else text


# --- nesting ------------------------------------------------------------------------------------

# Deeper than any catalog a tool writes (a dbt manifest nests ~12 levels, a DataHub MCE ~15, an
# OpenMetadata struct column 2 per level) and far below Python's recursion limit, so every reader
# (and every helper walking a parsed value) stays iterative-safe.
MAX_NESTING = 100

# A JSON string (the unrolled form: one C-level scan even for a 38 MB string) or a bracket.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def nesting_offset(text: str, limit: int = MAX_NESTING) -> int | None:
    """Offset of the first `[`/`{` that opens level `limit + 1` of a JSON text, or None.

    Linear in the text up to that point and constant in memory (brackets inside strings are not
    counted); a head cut short is fine.
    """
    depth = 0
    for token in _JSON_TOKEN.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            if depth > limit:
                return token.start()
        elif char in "]}":
            depth -= 1
    return None


def deeper_than(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether a parsed JSON/YAML value nests containers deeper than `limit` (level by level, no
    recursion; ~0.3 s for the 2 million small lists of a 38 MB GeoJSON)."""
    level = [value] if type(value) in (dict, list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for container in level:
            below.extend([c for c in (container.values() if type(container) is dict else container) if type(c) in _CONTAINERS])
        level = below
    return False


_CONTAINERS = (dict, list)


def too_deep(display: str, line: int | None, limit: int = MAX_NESTING) -> CatalogError:
    where = f"line {line}" if line is not None else "document"
    return CatalogError.single(display, where, f"nesting deeper than {limit} levels (hostile or broken input)")


def json_too_deep(display: str, text: str, line_offset: int = 0, limit: int = MAX_NESTING) -> CatalogError:
    """The refusal of a JSON text nested too deeply, naming the line where the limit is crossed."""
    offset = nesting_offset(text, limit)
    line = None if offset is None else text.count("\n", 0, offset) + 1 + line_offset
    return too_deep(display, line, limit)
