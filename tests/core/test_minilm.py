"""MiniLM without sentence-transformers gives sentence-transformers' embeddings."""

from __future__ import annotations

import json

import pytest
import torch

from insight_desktop.core.backbones import demo_effnet_minilm as demo
from insight_desktop.core.backbones.minilm import PlainSentenceEncoder, plain_sentence_folder

TEXTS = ["a photo of a cat.", "a bad photo of the coffee cup.", "itap of my rocket.", "Zebra crossing, at night!",
         "a " + "very " * 300 + "long prompt"]  # longer than max_seq_length: truncated alike


def test_same_embeddings_as_sentence_transformers():
    folder = demo.minilm_model_dir()
    ours = demo.load_text_encoder(folder, torch.device("cpu"))
    theirs = demo.load_text_encoder(folder, torch.device("cpu"), plain=False)
    assert isinstance(ours, PlainSentenceEncoder) and not isinstance(theirs, PlainSentenceEncoder)
    dim_of = getattr(theirs, "get_embedding_dimension", None) or theirs.get_sentence_embedding_dimension
    assert ours.get_embedding_dimension() == dim_of() == 384
    a = ours.encode(TEXTS, batch_size=2)
    b = theirs.encode(TEXTS, batch_size=2, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
    torch.testing.assert_close(a, b.float(), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("change", ["cls pooling", "extra module"])
def test_other_layouts_are_left_to_sentence_transformers(tmp_path, change):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(demo.minilm_model_dir(), folder)
    assert plain_sentence_folder(folder) is not None
    if change == "cls pooling":
        cfg = json.loads((folder / "1_Pooling" / "config.json").read_text())
        cfg.update(pooling_mode_cls_token=True, pooling_mode_mean_tokens=False)
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(cfg))
    else:
        modules = json.loads((folder / "modules.json").read_text())
        modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
        (folder / "modules.json").write_text(json.dumps(modules))
    assert plain_sentence_folder(folder) is None
