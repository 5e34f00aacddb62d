"""The tokenize stage: train BPE on the cleaned text, then encode, pack and split every shard.

Units: `tokenizer` (trained once on a sample of documents), then one per input shard, which writes a train and a
validation shard of packed rows. Documents go to validation by a hash of their id, so the split is stable. A new
corpus generation encodes only its new shards, with the tokenizer trained on the first.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from gristmill.conf.schema import ConfigError
from gristmill.tasks.shards import UnitRecord, iter_batches, write_shard
from gristmill.tasks.stage import StageContext, StageResult
from gristmill.tasks.tokenize.bpe import BOS_TOKEN, EOS_TOKEN, load_given, load_tokenizer, save_for_hf, train_bpe
from gristmill.tasks.tokenize.pack import LengthHistogram, Packer, is_validation, rows_to_batch, tokens_schema

ENCODE_BATCH = 1024  # documents per encode call: the Rust side spreads a batch over all cores


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.config.tokenize
    inputs = ctx.input_paths()
    tokenizer_dir = ctx.output.path / "tokenizer"

    def train_tokenizer() -> UnitRecord:
        if tokenizer_dir.exists():
            shutil.rmtree(tokenizer_dir)  # a half-written tokenizer from a killed run
        if cfg.tokenizer_path:
            tokenizer = load_given(Path(cfg.tokenizer_path))
        else:
            texts = (t for b in iter_batches(inputs, ["text"]) for t in b.column("text").to_pylist() if t)
            sample = itertools.islice(texts, cfg.train_sample_docs)
            tokenizer = train_bpe(sample, cfg.vocab_size, cfg.min_frequency)
        scratch = tokenizer_dir.with_name(".tokenizer.tmp")
        shutil.rmtree(scratch, ignore_errors=True)
        save_for_hf(tokenizer, scratch, model_max_length=cfg.seq_len)
        scratch.rename(tokenizer_dir)
        return UnitRecord(unit="tokenizer", stats={"vocab_size": tokenizer.get_vocab_size()})

    # Trained once per workspace and settings: a later corpus generation is encoded with the same vocabulary, so
    # a model can go on training on it (train.mode: continue).
    vocab_size = ctx.unit("tokenizer", train_tokenizer, inputs="first-generation").stats["vocab_size"]
    schema = tokens_schema(cfg.seq_len, vocab_size)

    # One tokenizer for every unit: loading one per shard grew the process by ~10 MB a shard (its caches).
    tokenizer = load_tokenizer(tokenizer_dir)
    # Every document starts with BOS (the token the export declares and lm-eval puts first) and ends with EOS.
    start = [tokenizer.token_to_id(BOS_TOKEN)] if cfg.start_with_bos else []
    eos = tokenizer.token_to_id(EOS_TOKEN)

    def encode_shard(path: Path) -> UnitRecord:
        def work() -> UnitRecord:
            dtype = np.uint16 if vocab_size <= 1 << 16 else np.uint32
            packers = {split: Packer(cfg.seq_len + 1, dtype) for split in ("train", "val")}
            docs = {"train": 0, "val": 0}
            lengths = LengthHistogram()
            text_bytes = 0
            for batch in iter_batches([path], ["doc_id", "text"], batch_size=ENCODE_BATCH):
                ids, texts = batch.column("doc_id").to_pylist(), batch.column("text").to_pylist()
                encodings = tokenizer.encode_batch_fast(texts)  # ids only: no offsets to track
                for doc_id, encoding in zip(ids, encodings, strict=True):
                    split = "val" if is_validation(doc_id, cfg.val_fraction) else "train"
                    packers[split].add([*start, *encoding.ids, eos])
                    lengths.add(len(start) + len(encoding.ids) + 1)
                    docs[split] += 1
                text_bytes += pc.sum(pc.binary_length(batch.column("text"))).as_py() or 0
            shards = {}
            for split, packer in packers.items():
                batches = [rows_to_batch(rows, schema) for rows in packer.rows()]
                if batches:
                    shards[split] = [write_shard(ctx.output.dataset_dir(split) / path.name, batches, schema)]
            stats = {
                "docs": docs,
                "tokens": {split: p.tokens_in for split, p in packers.items()},
                "tokens_dropped": sum(p.dropped for p in packers.values()),
                "text_bytes": text_bytes,
                "doc_tokens": lengths.counts,
            }
            return UnitRecord(unit=path.stem, shards=shards, stats=stats)

        return ctx.unit(path.stem, work, inputs=ctx.shard_digest(path))  # a shard encoded before is not again

    units = ctx.map(encode_shard, inputs)
    tokens = {s: sum(u.stats["tokens"][s] for u in units) for s in ("train", "val")}
    docs = {s: sum(u.stats["docs"][s] for u in units) for s in ("train", "val")}
    rows = {s: sum(i.rows for u in units for i in u.shards.get(s, [])) for s in ("train", "val")}
    if rows["train"] == 0 or rows["val"] == 0:
        raise ConfigError(
            f"tokenize: {rows['train']} train and {rows['val']} validation sequences of {cfg.seq_len + 1} tokens "
            f"from {sum(docs.values())} documents; need both > 0 (lower tokenize.seq_len, raise "
            "tokenize.val_fraction, or crawl more pages)"
        )
    text_bytes = sum(u.stats["text_bytes"] for u in units)
    histogram = LengthHistogram.merge(u.stats["doc_tokens"] for u in units)
    if ctx.tracker and ctx.run_id:
        ctx.tracker.log_figure(ctx.run_id, histogram.figure(), "doc_length_tokens.png")
    shard_tokens = [
        s.rows * (cfg.seq_len + 1) for u in units for split in ("train", "val") for s in u.shards.get(split, [])
    ]
    return StageResult(
        units=units,
        count_in=sum(docs.values()),
        unit_in="docs",
        count_out=rows["train"] + rows["val"],
        unit_out="sequences",
        stats={
            "vocab_size": vocab_size,
            "seq_len": cfg.seq_len,
            "docs": docs,
            "tokens": tokens,
            "sequences": rows,
            "tokens_dropped": sum(u.stats["tokens_dropped"] for u in units),
            "bytes_per_token": round(text_bytes / max(sum(tokens.values()), 1), 4),
            "tokens_per_shard": {"min": min(shard_tokens), "max": max(shard_tokens)},
            "doc_tokens": histogram.counts,
        },
        files={"tokenizer": "tokenizer"},
    )
