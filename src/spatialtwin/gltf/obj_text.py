"""Text of OBJ and MTL files: UTF-8, with a Latin-1 fallback line by line.

OBJ and MTL carry no encoding declaration; exporters write UTF-8 or the platform's 8-bit
code page (a `# tissu français` comment in Latin-1/Windows-1252 is common). Every byte is a
valid Latin-1 character, so a line that is not UTF-8 is read as Latin-1 and nothing is refused
for a comment's accent; keywords, numbers and indices are ASCII either way. Decoding happens
here, before any parser sees the bytes, so no reader has to guess an encoding (trimesh would
need `charset_normalizer` for it).
"""

from __future__ import annotations


def decode_obj_text(data: bytes) -> str:
    """`data` as text: UTF-8 when it all is, else each line UTF-8 or, failing that, Latin-1."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    lines = data.split(b"\n")
    out = []
    for line in lines:
        try:
            out.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(line.decode("latin-1"))
    return "\n".join(out)


def as_utf8(data: bytes) -> bytes:
    """`data` re-encoded as UTF-8 (the same object when it already is UTF-8)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return decode_obj_text(data).encode("utf-8")
    return data
