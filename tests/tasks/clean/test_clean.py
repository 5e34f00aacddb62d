import pyarrow.parquet as pq
import pytest

from gristmill.conf.schema import LID176_LANGUAGES, CleanConfig, ConfigError, PipelineConfig, validate_config
from gristmill.tasks.clean.gopher import GopherQuality
from gristmill.tasks.clean.language import model_languages
from gristmill.tasks.clean.normalize import normalize_text
from gristmill.tasks.clean.stage import CLEAN_SCHEMA, run
from gristmill.tasks.shards import StageOutput, iter_records
from gristmill.tasks.stage import execute
from tests.helpers import document, write_documents_stage

PROSE = (
    "The committee met on Tuesday to discuss the budget for the coming year. Members agreed that the "
    "library should have longer opening hours, and that the money for this would come from the reserve "
    "fund. Several residents spoke in favour of the plan, noting that students and workers often cannot "
    "visit during the day. The chair thanked everyone for their comments and said a final vote would be "
    "held next month, after the treasurer has checked the figures with the auditors."
)


def test_normalize_repairs_mojibake_and_whitespace():
    assert normalize_text("CafÃ©   au\tlait\r\n\n\n\nnext\x07 line  ") == "Café au lait\n\nnext line"


def test_good_prose_passes_every_gopher_rule():
    assert GopherQuality(CleanConfig()).check(PROSE) is None


def test_each_gopher_rule_reports_its_rule_and_measured_value():
    quality = GopherQuality(CleanConfig())
    cases = {
        "gopher_min_words": "too short to keep",
        "gopher_max_mean_word_length": " ".join(["supercalifragilistic"] * 60),
        "gopher_hash_ratio": PROSE + " #tag" * 20,
        "gopher_ellipsis_lines": "\n".join([PROSE] + ["and then..."] * 5),
        "gopher_bullet_lines": "\n".join(f"- item number {i} of the list here" for i in range(20)),
        "gopher_alpha_words": PROSE + " 123 456 789 1011" * 10,
        "gopher_stop_words": " ".join(["apple banana cherry"] * 30),
    }
    for rule, text in cases.items():
        verdict = quality.check(text)
        assert verdict is not None and verdict.rule == rule, (rule, verdict)
    short = quality.check("too short to keep")
    assert short.value == 4 and short.bound == 50


def test_alpha_ratio_counts_punctuation_tokens_only_when_asked():
    # a stray "|" after every word (a table dump): every word has a letter, but half the tokens are marks
    text = PROSE.replace(" ", " | ")
    assert GopherQuality(CleanConfig()).check(text) is None
    verdict = GopherQuality(CleanConfig(alpha_ratio_over="tokens")).check(text)
    assert verdict.rule == "gopher_alpha_words" and verdict.value < 0.8


def test_unknown_language_code_is_a_config_error_listing_supported_codes():
    with pytest.raises(ConfigError) as err:
        validate_config({"crawl": {"seeds": ["http://h/"]}, "clean": {"language": {"languages": ["en", "english"]}}})
    assert "english" in str(err.value) and " fr " in str(err.value)


def test_supported_language_list_is_the_models_own():
    assert model_languages() == set(LID176_LANGUAGES)


def _clean(tmp_path, shards, **clean):
    config = PipelineConfig(workspace=str(tmp_path), crawl={"seeds": ["http://h/"]}, clean=clean)
    write_documents_stage(config.workspace, "dedup", shards)
    summary = execute(config, "clean", run)
    return summary, StageOutput(config.workspace, "clean")


def test_stage_keeps_good_documents_and_explains_each_removal(tmp_path):
    docs = [document(f"http://h/good/{i}", PROSE + f" Item {i}.") for i in range(3)]
    docs += [document("http://h/short", "Home | About | Contact"), document("http://h/none", None)]
    summary, out = _clean(tmp_path, [docs[:2], docs[2:]], language={"enabled": False}, repetition={"enabled": False})

    kept = list(iter_records(out.shard_paths("documents")))
    rejected = list(iter_records(out.shard_paths("rejected")))
    assert [r["url"] for r in kept] == ["http://h/good/0", "http://h/good/1", "http://h/good/2"]
    assert {(r["url"], r["reason"], r["value"]) for r in rejected} == {
        ("http://h/short", "gopher_min_words", 3.0),  # "|" is not a word
        ("http://h/none", "gopher_min_words", 0.0),
    }
    stats = out.read_manifest().stats
    assert stats["removed"] == {"gopher_min_words": 2}
    assert stats["filters"]["gopher_quality"] == {"docs_in": 5, "docs_removed": 2, "chars_removed": 22}
    assert (summary.count_in, summary.count_out) == (5, 3)


def test_language_is_kept_as_columns_and_other_languages_are_removed(tmp_path):
    french = (
        "Le conseil municipal s'est réuni mardi pour discuter du budget de l'année prochaine. Les membres ont "
        "convenu que la bibliothèque devrait ouvrir plus longtemps, et que l'argent viendrait du fonds de réserve."
    )
    docs = [document("http://h/en", PROSE + " Item 1."), document("http://h/fr", french)]
    _, out = _clean(tmp_path, [docs])

    (kept,) = iter_records(out.shard_paths("documents"))
    (gone,) = iter_records(out.shard_paths("rejected"))
    assert kept["language"] == "en" and kept["language_score"] >= 0.65
    assert (gone["url"], gone["reason"], gone["language"]) == ("http://h/fr", "language_other", "fr")
    assert 0.65 <= gone["value"] <= 1.0  # the score of the language it was recognised as
    assert pq.read_schema(out.shard_paths("documents")[0]).equals(CLEAN_SCHEMA)


def test_blocklist_files_from_config_remove_documents_before_anything_else(tmp_path):
    (tmp_path / "domains.txt").write_text("# blocked\nspam.example\n")
    docs = [document("http://h/ok", PROSE + " Item 1."), document("http://www.spam.example/a", PROSE + " Item 2.")]
    _, out = _clean(tmp_path / "ws", [docs], url_blocklist=str(tmp_path / "domains.txt"))
    (gone,) = iter_records(out.shard_paths("rejected"))
    assert (gone["url"], gone["reason"], gone["language"]) == ("http://www.spam.example/a", "url_blocklist", None)
    with pytest.raises(ConfigError, match="clean.badwords: file .*missing.txt. not found"):
        _clean(tmp_path / "ws2", [docs], badwords=str(tmp_path / "missing.txt"))
