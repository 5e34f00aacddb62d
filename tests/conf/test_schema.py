from pathlib import Path

import pytest

from gristmill.conf.schema import ConfigError, PipelineConfig, load_config

DEMO = Path(__file__).resolve().parents[2] / "conf" / "demo.yaml"


def test_demo_config_loads_and_takes_overrides():
    cfg = load_config(DEMO, ["train.max_steps=50", "crawl.seeds=[http://example.org/]"])
    assert cfg.train.max_steps == 50
    assert cfg.crawl.seeds == ["http://example.org/"]
    assert cfg.crawl.demo_site.enabled


def test_unknown_key_names_the_key_and_the_allowed_keys():
    with pytest.raises(ConfigError) as err:
        load_config(DEMO, ["train.max_stepz=50"])
    message = str(err.value)
    assert "train.max_stepz: unknown key" in message
    assert "max_steps" in message and "batch_size" in message


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"train\.batch_size: .*integer"):
        load_config(DEMO, ["train.batch_size=lots"])


def test_wrong_choice_lists_the_allowed_values():
    with pytest.raises(ConfigError) as err:
        load_config(DEMO, ["train.precision=fp8"])
    assert "train.precision" in str(err.value) and "bf16-mixed" in str(err.value)


def test_out_of_range_and_cross_field_rules(tmp_path):
    with pytest.raises(ConfigError, match=r"dedup\.threshold"):
        load_config(DEMO, ["dedup.threshold=1.5"])
    with pytest.raises(ConfigError, match=r"num_key_value_heads"):
        load_config(DEMO, ["train.num_key_value_heads=3"])
    with pytest.raises(ConfigError, match="nothing to crawl"):
        load_config(DEMO, ["crawl.demo_site.enabled=false"])
    with pytest.raises(ConfigError, match="must start with http"):
        load_config(DEMO, ["crawl.seeds=[ftp://x]"])


def test_bad_files_and_bad_override_syntax(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("crawl: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(DEMO, ["train.max_steps"])


def test_fingerprint_changes_with_the_section_only():
    a = PipelineConfig(crawl={"seeds": ["http://a/"]})
    b = a.model_copy(deep=True)
    b.train.max_steps = 7
    assert a.dedup.fingerprint() == b.dedup.fingerprint()
    assert a.train.fingerprint() != b.train.fingerprint()


PIPELINE_CONFIGS = [p for p in sorted(DEMO.parent.glob("*.yaml")) if "name:" in p.read_text()]


@pytest.mark.parametrize("path", PIPELINE_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_pipeline_config_validates(path):
    assert load_config(path).name == path.stem


def test_extends_merges_a_config_over_its_base():
    ddp = load_config(DEMO.parent / "gpt2-124m-ddp.yaml")
    assert (ddp.train.strategy, ddp.train.devices, ddp.train.accumulate_grad_batches) == ("ddp", 8, 2)
    assert ddp.train.hidden_size == 768 and ddp.tokenize.seq_len == 1024  # from the base


def test_extends_in_a_circle_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="circle"):
        load_config(tmp_path / "a.yaml")


def test_a_file_named_in_config_is_found_by_one_rule_or_named_in_the_error(tmp_path, monkeypatch):
    from gristmill.conf.schema import CONF_DIR, config_file

    monkeypatch.chdir(tmp_path)
    assert config_file("demographic_terms.yaml", "clean.audit.lexicon") == CONF_DIR / "demographic_terms.yaml"
    (tmp_path / "demographic_terms.yaml").write_text("mine: [x]\n")  # the working directory wins over conf/
    assert config_file("demographic_terms.yaml", "clean.audit.lexicon").resolve() == tmp_path / "demographic_terms.yaml"
    assert config_file(tmp_path / "demographic_terms.yaml", "k") == tmp_path / "demographic_terms.yaml"
    with pytest.raises(ConfigError, match=r"clean\.url_blocklist: file 'blocked\.txt' not found"):
        config_file("blocked.txt", "clean.url_blocklist")
