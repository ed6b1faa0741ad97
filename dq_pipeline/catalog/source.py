"""Reading a catalog file's bytes into text, refusing what is not text."""

from __future__ import annotations

from pathlib import Path

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
