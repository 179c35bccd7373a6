"""Folder-index queries on planted codes written through the store, checked against brute force."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from insight_desktop.core.index import FolderIndex, ImageEntry, IndexMismatchError, IndexStore
from insight_desktop.core.index.schema import quantize
from insight_desktop.core.tasks.codes import PatchCodes

from .test_folder_index import aggregates_consistent

M, GRID = 300, (6, 5)
FOLDERS = ("a/x", "a/y", "b")
PLANTED = 7   # fires in most images of a/*, rarely in b


def random_codes(rng, planted: bool) -> PatchCodes:
    n = GRID[0] * GRID[1]
    rows, values = [], []
    for q in range(n):
        k = int(rng.integers(0, 5))
        ids = set(rng.choice(M, size=k, replace=False).tolist()) - {PLANTED}
        if planted and q % 3 == 0:
            ids.add(PLANTED)
        rows.append(sorted(ids))
        values.append(rng.gamma(2.0, 1.0, size=len(ids)))
    indptr = np.cumsum([0] + [len(r) for r in rows])
    return PatchCodes(GRID, M, indptr, np.concatenate([np.zeros(0, int)] + [np.asarray(r, int) for r in rows]),
                      np.concatenate([np.zeros(0)] + values).astype(np.float32))


@pytest.fixture
def planted(tmp_path):
    """40 images in three sub-folders; returns (index path, {path: stored dense codes [n, m]}, {path: folder})."""
    rng = np.random.default_rng(3)
    path = tmp_path / "planted.sqlite"
    dense, folders = {}, {}
    with IndexStore(path, model_identity="m" * 64, n_concepts=M, folder=tmp_path) as store:
        for i in range(40):
            folder = FOLDERS[i % 3]
            planted_here = folder.startswith("a/") and i % 4 != 0 or folder == "b" and i % 10 == 2
            codes = random_codes(rng, planted_here)
            entry = ImageEntry(f"{folder}/img{i}.png", 1000 + i, i)
            store.put_image(entry, codes, image_size=(120, 100), analysis_size=(96, 80), patch_size=16, fvu=0.25)
            indptr, ids, vals = quantize(codes.indptr, codes.indices, codes.values)
            dense[entry.path] = PatchCodes(GRID, M, indptr, ids, vals.astype(np.float32)).dense()
            folders[entry.path] = folder
    return path, dense, folders


def brute_top_images(dense, c):
    order = sorted(((-float(d[:, c].max()), i, p) for i, (p, d) in enumerate(dense.items()) if d[:, c].max() > 0))
    return [(p, -neg) for neg, _, p in order]


def test_top_images_and_activations_match_brute_force(planted):
    path, dense, _ = planted
    with FolderIndex(path) as index:
        for c in (PLANTED, 0, 150, 299):
            expected = brute_top_images(dense, c)
            hits = index.top_images(c, None)
            assert [(h.path, h.max) for h in hits] == expected
            for h in hits:
                d = dense[h.path][:, c]
                assert h.patches == int((d > 0).sum()) and h.n_patches == 30
                assert h.mean == pytest.approx(float(d.astype(np.float64).mean()))
            assert [h.path for h in index.top_images(c, 3)] == [p for p, _ in expected[:3]]
            acts = index.image_activations(c)
            assert acts == {p: float(d[:, c].max()) for p, d in dense.items()}


@pytest.mark.parametrize("per_image", [1, 2, None])
def test_top_patches_are_exactly_the_best(planted, per_image):
    path, dense, _ = planted
    with FolderIndex(path) as index:
        for c in (PLANTED, 42):
            ranked = {p: r for r, (p, _) in enumerate(brute_top_images(dense, c))}
            every = []
            for p, d in dense.items():
                qs = [q for q in np.lexsort((np.arange(30), -d[:, c].astype(np.float64))) if d[q, c] > 0]
                every += [(-float(d[q, c]), ranked[p], int(q), p) for q in qs[:per_image]]
            expected = sorted(every)[:12]
            hits = index.top_patches(c, 12, per_image=per_image)
            assert [(h.path, h.row * GRID[1] + h.col, h.value) for h in hits] == [(p, q, -v) for v, _, q, p in expected]
            h = hits[0]
            assert h.grid == GRID
            assert h.box == pytest.approx((h.row * 120 * 16 / 96, h.col * 100 * 16 / 80,
                                           (h.row + 1) * 120 * 16 / 96, (h.col + 1) * 100 * 16 / 80))


def test_a_not_b_frequency_and_contrast(planted):
    path, dense, folders = planted
    fires = {p: set(np.flatnonzero(d.max(axis=0) > 0).tolist()) for p, d in dense.items()}
    with FolderIndex(path) as index:
        a, b = PLANTED, 11
        expected = [p for p, _ in brute_top_images(dense, a) if b not in fires[p]]
        assert [h.path for h in index.a_not_b(a, b, None)] == expected
        t = 2.0   # with a threshold, "fires" means max above it
        expected = [p for p, m in brute_top_images(dense, a) if m > t and dense[p][:, b].max() <= t]
        assert [h.path for h in index.a_not_b(a, b, None, min_activation=t)] == expected

        freq = index.frequency(PLANTED)
        assert freq.total == 40 and freq.images == sum(PLANTED in f for f in fires.values())
        for share in freq.per_folder:
            members = [p for p, f in folders.items() if f == share.folder]
            assert share.total == len(members) and share.images == sum(PLANTED in fires[p] for p in members)

        strong = index.frequency(PLANTED, min_activation=4.0)
        assert strong.images == sum(d[:, PLANTED].max() > 4.0 for d in dense.values()) < freq.images

        result = index.contrast("a", ["b"], n=5)
        in_a = [p for p, f in folders.items() if f.startswith("a/")]
        in_b = [p for p, f in folders.items() if f == "b"]
        assert (result.n_a, result.n_b) == (len(in_a), len(in_b))
        assert result.toward_a[0].concept == PLANTED
        top = result.toward_a[0]
        x, y = sum(PLANTED in fires[p] for p in in_a), sum(PLANTED in fires[p] for p in in_b)
        log_odds = np.log((x + .5) / (len(in_a) - x + .5)) - np.log((y + .5) / (len(in_b) - y + .5))
        se = np.sqrt(1 / (x + .5) + 1 / (len(in_a) - x + .5) + 1 / (y + .5) + 1 / (len(in_b) - y + .5))
        assert (top.images_a, top.images_b) == (x, y)
        assert top.log_odds == pytest.approx(log_odds) and top.z == pytest.approx(log_odds / se)
        assert [c.z for c in result.toward_a] == sorted((c.z for c in result.toward_a), reverse=True)
        assert all(c.z < 0 for c in result.toward_b) and len(result.toward_a) == 5
        swapped = index.contrast("b", "a", n=5)
        assert swapped.toward_b[0].concept == PLANTED and swapped.toward_b[0].z == pytest.approx(-top.z)

        with pytest.raises(ValueError, match="sub-folders: 'a/x', 'a/y', 'b'"):
            index.contrast("healthy", "b")
        with pytest.raises(ValueError, match="share"):
            index.contrast("a", "a/x")
        with pytest.raises(ValueError, match="0..299"):
            index.top_images(300)


def test_removal_keeps_aggregates_and_queries_exact(planted):
    path, dense, _ = planted
    gone = [p for p, _ in brute_top_images(dense, PLANTED)[:4]]
    with IndexStore(path, model_identity="m" * 64, n_concepts=M, folder=path.parent) as store:
        store.remove(gone)
    left = {p: d for p, d in dense.items() if p not in gone}
    with FolderIndex(path) as index:
        assert [(h.path, h.max) for h in index.top_images(PLANTED, None)] == brute_top_images(left, PLANTED)
        assert index.info().images == 36
    aggregates_consistent(path)


def test_layout_dtypes_and_large_models(tmp_path):
    big = 70_000  # ids no longer fit uint16
    codes = PatchCodes((1, 2), big, [0, 2, 3], [5, 69_999, 12], [0.5, 1e6, 3e-9])
    with IndexStore(tmp_path / "big.sqlite", model_identity="b" * 64, n_concepts=big, folder=tmp_path) as store:
        store.put_image(ImageEntry("x.png", 1, 1), codes, image_size=(16, 32), analysis_size=(16, 32),
                        patch_size=16, fvu=float("nan"))
    with FolderIndex(tmp_path / "big.sqlite") as index:
        assert index.meta["concept_dtype"] == "<i4" and index.meta["activation_dtype"] == "<f2"
        back = index.image_codes("x.png")
        # 1e6 is clipped to float16's largest value, 3e-9 rounds to 0 and is dropped
        assert back.indices.tolist() == [5, 69_999] and back.indptr.tolist() == [0, 2, 2]
        assert back.values.tolist() == [0.5, 65504.0]
        with pytest.raises(KeyError):
            index.image_codes("nope.png")


def test_blobs_are_plain_numpy_arrays(planted):
    """What the schema docstring promises a user reading the file with sqlite3 + numpy."""
    import zlib

    path, dense, _ = planted
    con = sqlite3.connect(path)
    meta = dict(con.execute("SELECT key, value FROM meta"))
    assert meta["codec"] == "zlib" and meta["concept_dtype"] == "<u2" and meta["indptr_dtype"] == "<u4"
    (i_blob, c_blob, v_blob, gh, gw), = con.execute(
        "SELECT indptr, concepts, activations, grid_h, grid_w FROM codes JOIN images ON id = image_id "
        "WHERE path = 'a/x/img0.png'")
    con.close()
    indptr = np.frombuffer(zlib.decompress(i_blob), "<u4")
    ids = np.frombuffer(zlib.decompress(c_blob), "<u2")
    vals = np.frombuffer(zlib.decompress(v_blob), "<f2")
    rebuilt = PatchCodes((gh, gw), M, indptr, ids, vals).dense()
    np.testing.assert_array_equal(rebuilt, dense["a/x/img0.png"])


def test_wrong_model_or_not_an_index(planted, tmp_path):
    path, _, _ = planted
    with pytest.raises(IndexMismatchError, match="another concept model"):
        IndexStore(path, model_identity="z" * 64, n_concepts=M, folder=tmp_path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(IndexMismatchError, match="not a folder index"):
        FolderIndex(junk)
    with pytest.raises(FileNotFoundError):
        FolderIndex(tmp_path / "missing.sqlite")
