"""Bundles from strangers: bombs, links, paths out of the folder and malformed fields each end in a
specific BundleError that names the problem, without inflating or reading what they point at."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile

import pytest

from insight_desktop.cli.command import main as insight
from insight_desktop.core.concepts import bundle_schema
from insight_desktop.core.concepts.bundle import (
    BundleError,
    BundleIncompatibleError,
    BundleIntegrityError,
    BundleLimitError,
    ConceptModel,
)
from insight_desktop.core.concepts.concept_catalog import catalog_of

from .bundle_kit import (
    manifest,
    patch_zip_member,
    rehashed,
    relations_with_metadata,
    tiny_members,
    with_manifest,
    write_folder,
    write_zip,
)


def open_fully(path):
    """Everything the app does with a newly opened model: load, catalog, summary, thumbnails, probe."""
    model = ConceptModel.load(path)
    catalog = catalog_of(model)
    model.summary()
    dict(catalog.thumbnails)
    _ = model.probe
    return model, catalog


def test_the_tiny_bundle_is_valid(tmp_path):
    model, catalog = open_fully(write_zip(tmp_path / "ok.zip", tiny_members()))
    assert catalog.name(3) == "word3" and sorted(catalog.thumbnails) == [0, 5]
    assert catalog.notices == ()


# -- bombs ---------------------------------------------------------------------------------------
class ReadCounter:
    """Counts the bytes inflated from any zip member."""

    def __init__(self, monkeypatch):
        self.total = 0
        real = zipfile.ZipExtFile.read

        def read(ext, n=-1):
            data = real(ext, n)
            self.total += len(data)
            return data

        monkeypatch.setattr(zipfile.ZipExtFile, "read", read)


def test_a_manifest_bomb_is_refused_without_inflating_it(tmp_path, monkeypatch):
    man = json.dumps(manifest())
    bomb = (man[:-1] + " " * (64 << 20) + "}").encode()  # valid JSON: 64 MiB of blanks, ~64 KiB zipped
    path = write_zip(tmp_path / "bomb.zip", with_manifest(tiny_members(), bomb))
    assert path.stat().st_size < 1 << 20
    counter = ReadCounter(monkeypatch)
    with pytest.raises(BundleLimitError, match=r"manifest\.json.*67,10\d,\d+ bytes.*refused without reading"):
        ConceptModel.load(path)
    assert counter.total == 0


def test_a_relations_bomb_is_refused_from_the_zip_directory(tmp_path, monkeypatch):
    members = rehashed(tiny_members(), "relations.safetensors", bytes(80 << 20))
    path = write_zip(tmp_path / "bomb.zip", members)
    counter = ReadCounter(monkeypatch)
    with pytest.raises(BundleLimitError, match="relations.safetensors"):
        ConceptModel.load(path)
    assert counter.total < 1 << 20  # the manifest only


def test_the_total_uncompressed_size_is_checked_at_opening(tmp_path, monkeypatch):
    path = write_zip(tmp_path / "ok.zip", tiny_members())
    monkeypatch.setattr(bundle_schema, "MAX_TOTAL_BYTES", 1000)
    with pytest.raises(BundleLimitError, match="would unpack to"):
        ConceptModel.load(path)


def test_a_directory_that_understates_a_size_is_caught_while_reading(tmp_path):
    data = write_zip(tmp_path / "ok.zip", tiny_members()).read_bytes()
    (tmp_path / "lie.zip").write_bytes(patch_zip_member(data, "names.json", size=100))
    with pytest.raises(BundleIntegrityError, match="names.json"):
        open_fully(tmp_path / "lie.zip")


@pytest.mark.parametrize(("patch", "message"), [
    (dict(method=99), "compressed with AES.*cannot read"),
    (dict(method=9), "Deflate64"),
    (dict(flags=0x1), "encrypted"),
    (dict(flags=0x40), "encrypted"),
])
def test_unreadable_zip_members_are_bundle_errors(tmp_path, patch, message):
    data = write_zip(tmp_path / "ok.zip", tiny_members()).read_bytes()
    (tmp_path / "odd.zip").write_bytes(patch_zip_member(data, "manifest.json", **patch))
    with pytest.raises(BundleIntegrityError, match=message):
        ConceptModel.load(tmp_path / "odd.zip")


# -- folders: links and paths that leave the bundle -------------------------------------------------
def test_folder_members_that_are_links_are_refused(tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        fh.truncate(100 << 20)  # sparse: costs no disk
    folder = write_folder(tmp_path / "m", tiny_members())
    (folder / "thumbnails" / "00005.jpg").unlink()
    (folder / "thumbnails" / "00005.jpg").symlink_to(big)
    model, catalog = open_fully(folder)  # a linked thumbnail counts as missing in the viewer
    assert sorted(catalog.thumbnails) == [0]
    with pytest.raises(BundleIntegrityError, match="00005.jpg' is a symbolic link"):
        model.thumbnail(5)

    (folder / "sae.safetensors").unlink()
    (folder / "sae.safetensors").symlink_to("/dev/zero")
    with pytest.raises(BundleIntegrityError, match="sae.safetensors' is a symbolic link"):
        ConceptModel.load(folder)


def test_a_linked_folder_inside_the_bundle_is_refused(tmp_path):
    elsewhere = write_folder(tmp_path / "elsewhere", {"00000.jpg": b"private"})
    folder = write_folder(tmp_path / "m", {k: v for k, v in tiny_members().items() if "thumbnails" not in k})
    (folder / "thumbnails").symlink_to(elsewhere, target_is_directory=True)
    model, catalog = open_fully(folder)
    assert dict(catalog.thumbnails) == {}
    with pytest.raises(BundleIntegrityError, match="'thumbnails' is a symbolic link"):
        model.thumbnail(0)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_member_does_not_hang(tmp_path):
    folder = write_folder(tmp_path / "m", {k: v for k, v in tiny_members().items() if k != "names.json"})
    os.mkfifo(folder / "names.json")
    with pytest.raises(BundleIntegrityError, match="not a regular file"):
        ConceptModel.load(folder)


@pytest.mark.parametrize("name", ["../secret.bin", "../../secret.bin", "/tmp/secret.bin", "a/../../secret.bin"])
def test_files_entries_cannot_leave_the_bundle(tmp_path, name):
    secret = b"private key material"
    (tmp_path / "secret.bin").write_bytes(secret)
    man = manifest()
    man["files"][name] = hashlib.sha256(secret).hexdigest()
    folder = write_folder(tmp_path / "sub" / "m", with_manifest(tiny_members(), man))
    with pytest.raises(BundleIntegrityError, match="outside the bundle"):
        ConceptModel.load(folder)


# -- malformed fields --------------------------------------------------------------------------------
def _set(path: str, value):
    """Set the manifest field ``path`` ('sae.k'; 'files.<part>' keeps the part's dots) to ``value``."""
    def change(man):
        parents, last = (["files"], path[6:]) if path.startswith("files.") else (path.split(".")[:-1],
                                                                               path.split(".")[-1])
        target = man
        for p in parents:
            target = target[p]
        target[last] = value
        return man
    return change


MALFORMED = {
    "backbone: null": (_set("backbone", None), "'backbone' must be an object, not null"),
    "files.sae.safetensors: null": (_set("files.sae.safetensors", None), "'files.sae.safetensors' must be a string"),
    "feature_dim: 'x'": (_set("backbone.feature_dim", "x"), "'backbone.feature_dim' must be a whole number"),
    "sae.k: 1.5": (_set("sae.k", 1.5), r"'sae.k' must be a whole number, not 1.5"),
    "sae.k: true": (_set("sae.k", True), "'sae.k' must be a whole number"),
    "sae.group_sizes: 'ab'": (_set("sae.group_sizes", "ab"), "'sae.group_sizes' must be a list"),
    "thresholds.tau: NaN": (_set("thresholds.tau", float("nan")), "'thresholds.tau' must be a finite number"),
    "files: {}": (_set("files", {}), "records no hashes"),
    "files: null": (_set("files", None), "records no hashes"),
    "files without relations": (lambda m: m["files"].pop("relations.safetensors") and m,
                                "'files.relations.safetensors' is missing"),
    "files: bad hash": (_set("files.sae.safetensors", "zz"), "sha256"),
    "provenance: list": (_set("provenance", [1, 2]), "'provenance' must be an object"),
    "thumbnails.count: 'x'": (_set("thumbnails.count", "x"), "'thumbnails.count' must be a whole number"),
    "format_version: '1'": (_set("format_version", "1"), "'format_version' must be a whole number"),
    "manifest is a list": (lambda m: [m], "must be an object, not a list"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_manifest_fields_are_named(tmp_path, case):
    change, message = MALFORMED[case]
    path = write_zip(tmp_path / "bad.zip", with_manifest(tiny_members(), change(manifest())))
    with pytest.raises(BundleIntegrityError, match=message):
        open_fully(path)


def test_deeply_nested_json_is_a_bundle_error(tmp_path):
    for depth in (40, 100_000):
        raw = json.dumps(manifest())[:-1] + ', "extra": ' + "[" * depth + "]" * depth + "}"
        path = write_zip(tmp_path / f"deep{depth}.zip", with_manifest(tiny_members(), raw.encode()))
        with pytest.raises(BundleIntegrityError, match="nested"):
            ConceptModel.load(path)


def test_a_null_provenance_or_spec_options_load_as_empty(tmp_path):
    man = manifest()
    man["provenance"] = None
    man["backbone"]["spec"]["options"] = None
    model, catalog = open_fully(write_zip(tmp_path / "m.zip", with_manifest(tiny_members(), man)))
    assert dict(catalog.provenance) == {} and model.manifest.backbone["spec"]["options"] == {}
    assert "built          ? from ? images" in model.summary()


@pytest.mark.parametrize(("meta", "message"), [
    ("[1, 2]", "must be an object, not a list"),
    ("{", "not valid JSON"),
    ('{"format": "insight-relations", "n_concepts": "12"}', "'n_concepts' must be a whole number"),
])
def test_malformed_relations_metadata_is_a_bundle_error(tmp_path, meta, message):
    members = rehashed(tiny_members(), "relations.safetensors", relations_with_metadata(meta))
    with pytest.raises(BundleIntegrityError, match=message):
        open_fully(write_zip(tmp_path / "bad.zip", members))


def test_relations_metadata_that_disagrees_with_the_arrays_is_a_bundle_error(tmp_path):
    from insight_desktop.core.safetensors_io import metadata_of

    meta = json.loads(metadata_of(tiny_members()["relations.safetensors"])["insight_relations"])
    meta["top_n"] = meta["top_n"] + 1
    members = rehashed(tiny_members(), "relations.safetensors", relations_with_metadata(json.dumps(meta)))
    with pytest.raises(BundleIntegrityError, match="relations.safetensors"):
        open_fully(write_zip(tmp_path / "bad.zip", members))


def test_a_training_record_of_the_wrong_shape_is_ignored(tmp_path):
    from safetensors.torch import load, save

    from insight_desktop.core.safetensors_io import metadata_of

    sae = tiny_members()["sae.safetensors"]
    meta = {**metadata_of(sae), "insight_sae_training": json.dumps({"aux_steps": "many", "steps": 3})}
    members = rehashed(tiny_members(), "sae.safetensors", save(load(sae), metadata=meta))
    path = write_zip(tmp_path / "m.zip", members)
    assert ConceptModel.load(path).sae.training_info is None
    assert insight(["info", str(path)]) == 0


# -- names ----------------------------------------------------------------------------------------
def _names(change) -> bytes:
    data = json.loads(tiny_members()["names.json"])
    change(data)
    return json.dumps(data).encode()


def test_a_huge_name_is_shortened_with_a_notice(tmp_path):
    def huge(d):
        d["concepts"][3]["edited"] = "x" * (1 << 20)
        d["concepts"][7]["candidates"][0]["term"] = "y" * 300
    members = {**tiny_members(), "names.json": _names(huge)}
    model, catalog = open_fully(write_zip(tmp_path / "m.zip", members))
    assert len(catalog.name(3)) == bundle_schema.MAX_NAME_CHARS and catalog.name(3).endswith("…")
    assert len(catalog.names.candidates(7)[0].term) == bundle_schema.MAX_NAME_CHARS
    assert catalog.name(4) == "word4"
    assert catalog.notices == ("names.json: 2 concept name(s) longer than 200 characters were shortened "
                               "(concept 3, 7).",)


def test_names_over_the_size_limit_are_refused(tmp_path, monkeypatch):
    path = write_zip(tmp_path / "m.zip", tiny_members())
    monkeypatch.setattr(bundle_schema, "MAX_NAMES_BYTES", 100)
    with pytest.raises(BundleLimitError, match="names.json"):
        ConceptModel.load(path)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(concepts=None), "'concepts' must be a list, not null"),
    (lambda d: d["concepts"][2].update(auto=5), r"'concepts\[2\].auto' must be a string"),
    (lambda d: d["concepts"][2].update(index=1), "concept 1 is listed twice"),
    (lambda d: d["concepts"][2].update(index=2.0), "index' must be a whole number"),
    (lambda d: d["concepts"][2]["candidates"][0].update(score="high"), "score' must be a finite number"),
    (lambda d: d["concepts"][2].update(candidates=[{}] * 100), "more than the 64 allowed"),
    (lambda d: d.update(method=None), "'method' must be a string"),
    (lambda d: d.update(vocabularies={"a": 1}), "'vocabularies' must be a list"),
])
def test_malformed_names_are_named(tmp_path, change, message):
    members = {**tiny_members(), "names.json": _names(change)}
    with pytest.raises(BundleIntegrityError, match=message):
        open_fully(write_zip(tmp_path / "m.zip", members))


def test_names_of_the_wrong_count_are_incompatible(tmp_path):
    members = {**tiny_members(), "names.json": _names(lambda d: d["concepts"].pop())}
    with pytest.raises(BundleIncompatibleError, match="names 11 concepts, the SAE has 12"):
        open_fully(write_zip(tmp_path / "m.zip", members))


def test_odd_thumbnail_names_are_not_strips(tmp_path):
    members = {**tiny_members(), "thumbnails/abc.jpg": b"x", "thumbnails/.jpg": b"x", "thumbnails/٣.jpg": b"x"}
    _, catalog = open_fully(write_zip(tmp_path / "m.zip", members))
    assert sorted(catalog.thumbnails) == [0, 5]


# -- the command line ------------------------------------------------------------------------------
def test_insight_info_prints_the_message_not_a_traceback(tmp_path, capsys):
    path = write_zip(tmp_path / "bad.zip", with_manifest(tiny_members(), _set("sae.k", 1.5)(manifest())))
    assert insight(["info", str(path)]) == 1
    err = capsys.readouterr().err
    assert "'sae.k' must be a whole number, not 1.5" in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_every_failure_is_a_bundle_error_subclass():
    for cls in (BundleLimitError, BundleIntegrityError, BundleIncompatibleError):
        assert issubclass(cls, BundleError)


def test_a_users_edit_is_shortened_like_the_models_names(tmp_path):
    from insight_desktop.core.concepts.names import NameBook

    model = ConceptModel.load(write_zip(tmp_path / "m.zip", tiny_members()))
    book = NameBook(model.names, {2: "z" * 10_000})
    assert len(book.name(2)) == bundle_schema.MAX_NAME_CHARS and book.name(2).startswith("zzz")
