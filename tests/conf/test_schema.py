from pathlib import Path

import pytest

from conf.schema import ConfigError, PipelineConfig, load_config

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
