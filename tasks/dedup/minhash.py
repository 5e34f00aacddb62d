"""MinHash signatures of word n-gram shingles (datasketch)."""

from __future__ import annotations

import numpy as np
from datasketch import LeanMinHash, MinHash

from tasks.dedup.exact import normalize_for_dedup

# datasketch 2.0's default; stored hash values must be read back with the scheme that made them.
SCHEME = "affine32"


def shingles(text: str, n: int) -> set[bytes]:
    """Word n-grams of the normalised text; a text shorter than n words is one shingle."""
    words = normalize_for_dedup(text).split()
    if len(words) <= n:
        return {" ".join(words).encode()}
    return {" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1)}


def signature(text: str, num_perm: int, n: int, seed: int) -> np.ndarray:
    sketch = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME)
    sketch.update_batch(list(shingles(text, n)))
    return sketch.hashvalues


def lean(hashvalues: np.ndarray, seed: int) -> LeanMinHash:
    """A compact, read-only sketch for the LSH index, rebuilt from stored hash values."""
    return LeanMinHash(seed=seed, hashvalues=hashvalues, scheme=SCHEME)
