from conf.schema import CleanConfig, PipelineConfig
from tasks.clean.gopher import GopherQuality
from tasks.clean.normalize import normalize_text
from tasks.clean.stage import run
from tasks.shards import StageOutput, iter_records
from tasks.stage import execute
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


def test_stage_keeps_good_documents_and_explains_each_removal(tmp_path):
    docs = [document(f"http://h/good/{i}", PROSE + f" Item {i}.") for i in range(3)]
    docs += [document("http://h/short", "Home | About | Contact"), document("http://h/none", None)]
    config = PipelineConfig(workspace=str(tmp_path), crawl={"seeds": ["http://h/"]})
    write_documents_stage(config.workspace, "dedup", [docs[:2], docs[2:]])

    summary = execute(config, "clean", run)

    out = StageOutput(config.workspace, "clean")
    kept = [r["url"] for r in iter_records(out.shard_paths("documents"))]
    rejected = list(iter_records(out.shard_paths("rejected")))
    assert kept == ["http://h/good/0", "http://h/good/1", "http://h/good/2"]
    assert {(r["url"], r["reason"], r["value"]) for r in rejected} == {
        ("http://h/short", "gopher_min_words", 3.0),  # "|" is not a word
        ("http://h/none", "gopher_min_words", 0.0),
    }
    assert out.read_manifest().stats["removed"] == {"gopher_min_words": 2}
    assert (summary.count_in, summary.count_out) == (5, 3)
