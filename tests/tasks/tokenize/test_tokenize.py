from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from gristmill.conf.schema import PipelineConfig
from gristmill.tasks.shards import StageOutput
from gristmill.tasks.stage import execute
from gristmill.tasks.tokenize.bpe import BOS_TOKEN, EOS_TOKEN, load_tokenizer
from gristmill.tasks.tokenize.pack import Packer, is_validation
from gristmill.tasks.tokenize.stage import run
from tests.helpers import document, write_documents_stage


@pytest.fixture(scope="module")
def texts(shared_data: Path) -> list[str]:
    root = shared_data / "neardup" / "clough_stevenson_2009" / "corpus-20090418"
    return [p.read_text(errors="replace") for p in sorted(root.glob("*.txt"))]


def test_packer_cuts_full_rows_and_keeps_the_tail_for_later():
    packer = Packer(4, np.uint16)
    packer.add([1, 2, 3])
    assert list(packer.rows()) == []
    packer.add([4, 5, 6, 7, 8, 9])
    (rows,) = list(packer.rows())
    assert rows.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]] and packer.dropped == 1


def test_validation_split_is_deterministic_and_near_the_requested_share():
    ids = [f"doc-{i}" for i in range(5000)]
    share = sum(is_validation(i, 0.1) for i in ids) / len(ids)
    assert 0.08 < share < 0.12
    assert [is_validation(i, 0.1) for i in ids] == [is_validation(i, 0.1) for i in ids]


def test_stage_packs_every_document_with_an_end_of_text_token(tmp_path, texts):
    docs = [document(f"http://h/{i}", text) for i, text in enumerate(texts)]
    config = PipelineConfig(
        workspace=str(tmp_path),
        crawl={"seeds": ["http://h/"]},
        tokenize={"vocab_size": 1000, "seq_len": 64, "val_fraction": 0.2},
    )
    write_documents_stage(config.workspace, "clean", [docs[:50], docs[50:]])

    summary = execute(config, "tokenize", run)

    out = StageOutput(config.workspace, "tokenize")
    stats = out.read_manifest().stats
    tokenizer = load_tokenizer(out.path / "tokenizer")
    bos, eos = tokenizer.token_to_id(BOS_TOKEN), tokenizer.token_to_id(EOS_TOKEN)
    train = pq.read_table(out.shard_paths("train")).column("tokens")
    assert train.type.list_size == 65 and str(train.type.value_type) == "uint16"
    # The first shard's train rows decode to its train documents, in order, each started by BOS (the token the
    # export declares and lm-eval scores after) and ended by end-of-text.
    first = pq.read_table(out.shard_paths("train")[0]).column("tokens").combine_chunks()
    stream = first.flatten().to_numpy()
    train_docs = [d["text"] for d in docs[:50] if not is_validation(d["doc_id"], 0.2)]
    expected = [t for text in train_docs for t in [bos, *tokenizer.encode(text).ids, eos]]
    assert stream.tolist() == expected[: len(stream)]
    assert len(expected) - len(stream) < 65  # only the tail shorter than a row is dropped
    assert stats["docs"]["train"] + stats["docs"]["val"] == len(docs) and stats["docs"]["val"] > 0
    assert 2.0 < stats["bytes_per_token"] < 6.0
    assert summary.count_out == stats["sequences"]["train"] + stats["sequences"]["val"]


def test_saved_tokenizer_loads_offline_with_transformers(tmp_path, texts):
    from transformers import AutoTokenizer

    docs = [document(f"http://h/{i}", text) for i, text in enumerate(texts)]
    config = PipelineConfig(
        workspace=str(tmp_path), crawl={"seeds": ["http://h/"]}, tokenize={"vocab_size": 600, "seq_len": 32}
    )
    write_documents_stage(config.workspace, "clean", [docs])
    execute(config, "tokenize", run)
    hf = AutoTokenizer.from_pretrained(str(tmp_path / "tokenize" / "tokenizer"))
    assert hf.eos_token == EOS_TOKEN and hf.pad_token == "<|pad|>"
    assert hf.decode(hf("Plagiarism is copying.")["input_ids"]) == "Plagiarism is copying."


def test_too_little_text_for_one_sequence_is_a_clear_error(tmp_path):
    config = PipelineConfig(workspace=str(tmp_path), crawl={"seeds": ["http://h/"]}, tokenize={"seq_len": 4096})
    write_documents_stage(config.workspace, "clean", [[document("http://h/1", "just a few words here")]])
    with pytest.raises(ValueError, match="lower tokenize.seq_len"):
        execute(config, "tokenize", run)


def test_a_given_tokenizer_is_used_instead_of_training_one(tmp_path, texts):
    from gristmill.tasks.tokenize.bpe import train_bpe

    given = train_bpe(texts[:20], vocab_size=500, min_frequency=1)
    given.save(str(tmp_path / "given.json"))
    docs = [document(f"http://h/{i}", text) for i, text in enumerate(texts)]
    config = PipelineConfig(
        workspace=str(tmp_path / "ws"),
        crawl={"seeds": ["http://h/"]},
        tokenize={"tokenizer_path": str(tmp_path / "given.json"), "seq_len": 32},
    )
    write_documents_stage(config.workspace, "clean", [docs])
    execute(config, "tokenize", run)
    out = StageOutput(config.workspace, "tokenize")
    used = load_tokenizer(out.path / "tokenizer")
    assert used.get_vocab() == given.get_vocab()
    histogram = out.read_manifest().stats["doc_tokens"]
    assert sum(histogram.values()) == len(docs) and all(key.startswith("le_") for key in histogram)


def test_an_unreadable_tokenizer_file_is_named_in_the_error(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    config = PipelineConfig(
        workspace=str(tmp_path), crawl={"seeds": ["http://h/"]}, tokenize={"tokenizer_path": str(tmp_path / "bad.json")}
    )
    write_documents_stage(config.workspace, "clean", [[document("http://h/1", "some words")]])
    with pytest.raises(ValueError, match=r"tokenize.tokenizer_path .*bad.json"):
        execute(config, "tokenize", run)
