"""Resumable vocabulary embedding: a stopped or failed run keeps the terms it encoded in a partial
file next to the cache, and the next run encodes only the rest, with exactly the same result."""

from __future__ import annotations

import numpy as np
import pytest

from insight_desktop.core.concepts.vocab import (
    FAMILIES,
    TEMPLATE_FAMILIES,
    NamingCancelled,
    Vocabulary,
    _cache_metadata,
    cache_path,
    embed_vocabulary,
    partial_path,
)

D = 16
TERMS = tuple(f"word{i}" for i in range(10))
PER_WORD = sum(len(TEMPLATE_FAMILIES[f]) for f in FAMILIES)


class CountingEncoder:
    """Deterministic fake text encoder (each text → a fixed vector seeded by its characters) that
    counts its calls and the distinct terms it was asked about."""

    def __init__(self, fail_after: int | None = None):
        self.calls = 0
        self.texts: list[str] = []
        self.fail_after = fail_after

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("encoder crashed")
        self.calls += 1
        self.texts += texts
        return np.stack([np.random.default_rng(list(t.encode())).standard_normal(D) for t in texts]).astype(np.float32)

    def terms(self) -> set[str]:
        return {w for w in TERMS if any(t.endswith(w) or f" {w} " in t for t in self.texts)}


@pytest.fixture
def vocab():
    return Vocabulary("resume", TERMS)


@pytest.fixture
def reference(vocab):
    return embed_vocabulary(CountingEncoder(), vocab, backbone_id="fake/counting", use_cache=False)


def stop_after(k: int):
    """should_stop that lets ``k`` batches run, then asks to stop."""
    polls = iter(range(10**6))
    return lambda: next(polls) >= k


def run(enc, vocab, cache, **kw):
    # 2 words (2 × 30 texts) per encoder call
    return embed_vocabulary(enc, vocab, backbone_id="fake/counting", cache_dir=cache, batch_size=2 * PER_WORD, **kw)


def test_a_stopped_run_resumes_where_it_stopped(vocab, reference, tmp_path):
    first = CountingEncoder()
    with pytest.raises(NamingCancelled):
        run(first, vocab, tmp_path, should_stop=stop_after(3))
    assert first.calls == 3 and len(first.texts) == 6 * PER_WORD
    final = cache_path(tmp_path, "fake/counting", vocab)
    partial = partial_path(final)
    assert partial.is_file() and not final.exists()

    second, progress = CountingEncoder(), []
    emb = run(second, vocab, tmp_path, on_progress=lambda d, t: progress.append((d, t)))
    assert second.calls == 2 and len(second.texts) == 4 * PER_WORD     # only the 4 remaining terms
    assert second.terms() == set(TERMS[6:])
    assert progress == [(6, 10), (8, 10), (10, 10)]
    np.testing.assert_array_equal(emb, reference)                       # exactly, not just close
    assert final.is_file() and not partial.exists()                     # partial removed when done

    third = CountingEncoder()
    np.testing.assert_array_equal(run(third, vocab, tmp_path), reference)
    assert third.calls == 0


def test_repeated_stops_and_a_crash_keep_every_term_encoded(vocab, reference, tmp_path):
    for k in (1, 1, 1):  # three stops of one batch each: 2, 4, 6 terms done
        enc = CountingEncoder()
        with pytest.raises(NamingCancelled):
            run(enc, vocab, tmp_path, should_stop=stop_after(k))
        assert enc.calls == 1
    crash = CountingEncoder(fail_after=1)  # encodes terms 6–7, then the encoder fails
    with pytest.raises(RuntimeError, match="crashed"):
        run(crash, vocab, tmp_path)
    assert crash.terms() == {"word6", "word7"}
    last = CountingEncoder()
    np.testing.assert_array_equal(run(last, vocab, tmp_path), reference)
    assert last.terms() == {"word8", "word9"}


@pytest.mark.parametrize("every, expected", [(0, [None, 2, 4, 6, 8]), (1e9, [None] * 5)])
def test_periodic_checkpoints_are_on_disk_while_encoding(vocab, reference, tmp_path, every, expected):
    """A run killed outright (no ``except`` runs) still leaves the last periodic checkpoint."""
    from safetensors import safe_open

    partial = partial_path(cache_path(tmp_path, "fake/counting", vocab))
    seen: list[int | None] = []
    inner = CountingEncoder()

    def encode(texts):
        if partial.is_file():
            with safe_open(str(partial), framework="numpy") as fh:
                seen.append(int((fh.metadata() or {})["done"]))
        else:
            seen.append(None)
        return inner(texts)

    np.testing.assert_array_equal(run(encode, vocab, tmp_path, checkpoint_seconds=every), reference)
    assert seen == expected and not partial.exists()


@pytest.mark.parametrize("damage", ["garbage", "truncate", "other_vocabulary", "other_templates", "wrong_count"])
def test_a_damaged_or_foreign_partial_is_ignored(vocab, reference, tmp_path, damage):
    with pytest.raises(NamingCancelled):
        run(CountingEncoder(), vocab, tmp_path, should_stop=stop_after(2))
    partial = partial_path(cache_path(tmp_path, "fake/counting", vocab))
    from safetensors.numpy import save

    meta = {**_cache_metadata("fake/counting", vocab), "format": "insight-text-embeddings-partial/1", "done": "4"}
    good = np.zeros((4, len(FAMILIES), D), np.float16)
    if damage == "garbage":
        partial.write_bytes(b"\x00not a safetensors file" * 10)
    elif damage == "truncate":
        partial.write_bytes(partial.read_bytes()[:100])
    elif damage == "other_vocabulary":
        partial.write_bytes(save({"embeddings": good}, metadata={**meta, "vocabulary_sha256": "0" * 64}))
    elif damage == "other_templates":
        partial.write_bytes(save({"embeddings": good}, metadata={**meta, "templates_sha256": "0" * 64}))
    else:
        partial.write_bytes(save({"embeddings": good}, metadata={**meta, "done": "3"}))
    enc = CountingEncoder()
    np.testing.assert_array_equal(run(enc, vocab, tmp_path), reference)
    assert enc.terms() == set(TERMS)  # re-encoded from 0
    assert not partial.exists()


def test_a_partial_of_another_backbone_or_vocabulary_is_never_used(vocab, reference, tmp_path):
    with pytest.raises(NamingCancelled):
        run(CountingEncoder(), vocab, tmp_path, should_stop=stop_after(2))
    # another vocabulary (another cache name) starts from 0
    other = Vocabulary("resume", TERMS[:-1])
    enc = CountingEncoder()
    run(enc, other, tmp_path)
    assert enc.terms() == set(TERMS[:-1])
    # the same file name with another backbone id in its metadata is rejected by its content
    src = partial_path(cache_path(tmp_path, "fake/counting", vocab))
    dst = partial_path(cache_path(tmp_path, "fake/other", vocab))
    dst.write_bytes(src.read_bytes())
    enc = CountingEncoder()
    embed_vocabulary(enc, vocab, backbone_id="fake/other", cache_dir=tmp_path, batch_size=2 * PER_WORD)
    assert enc.terms() == set(TERMS)


def test_a_partial_of_another_width_starts_again(vocab, reference, tmp_path):
    wide = lambda texts: np.ones((len(texts), D + 4), np.float32)  # noqa: E731
    with pytest.raises(NamingCancelled):
        run(wide, vocab, tmp_path, should_stop=stop_after(2))
    enc = CountingEncoder()
    np.testing.assert_array_equal(run(enc, vocab, tmp_path), reference)
    assert enc.terms() == set(TERMS)


def test_no_partial_without_the_cache(vocab, tmp_path):
    with pytest.raises(NamingCancelled):
        run(CountingEncoder(), vocab, tmp_path, should_stop=stop_after(2), use_cache=False)
    assert list(tmp_path.iterdir()) == []
