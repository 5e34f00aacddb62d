"""Text normalisation: mojibake repair, Unicode NFC, whitespace and control characters."""

from __future__ import annotations

import re
import unicodedata

import ftfy

from gristmill.tasks.clean.base import Formatter

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(text: str, fix_unicode: bool = True) -> str:
    text = ftfy.fix_text(text, normalization="NFC") if fix_unicode else unicodedata.normalize("NFC", text)
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


class Normalizer(Formatter):
    """Always on: later rules count lines and words, so they need one spelling of whitespace."""

    name = "normalize"

    def __init__(self, fix_unicode: bool = True) -> None:
        super().__init__()
        self.fix_unicode = fix_unicode

    def format(self, text: str) -> str:
        out = normalize_text(text, self.fix_unicode)
        self.stats["changed"] += out != text
        return out
