"""The demographic audit across shards, and what the stage logs to MLflow."""

import pytest

from gristmill.conf.schema import AuditConfig, PipelineConfig
from gristmill.tasks.clean.audit import load_lexicon, summarize
from gristmill.tasks.clean.stage import run
from gristmill.tasks.shards import StageOutput
from gristmill.tasks.stage import execute, sum_stats
from gristmill.tasks.tracking import Tracker
from tests.helpers import document, write_documents_stage
from tests.tasks.clean.test_filters import ARTICLE


def test_lexicon_matches_whole_words_and_phrases(tmp_path):
    lexicon = load_lexicon("demographic_terms.yaml")
    assert {"gender", "religion", "ethnicity_nationality", "sexual_orientation", "disability", "age"} <= set(lexicon)
    assert lexicon["age"].search("Services for Older People here")
    assert not lexicon["gender"].search("the menu and the manual")  # "men", "man" only as words
    bad = tmp_path / "bad.yaml"
    bad.write_text("gender: []\n")
    with pytest.raises(ValueError, match="non-empty list"):
        load_lexicon(bad)


def test_disparity_ratio_and_warning_from_merged_counts():
    # two shards' counts: the filter removes 2 of 10 documents overall, but 2 of 4 mentioning religion
    a = {"before": {"_all": 5, "religion": 2}, "after": {"_all": 4, "religion": 1},
         "entered": {"f": {"_all": 5, "religion": 2}}, "removed": {"f": {"_all": 1, "religion": 1}}}  # fmt: skip
    b = {"before": {"_all": 5, "religion": 2}, "after": {"_all": 4, "religion": 1},
         "entered": {"f": {"_all": 5, "religion": 2}}, "removed": {"f": {"_all": 1, "religion": 1}}}  # fmt: skip
    total = sum_stats([a, b])
    rows, warnings = summarize(total, ["religion", "age"], AuditConfig(max_disparity=2.0, min_docs=4))
    religion = next(r for r in rows if r["group"] == "religion")
    assert (religion["removal_rate"], religion["overall_removal_rate"], religion["disparity"]) == (0.5, 0.2, 2.5)
    assert (religion["share_before"], religion["share_after"]) == (0.4, 0.25)
    assert religion["warning"] and warnings == [
        "f removes 50.0% of documents mentioning religion vs 20.0% overall (ratio 2.50 > 2.0)"
    ]
    _, quiet = summarize(total, ["religion"], AuditConfig(max_disparity=2.0, min_docs=5))
    assert quiet == []  # too few documents to judge


def test_stage_logs_removals_audit_table_and_figures_to_mlflow(tmp_path):
    faith = ARTICLE + "\nThe church and the mosque opened their halls to families who had to leave."
    docs = [document(f"http://h/ok/{i}", ARTICLE + f"\nReport number {i} was filed.") for i in range(6)]
    docs += [document(f"http://h/faith/{i}", faith + "\nLorem ipsum dolor sit amet.") for i in range(3)]
    docs += [document("http://h/faith/ok", faith)]
    config = PipelineConfig(workspace=str(tmp_path), crawl={"seeds": ["http://h/"]},
                            clean={"min_words": 20, "audit": {"min_docs": 2}})  # fmt: skip
    write_documents_stage(config.workspace, "dedup", [docs[:7], docs[7:]])  # religion docs in both shards
    tracker = Tracker(config.workspace, None, "test")

    summary = execute(config, "clean", run, tracker=tracker)

    stats = StageOutput(config.workspace, "clean").read_manifest().stats
    assert stats["removed"] == {"c4_lorem_ipsum": 3}
    assert stats["filters"]["c4"]["docs_removed"] == 3 and stats["filters"]["c4"]["docs_in"] == 10
    # c4 removed 3 of 4 religion docs vs 3 of 10 overall: ratio 2.5
    assert stats["audit_warnings"] == 1 and "religion" in stats["warnings"][0]
    run_ = tracker.client.get_run(summary.mlflow_run_id)
    assert run_.data.metrics["removed.c4_lorem_ipsum"] == 3
    assert run_.data.metrics["filters.c4.docs_removed"] == 3
    files = {f.path for f in tracker.client.list_artifacts(summary.mlflow_run_id, "clean")}
    assert {"clean/removal_samples.json", "clean/removals_by_rule.png", "clean/audit.json"} <= files
    assert "clean/audit_disparity.png" in files
