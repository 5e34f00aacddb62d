"""HTML and plain-text bytes to text, for pages that state the wrong charset or none (`decode_html`), and the
media type and charset a Content-Type header states (`parse_content_type`)."""

from __future__ import annotations

import codecs
import re

import charset_normalizer

_PRESCAN_BYTES = 2048
_META_CHARSET = re.compile(rb"""<meta\b[^>]*?charset\s*=\s*["']?\s*([-\w.:]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml\b[^>]*?encoding\s*=\s*["']([-\w.:]+)""", re.IGNORECASE)
# Labels that browsers read as a superset (WHATWG Encoding): pages labelled latin-1 are written in cp1252 (curly
# quotes at 0x91-0x94), pages labelled Shift_JIS in cp932, and so on.
_SUPERSETS = {
    "ascii": "cp1252",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
}
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def decode_html(content: bytes, declared: str | None) -> str:
    """HTML bytes to text for pages that state the wrong charset or none: a byte-order mark; else the declared
    charset (the response header), if the bytes decode in it; else a <meta> charset (or XML encoding) in the first
    2 KB, likewise; else UTF-8; else charset_normalizer's guess; else cp1252 with replacement characters.
    Unknown charset names are ignored. A multi-byte character cut off at the end (a truncated body) is dropped."""
    if not content:
        return ""
    for bom, codec in _BOMS:
        if content.startswith(bom):
            text = _decode_strictly(content, codec)
            if text is not None:
                return text
    candidates = list(_codecs(declared))
    prefix = content[:_PRESCAN_BYTES]
    if match := _XML_ENCODING.search(prefix) or _META_CHARSET.search(prefix):
        # A page readable as ASCII to find its <meta> is not UTF-16/32, whatever the <meta> says (WHATWG: UTF-8).
        candidates += ["utf-8" if c.startswith(("utf-16", "utf-32")) else c for c in _codecs(match[1].decode("ascii"))]
    candidates.append("utf-8")
    for codec in dict.fromkeys(candidates):  # in order, each once
        text = _decode_strictly(content, codec)
        if text is not None:
            return text
    matches = charset_normalizer.from_bytes(content)
    best = matches.best()
    if best is not None:
        # Among equally good guesses, the web's most common legacy charset: charset_normalizer breaks ties by name,
        # and cp1250 before cp1252 turns French "è" into "č".
        for match in matches:
            if match.encoding == "cp1252" and (match.chaos, match.coherence) == (best.chaos, best.coherence):
                return str(match)
        return str(best)
    return content.decode("cp1252", errors="replace")


def _codecs(label: str | None) -> tuple[str, ...]:
    """Python codecs to try for a charset label: its browser superset first, then itself; none if unknown."""
    if not label or not label.strip():
        return ()
    try:
        name = codecs.lookup(label.strip().strip("\"'").lower()).name
    except LookupError:
        return ()
    return (_SUPERSETS[name], name) if name in _SUPERSETS else (name,)


def _decode_strictly(content: bytes, codec: str) -> str | None:
    try:
        # final=False: an incomplete multi-byte sequence at the very end is left out, invalid bytes elsewhere raise.
        return codecs.getincrementaldecoder(codec)("strict").decode(content, final=False)
    except (LookupError, ValueError):  # UnicodeDecodeError is a ValueError
        return None


def parse_content_type(value: str | None) -> tuple[str | None, str | None]:
    """("text/html", "utf-8") from "text/html; charset=UTF-8"; (None, None) when absent."""
    if not value:
        return None, None
    media_type, *params = (part.strip() for part in value.split(";"))
    charset = None
    for param in params:
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset" and val.strip():
            charset = val.strip().strip("\"'").lower()
    return media_type.lower() or None, charset
