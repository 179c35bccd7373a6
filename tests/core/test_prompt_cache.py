"""Class-prompt embeddings on disk: found again by a new process, keyed by text tower and template
set, atomic and bounded, seeded by shipped files, stoppable while encoding."""

from __future__ import annotations

import numpy as np
import pytest

from insight_desktop.core.errors import StoppedByUser
from insight_desktop.core.tasks.prompt_cache import (
    PromptEmbeddingStore,
    read_seed_file,
    templates_digest,
    write_seed_file,
)
from insight_desktop.core.tasks.prompts import (
    IMAGENET_TEMPLATES,
    TextEmbeddingCache,
    class_text_embeddings,
    prompt_templates,
)

from .fakes import TextColourBackbone


def test_vendored_templates_are_open_clips():
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    assert len(IMAGENET_TEMPLATES) == 80
    assert [t("{}") for t in prompt_templates()] == [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]
    assert [t("a {b}") for t in prompt_templates()] == [t("a {b}") for t in OPENAI_IMAGENET_TEMPLATES]


def test_a_new_cache_finds_what_an_earlier_one_encoded(tmp_path):
    bb = TextColourBackbone(d=8)
    first = TextEmbeddingCache(bb, cache_dir=tmp_path)
    red_green = first(["red", "green"])
    calls = bb.text_calls
    assert calls > 0 and len(list(tmp_path.glob("*.npy"))) == 2

    again = TextEmbeddingCache(bb, cache_dir=tmp_path)  # as after a restart: nothing in memory
    assert np.array_equal(again(["green", "red"]), red_green[::-1])
    assert bb.text_calls == calls  # no text tower call at all
    again(["red", "blue"])  # only blue is new
    assert len(list(tmp_path.glob("*.npy"))) == 3
    np.testing.assert_allclose(again(["blue"])[0], class_text_embeddings(bb, ["blue"])[0], atol=1e-6)


def test_another_text_tower_or_template_set_never_reads_these_entries(tmp_path):
    bb = TextColourBackbone(d=8, seed=0)
    TextEmbeddingCache(bb, cache_dir=tmp_path)(["red"])
    other = TextColourBackbone(d=8, seed=1)  # other id (weights): other keys
    before = other.text_calls
    TextEmbeddingCache(other, cache_dir=tmp_path)(["red"])
    assert other.text_calls > before
    store = PromptEmbeddingStore(bb.id, templates_digest(["a {}", "the {}"]), 8, folder=tmp_path)
    assert store.get_many(["red"]) == {}


def test_a_damaged_entry_is_encoded_again_and_replaced(tmp_path):
    bb = TextColourBackbone(d=8)
    good = TextEmbeddingCache(bb, cache_dir=tmp_path)(["red"])[0]
    (path,) = tmp_path.glob("*.npy")
    path.write_bytes(b"\x93NUMPY garbage")
    calls = bb.text_calls
    assert np.allclose(TextEmbeddingCache(bb, cache_dir=tmp_path)(["red"])[0], good)
    assert bb.text_calls > calls
    assert np.allclose(np.load(path), good)  # rewritten
    assert not [p for p in tmp_path.iterdir() if p.suffix != ".npy"]  # no temporary files left behind


def test_the_folder_stays_bounded_least_recently_used_first(tmp_path):
    import os

    d = 8
    store = PromptEmbeddingStore("id", "t", d, folder=tmp_path, max_bytes=10 * 200)  # ~10 files of 160 B
    v = np.eye(d, dtype=np.float32)[0]
    for i in range(10):
        store.put_many({f"c{i}": v})
        for j, p in enumerate(sorted(tmp_path.glob("*.npy"), key=os.path.getmtime)):
            os.utime(p, ns=(j * 10**9, j * 10**9))  # deterministic ages: written order
    store.get_many(["c0"])  # used again: now the most recent
    for i in range(10, 16):
        store.put_many({f"c{i}": v})
    size = sum(p.stat().st_size for p in tmp_path.glob("*.npy"))
    assert size <= store.max_bytes
    kept = store.get_many([f"c{i}" for i in range(16)])
    assert "c0" in kept and "c15" in kept and "c1" not in kept


def test_seed_files_answer_without_the_text_tower_and_only_for_their_tower(tmp_path):
    bb = TextColourBackbone(d=8)
    names = ["red", "blue"]
    emb = class_text_embeddings(bb, names)
    seed = tmp_path / "seed.safetensors"
    digest = templates_digest(prompt_templates())
    write_seed_file(seed, bb.id, digest, names, emb)
    assert set(read_seed_file(seed, bb.id, digest, 8)) == {"red", "blue"}
    assert read_seed_file(seed, "another tower", digest, 8) == {}

    bb.text_embedding_seeds = (seed,)
    calls = bb.text_calls
    cache = TextEmbeddingCache(bb, cache_dir=tmp_path / "cache")
    assert np.array_equal(cache(["blue"]), emb[1:])
    assert bb.text_calls == calls
    cache(["green"])
    assert bb.text_calls > calls


def test_memory_only_and_a_full_memory_cache_still_answer(tmp_path):
    bb = TextColourBackbone(d=8)
    cache = TextEmbeddingCache(bb, max_entries=2, cache_dir=False)
    cache(["red", "green"])
    out = cache(["red", "green", "blue"])  # more than fits: cleared, yet every row is there
    assert out.shape == (3, 8) and np.allclose(np.linalg.norm(out, axis=1), 1)


def test_encoding_reports_progress_and_can_be_stopped(tmp_path):
    bb = TextColourBackbone(d=8)
    names = [f"class {i}" for i in range(20)]
    seen: list[float] = []
    TextEmbeddingCache(bb, cache_dir=tmp_path)(names, progress=seen.append)
    assert len(seen) >= 3 and seen == sorted(seen) and seen[-1] == 1.0
    asked = []
    with pytest.raises(StoppedByUser):
        TextEmbeddingCache(bb, cache_dir=False)([f"other {i}" for i in range(20)],
                                                should_stop=lambda: asked.append(1) or len(asked) > 1)
    assert len(asked) == 2  # the first group was encoded, the second refused
