"""Reading a catalog file's bytes into text, refusing what is not text."""

from __future__ import annotations

from pathlib import Path

from .entry import CatalogError


def line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def read_text(path: Path, display: str) -> str:
    """Decode a catalog file as UTF-8 (a BOM is allowed), refusing NUL bytes and invalid bytes.

    CRLF is normalised to LF so every format parses a Windows-edited file like its original.
    """
    data = path.read_bytes()
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
