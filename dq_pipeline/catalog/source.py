"""Reading a catalog file's bytes into text, refusing what is not text; the nesting bound every reader keeps.

Hostile input is refused by name in bounded memory and time: binary (NUL bytes, UTF-16/32) and
invalid UTF-8 here, nesting deeper than `MAX_NESTING` by every JSON and YAML reader (the C JSON
decoder stops at the recursion limit in constant memory; `deeper_than` then checks the parsed value,
`nesting_offset` names the line; the YAML composer and ijson streams count levels as they go).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .entry import CatalogError

# UTF-32 first: its little-endian mark starts with UTF-16's.
_WIDE_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))


def line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def read_text(path: Path, display: str) -> str:
    """Decode a catalog file as UTF-8 (a BOM is allowed), refusing NUL bytes and invalid bytes.

    CRLF is normalised to LF so every format parses a Windows-edited file like its original.
    """
    data = path.read_bytes()
    for bom, encoding in _WIDE_BOMS:
        if data.startswith(bom):  # its NUL bytes would otherwise be reported as "not a text file"
            raise CatalogError.single(display, "line 1", f"{encoding} text (byte-order mark): save the file as UTF-8")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise CatalogError.single(
            display, f"line {line_of_offset(data, nul)}", f"NUL byte at offset {nul}: not a text file"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CatalogError.single(
            display,
            f"line {line_of_offset(data, exc.start)}",
            f"invalid UTF-8 byte 0x{data[exc.start]:02x} at offset {exc.start} (save the file as UTF-8)",
        ) from None
    return text.replace("\r\n", "\n")


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
