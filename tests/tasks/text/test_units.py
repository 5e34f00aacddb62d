"""Words and sentences per script, and the language codes: the one splitter every filter and dedup use."""

import random

import pytest

from gristmill.tasks.text.languages import LID176_LANGUAGES, normalize_code
from gristmill.tasks.text.units import (
    DEFAULT_TERMINALS,
    LATIN_TERMINALS,
    count_sentence_ends,
    guess_segmenter,
    guess_segmenters,
    line_words,
    sentences,
    split_words,
    words,
)


def test_spaced_scripts_split_on_spaces_with_punctuation_peeled_off():
    assert split_words("Hello, world.") == ["Hello", ",", "world", "."]
    assert words("Привет, мир. Как дела?", "ru") == ["Привет", ",", "мир", ".", "Как", "дела", "?"]
    assert words("Καλημέρα κόσμε!", "el") == ["Καλημέρα", "κόσμε", "!"]


def test_chinese_is_segmented_into_words_by_jieba():
    found = words("我们在北京大学学习自然语言处理。", "zh")
    assert found == ["我们", "在", "北京大学", "学习", "自然语言", "处理", "。"]


def test_japanese_is_segmented_into_short_units_by_sudachi():
    assert words("私は東京で日本語を勉強しています。", "ja") == [
        "私", "は", "東京", "で", "日本", "語", "を", "勉強", "し", "て", "い", "ます", "。",
    ]  # fmt: skip


def test_korean_is_segmented_into_morphemes_by_kiwi():
    found = words("저는 서울에서 공부합니다.", "ko")
    assert found[:4] == ["저", "는", "서울", "에서"] and "공부" in found and found[-1] == "."


def test_scripts_without_a_segmenter_fall_back_to_characters():
    assert words("สวัสดีครับ", "th") == list("สวัสดีครับ")


def test_without_a_language_the_script_chooses_the_segmenter():
    assert guess_segmenter("The quick brown fox jumps.") == "spaces"
    assert guess_segmenter("Быстрая коричневая лиса.") == "spaces"
    assert guess_segmenter("我们在北京大学学习。") == "jieba"
    assert guess_segmenter("東京大学で日本語を勉強しています。") == "sudachi"  # kanji with kana is Japanese
    assert guess_segmenter("서울에서 공부합니다.") == "kiwi"
    assert guess_segmenter("สวัสดีครับ") == "chars"
    assert guess_segmenter("") == "spaces"


def reference_segmenter(text: str) -> str:
    """The script rule of `guess_segmenter`, one character at a time in plain Python."""
    ranges = {
        "kana": ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9D)),
        "hangul": ((0xAC00, 0xD7AF), (0x1100, 0x11FF), (0x3130, 0x318F)),
        "han": ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2FFFF), (0xF900, 0xFAFF)),
        "nospace": ((0x0E00, 0x0EFF), (0x1780, 0x17FF), (0x1000, 0x109F), (0x0F00, 0x0FFF)),
    }
    counts = dict.fromkeys([*ranges, "other"], 0)
    for ch in text[:2000]:
        script = next((s for s, rs in ranges.items() if any(lo <= ord(ch) <= hi for lo, hi in rs)), None)
        if script or ch.isalpha():
            counts[script or "other"] += 1
    letters, cjk = sum(counts.values()), counts["kana"] + counts["han"]
    if not letters:
        return "spaces"
    if counts["kana"] and cjk >= counts["hangul"] and cjk * 2 >= letters:
        return "sudachi"
    for script, segmenter in (("hangul", "kiwi"), ("han", "jieba"), ("nospace", "chars")):
        if counts[script] * 2 >= letters:
            return segmenter
    return "spaces"


def test_script_guesses_of_a_batch_match_the_rule_character_by_character():
    rng = random.Random(0)
    blocks = [(0x20, 0x7F), (0xA0, 0x250), (0x300, 0x370), (0x400, 0x500), (0xE00, 0xE80), (0x3000, 0x3100),
              (0x4E00, 0x4F00), (0xAC00, 0xAD00), (0xFF00, 0xFFA0), (0x10400, 0x10450), (0x1F300, 0x1F400),
              (0x20000, 0x20100), (0x30000, 0x30100)]  # fmt: skip
    texts = []
    for _ in range(600):
        mix = rng.sample(blocks, rng.randint(1, 4))
        size = rng.choice([0, 1, 3, 40, 1999, 2000, 2001, 2600])  # around the 2,000-character sample
        texts.append("".join(chr(rng.randrange(*rng.choice(mix))) for _ in range(size)))
    expected = [reference_segmenter(t) for t in texts]
    assert guess_segmenters(texts) == expected
    assert [guess_segmenter(t) for t in texts] == expected
    assert len(set(expected)) == 5  # every verdict occurs


def test_c4_line_words_keep_whitespace_chunks_for_spaced_scripts_and_drop_punctuation_for_cjk():
    assert line_words("one two, three.", "spaces") == ["one", "two,", "three."]  # C4's own rule, unchanged
    assert line_words("我们在北京大学学习。", "jieba") == ["我们", "在", "北京大学", "学习"]


def test_sentences_end_at_each_scripts_terminal_marks():
    zh = "今天天气很好。我们去公园吧！你去吗？好的"
    assert sentences(zh) == ["今天天气很好。", "我们去公园吧！", "你去吗？", "好的"]
    assert count_sentence_ends(zh) == 3
    ja = "「これは本です。」と彼は言った。"
    assert sentences(ja) == ["「これは本です。」", "と彼は言った。"]  # a closing bracket stays with its sentence
    assert sentences("यह एक वाक्य है। यह दूसरा है।") == ["यह एक वाक्य है।", "यह दूसरा है।"]
    # Latin marks end a sentence only before a space: numbers and inner dots do not split.
    found = sentences("Pi is 3.14 or so. See e.g.this! Done", LATIN_TERMINALS)
    assert found == ["Pi is 3.14 or so.", "See e.g.this!", "Done"]
    assert count_sentence_ends('He said "stop." Then left.', LATIN_TERMINALS) == 2


def test_english_sentence_ends_ignore_other_scripts_marks():
    # English keeps exactly C4's rule; the default (languages without a row) knows every script's marks.
    assert count_sentence_ends("Ends here。And here.", LATIN_TERMINALS) == 1
    assert count_sentence_ends("Ends here。And here.", DEFAULT_TERMINALS) == 2


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("en", "en"), ("en-US", "en"), ("EN_gb", "en"), ("eng", "en"), ("zho", "zh"), ("cmn", "zh"),
        ("zh-Hant-TW", "zh"), ("jpn", "ja"), ("ja-JP", "ja"), ("rus", "ru"), ("deu", "de"), ("ger", "de"),
        ("nld", "nl"), ("dut", "nl"), ("spa", "es"), ("kor", "ko"), ("eng,fra", "en"), ("yue", "yue"),
        ("ast", "ast"),  # no 639-1 code: the 639-3 one
        ("utf-8", None), ("iso-8859-1", None), ("shift_jis", None), ("und", None), ("", None), (None, None),
        ("english", None),
    ],
)  # fmt: skip
def test_language_codes_are_iso_639_1_or_639_3_from_one_place(raw, code):
    assert normalize_code(raw) == code


def test_every_code_language_id_answers_is_already_normal():
    assert {code for code in LID176_LANGUAGES if normalize_code(code) != code} == set()
