"""Analyses on disk: an exact round trip of a real analysis, and a bounded, LRU, crash-proof cache."""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from types import MappingProxyType

import numpy as np
import pytest

from insight_desktop.core.analysis import Analysis
from insight_desktop.core.analysis_cache import (
    SUFFIX,
    AnalysisCache,
    analysis_key,
    image_digest,
    model_identity,
)
from insight_desktop.core.analysis_store import (
    SCHEMA,
    AnalysisFormatError,
    analysis_from_bytes,
    load_analysis,
    save_analysis,
)
from insight_desktop.core.concepts.bundle import ConceptModel
from insight_desktop.core.images import load_image
from insight_desktop.core.paths import resource_path
from tests.core.fakes import random_sae, write_test_bundle

CLASSES = ["cat", "coffee cup", "sky"]


@pytest.fixture(scope="module")
def tiny_analyzer(tiny_model_files, tmp_path_factory):
    """The tiny clip-dinoiser model (FOUND background head) in a bundle with a probe."""
    from insight_desktop.core.backbones import create_backbone
    from insight_desktop.core.concepts.bundle import add_probe
    from insight_desktop.core.engine import Analyzer

    bb = create_backbone("clip-dinoiser", device="cpu", model=str(tiny_model_files.config_path),
                         pretrained=str(tiny_model_files.checkpoint_path), dinoiser=str(tiny_model_files.dinoiser_path))
    bundle = write_test_bundle(tmp_path_factory.mktemp("cache_bundle") / "tiny", bb,
                               random_sae(bb.feature_dim, 64, k=6, threshold=0.0))
    add_probe(bundle, np.random.default_rng(0).normal(size=(2, 64)), ["indoor", "outdoor"])
    analyzer = Analyzer(bundle, device="cpu")
    yield analyzer
    analyzer.close()


@pytest.fixture(scope="module")
def rgb():
    return load_image(resource_path("samples", "chelsea.png"))


@pytest.fixture(scope="module")
def analyses(tiny_analyzer, rgb):
    """Every shape an analysis takes: classes + background + probe, the reference window mode, no classes."""
    small = np.ascontiguousarray(rgb[:120, :200])
    return {"full": tiny_analyzer.analyze(rgb, CLASSES, background=True),
            "reference": tiny_analyzer.analyze(small, CLASSES[:2], window_mode="reference"),
            "concepts only": tiny_analyzer.analyze(small, None)}


def assert_same(a, b, where="analysis"):
    """Deep equality: same types, dtypes, shapes and values (NaN equals NaN), arrays read-only."""
    assert type(a) is type(b), where
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), where
        assert not b.flags.writeable, where
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, (dict, MappingProxyType)):
        assert list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, where


# ----------------------------------------------------------------------------- the file format
@pytest.mark.parametrize("name", ["full", "reference", "concepts only"])
def test_every_field_of_a_real_analysis_round_trips_exactly(analyses, name, tmp_path):
    a = analyses[name]
    size = save_analysis(tmp_path / "a.st", a, {"key": "k"})
    b, meta = load_analysis(tmp_path / "a.st")
    assert size == (tmp_path / "a.st").stat().st_size and meta["key"] == "k"
    assert_same(a, b)
    # what the views compute from an analysis comes out the same
    j = a.concepts[0].concept
    assert np.array_equal(a.display_map(j), b.display_map(j))
    if a.segmentation is not None:
        assert b.segmentation.codes is b.codes  # shared parts stay shared (and are stored once)
        assert b.segmentation.explain_pixel(10, 20) == a.segmentation.explain_pixel(10, 20)


def test_the_full_analysis_holds_every_optional_part(analyses):
    a = analyses["full"]
    assert a.segmentation is not None and a.segmentation.background_label is not None
    assert a.probe is not None and a.classification is not None and a.background_logits is not None
    assert analyses["reference"].window_mode == "reference" and analyses["concepts only"].segmentation is None


def test_nan_and_infinity_survive(analyses, tmp_path):
    a = dataclasses.replace(analyses["concepts only"], faithfulness=dataclasses.replace(
        analyses["concepts only"].faithfulness, fvu=float("nan"), cosine=float("-inf")))
    save_analysis(tmp_path / "a.st", a)
    b, _ = load_analysis(tmp_path / "a.st")
    assert np.isnan(b.faithfulness.fvu) and b.faithfulness.cosine == float("-inf")


def _rewrite_metadata(data: bytes, **changes) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header["__metadata__"].update(changes)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n:]


def test_damaged_or_foreign_files_raise_one_clear_error(analyses, tmp_path):
    from insight_desktop.core.safetensors_io import dump_numpy

    save_analysis(tmp_path / "a.st", analyses["concepts only"])
    data = (tmp_path / "a.st").read_bytes()
    tree = json.loads(json.loads(data[8:8 + struct.unpack("<Q", data[:8])[0]])["__metadata__"]["tree"])
    tree["d"] = "Popen"  # a type the file may not name
    bad = {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "header only": data[:200],
        "random bytes": os.urandom(5000),
        "foreign safetensors": dump_numpy({"x": np.zeros(3)}, {"format": "something else"}),
        "older schema": _rewrite_metadata(data, schema="0" * 16),
        "newer format": _rewrite_metadata(data, format_version="99"),
        "unknown type": _rewrite_metadata(data, tree=json.dumps(tree)),
        "broken tree": _rewrite_metadata(data, tree="{not json"),
    }
    for name, blob in bad.items():
        with pytest.raises(AnalysisFormatError):
            analysis_from_bytes(blob, name)


# ----------------------------------------------------------------------------- keys
def test_the_key_changes_when_any_part_changes(rgb):
    base = dict(image=rgb, model="m1", classes=CLASSES, background=False, window_mode="fast", options=None)
    key = analysis_key(**{**base, "image": rgb.copy()})
    assert key == analysis_key(**base) and len(key) == 64  # the same pixels, another array: the same key
    edited = rgb.copy()
    edited[100, 100, 0] ^= 1
    variants = {
        "one pixel": {"image": edited},
        "shape": {"image": np.ascontiguousarray(rgb[:-1])},
        "model": {"model": "m2"},
        "classes": {"classes": ["cat", "sky"]},
        "class order": {"classes": ["sky", "coffee cup", "cat"]},
        "no classes": {"classes": None},
        "background": {"background": True},
        "window mode": {"window_mode": "reference"},
        "options": {"options": {"window": 224}},
    }
    keys = {name: analysis_key(**{**base, **change}) for name, change in variants.items()}
    assert key not in keys.values() and len(set(keys.values())) == len(keys)
    assert analysis_key(**{**base, "image": image_digest(rgb)}) == key  # a digest stands for the pixels
    assert analysis_key(**{**base, "classes": []}) != keys["no classes"]


def test_the_model_identity_is_its_content_not_its_path_or_names(tiny_analyzer, tmp_path):
    import shutil

    manifest = tiny_analyzer.model.manifest
    copy = tmp_path / "copy"
    shutil.copytree(tiny_analyzer.model.path, copy)
    (copy / "names.json").write_text((copy / "names.json").read_text().replace('"c0"', '"renamed"'))
    assert model_identity(ConceptModel.load(copy, eager=False).manifest) == model_identity(manifest)
    other = dataclasses.replace(manifest, files={**manifest.files, "sae.safetensors": "0" * 64})
    assert model_identity(other) != model_identity(manifest)
    other = dataclasses.replace(manifest, thresholds={**manifest.thresholds, "tau": 0.123})
    assert model_identity(other) != model_identity(manifest)


# ----------------------------------------------------------------------------- the cache
def plant(cache: AnalysisCache, analysis: Analysis, keys: list[str]) -> dict[str, int]:
    """Entries under ``keys``, used in that order (oldest first, a minute apart); their sizes."""
    sizes = {}
    for i, key in enumerate(keys):
        assert cache.put(key, analysis)
        os.utime(cache.path(key), (1_000_000 + 60 * i, 1_000_000 + 60 * i))
        sizes[key] = cache.path(key).stat().st_size
    return sizes


def K(i: int) -> str:
    return f"{i:064x}"


def test_a_hit_returns_the_stored_analysis_and_a_miss_none(analyses, tmp_path):
    cache = AnalysisCache(tmp_path / "c", limit_bytes=10**9)
    assert cache.get(K(1)) is None and cache.size_bytes() == 0
    assert cache.put(K(1), analyses["full"])
    assert_same(analyses["full"], cache.get(K(1)))
    assert cache.get(K(2)) is None
    assert [e.key for e in cache.entries()] == [K(1)] and cache.size_bytes() == cache.path(K(1)).stat().st_size
    with pytest.raises(ValueError):
        cache.path("../../etc/passwd")


def test_eviction_removes_the_least_recently_used_first(analyses, tmp_path):
    a = analyses["concepts only"]
    cache = AnalysisCache(tmp_path / "c", limit_bytes=10**9)
    size = plant(cache, a, [K(1), K(2), K(3)])[K(1)]
    assert cache.get(K(1)) is not None  # used now: the most recent
    cache.limit_bytes = 3 * size + size // 2  # room for three
    assert cache.put(K(4), a)
    assert sorted(e.key for e in cache.entries()) == [K(1), K(3), K(4)]  # 2 was the least recently used
    cache.set_limit(2 * size)
    assert [e.key for e in cache.entries()] == [K(1), K(4)]  # then 3 (4 was written after 1 was used)
    cache.set_limit(size // 2)  # an entry larger than the limit is not kept
    assert not cache.put(K(5), a) and cache.entries() == []


def test_corrupt_truncated_and_foreign_entries_are_misses_and_are_removed(analyses, tmp_path):
    cache = AnalysisCache(tmp_path / "c", limit_bytes=10**9)
    plant(cache, analyses["concepts only"], [K(1), K(2), K(3), K(4)])
    data = cache.path(K(1)).read_bytes()
    cache.path(K(1)).write_bytes(data[: len(data) - 1000])      # truncated
    cache.path(K(2)).write_bytes(b"\x00" * 64)                   # garbage
    os.replace(cache.path(K(3)), cache.path(K(5)))               # another key's entry under this name
    cache.path(K(4)).write_bytes(_rewrite_metadata(data, schema="0" * 16))  # another version's
    for key in (K(1), K(2), K(5), K(4)):
        assert cache.get(key) is None
        assert not cache.path(key).exists()
    assert cache.entries() == []


def test_puts_are_atomic_and_two_caches_can_share_a_folder(analyses, tmp_path, monkeypatch):
    from insight_desktop.core import analysis_store

    one, two = AnalysisCache(tmp_path / "c"), AnalysisCache(tmp_path / "c")
    assert one.put(K(1), analyses["concepts only"])
    assert_same(analyses["concepts only"], two.get(K(1)))
    # a write that fails half-way leaves the old entry and no new file under an entry's name
    real = analysis_store.write_safetensors

    def failing(path, tensors, metadata):
        def boom():
            raise OSError("disk full")
        return real(path, [*tensors[:1], tensors[1]._replace(produce=boom)], metadata)

    monkeypatch.setattr(analysis_store, "write_safetensors", failing)
    assert not one.put(K(1), analyses["full"]) and not one.put(K(2), analyses["full"])
    assert_same(analyses["concepts only"], two.get(K(1)))
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [K(1) + SUFFIX]
    assert two.clear() > 0 and one.get(K(1)) is None


def test_stale_temporary_files_are_removed_and_fresh_ones_kept(analyses, tmp_path):
    cache = AnalysisCache(tmp_path / "c")
    cache.folder.mkdir(parents=True)
    stale, fresh = cache.folder / f".{K(1)}{SUFFIX}.abc.tmp", cache.folder / f".{K(2)}{SUFFIX}.def.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"being written by another instance")
    os.utime(stale, (1_000_000, 1_000_000))
    cache.evict()
    assert not stale.exists() and fresh.exists() and cache.entries() == []


def test_put_later_writes_in_the_background(analyses, tmp_path):
    cache = AnalysisCache(tmp_path / "c")
    cache.put_later(K(1), analyses["full"])
    cache.put_later(K(2), analyses["concepts only"])
    assert cache.wait_for_writes(60)
    assert sorted(e.key for e in cache.entries()) == [K(1), K(2)]
    assert_same(analyses["concepts only"], cache.get(K(2)))


def test_an_unwritable_folder_is_only_a_miss(analyses, tmp_path):
    blocker = tmp_path / "not a folder"
    blocker.write_text("x")
    cache = AnalysisCache(blocker / "c")
    assert not cache.put(K(1), analyses["concepts only"])
    assert cache.get(K(1)) is None and cache.size_bytes() == 0 and cache.clear() == 0 and cache.evict() == 0


def test_the_schema_changes_when_a_stored_type_gains_a_field(monkeypatch):
    from insight_desktop.core import analysis_store

    @dataclasses.dataclass(frozen=True)
    class Faithfulness:
        fvu: float
        cosine: float
        residual: np.ndarray
        patches: int = 0

    assert analysis_store._schema() == SCHEMA
    monkeypatch.setitem(analysis_store.TYPES, "Faithfulness", Faithfulness)
    assert analysis_store._schema() != SCHEMA


def test_long_tuples_of_numbers_and_records_take_the_compact_path_exactly():
    from insight_desktop.core.analysis_store import _Decoder, _Encoder
    from insight_desktop.core.tasks.codes import ConceptContribution

    records = tuple(ConceptContribution(i, v) for i, v in enumerate([0.5, -0.0, float("nan"), 1e-300, 7.0]))
    value = {"ints": tuple(range(-3, 10)), "floats": (0.1, -0.0, float("inf"), 2.5), "records": records,
             "huge": (2 ** 70, 1, 2, 3), "bools": (True, False, True, True), "mixed": (1, 2.0, 3, 4),
             "short": (1, 2), "mixed records": (*records[:3], ConceptContribution(9, 1))}
    encoder = _Encoder()
    tree = encoder.tree(MappingProxyType(value))
    text = json.dumps(tree)
    assert '"ti"' in text and '"tf"' in text and '"tc"' in text  # the compact forms were used
    back = _Decoder({**encoder.arrays, **encoder.pool_arrays()}).value(json.loads(text))
    assert_same(MappingProxyType(value), back)
    assert type(back["huge"][0]) is int and type(back["bools"][0]) is bool and back["mixed"][1] == 2.0
