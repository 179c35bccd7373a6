"""An interrupted and resumed build writes the same bytes as an uninterrupted one: nothing in
the bundle depends on the (deleted) work folder, and nothing on the order of a hash map. The one
difference allowed is the build date in the manifest's provenance."""

from __future__ import annotations

import json

import pytest

from insight_desktop.core.build import BuildStopped, build_model
from tests.core.fakes import write_block_photos
from tests.e2e.test_build_model import small_options


def bundle_bytes(root):
    """Every file's bytes; the manifest with its build date taken out (two builds differ in time)."""
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    manifest = json.loads(files["manifest.json"])
    assert manifest["provenance"].pop("date")
    files["manifest.json"] = json.dumps(manifest, sort_keys=True).encode()
    return files


def test_a_build_resumed_in_relations_gives_identical_bytes(tmp_path, tiny_backbone):
    photos = write_block_photos(tmp_path / "photos", 8, seed=1)
    vocab = tmp_path / "words.txt"
    vocab.write_text("red\ngreen\nblue\nstripes\ndots\nsky\ngrass\nwater\n")
    options = small_options(vocab)
    reference = build_model(photos, tmp_path / "ref", tiny_backbone, options, device="cpu")

    seen = {"n": 0}

    def progress(p):
        seen["n"] += p.stage == "relations"

    out = tmp_path / "resumed"
    with pytest.raises(BuildStopped):
        build_model(photos, out, tiny_backbone, options, device="cpu", on_progress=progress,
                    should_stop=lambda: seen["n"] >= 2)
    assert (tmp_path / "resumed.work" / "relations.ckpt").is_dir()  # stopped inside relations, checkpointed
    resumed = build_model(photos, out, tiny_backbone, options, device="cpu")
    ref, got = bundle_bytes(reference), bundle_bytes(resumed)
    assert sorted(got) == sorted(ref)
    assert [name for name in ref if ref[name] != got[name]] == []
    assert b".work" not in b"".join(got.values())
