"""Where training tokens come from: a small protocol and an in-memory implementation.

Batches are made of whole images (all tokens of an image in the same batch) shuffled by image,
deterministically for a given (epoch, seed), so an interrupted run can resume at the same batch.
"""

from __future__ import annotations

import math
from typing import Iterator, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TokenSource(Protocol):
    """A corpus of d-dimensional tokens that yields shuffled training batches.

    ``iter_batches`` yields float16/float32 arrays (numpy or torch) of shape [n, d] with n close
    to ``batch_tokens`` (whole images), in an order fixed by ``(epoch, seed)``; ``skip`` drops
    that many batches at the start (resume) without loading them if possible.
    ``num_batches(batch_tokens)`` is the number of batches one epoch yields.
    """

    d: int
    n_tokens: int

    def iter_batches(self, batch_tokens: int, *, epoch: int, seed: int, skip: int = 0) -> Iterator:
        ...

    def num_batches(self, batch_tokens: int) -> int:
        ...


class ArrayTokenSource:
    """Tokens held in one array [N, d]; consecutive runs of ``group_size`` tokens form an "image".

    Each epoch shuffles the images with ``np.random.default_rng(seed + epoch)`` and packs
    ``max(1, round(batch_tokens / group_size))`` images per batch; the last batch of an epoch
    may be smaller. ``N`` must be a multiple of ``group_size``.
    """

    def __init__(self, tokens: np.ndarray, group_size: int = 1):
        tokens = np.asarray(tokens)
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be [N, d], got shape {tokens.shape}")
        if group_size < 1 or tokens.shape[0] % group_size:
            raise ValueError(f"{tokens.shape[0]} tokens do not split into images of {group_size}")
        if tokens.shape[0] == 0:
            raise ValueError("no tokens")
        if tokens.dtype not in (np.float16, np.float32):
            tokens = tokens.astype(np.float32)
        self.tokens = tokens
        self.group_size = int(group_size)
        self.n_tokens, self.d = int(tokens.shape[0]), int(tokens.shape[1])
        self.n_images = self.n_tokens // self.group_size

    def images_per_batch(self, batch_tokens: int) -> int:
        return max(1, round(batch_tokens / self.group_size))

    def num_batches(self, batch_tokens: int) -> int:
        return math.ceil(self.n_images / self.images_per_batch(batch_tokens))

    def iter_batches(self, batch_tokens: int, *, epoch: int, seed: int, skip: int = 0) -> Iterator[np.ndarray]:
        per = self.images_per_batch(batch_tokens)
        order = np.random.default_rng(seed + epoch).permutation(self.n_images)
        within = np.arange(self.group_size)
        for start in range(skip * per, self.n_images, per):
            images = order[start:start + per]
            yield self.tokens[(images[:, None] * self.group_size + within).ravel()]
