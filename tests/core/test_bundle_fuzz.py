"""Fuzzing bundles: mutated manifests, names, relations and SAE parts, zip bytes and folder layouts.

The property: opening the bundle the way the app does (load, analyse an image with two classes
on a stand-in backbone, catalog, summary, thumbnails, probe, the relations' hierarchy) either
works or raises a :class:`BundleError` subclass — never another exception type. ``make test``
runs a few derandomised examples per strategy; ``make fuzz`` (``INSIGHT_FUZZ_EXAMPLES=N``: N
random examples per strategy, ``-m fuzz``) runs thousands and prints cases run, outcomes,
unexpected types, the slowest case and peak memory. Time and memory are reported, not asserted
(tests never assert on timing).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from insight_desktop.core.concepts.bundle import BundleError, ConceptModel
from insight_desktop.core.concepts.concept_catalog import catalog_of
from tests.fuzzing import EXAMPLES, fuzz_settings, print_report

from .bundle_kit import D, patch_zip_member, tiny_members, write_folder, write_zip

pytestmark = pytest.mark.fuzz

FUZZ = EXAMPLES > 0
SETTINGS = fuzz_settings(12, HealthCheck.filter_too_much)
GB = 1 << 30


class Stats:
    def __init__(self):
        self.cases = 0
        self.outcomes: collections.Counter = collections.Counter()
        self.unexpected: collections.Counter = collections.Counter()
        self.slowest = (0.0, "")
        self.peak = (0, "")
        self.over_time = self.over_memory = 0

    def report(self) -> str:
        rss = _peak_rss()
        lines = [f"bundle fuzz: {self.cases} cases, {len(self.unexpected)} unexpected exception types "
                 f"{dict(self.unexpected)}",
                 f"  outcomes: {dict(self.outcomes.most_common())}",
                 f"  slowest case {self.slowest[0]:.2f} s ({self.slowest[1]}); over 5 s: {self.over_time}",
                 f"  process peak RSS {rss / 2**20:.0f} MiB (torch and the test run included); largest rise of "
                 f"the peak in one case {self.peak[0] / 2**20:.1f} MiB ({self.peak[1]}); cases over 1 GiB: "
                 f"{self.over_memory}"]
        return "\n".join(lines)


STATS = Stats()


def _peak_rss() -> int:
    """The process's peak resident memory so far, in bytes (a case that needed more raises it)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


@pytest.fixture(scope="module", autouse=True)
def fuzz_report(request):
    yield
    print_report(request, STATS.report())


_IMAGE = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)


@functools.lru_cache(maxsize=1)
def _backbone():
    from .fakes import TextColourBackbone

    return TextColourBackbone(d=D)


def open_fully(path: Path) -> None:
    """Everything the app does with a model it opens, up to analysing an image with two classes."""
    from insight_desktop.core.engine import Analyzer
    from insight_desktop.core.inspect import training_lines

    model = ConceptModel.load(path)
    try:
        Analyzer(model, backbone=_backbone(), device="cpu").analyze(_IMAGE, ["red", "green"])
        catalog = catalog_of(model)
        try:
            model.summary()
            model.relations.summary()
            training_lines(float(model.sae.threshold), model.sae.training_info)
            for j in range(catalog.n_concepts):
                catalog.name(j), catalog.parents(j), catalog.children(j), catalog.names.candidates(j)
            for j in catalog.thumbnails:
                catalog.thumbnails.get(j)  # as the inspector asks: a damaged strip is a missing one
            _ = model.probe
        finally:
            catalog.thumbnails.close()  # type: ignore[attr-defined]
    finally:
        model.close()


def check(make, label: str) -> None:
    """Build a bundle with ``make(folder)`` in a fresh folder and open it; record the outcome."""
    with tempfile.TemporaryDirectory() as tmp:
        path = make(Path(tmp))
        rss_before = _peak_rss()
        start = time.perf_counter()
        try:
            open_fully(path)
            outcome = "valid"
        except BundleError as exc:
            assert str(exc), "a BundleError without a message"
            outcome = type(exc).__name__
        except Exception as exc:
            STATS.unexpected[type(exc).__name__] += 1
            raise
        finally:
            elapsed = time.perf_counter() - start
            STATS.cases += 1
            if elapsed > STATS.slowest[0]:
                STATS.slowest = (elapsed, label)
            STATS.over_time += elapsed > 5
            rise = _peak_rss() - rss_before  # an upper bound of what this case needed beyond the rest
            if rise > STATS.peak[0]:
                STATS.peak = (rise, label)
            STATS.over_memory += rise > GB
        STATS.outcomes[f"{label}: {outcome}"] += 1


# -- JSON mutation ---------------------------------------------------------------------------------
LEAVES = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20)
          | st.sampled_from(["", "..", "../../etc/passwd", "/dev/zero", "a" * 70, "0" * 64, "x" * 300]))
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=8)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:6]):
            yield from _paths(v, (*prefix, i))


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def mutate_json(data: st.DataObject, doc) -> bytes:
    """``doc`` with 1–3 random edits (replace, delete, insert, deepen, numeric nudge), as JSON bytes;
    sometimes raw byte damage instead."""
    doc = json.loads(json.dumps(doc))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(doc))
        path = data.draw(st.sampled_from(paths))
        op = data.draw(st.sampled_from(["replace", "delete", "insert", "nudge", "deep", "wrap"]))
        if not path:
            if op in ("replace", "wrap"):
                doc = data.draw(VALUES) if op == "replace" else [doc]
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if op == "replace":
            parent[key] = data.draw(VALUES)
        elif op == "delete":
            del parent[key]
        elif op == "insert" and isinstance(parent, dict):
            parent[data.draw(st.text(max_size=12))] = data.draw(VALUES)
        elif op == "nudge" and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
            parent[key] = data.draw(st.sampled_from([parent[key] + 1, parent[key] - 1, parent[key] * 1.5,
                                                     -parent[key], 0, parent[key] * 10**6, str(parent[key])]))
        elif op == "wrap":
            parent[key] = data.draw(st.sampled_from([[parent[key]], {"v": parent[key]}]))
        elif op == "deep":
            parent[key] = "__DEEP__"
    text = json.dumps(doc)
    if "__DEEP__" in text:
        text = text.replace('"__DEEP__"', _nested(data.draw(st.sampled_from([20, 33, 200, 5000, 100_000]))), 1)
    raw = text.encode()
    if data.draw(st.integers(0, 9)) == 0:  # raw damage: truncation or a flipped byte
        at = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        raw = raw[:at] if data.draw(st.booleans()) else raw[:at] + bytes([raw[at] ^ 0x80]) + raw[at + 1:]
    return raw


def _rehash(members: dict[str, bytes], part: str, data: bytes) -> dict[str, bytes]:
    man = json.loads(members["manifest.json"])
    man["files"][part] = hashlib.sha256(data).hexdigest()
    return {**members, part: data, "manifest.json": json.dumps(man).encode()}


def _zip_or_folder(data: st.DataObject, members: dict[str, bytes]):
    as_zip = data.draw(st.booleans())
    return lambda tmp: write_zip(tmp / "m.zip", members) if as_zip else write_folder(tmp / "m", members)


# -- the strategies ----------------------------------------------------------------------------------
@SETTINGS
@given(st.data())
def test_fuzz_manifest(data):
    members = tiny_members()
    raw = mutate_json(data, json.loads(members["manifest.json"]))
    check(_zip_or_folder(data, {**members, "manifest.json": raw}), "manifest")


@SETTINGS
@given(st.data())
def test_fuzz_names(data):
    members = tiny_members()
    raw = mutate_json(data, json.loads(members["names.json"]))
    check(_zip_or_folder(data, {**members, "names.json": raw}), "names")


def _safetensors_parts(data: st.DataObject, blob: bytes, meta_key: str | None, framework: str):
    """A safetensors blob with its metadata JSON mutated and/or an array dropped, recast or reshaped."""
    from safetensors.numpy import load, save

    from insight_desktop.core.safetensors_io import metadata_of

    arrays, meta = load(blob), metadata_of(blob)
    if meta_key and data.draw(st.booleans()):
        meta[meta_key] = mutate_json(data, json.loads(meta[meta_key])).decode("utf-8", "replace")
    if data.draw(st.booleans()):
        name = data.draw(st.sampled_from(sorted(arrays)))
        op = data.draw(st.sampled_from(["drop", "float", "int", "bool", "flat", "empty", "grow", "nan", "neg"]))
        a = arrays.pop(name)
        if op != "drop":
            arrays[name] = {
                "float": lambda: a.astype(np.float16), "int": lambda: a.astype(np.int32),
                "bool": lambda: a.astype(bool), "flat": lambda: a.reshape(-1)[: max(a.size - 1, 0)],
                "empty": lambda: np.zeros((0,), a.dtype), "grow": lambda: np.concatenate([a.reshape(-1)] * 2),
                "nan": lambda: np.full(a.shape, np.nan, np.float32), "neg": lambda: -np.abs(a.astype(np.int64)) - 1,
            }[op]()
            arrays[name] = np.array(arrays[name]).reshape(-1 if op in ("flat", "empty", "grow") else a.shape)
    return save(arrays, metadata=meta)


@SETTINGS
@given(st.data())
def test_fuzz_relations_part(data):
    members = tiny_members()
    blob = _safetensors_parts(data, members["relations.safetensors"], "insight_relations", "np")
    check(_zip_or_folder(data, _rehash(members, "relations.safetensors", blob)), "relations")


@SETTINGS
@given(st.data())
def test_fuzz_sae_part(data):
    members = tiny_members()
    key = data.draw(st.sampled_from(["insight_sae_config", "insight_sae_training"]))
    from insight_desktop.core.safetensors_io import metadata_of

    blob = members["sae.safetensors"]
    if key not in metadata_of(blob):
        key = "insight_sae_config"
    blob = _safetensors_parts(data, blob, key, "np")
    check(_zip_or_folder(data, _rehash(members, "sae.safetensors", blob)), "sae")


@SETTINGS
@given(st.data())
def test_fuzz_zip_structure(data):
    members = dict(tiny_members())
    with tempfile.TemporaryDirectory() as tmp:
        valid = write_zip(Path(tmp) / "v.zip", members).read_bytes()
    name = data.draw(st.sampled_from(sorted(members)))
    op = data.draw(st.sampled_from(["flip", "truncate", "flags", "method", "size", "garbage"]))
    if op == "flip":
        raw = bytearray(valid)
        for _ in range(data.draw(st.integers(1, 8))):
            # Bias towards the headers: the central directory sits in the last ~1 KiB.
            at = data.draw(st.integers(0, len(raw) - 1) | st.integers(max(0, len(raw) - 1200), len(raw) - 1))
            raw[at] = data.draw(st.integers(0, 255))
        raw = bytes(raw)
    elif op == "truncate":
        raw = valid[:data.draw(st.integers(0, len(valid) - 1))]
    elif op == "garbage":
        at = data.draw(st.integers(0, len(valid)))
        raw = valid[:at] + data.draw(st.binary(max_size=64)) + valid[at:]
    else:
        value = data.draw(st.integers(0, 0xFFFF) if op != "size" else st.integers(0, 2**32 - 1))
        raw = patch_zip_member(valid, name, **{op if op != "size" else "size": value})

    def make(tmp: Path) -> Path:
        (tmp / "m.zip").write_bytes(raw)
        return tmp / "m.zip"
    check(make, f"zip-{op}")


@SETTINGS
@given(st.data())
def test_fuzz_folder_layout(data):
    members = dict(tiny_members())
    name = data.draw(st.sampled_from(sorted(members)))
    op = data.draw(st.sampled_from(["remove", "dir", "link-in", "link-out", "link-dev", "link-dir", "files-key"]))
    key = data.draw(st.sampled_from(["../x", "../../x", "/etc/hostname", "a/../../x", "./sae.safetensors",
                                     "thumbnails/../sae.safetensors", "x\\..\\y", "C:x", "", "a//b"])
                    | st.text(max_size=30))

    def make(tmp: Path) -> Path:
        (tmp / "x").write_bytes(b"outside")
        folder = write_folder(tmp / "m", members if op != "files-key" else {
            **members, "manifest.json": _with_files_key(members["manifest.json"], key)})
        target = folder / name
        if op == "files-key":
            return folder
        target.unlink()
        if op == "dir":
            target.mkdir()
        elif op == "link-in":
            target.symlink_to(folder / "names.json")
        elif op == "link-out":
            target.symlink_to(tmp / "x")
        elif op == "link-dev":
            target.symlink_to("/dev/zero")
        elif op == "link-dir":
            target.parent.rename(tmp / "moved")
            target.parent.symlink_to(tmp / "moved", target_is_directory=True)
        return folder
    check(make, f"folder-{op}")


def _with_files_key(manifest: bytes, key: str) -> bytes:
    man = json.loads(manifest)
    man["files"][key] = hashlib.sha256(b"outside").hexdigest()
    return json.dumps(man).encode()
