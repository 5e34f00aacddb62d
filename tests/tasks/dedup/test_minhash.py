"""The vectorised MinHash against datasketch itself, on real article text."""

import json
import random
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHash

from gristmill.tasks.dedup.exact import Normalizer
from gristmill.tasks.dedup.minhash import MinHasher, Shingler, lean, shingles


@pytest.fixture(scope="module")
def articles(shared_data: Path) -> list[str]:
    truth = json.loads((shared_data / "html_extraction" / "ground-truth.json").read_text())
    return [item["articleBody"] for item in truth.values()]


def datasketch_signature(hashes: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """datasketch's own update_batch, fed the same shingle hash values through an identity hash function."""
    sketch = MinHash(num_perm=num_perm, seed=seed, hashfunc=lambda value: value)
    if len(hashes):
        sketch.update_batch([int(h) for h in hashes])
    return sketch.hashvalues


@pytest.mark.parametrize(("unit", "n", "seed"), [("word", 5, 1), ("word", 3, 42), ("char", 24, 7)])
def test_signatures_are_bit_identical_to_datasketch_update_batch(articles, unit, n, seed):
    # Empty, blank, missing and shorter-than-one-shingle documents among real ones; the whole batch spans several
    # permutation blocks (> 65,536 shingles), so block boundaries are exercised too.
    texts = articles[:120] + ["", "   ", None, "two words", articles[5][:40]] + articles[120:]
    hasher = MinHasher(128, seed, Shingler(unit, n))
    found = hasher.shingler.batch(pa.array(texts))
    assert found.offsets[-1] > 2 * 65_536
    sigs = hasher.from_shingles(found)
    for doc in range(len(texts)):
        expected = datasketch_signature(found.hashes[found.offsets[doc] : found.offsets[doc + 1]], 128, seed)
        np.testing.assert_array_equal(sigs[doc], expected, err_msg=f"document {doc}")
    assert found.offsets[123] - found.offsets[122] == 0  # a missing text has no shingles


def test_word_shingles_match_the_reference_definition_on_real_articles(articles):
    """Byte-class word splitting agrees with Python's regex definition; it may differ only on scripts with
    combining marks or their own punctuation (a few of these 181 pages are Arabic or Japanese)."""
    hasher = MinHasher(64, 1, Shingler("word", 5))
    found = hasher.shingler.batch(pa.array(articles))
    same, ours, reference = 0, 0, 0
    for doc, text in enumerate(articles):
        distinct_hashes = len(set(found.hashes[found.offsets[doc] : found.offsets[doc + 1]].tolist()))
        expected = len(shingles(text, 5))
        same += distinct_hashes == expected
        ours, reference = ours + distinct_hashes, reference + expected
        if text.isascii():
            assert distinct_hashes == expected, doc  # no collisions, no boundary errors
    assert same >= len(articles) - 4 and abs(ours - reference) < 0.002 * reference


def test_stored_values_load_into_lean_minhash_and_compare_with_datasketch(articles):
    hasher = MinHasher(128, 1, Shingler("word", 5))
    found = hasher.shingler.batch(pa.array(articles[:2]))
    sig = hasher.from_shingles(found)[0]
    reference = MinHash(num_perm=128, seed=1, hashfunc=lambda value: value)
    reference.update_batch([int(h) for h in found.hashes[: found.offsets[1]]])
    assert lean(sig, 1).jaccard(reference) == 1.0
    assert lean(sig, 1).jaccard(lean(hasher.from_shingles(found)[1], 1)) < 0.1


def edited(text: str, rate: float, rng: random.Random) -> str:
    words = text.split()
    return " ".join(w if rng.random() > rate else f"x{rng.randrange(10**6)}" for w in words)


def test_jaccard_estimates_are_as_good_as_datasketch_with_sha1(articles):
    """Mean absolute error against exact shingle-set Jaccard over 150 pairs at many similarity levels."""
    rng = random.Random(0)
    pairs = [(a, edited(a, rng.choice([0.01, 0.03, 0.06, 0.1, 0.2]), rng)) for a in articles[:150]]
    hasher = MinHasher(128, 1, Shingler("word", 5))
    left = hasher.batch(pa.array([a for a, _ in pairs]))
    right = hasher.batch(pa.array([b for _, b in pairs]))
    ours, theirs = [], []
    for i, (a, b) in enumerate(pairs):
        sa, sb = shingles(a, 5), shingles(b, 5)
        exact = len(sa & sb) / len(sa | sb)
        ours.append(abs((left[i] == right[i]).mean() - exact))
        ma, mb = MinHash(num_perm=128, seed=1), MinHash(num_perm=128, seed=1)
        ma.update_batch(list(sa))
        mb.update_batch(list(sb))
        theirs.append(abs(ma.jaccard(mb) - exact))
    # Standard error of a 128-permutation estimate is at most 0.044; the mean absolute error sits well below.
    assert np.mean(ours) < 0.035
    assert np.mean(ours) < np.mean(theirs) + 0.01


def test_fast_exact_hash_groups_texts_exactly_as_the_normalised_text_does(articles):
    """The default exact hash (numpy, over word hashes) and blake2b of the regex-normalised text agree on which
    texts are equal: re-cased, re-spaced and re-punctuated copies match, any word change does not."""
    texts = articles[:60]
    texts += [re.sub(r"\s+", "  ", t.upper()).replace(".", " ;") for t in articles[:20]]
    texts += [t.replace(" the ", " a ", 1) for t in articles[20:40]] + [t + " more" for t in articles[:10]]
    fast = Normalizer().hashes(pa.array(texts))
    normal = Normalizer().batch(pa.array(texts)).to_pylist()
    for i in range(len(texts)):
        for j in range(i):
            assert (fast[i] == fast[j]) == (normal[i] == normal[j]), (i, j)
    changed = sum(" the " in t for t in articles[20:40])  # the re-cased copies match their originals
    assert len(set(fast)) == len(set(normal)) == 60 + changed + 10
