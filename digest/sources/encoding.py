"""Bodies that say UTF-8 but are not all UTF-8: read each stray byte as Windows-1252.

Feeds assembled from several systems mix encodings: UTF-8 titles with a Latin-1 abstract, or
a Latin-1 file under an XML declaration that says UTF-8. Refusing them loses the source every
day; guessing one 8-bit code page for the whole body garbles the UTF-8 parts. Each byte that is
not UTF-8 is read as Windows-1252 instead (its Latin-1 letters are the same), and the body is
handed on as the UTF-8 it claims to be, unless what comes out is visibly garbage.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import ftfy.badness

_DECLARED = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([^"']*)["']""", re.I)
_CHARSET = re.compile(r"charset\s*=\s*\"?([A-Za-z0-9._-]+)", re.I)
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")
_UTF8 = frozenset({"utf-8", "utf8"})
_STRAY = re.compile("[\udc80-\udcff]")


def _as_windows_1252(match: re.Match[str]) -> str:
    # five bytes have no Windows-1252 letter; they become U+FFFD, and the body is refused
    return bytes([ord(match.group(0)) - 0xDC00]).decode("cp1252", errors="replace")


def mend_utf8(body: bytes, headers: Mapping[str, str] | None) -> tuple[bytes, int]:
    """The body as valid UTF-8 and how many stray bytes were read as Windows-1252 (0: unchanged).

    Only for bodies that declare UTF-8 (or nothing, which XML reads as UTF-8); ValueError when
    the mended text is mojibake all the same (Shift_JIS, say), so no guess is stored.
    """
    if not _claims_utf8(body, headers):
        return body, 0
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return body, 0
    escaped = body.decode("utf-8", errors="surrogateescape")  # a stray byte: one surrogate
    strays = len(_STRAY.findall(escaped))
    mended = _STRAY.sub(_as_windows_1252, escaped)
    if mended.count("\ufffd") > escaped.count("\ufffd") or not reads_cleanly(mended):
        raise ValueError("the bytes are neither UTF-8 nor Windows-1252")
    return mended.encode("utf-8"), strays


def reads_cleanly(decoded: str) -> bool:
    """Whether text decoded with an 8-bit code page looks like words, not mojibake: Windows-1252
    decodes any byte, so Shift_JIS or UTF-8 read that way decodes too, into visible garbage."""
    return not ftfy.badness.is_bad(decoded)


def _claims_utf8(body: bytes, headers: Mapping[str, str] | None) -> bool:
    if body.startswith(_BOMS[1:]) or b"\x00" in body[:4]:
        return False  # UTF-16/32, by their byte order marks or their zero bytes
    declared = _DECLARED.match(body.removeprefix(_BOMS[0])[:200])
    if declared and declared.group(1).decode("latin-1").strip().lower() not in _UTF8:
        return False  # another encoding, or a garbled name: feedparser says which
    content_type = next(
        (value for key, value in (headers or {}).items() if key.lower() == "content-type"), ""
    )
    charset = _CHARSET.search(content_type)
    return not charset or charset.group(1).lower() in _UTF8
