"""Signature rows: what the dedup stage keeps of each document (exact hash, length, URL, MinHash values).

Computed a batch at a time in Arrow and numpy; the compact rows are all the later passes read, except that
verification re-shingles the texts of candidate pairs.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gristmill.conf.schema import DedupConfig
from gristmill.tasks.dedup.exact import Normalizer
from gristmill.tasks.dedup.minhash import MinHasher, Shingler
from gristmill.tasks.dedup.tokens import large_strings


def signature_schema(num_perm: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("row", pa.int32(), nullable=False),
            pa.field("has_text", pa.bool_(), nullable=False),
            pa.field("exact_hash", pa.binary(8), nullable=False),
            pa.field("length", pa.int32(), nullable=False),
            pa.field("quality", pa.float32(), nullable=False),
            pa.field("url", pa.string()),
            pa.field("minhash", pa.list_(pa.uint32(), num_perm), nullable=False),
        ]
    )


def hasher(cfg: DedupConfig) -> MinHasher:
    n = cfg.shingle_chars if cfg.shingle == "char" else cfg.shingle_words
    return MinHasher(cfg.num_perm, cfg.seed, Shingler(cfg.shingle, n))


def normalizer(cfg: DedupConfig) -> Normalizer:
    return Normalizer(cfg.exact_lowercase, cfg.exact_punctuation, cfg.exact_digits)


def sign_batch(batch: pa.RecordBatch, cfg: DedupConfig, minhasher: MinHasher, first_row: int) -> pa.RecordBatch:
    """The signature rows of one batch of documents."""
    texts = batch.column("text")
    chars = pc.fill_null(pc.utf8_length(texts), 0)
    # Not blank: some character other than Unicode whitespace (cheaper than trimming a copy of every text).
    has_text = pc.fill_null(pc.and_(pc.greater(chars, 0), pc.invert(pc.utf8_is_space(texts))), False)
    # Blank texts become empty (the empty sketch); both hashes read this one array, so they tokenise it once.
    blank = not pc.all(has_text).as_py()  # most batches have none: no copy of their texts then
    nonblank = large_strings(pc.if_else(has_text, texts, pa.scalar(None, texts.type)) if blank else texts)
    sigs = minhasher.batch(nonblank)
    schema = signature_schema(cfg.num_perm)
    # The word share costs as much as the MinHash: only the `quality` survivor rule reads it.
    quality = alpha_word_share(texts) if cfg.survivor == "quality" else pa.array(np.zeros(len(texts), np.float32))
    columns = [
        pa.array(np.arange(first_row, first_row + batch.num_rows, dtype=np.int32)),
        has_text,
        normalizer(cfg).digests(nonblank),
        chars.cast(pa.int32()),
        quality,
        batch.column("url"),
        pa.FixedSizeListArray.from_arrays(pa.array(sigs.reshape(-1)), cfg.num_perm),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def alpha_word_share(texts: pa.Array) -> pa.Array:
    """Share of whitespace-separated words with a letter (Gopher's alphabetic-word ratio): the `quality` survivor
    rule keeps the cluster member with the most prose and the least markup, numbers and symbols."""
    words = pc.split_pattern_regex(pc.fill_null(texts, ""), r"\s+")
    flat = pc.list_flatten(words)
    alpha = pc.match_substring_regex(flat, r"[^\W\d_]").to_numpy(zero_copy_only=False)
    nonempty = pc.greater(pc.utf8_length(flat), 0).to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(words).to_numpy()
    n = len(texts)
    with_letter = np.bincount(parents, weights=alpha & nonempty, minlength=n)
    total = np.bincount(parents, weights=nonempty, minlength=n)
    return pa.array(np.divide(with_letter, total, out=np.zeros(n), where=total > 0).astype(np.float32))
