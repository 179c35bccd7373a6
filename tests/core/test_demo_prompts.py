"""The demo backbone loads its text tower only when a class prompt is not cached, and ships the
embeddings of the app's default classes, so a fresh install analyses without loading it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from insight_desktop.core.backbones import create_backbone
from insight_desktop.core.tasks.prompts import TextEmbeddingCache, class_text_embeddings


@pytest.fixture(scope="module")
def bb():
    return create_backbone("demo-effnet-minilm", device="cpu")


def default_classes() -> tuple[str, ...]:
    """The classes scripts/build_demo_prompts.py ships (the app's defaults and presets)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    try:
        from build_demo_prompts import demo_classes
    finally:
        sys.path.pop(0)
    return tuple(demo_classes())


def test_the_shipped_embeddings_answer_the_default_classes_without_the_text_tower(tmp_path):
    fresh = create_backbone("demo-effnet-minilm", device="cpu")
    assert not fresh.text_encoder_loaded and fresh.text_embedding_seeds
    names = default_classes()
    got = TextEmbeddingCache(fresh, cache_dir=tmp_path)(names)  # an empty user cache, as on a fresh home
    assert got.shape == (len(names), fresh.feature_dim)
    assert not fresh.text_encoder_loaded


def test_the_shipped_embeddings_are_what_the_text_tower_gives(bb, tmp_path):
    names = default_classes()[:3]
    shipped = TextEmbeddingCache(bb, cache_dir=tmp_path)(names)
    np.testing.assert_allclose(shipped, class_text_embeddings(bb, names), atol=1e-5)
    assert bb.text_encoder_loaded  # encoding loaded it, on first use


def test_a_new_class_loads_the_text_tower_once_and_is_cached_for_the_next_start(tmp_path):
    first = create_backbone("demo-effnet-minilm", device="cpu")
    a = TextEmbeddingCache(first, cache_dir=tmp_path)(["zebra crossing"])
    assert first.text_encoder_loaded
    second = create_backbone("demo-effnet-minilm", device="cpu")
    b = TextEmbeddingCache(second, cache_dir=tmp_path)(["zebra crossing"])
    assert not second.text_encoder_loaded and np.array_equal(a, b)


def test_creating_the_demo_backbone_imports_neither_timm_nor_sentence_transformers():
    code = ("import sys; from insight_desktop.core.backbones import create_backbone; "
            "create_backbone('demo-effnet-minilm', device='cpu'); "
            "print(sorted(m for m in ('timm', 'torchvision', 'sentence_transformers', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_text_towers_id_comes_from_the_installers_record_and_matches_its_bytes(tmp_path):
    import shutil

    from insight_desktop.core.backbones import demo_effnet_minilm as demo

    folder = demo.minilm_model_dir()
    recorded = demo.installed_folder_sha256(folder, demo.MINILM_DISTRIBUTION)
    assert recorded == demo.folder_sha256(folder)
    copy = tmp_path / "model"
    shutil.copytree(folder / "1_Pooling", copy / "1_Pooling")
    assert demo.installed_folder_sha256(copy, demo.MINILM_DISTRIBUTION) is None  # not the package's files
    assert demo.installed_folder_sha256(folder, "no-such-distribution") is None
