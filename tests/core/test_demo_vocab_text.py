"""The demo backbone's shipped vocabulary embeddings (factorised: one weighted mean per term × family).

On a tiny vocabulary, a fake sentence encoder and a random bridge, the factorised file expands to
exactly what :func:`embed_vocabulary` computes by encoding; a file made for another vocabulary,
template set or bridge is not used, and a damaged one is ignored with a warning. The real shipped
file must match ``visual.txt`` and the current templates (rebuild it with ``make demo-vocab``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from insight_desktop.core.backbones import create_backbone
from insight_desktop.core.backbones import demo_vocab_text as dvt
from insight_desktop.core.backbones.base import BackboneSpec
from insight_desktop.core.backbones.demo_effnet_minilm import DemoEffnetMiniLMBackbone
from insight_desktop.core.backbones.efficientnet_lite import EfficientNetLite0
from insight_desktop.core.concepts.vocab import (
    FAMILIES,
    Vocabulary,
    default_vocabularies,
    embed_vocabulary,
    family_texts,
    templates_sha256,
)
from insight_desktop.core.paths import resources_dir

TEXT_DIM = 8
TERMS = ("cat", "red", "running", "wooden table", "sky", "dog", "glass")
ID = "demo-effnet-minilm/tf_efficientnet_lite0@000000000000/fake-minilm@111111111111/bridge@{}"


class FakeSentenceEncoder:
    """sentence-transformers' ``encode`` on fixed per-text random vectors; counts the texts asked for."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def get_sentence_embedding_dimension(self) -> int:
        return TEXT_DIM

    def encode(self, texts, *, normalize_embeddings=False, **_):
        self.texts += texts
        x = torch.from_numpy(np.stack([np.random.default_rng(list(t.encode())).standard_normal(TEXT_DIM)
                                       for t in texts]).astype(np.float32))
        return torch.nn.functional.normalize(x, dim=1) if normalize_embeddings else x


@pytest.fixture(scope="module")
def vision():
    return EfficientNetLite0()  # random weights: only the text side is used here


def bridge(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # b comparable to x W, so the per-template norms (the weights of the means) really differ
    return torch.randn(TEXT_DIM, 1280, generator=g), 0.5 * torch.randn(1280, generator=g)


def backbone(vision, *, seed: int = 0, anchor: float = 32.0, vocab_file=None) -> DemoEffnetMiniLMBackbone:
    W, b = bridge(seed)
    bb = DemoEffnetMiniLMBackbone(vision, FakeSentenceEncoder(), W, b, device=torch.device("cpu"),
                                  id=ID.format(f"{seed:012d}"), spec=BackboneSpec("demo-effnet-minilm", {}),
                                  anchor=anchor)
    bb.vocab_text_file = vocab_file
    return bb


def write_file(path, bb, vocab, *, templates: str | None = None, families=FAMILIES):
    means = dvt.encode_family_means(bb.embed_sentences, bb.bridge_W, bb.bridge_b, vocab.terms, FAMILIES,
                                    family_texts, terms_per_batch=3)
    meta = dvt.file_metadata(bb.text_identity, vocab.name, vocab.sha256, templates or templates_sha256(),
                             families, len(vocab))
    dvt.write_family_means(path, means, meta)
    bb.text_encoder.texts.clear()
    return path


@pytest.fixture
def vocab():
    return Vocabulary("tiny", TERMS)


@pytest.mark.parametrize("anchor", [32.0, 0.0])
def test_shipped_file_gives_what_encoding_gives(vision, vocab, tmp_path, anchor):
    shipped = backbone(vision, anchor=anchor, vocab_file=tmp_path / "v.safetensors")
    write_file(shipped.vocab_text_file, shipped, vocab)
    reference = embed_vocabulary(backbone(vision, anchor=anchor, vocab_file=tmp_path / "none"), vocab,
                                 cache_dir=tmp_path / "ref")

    got = embed_vocabulary(shipped, vocab, cache_dir=tmp_path / "cache")
    assert shipped.text_encoder.texts == []  # nothing was encoded
    assert got.shape == reference.shape == (len(TERMS), 3, 1281 if anchor else 1280)
    cos = (got * reference).sum(-1)
    assert cos.min() >= 0.9999 and np.abs(got - reference).max() < 2e-3
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1, atol=1e-5)
    if anchor:
        assert (got[..., -1] == 0).all()
    # written to the normal cache: the next call reads it back identically without the file
    shipped.vocab_text_file = tmp_path / "gone"
    np.testing.assert_array_equal(embed_vocabulary(shipped, vocab, cache_dir=tmp_path / "cache"), got)
    assert shipped.text_encoder.texts == []


def test_the_factorisation_is_exact_in_float32(vision, vocab):
    bb = backbone(vision)
    means = dvt.encode_family_means(bb.embed_sentences, bb.bridge_W, bb.bridge_b, vocab.terms, FAMILIES, family_texts)
    expanded = dvt.expand(torch.from_numpy(means), bb.bridge_W, bb.bridge_b, anchor=True)
    for i, term in enumerate(TERMS):
        for j, family in enumerate(FAMILIES):
            direct = torch.nn.functional.normalize(bb.encode_text(family_texts(term, family)).mean(0), dim=0)
            torch.testing.assert_close(expanded[i, j], direct, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mismatch", ["vocabulary", "templates", "bridge", "families"])
def test_a_file_for_something_else_is_not_used(vision, vocab, tmp_path, mismatch, caplog):
    maker = backbone(vision, seed=1 if mismatch == "bridge" else 0)
    made_for = Vocabulary("tiny", TERMS[:-1]) if mismatch == "vocabulary" else vocab
    write_file(tmp_path / "v.safetensors", maker, made_for, templates="0" * 64 if mismatch == "templates" else None,
               families=tuple(reversed(FAMILIES)) if mismatch == "families" else FAMILIES)
    bb = backbone(vision, vocab_file=tmp_path / "v.safetensors")
    assert bb.shipped_family_embeddings(vocab.sha256, templates_sha256(), FAMILIES, len(vocab)) is None
    with caplog.at_level(logging.WARNING):
        embed_vocabulary(bb, vocab, cache_dir=tmp_path / "cache")
    assert len(bb.text_encoder.texts) == len(TERMS) * 30  # encoded as usual
    assert "damaged" not in caplog.text  # not ours is not damage


@pytest.mark.parametrize("damage", ["garbage", "truncated", "shape", "nan"])
def test_a_damaged_file_is_ignored_with_a_warning(vision, vocab, tmp_path, damage, caplog):
    path = tmp_path / "v.safetensors"
    bb = backbone(vision, vocab_file=path)
    write_file(path, bb, vocab)
    if damage == "garbage":
        path.write_bytes(b"not a safetensors file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    else:
        means = np.zeros((len(TERMS), 3, TEXT_DIM if damage == "nan" else TEXT_DIM - 1), np.float32)
        means[0, 0, 0] = np.nan
        meta = dvt.file_metadata(bb.text_identity, "tiny", vocab.sha256, templates_sha256(), FAMILIES, len(TERMS))
        dvt.write_family_means(path, means, meta)
    reference = embed_vocabulary(backbone(vision), vocab, use_cache=False)
    with caplog.at_level(logging.WARNING):
        got = embed_vocabulary(bb, vocab, cache_dir=tmp_path / "cache")
    assert "ignoring damaged shipped vocabulary embeddings" in caplog.text
    assert len(bb.text_encoder.texts) == len(TERMS) * 30
    np.testing.assert_array_equal(got, reference)


def test_use_cache_false_encodes(vision, vocab, tmp_path):
    bb = backbone(vision, vocab_file=write_file(tmp_path / "v.safetensors", backbone(vision), vocab))
    embed_vocabulary(bb, vocab, use_cache=False)
    assert len(bb.text_encoder.texts) == len(TERMS) * 30


def test_the_command_line_opens_the_demo_backbone():
    # `insight build-model --backbone demo-effnet-minilm` must not pass it the open_clip options
    import argparse

    from insight_desktop.cli.common import add_backbone_args, backbone_from_args

    p = argparse.ArgumentParser()
    add_backbone_args(p)
    bb = backbone_from_args(p.parse_args(["--backbone", "demo-effnet-minilm", "--device", "cpu"]))
    assert isinstance(bb, DemoEffnetMiniLMBackbone) and bb.spec.options == {}


# ----------------------------------------------------------------------------- the shipped file

REBUILD = "the default vocabulary or the templates changed: rebuild the file with `make demo-vocab`"


def test_shipped_file_matches_the_default_vocabulary_templates_and_bridge():
    from safetensors import safe_open

    path = resources_dir().joinpath(*dvt.RESOURCE)
    assert path.is_file(), f"{path} is missing: build it with `make demo-vocab`"
    with safe_open(str(path), framework="numpy") as fh:
        meta = fh.metadata()
        shape = fh.get_slice("means").get_shape()
    (vocab,) = default_vocabularies()
    assert meta["format"] == dvt.FORMAT
    assert meta["vocabulary_sha256"] == vocab.sha256 and meta["n_terms"] == str(len(vocab)), REBUILD
    assert meta["templates_sha256"] == templates_sha256() and meta["families"] == ",".join(FAMILIES), REBUILD
    assert shape == [len(vocab), len(FAMILIES), 384]
    bb = create_backbone("demo-effnet-minilm", device="cpu")
    assert meta["text_identity"] == bb.text_identity, f"the demo bridge or MiniLM changed: {REBUILD.split(': ')[1]}"

    # a few rows against real encoding with MiniLM
    emb = bb.shipped_family_embeddings(vocab.sha256, templates_sha256(), FAMILIES, len(vocab))
    assert emb is not None and emb.shape == (len(vocab), 3, 1281)
    for i in (0, len(vocab) // 2, len(vocab) - 1):
        for j, family in enumerate(FAMILIES):
            direct = torch.nn.functional.normalize(bb.encode_text(family_texts(vocab.terms[i], family)).mean(0), dim=0)
            assert float(direct @ torch.from_numpy(emb[i, j])) > 0.9999, (vocab.terms[i], family)


def test_an_edited_vocabulary_reuses_the_rows_of_unchanged_terms(tmp_path):
    """scripts/build_demo_vocab_text.py --reuse-vocab: a term's rows come back exactly from the
    file made for the old list; a file made for another list (or text model) gives nothing."""
    from insight_desktop.core.concepts.vocab import load_vocabulary

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from build_demo_vocab_text import reusable_rows

    old_file = tmp_path / "old.txt"
    old_file.write_text("cat\nsister\nspoon\n", encoding="utf-8")
    old = load_vocabulary(old_file)
    backbone = SimpleNamespace(text_identity="minilm@x/bridge@y", bridge_W=torch.zeros(4, 8))
    means = np.random.default_rng(0).normal(size=(3, len(FAMILIES), 4)).astype(np.float16)
    path = tmp_path / "means.safetensors"
    dvt.write_family_means(path, means, dvt.file_metadata(backbone.text_identity, old.name, old.sha256,
                                                          templates_sha256(), FAMILIES, 3))
    rows = reusable_rows(path, old_file, backbone)
    assert list(rows) == ["cat", "sister", "spoon"]
    assert np.array_equal(rows["spoon"], means[2].astype(np.float32))
    other = tmp_path / "other.txt"
    other.write_text("cat\nspoon\n", encoding="utf-8")
    assert reusable_rows(path, other, backbone) == {}
    assert reusable_rows(path, old_file, SimpleNamespace(text_identity="clip", bridge_W=torch.zeros(4, 8))) == {}
