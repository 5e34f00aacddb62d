"""Dedup across scripts: Chinese and Japanese near-duplicates are found as English ones are (shingles are word
n-grams of the same segmenter the clean filters use), and exact dedup ignores full-width/half-width forms."""

import pyarrow as pa

from gristmill.conf.schema import DedupConfig, PipelineConfig
from gristmill.tasks.dedup.exact import exact_hash
from gristmill.tasks.dedup.minhash import MinHasher, Shingler, segment_unspaced, shingles, signature
from gristmill.tasks.dedup.stage import run
from gristmill.tasks.shards import StageOutput, iter_records
from gristmill.tasks.stage import execute
from gristmill.tasks.text.units import words
from tests.helpers import document, write_documents_stage
from tests.tasks.clean.test_languages import JA, RU, ZH

ZH_LONG = ZH + "\n" + ZH.replace("我们", "大家").replace("语言", "语种")  # about 330 words
JA_LONG = JA + "\n" + JA.replace("言語", "ことば").replace("文書", "ドキュメント")


def lightly_edited(text: str, every: int = 40) -> str:
    """One word in `every` replaced, as in the English dedup tests, counting the segmenter's words."""
    return "".join("编辑" if i % every == every // 2 else w for i, w in enumerate(words(text)))


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a, 5), shingles(b, 5)
    return len(sa & sb) / len(sa | sb)


def test_cjk_texts_are_respaced_word_by_word_and_others_are_untouched():
    korean = "서울에서 공부합니다. 저는 학생입니다."  # written with spaces: its words stay as they are
    out = segment_unspaced(pa.array(["我们在北京大学学习。", "Plain English, untouched.", None, korean, "ｶﾀｶﾅ"]))
    assert out.to_pylist() == ["我们 在 北京大学 学习 。", "Plain English, untouched.", "", korean, "ｶﾀｶﾅ"]


def test_chinese_and_japanese_near_duplicates_have_the_similarity_english_ones_have():
    for text in (ZH_LONG, JA_LONG):
        edited = lightly_edited(text)
        assert len(shingles(text, 5)) > 150  # word 5-grams, not a dozen space-separated runs
        true = jaccard(text, edited)
        assert 0.7 < true < 0.95
        estimate = float((signature(text, 256, 5, 1) == signature(edited, 256, 5, 1)).mean())
        assert abs(estimate - true) < 0.08
    assert jaccard(ZH_LONG, JA_LONG) == 0.0 and jaccard(ZH_LONG, RU) == 0.0


def test_the_stage_splits_japanese_words_at_the_characters_the_reference_definition_does():
    # 々 (iteration mark) and 〇 (ideographic zero) are letters and numbers: inside words; ・ (katakana middle dot)
    # is punctuation between the words of a loanword. The stage's byte-class splitter cut at 々 and 〇 and kept ・.
    text = "人々は二〇二四年にコンピュータ・ソフトウェアを使い、時々データ・ベースを調べました。" * 3
    found = MinHasher(64, 1, Shingler("word", 5)).shingler.batch(pa.array([text]))
    assert len(set(found.hashes.tolist())) == len(shingles(text, 5))


def test_exact_dedup_ignores_full_width_and_half_width_forms():
    assert exact_hash("ＧＰＵ　２０２４年モデル、ｶﾞｲﾄﾞ") == exact_hash("GPU 2024年モデル、ガイド")
    hasher = MinHasher(64, 1, Shingler("word", 2))
    wide, narrow = hasher.batch(pa.array(["ＡＢＣ ｄｅｆ ｇｈｉ", "abc def ghi"]))
    assert (wide == narrow).all()


def test_stage_removes_chinese_and_japanese_near_copies_and_keeps_distinct_pages(tmp_path):
    originals = [document("http://zh/0", ZH_LONG), document("http://ja/0", JA_LONG), document("http://ru/0", RU)]
    copies = [
        document("http://zh/near", lightly_edited(ZH_LONG, every=100)),
        document("http://ja/near", lightly_edited(JA_LONG, every=100)),
        document("http://zh/wide", ZH_LONG.replace("2024", "２０２４").replace("，", ",")),  # NFKC-equal
    ]
    config = PipelineConfig(workspace=str(tmp_path), crawl={"seeds": ["http://zh/"]}, dedup=DedupConfig())
    write_documents_stage(config.workspace, "crawl", [originals, copies])
    execute(config, "dedup", run)
    out = StageOutput(config.workspace, "dedup")
    kept = [r["url"] for r in iter_records(out.shard_paths("documents"))]
    assert kept == ["http://zh/0", "http://ja/0", "http://ru/0"]
    assert out.read_manifest().stats["removed"] == {"empty": 0, "exact": 1, "near": 2}
