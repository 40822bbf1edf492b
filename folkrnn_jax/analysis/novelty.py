"""Novelty: the longest token n-gram a tune shares with any training tune."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from folkrnn_jax.music import vocab

DEFAULT_NOVELTY_THRESHOLD = 40


_BASE = np.uint64(1_000_003)


class NgramIndex:
    """Hashes of every token n-gram of a corpus (for any n, computed on demand and cached), to
    find the longest n-gram a tune shares with any corpus tune by binary search on n."""

    def __init__(self, corpus: Sequence[Sequence[str]]):
        seqs = [vocab.encode([t for t in tune if t not in (vocab.START, vocab.END)]) for tune in corpus]
        self.ids = (np.concatenate(seqs) if seqs else np.zeros(0, np.int32)).astype(np.uint64) + np.uint64(1)
        self.tune_of = np.concatenate([np.full(len(s), i) for i, s in enumerate(seqs)]) if seqs else np.zeros(0, int)
        self.max_length = max((len(s) for s in seqs), default=0)
        self._powers: dict[int, np.ndarray] = {1: self.ids}  # H_L for L a power of two
        self._sets: dict[int, np.ndarray] = {}

    def _hash_power(self, L: int) -> np.ndarray:
        if L not in self._powers:
            half = self._hash_power(L // 2)
            n = len(self.ids) - L + 1
            with np.errstate(over="ignore"):
                self._powers[L] = half[:n] * _pow(_BASE, L // 2) + half[L // 2: L // 2 + n]
        return self._powers[L]

    def _hash_any(self, ids: np.ndarray, L: int, cache: dict) -> np.ndarray:
        """Hashes of every length-L window of ``ids`` by binary composition of power-of-two
        windows: H_{a+b}[i] = H_a[i] * B^b + H_b[i+a]."""
        result = None
        offset = 0
        bit = 1
        pieces = []
        while bit <= L:
            if L & bit:
                pieces.append(bit)
            bit <<= 1
        n = len(ids) - L + 1
        if n <= 0:
            return np.zeros(0, np.uint64)
        with np.errstate(over="ignore"):
            for size in reversed(pieces):
                h = cache(size)[offset: offset + n]
                result = h if result is None else result * _pow(_BASE, size) + h
                offset += size
        return result

    def _corpus_set(self, L: int) -> np.ndarray:
        if L not in self._sets:
            if L > self.max_length:
                self._sets[L] = np.zeros(0, np.uint64)
            else:
                h = self._hash_any(self.ids, L, self._hash_power)
                same = self.tune_of[: len(h)] == self.tune_of[L - 1: L - 1 + len(h)]
                self._sets[L] = np.sort(h[same])
        return self._sets[L]

    def longest_common(self, tune: Sequence[str]) -> int:
        """Length of the longest token n-gram of ``tune`` that occurs in some corpus tune."""
        ids = vocab.encode([t for t in tune if t not in (vocab.START, vocab.END)]).astype(np.uint64) + np.uint64(1)
        powers: dict[int, np.ndarray] = {1: ids}

        def tune_power(L: int) -> np.ndarray:
            if L not in powers:
                half = tune_power(L // 2)
                n = len(ids) - L + 1
                with np.errstate(over="ignore"):
                    powers[L] = half[:n] * _pow(_BASE, L // 2) + half[L // 2: L // 2 + n]
            return powers[L]

        def shares(L: int) -> bool:
            if L > len(ids):
                return False
            h = self._hash_any(ids, L, tune_power)
            corpus = self._corpus_set(L)
            if len(h) == 0 or len(corpus) == 0:
                return False
            pos = np.searchsorted(corpus, h)
            pos = np.minimum(pos, len(corpus) - 1)
            return bool(np.any(corpus[pos] == h))

        # The same upper bound for every tune makes every tune probe the same n values, so
        # the corpus hash sets are shared across tunes.
        lo, hi = 0, self.max_length
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if shares(mid):
                lo = mid
            else:
                hi = mid - 1
        return lo


def _pow(base: np.uint64, exponent: int) -> np.uint64:
    return np.uint64(pow(int(base), exponent, 1 << 64))


def novelty(
    generated: Sequence[Sequence[str]], training: Sequence[Sequence[str]],
    threshold: int = DEFAULT_NOVELTY_THRESHOLD, index: NgramIndex | None = None,
) -> dict[str, Any]:
    """Per generated tune, the longest token n-gram (headers included) it shares with any
    training tune; tunes sharing ``threshold`` tokens or more are flagged as possible copies."""
    index = index or NgramIndex(training)
    longest = [index.longest_common(t) for t in generated]
    lengths = [len([x for x in t if x not in (vocab.START, vocab.END)]) for t in generated]
    flagged = [i for i, l in enumerate(longest) if l >= threshold]
    return {
        "threshold": threshold,
        "longest_common_ngram": longest,
        "longest_common_share": [l / max(n, 1) for l, n in zip(longest, lengths)],
        "novel": [l < threshold for l in longest],
        "possible_copies": flagged,
        "possible_copy_share": len(flagged) / len(generated) if generated else 0.0,
        "median_longest_common_ngram": float(np.median(longest)) if longest else 0.0,
    }
