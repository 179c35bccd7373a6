"""The folder index built through the real Analyzer: planted images rank first, incremental updates,
unreadable files, and a build killed half-way that resumes to the same index."""

from __future__ import annotations

import os
import sqlite3

import numpy as np
import pytest
from PIL import Image

from insight_desktop.core.engine import Analyzer
from insight_desktop.core.index import FolderIndex, IndexProgress, IndexStopped, build_index, index_path
from insight_desktop.core.index.schema import ANALYSIS_FAILED, UNREADABLE

from .fakes import TextColourBackbone, lossless_sae, write_test_bundle

D = 8
RED, GREEN, BLUE = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)


@pytest.fixture
def analyzer(tmp_path):
    """A lossless SAE on a backbone whose patch feature is its mean colour @ proj: concept i fires
    ReLU(x_i), concept d + i fires ReLU(−x_i), so what fires on a colour is known exactly."""
    bb = TextColourBackbone(d=D)
    return Analyzer(write_test_bundle(tmp_path / "model", bb, lossless_sae(D)), backbone=bb, device="cpu")


def concept_code(bb, colour) -> np.ndarray:
    x = np.asarray(colour) @ bb.proj.numpy()
    return np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)])


def red_concept(bb) -> int:
    """The concept that fires most on red and least on green or blue."""
    red, others = concept_code(bb, RED), np.maximum(concept_code(bb, GREEN), concept_code(bb, BLUE))
    j = int(np.argmax(red - others))
    assert red[j] - others[j] > 0.1
    return j


def photo(path, colour, strength: float = 1.0, block=(64, 64, 128, 128), size=224):
    """A black image with one coloured block (black fires nothing: features 0)."""
    rgb = np.zeros((size, size, 3), np.uint8)
    t, left, b, r = block
    rgb[t:b, left:r] = np.round(np.asarray(colour) * 255 * strength).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    for i, s in enumerate((1.0, 0.8, 0.6)):
        photo(root / "red" / f"r{i}.png", RED, s)
    for i, c in enumerate((GREEN, BLUE, GREEN, BLUE)):
        photo(root / "other" / f"o{i}.png", c)
    return root


def aggregates_consistent(path) -> None:
    """folder_counts must equal what the stats rows say, after any sequence of writes."""
    con = sqlite3.connect(path)
    fresh = con.execute("SELECT i.folder, s.concept, count(*) FROM stats s JOIN images i ON i.id = s.image_id "
                        "GROUP BY i.folder, s.concept ORDER BY 1, 2").fetchall()
    kept = con.execute("SELECT folder, concept, images FROM folder_counts WHERE images > 0 ORDER BY 1, 2").fetchall()
    orphans = con.execute("SELECT count(*) FROM stats WHERE image_id NOT IN (SELECT id FROM images)").fetchone()[0]
    con.close()
    assert fresh == kept and orphans == 0


def test_planted_concept_ranks_planted_images_first(analyzer, folder, tmp_path):
    bb, j = analyzer.backbone, red_concept(analyzer.backbone)
    summary = build_index(folder, analyzer, index=tmp_path / "i.sqlite")
    assert (summary.images, summary.analysed, summary.failed, summary.errors) == (7, 7, 0, 0)
    with FolderIndex(summary.path) as index:
        assert index.root == folder.resolve() and index.info().model_identity == analyzer.model.model_identity
        top = index.top_images(j, 5)
        assert [h.path for h in top[:3]] == ["red/r0.png", "red/r1.png", "red/r2.png"]
        expected = concept_code(bb, RED)[j] * np.array([1.0, 0.8, 0.6])
        np.testing.assert_allclose([h.max for h in top[:3]], expected, rtol=2e-3)
        assert all(h.max < top[2].max for h in top[3:])  # green/blue images, if j fires there at all
        # the block covers 64..128 px of 224, i.e. patches 8..15 of the 28 × 28 grid (448 px analysed)
        assert top[0].n_patches == 784 and 64 - 4 <= top[0].patches <= 64 + 36
        patches = index.top_patches(j, 3)
        assert [p.path for p in patches] == ["red/r0.png", "red/r1.png", "red/r2.png"]
        for p in patches:
            top_px, left_px, bottom_px, right_px = p.box
            assert 56 <= top_px and bottom_px <= 136 and 56 <= left_px and right_px <= 136
        freq = index.frequency(j)
        assert {(f.folder, f.total) for f in freq.per_folder} == {("red", 3), ("other", 4)}
        assert [f.images for f in freq.per_folder if f.folder == "red"] == [3]
        contrast = index.contrast("red", "other")
        assert contrast.n_a == 3 and contrast.n_b == 4
        if concept_code(bb, GREEN)[j] == 0 and concept_code(bb, BLUE)[j] == 0:
            assert j in [c.concept for c in contrast.toward_a]
        # the stored codes are the analysis's, rounded to float16
        stored = index.image_codes("red/r1.png").dense()
        fresh = analyzer.analyze(str(folder / "red" / "r1.png"), classify=False).codes.dense()
        np.testing.assert_allclose(stored, fresh, rtol=1e-3, atol=1e-4)
    aggregates_consistent(summary.path)


class Counting:
    """An analyzer that records which images it analysed (and can fail on chosen ones)."""

    def __init__(self, analyzer, fail_once=()):
        self.inner, self.model, self.calls = analyzer, analyzer.model, 0
        self.fail = set(fail_once)

    def analyze(self, rgb, **kw):
        self.calls += 1
        key = int(rgb.sum())
        if key in self.fail:
            self.fail.discard(key)
            raise RuntimeError("CUDA out of memory (planted)")
        return self.inner.analyze(rgb, **kw)


def test_incremental_edit_add_delete(analyzer, folder, tmp_path):
    j = red_concept(analyzer.backbone)
    db = tmp_path / "i.sqlite"
    build_index(folder, analyzer, index=db)
    counting = Counting(analyzer)
    again = build_index(folder, counting, index=db)
    assert (again.analysed, again.unchanged, again.removed, counting.calls) == (0, 7, 0, 0)

    edited = photo(folder / "red" / "r0.png", BLUE)          # the best red image turns blue
    st = edited.stat()
    os.utime(edited, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a new mtime however coarse the clock
    photo(folder / "red" / "new" / "r9.png", RED, 0.9)       # added, in a deeper sub-folder
    (folder / "red" / "r2.png").unlink()                     # deleted
    summary = build_index(folder, counting, index=db)
    assert (summary.images, summary.analysed, summary.unchanged, summary.removed) == (7, 2, 5, 1)
    assert counting.calls == 2
    with FolderIndex(db) as index:
        paths = [h.path for h in index.top_images(j, 3)]
        assert paths[:2] == ["red/new/r9.png", "red/r1.png"]
        assert "red/r0.png" not in paths[:2] and "red/r2.png" not in index.image_activations(j)
        assert {f.folder: f.total for f in index.frequency(j).per_folder} == {"red": 2, "red/new": 1, "other": 4}
        assert index.contrast("red", "other").n_a == 3     # a group takes its sub-folders too
    aggregates_consistent(db)


def test_unreadable_images_are_recorded_not_retried_until_changed(analyzer, folder, tmp_path):
    db = tmp_path / "i.sqlite"
    bad = folder / "other" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    summary = build_index(folder, analyzer, index=db)
    assert (summary.images, summary.failed, summary.errors) == (8, 1, 1)
    with FolderIndex(db) as index:
        (path, why), = index.errors()
        assert path == "other/broken.png" and why
        assert index.info().images == 7 and index.info().errors == 1
    counting = Counting(analyzer)
    assert build_index(folder, counting, index=db).analysed == 0 and counting.calls == 0
    photo(bad, RED)
    st = bad.stat()
    os.utime(bad, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    summary = build_index(folder, counting, index=db)
    assert (summary.analysed, summary.errors, counting.calls) == (1, 0, 1)
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM images WHERE error_kind = ?", (UNREADABLE,)).fetchone()[0] == 0
    con.close()


def test_failed_analysis_is_recorded_and_retried(analyzer, folder, tmp_path):
    db = tmp_path / "i.sqlite"
    blue_sum = int(np.asarray(Image.open(folder / "other" / "o1.png")).sum())
    counting = Counting(analyzer, fail_once={blue_sum})
    first = build_index(folder, counting, index=db)
    assert (first.failed, first.errors) == (1, 1)
    con = sqlite3.connect(db)
    kind, error = con.execute("SELECT error_kind, error FROM images WHERE status = 'error'").fetchone()
    con.close()
    assert kind == ANALYSIS_FAILED and "memory" in error
    second = build_index(folder, counting, index=db)      # tried again: the failure may have been passing
    assert (second.analysed, second.errors) == (1, 0)


def snapshot(path):
    con = sqlite3.connect(path)
    try:
        images = "SELECT path, folder, size, mtime_ns, status, nnz, fvu FROM images ORDER BY path"
        return (con.execute(images).fetchall(),
                con.execute("SELECT i.path, s.concept, s.max, s.mean, s.patches FROM stats s JOIN images i "
                            "ON i.id = s.image_id ORDER BY 1, 2").fetchall(),
                con.execute("SELECT i.path, c.indptr, c.concepts, c.activations FROM codes c JOIN images i "
                            "ON i.id = c.image_id ORDER BY 1").fetchall(),
                con.execute("SELECT * FROM folder_counts ORDER BY 1, 2").fetchall())
    finally:
        con.close()


def test_killed_build_resumes_to_the_same_index(analyzer, folder, tmp_path):
    whole = build_index(folder, analyzer, index=tmp_path / "whole.sqlite")

    class Killed(Exception):
        pass

    def die_after_three(p: IndexProgress) -> None:
        if p.done == 3:
            raise Killed  # as if the process died right after the third commit

    db = tmp_path / "resumed.sqlite"
    with pytest.raises(Killed):
        build_index(folder, analyzer, index=db, on_progress=die_after_three)
    with FolderIndex(db) as index:
        assert index.info().images == 3
    stop = []  # the user asks to stop once one more image is in

    with pytest.raises(IndexStopped, match="again to continue"):
        build_index(folder, analyzer, index=db, on_progress=lambda p: stop.append(p.done >= 1),
                    should_stop=lambda: any(stop))
    counting = Counting(analyzer)
    resumed = build_index(folder, counting, index=db)
    assert (resumed.analysed, resumed.unchanged, counting.calls) == (3, 4, 3)
    assert snapshot(db) == snapshot(whole.path)
    aggregates_consistent(db)


def test_index_lives_under_the_user_data_dir_keyed_by_folder_and_model(analyzer, folder, tmp_path, monkeypatch):
    monkeypatch.setenv("INSIGHT_DATA_DIR", str(tmp_path / "data"))
    summary = build_index(folder, analyzer)
    identity = analyzer.model.model_identity
    assert summary.path == index_path(folder, identity) and summary.path.is_file()
    assert summary.path.parent == tmp_path / "data" / "indexes"
    assert index_path(folder, identity) != index_path(tmp_path, identity)
    assert index_path(folder, identity) != index_path(folder, "0" * 64)
