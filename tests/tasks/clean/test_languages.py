"""Chinese, Japanese and Russian documents through the clean chain: each filtered by its own row of
conf/languages.yaml (FineWeb-2's values), kept when good and rejected by the right rule with the right value;
English keeps exactly the clean section's rules; the audit reports removal per language."""

import pytest

from gristmill.conf.schema import (
    CleanConfig,
    ConfigError,
    FineWebConfig,
    PipelineConfig,
    load_language_table,
    validate_config,
)
from gristmill.tasks.clean.base import Doc
from gristmill.tasks.clean.chain import Chain, build_chain
from gristmill.tasks.clean.fineweb import FineWebQuality
from gristmill.tasks.clean.rules import ENGLISH_STOP_WORDS, RuleBook
from gristmill.tasks.clean.stage import run
from gristmill.tasks.shards import StageOutput, iter_records
from gristmill.tasks.stage import execute
from tests.helpers import document, write_documents_stage

ZH = """数据清洗是训练语言模型之前最重要的一步。我们从网页上收集了大量的文本，但是其中有很多重复的内容和广告。
为了得到高质量的数据，我们需要先去掉重复的文档，然后再根据语言和质量进行过滤。
在中文里，词语之间没有空格，所以我们用分词工具把句子切成词语。这样，每个过滤规则都可以按照词来计算。
这个项目的目标是让每一种语言的文档都能经过同样的流程，而不是只有英文。
他在二零二四年的报告中提到，中文网页的质量差别很大，有的是新闻，有的是论坛，也有很多是商品页面。
最后，我们会检查每种语言被删除的比例，看看是否有某一种语言被过滤得太多。"""

JA = """データの整理は言語モデルを学習する前の最も大切な作業です。
ウェブから集めた文章には、重複した内容や広告が多く含まれています。
品質の高いデータを得るために、まず重複した文書を取り除き、次に言語と品質によって選別します。
日本語では単語の間に空白がないので、形態素解析器を使って文を単語に分けます。
こうして、すべての規則が単語を単位として計算できます。
このプロジェクトの目標は、英語だけでなく、すべての言語の文書が同じ流れを通ることです。
彼は二〇二四年の報告で、日本語のウェブページの品質には大きな差があると述べました。ニュースもあれば、掲示板もあり、商品のページもたくさんあります。
最後に、それぞれの言語で削除された割合を確認し、ある言語だけが多く取り除かれていないかを調べます。"""

RU_SENTENCES = [
    "Очистка данных является самым важным шагом перед обучением языковой модели.",
    "Мы собрали из интернета много текстов, но в них есть повторы и реклама.",
    "Чтобы получить качественные данные, мы сначала удаляем повторяющиеся документы, а затем фильтруем их.",
    "В русском языке слова разделены пробелами, поэтому мы делим текст на слова так же, как и для английского.",
    "После этого каждое правило считает слова по своим порогам для этого языка.",
    "Цель этого проекта в том, чтобы документы на каждом языке проходили тот же путь, а не только на английском.",
    "В своём докладе он отметил, что качество русских страниц очень разное: есть новости, форумы и магазины.",
    "В конце мы проверяем долю удалённых документов для каждого языка и смотрим, не теряет ли один язык много.",
]
RU = " ".join(RU_SENTENCES[:3]) + "\n" + " ".join(RU_SENTENCES[3:6]) + "\n" + " ".join(RU_SENTENCES[6:])
LANGUAGES = {"language": {"languages": ["en", "zh", "ja", "ru"]}}


def clean(text: str, **overrides) -> tuple[Doc, object]:
    chain = Chain(build_chain(CleanConfig.model_validate({**LANGUAGES, **overrides})))
    doc = Doc(text)
    return doc, chain.process(doc)


@pytest.mark.parametrize(("text", "language"), [(ZH, "zh"), (JA, "ja"), (RU, "ru")])
def test_good_chinese_japanese_and_russian_documents_are_kept(text, language):
    doc, verdict = clean(text)
    assert verdict is None and doc.language == language


def test_a_short_chinese_page_is_rejected_for_too_few_words_counted_by_jieba():
    first = ZH.split("\n")[0]
    doc, verdict = clean(first)
    # Repetition runs first: the top 4-gram, its words joined with spaces as datatrove measures it in every language
    # (FineWeb-2's bounds are in that measure), covers 10 of the 51 characters even when it occurs once
    assert (doc.language, verdict.rule, verdict.value, verdict.bound) == ("zh", "gopher_rep_top_4_gram", 10 / 51, 0.171)
    no_repetition = {"repetition": {"enabled": False}}
    doc, verdict = clean(first, **no_repetition)  # 29 words by jieba, punctuation aside; 2 "words" by spaces
    assert (doc.language, verdict.rule, verdict.value, verdict.bound) == ("zh", "gopher_min_words", 29, 50)
    # the row can be overridden from config, key by key: then C4 counts its sentences by 。 and finds two
    _, verdict = clean(first, per_language={"zh": {"min_words": 20}}, **no_repetition)
    assert (verdict.rule, verdict.value, verdict.bound) == ("c4_too_few_sentences", 2, 5)
    _, verdict = clean(first, per_language={"zh": {"min_words": 20, "c4": {"min_sentences": 2}}}, **no_repetition)
    assert verdict is None


def test_a_japanese_list_without_sentence_marks_is_rejected_by_japanese_line_punctuation_bound():
    lines = "\n".join(s for s in JA.replace("\n", "").split("。") if s)  # ten lines, none ending in 。
    doc, verdict = clean(lines)
    assert (doc.language, verdict.rule, verdict.value, verdict.bound) == ("ja", "fineweb_line_punct_ratio", 0.0, 0.167)


def test_a_russian_page_is_rejected_by_the_russian_bound_where_the_english_one_would_keep_it():
    lines = [s.rstrip(".") for s in RU_SENTENCES]
    lines[0] += "."  # 1 of 8 lines ends in punctuation: 0.125, above English's 0.12, below Russian's 0.231
    text = "\n".join(lines)
    doc, verdict = clean(text)
    found = (doc.language, verdict.rule, verdict.value, verdict.bound)
    assert found == ("ru", "fineweb_line_punct_ratio", 0.125, 0.231)
    assert FineWebQuality(FineWebConfig()).check(Doc(text)) is None


def test_with_language_id_off_a_cjk_script_picks_its_languages_row():
    chain = Chain(build_chain(CleanConfig.model_validate({"language": {"enabled": False}})))
    for text in (ZH, JA):
        doc = Doc(text)
        assert chain.process(doc) is None and doc.language is None
    assert chain.process(Doc(RU)).rule == "gopher_stop_words"  # Cyrillic: the clean section's (English) rules


def test_the_shipped_table_is_package_data_with_a_cited_source_for_every_row():
    table = load_language_table()
    assert {"zh", "ja", "ko", "ru", "de", "nl", "es", "fr"} <= set(table) and "en" not in table
    for code, row in table.items():
        assert row.source.startswith("huggingface/fineweb-2 configs/"), code
        assert row.stop_words and row.min_stop_words == 2 and row.fineweb["char_duplicates_ratio"] == 0.1, code
    assert "no" in table["pt"].stop_words  # quoted in YAML: a bare no would be False


def test_english_is_filtered_by_exactly_the_clean_section():
    cfg = CleanConfig()
    rules = RuleBook(cfg).get("en")
    assert rules.clean is cfg and rules.stop_words == ENGLISH_STOP_WORDS and rules.terminals == ".!?"
    assert RuleBook(cfg).get(None).clean is cfg  # language id off: as before


def test_an_english_override_keeps_the_english_stop_words():
    rules = RuleBook(CleanConfig(per_language={"en": {"min_words": 30}})).get("en")
    assert rules.clean.min_words == 30 and rules.stop_words == ENGLISH_STOP_WORDS and rules.clean.min_stop_words == 2


def test_a_language_without_a_row_gets_the_clean_section_and_no_stop_word_rule():
    rules = RuleBook(CleanConfig()).get("sw")
    assert rules.stop_words == frozenset() and rules.clean.min_stop_words == 0 and rules.clean.min_words == 50


def test_per_language_overrides_are_checked_before_any_work():
    base = {"crawl": {"seeds": ["http://h/"]}}
    with pytest.raises(ConfigError, match="min_wordz"):
        validate_config({**base, "clean": {"per_language": {"zh": {"min_wordz": 3}}}})
    with pytest.raises(ConfigError, match="line_punct"):
        validate_config({**base, "clean": {"per_language": {"zh": {"fineweb": {"line_punct": 0.1}}}}})
    with pytest.raises(ConfigError, match="chinese"):
        validate_config({**base, "clean": {"per_language": {"chinese": {"min_words": 3}}}})
    cfg = validate_config({**base, "clean": {"language": {"languages": ["en-US", "zho"]}}})
    assert cfg.clean.language.languages == ["en", "zh"]  # codes normalised in one place


def test_stage_reports_removal_per_language_and_warns_when_one_language_loses_far_more(tmp_path):
    short_zh = ZH.split("\n")[0]  # removed by its top 4-gram (repetition), the first rule it breaks
    docs = [document(f"http://h/zh/{i}", short_zh if i < 6 else ZH) for i in range(10)]
    docs += [document(f"http://h/ru/{i}", RU) for i in range(14)]
    config = PipelineConfig(
        workspace=str(tmp_path), crawl={"seeds": ["http://h/"]}, clean={**LANGUAGES, "pii": {"enabled": False}}
    )
    write_documents_stage(config.workspace, "dedup", [docs])
    summary = execute(config, "clean", run)
    out = StageOutput(config.workspace, "clean")

    kept = list(iter_records(out.shard_paths("documents")))
    assert sorted({r["language"] for r in kept}) == ["ru", "zh"] and len(kept) == 18
    stats = out.read_manifest().stats
    assert stats["removal_rate_by_language"]["gopher_repetition"] == {"en": 0.0, "zh": 0.6, "ru": 0.0, "ja": 0.0}
    assert stats["warnings"] == [
        "gopher_repetition removes 60.0% of zh documents vs 25.0% over all kept languages (ratio 2.40 > 2.0)"
    ]
    assert summary.warnings == stats["warnings"]
