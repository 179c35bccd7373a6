"""The model store: import, get (local HTTP server / local HF cache), resolve, verify, remove."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from insight_desktop.core.backbones.tiny import save_upstream_last_pt
from insight_desktop.core.paths import demo_model_path
from insight_desktop.core.store import DEMO_ID, ModelStore, StoreError
from insight_desktop.core.store.download import ChecksumMismatch, DownloadError, NetworkUnavailable
from insight_desktop.core.store.known_models import KnownModel, KnownModelsError, known_model, load_known_models
from tests.core.http_fixture import file_server, hub_online  # noqa: F401 — fixtures
from tests.core.test_dinoiser_checkpoint import upstream_heads
from tests.core.test_download import place_in_hub_cache


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("INSIGHT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("INSIGHT_CATALOGUE", raising=False)
    return ModelStore()


def write_catalogue(path, entries):
    path.write_text(json.dumps(entries))
    return path


def test_bundled_catalogue_is_valid():
    entries = {e.id: e for e in load_known_models()}
    oc = entries["openclip-vit-b-16-laion2b"]
    assert oc.open_clip == ("ViT-B-16", "laion2b_s34b_b88k")
    assert oc.hf == ("laion/CLIP-ViT-B-16-laion2B-s34B-b88K",
                     ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"])
    assert entries["clip-dinoiser"].url.endswith("/checkpoints/last.pt") and entries["clip-dinoiser"].kind == "dinoiser"
    assert entries["insight-sae-vit-b16"].import_only
    assert KnownModel.from_dict(oc.to_dict()) == oc
    with pytest.raises(KnownModelsError, match="no model 'nope'.*openclip-vit-b-16-laion2b"):
        known_model("nope")


def test_bad_catalogue_entries_are_named(tmp_path):
    bad = write_catalogue(tmp_path / "c.json", [{"id": "x", "kind": "weird", "title": "X", "source": {"import": True}}])
    with pytest.raises(KnownModelsError, match="entry 'x': kind 'weird'"):
        load_known_models(bad)
    bad = write_catalogue(tmp_path / "c.json", [{"id": "y", "kind": "dinoiser", "source": {"url": "ftp://a"}}])
    with pytest.raises(KnownModelsError, match="source.url"):
        load_known_models(bad)


def test_opened_empty_store_lists_the_demo_and_writes_nothing(store):
    items = store.installed()
    if demo_model_path() is not None:
        assert items[0].id == DEMO_ID and not items[0].removable and items[0].kind == "bundle"
        assert [m.id for m in store.concept_models()] == [DEMO_ID]
        with pytest.raises(StoreError, match="cannot be removed"):
            store.remove(DEMO_ID)
    assert not store.root.exists()


def test_import_weights_then_resolve_verify_remove(store, tiny_model_files):
    dino = store.import_file(tiny_model_files.dinoiser_path)
    assert dino.kind == "dinoiser" and dino.id == "dinoiser-last"  # width 64: not the catalogue's ViT-B/16 heads
    assert dino.path == store.root / "dinoiser" / dino.id / "last.pt"
    assert dino.path.read_bytes() == tiny_model_files.dinoiser_path.read_bytes()
    assert store.import_file(tiny_model_files.dinoiser_path) == dino  # the same file again: no copy
    ckpt = store.import_file(tiny_model_files.checkpoint_path, title="tiny")
    assert ckpt.kind == "openclip" and ckpt.title == "tiny" and ckpt.pretrained is None
    index = json.loads((store.root / "store.json").read_text())
    assert [i["path"] for i in index["items"]] == [f"dinoiser/{dino.id}/last.pt",
                                                   f"openclip/{ckpt.id}/{tiny_model_files.checkpoint_path.name}"]
    assert store.resolve(f"store:{dino.id}") == dino.path
    assert store.verify(dino.id) == dino
    with open(dino.path, "r+b") as fh:  # damage it
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(StoreError, match="changed or is damaged"):
        store.verify(dino.id)
    store.remove(dino.id)
    assert not (store.root / "dinoiser" / dino.id).exists() and store.find(dino.id) is None
    with pytest.raises(StoreError, match=r"not installed: run `insight models get dinoiser-last` or import it"):
        store.resolve(f"store:{dino.id}")


def test_missing_files_are_flagged_broken(store, tiny_model_files):
    dino = store.import_file(tiny_model_files.dinoiser_path)
    shutil.rmtree(dino.path.parent)
    (item,) = [i for i in store.installed() if i.id == dino.id]
    assert item.broken
    with pytest.raises(StoreError, match="files of model 'dinoiser-last' are missing"):
        store.resolve(item.reference)


def test_invalid_files_are_refused_and_nothing_is_copied(store, tmp_path, tiny_model_files):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(1000))
    with pytest.raises(StoreError, match="junk.pt is not a readable checkpoint"):
        store.import_file(junk)
    torch.save({"model": {"something.weight": torch.zeros(2)}}, tmp_path / "other.pt")
    with pytest.raises(StoreError, match="neither CLIP-DINOiser weights"):
        store.import_file(tmp_path / "other.pt")
    with pytest.raises(StoreError, match="CLIP-DINOiser weights are a torch file"):
        store.import_file(tiny_model_files.checkpoint_path, "dinoiser")
    with pytest.raises(StoreError, match="is a openclip file, but clip-dinoiser is a dinoiser"):
        store.import_file(tiny_model_files.checkpoint_path, entry_id="clip-dinoiser")
    with pytest.raises(StoreError, match="does not fit open_clip model ViT-B-16"):
        store.import_file(tiny_model_files.checkpoint_path, entry_id="openclip-vit-b-16-laion2b")
    (tmp_path / "lfs.pt").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n")
    with pytest.raises(StoreError, match="Git LFS pointer"):
        store.import_file(tmp_path / "lfs.pt")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(StoreError, match="cannot tell what notes.txt is"):
        store.import_file(tmp_path / "notes.txt")
    assert [i for i in store.installed() if i.removable] == []
    assert not any(p.is_file() for p in store.root.rglob("*")) if store.root.exists() else True


def test_store_references_build_the_same_backbone(store, tiny_model_files):
    from insight_desktop.core.backbones import BackboneError, create_backbone
    from insight_desktop.core.store.open_backbone import open_backbone

    dino = store.import_file(tiny_model_files.dinoiser_path)
    ckpt = store.import_file(tiny_model_files.checkpoint_path)
    common = dict(device="cpu", model=str(tiny_model_files.config_path))
    by_path = create_backbone("clip-dinoiser", pretrained=str(tiny_model_files.checkpoint_path),
                              dinoiser=str(tiny_model_files.dinoiser_path), **common)
    by_ref = open_backbone("clip-dinoiser", pretrained=ckpt.reference, dinoiser=dino.reference, **common)
    assert by_ref.id == by_path.id
    # the spec keeps the references as written (portable), not this machine's paths
    assert by_ref.spec.options["dinoiser"] == dino.reference and by_ref.spec.options["pretrained"] == ckpt.reference
    assert open_backbone(by_ref.spec, device="cpu").id == by_ref.id
    x = torch.rand(1, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(by_ref.dense_features(x), by_path.dense_features(x))
    with pytest.raises(BackboneError, match="'nothing' is not installed"):
        open_backbone("clip-dinoiser", pretrained=ckpt.reference, dinoiser="store:nothing", **common)
    # backbones never look into the store: an unresolved reference says where it is resolved
    unresolved = "dinoiser='store:clip-dinoiser' names a file in the model store.*open_backbone"
    with pytest.raises(BackboneError, match=unresolved):
        create_backbone("clip-dinoiser", pretrained=str(tiny_model_files.checkpoint_path),
                        dinoiser="store:clip-dinoiser", **common)


def test_openclip_tag_falls_back_to_the_store(store, tmp_path):
    from insight_desktop.core.backbones import BackboneError, BackboneSpec
    from insight_desktop.core.backbones.openclip_loading import resolve_pretrained
    from insight_desktop.core.store.index import InstalledModel, now_iso, write_index
    from insight_desktop.core.store.open_backbone import open_backbone, resolved_options

    empty_cache = str(tmp_path / "hf-empty")
    spec = BackboneSpec("clip-dinoiser",
                        {"model": "ViT-B-16", "pretrained": "laion2b_s34b_b88k", "cache_dir": empty_cache})
    with pytest.raises(BackboneError, match="not available offline.*insight models get openclip-vit-b-16-laion2b"):
        open_backbone(spec, device="cpu")
    assert "pretrained_fallback" not in resolved_options(spec)
    weights = store.root / "openclip" / "x" / "open_clip_model.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"not really")
    write_index(store.root, [InstalledModel("x", "openclip", "X", weights, 10, None, "MIT", "test", now_iso(),
                                            model="ViT-B-16", pretrained="laion2b_s34b_b88k")])
    fallback = resolved_options(spec)["pretrained_fallback"]
    assert fallback == str(weights)
    resolved = resolve_pretrained("ViT-B-16", "laion2b_s34b_b88k", empty_cache, fallback_file=fallback)
    assert resolved.path == weights and resolved.label == "laion2b_s34b_b88k"


def test_get_downloads_once_and_trusts_on_first_use(store, tmp_path, file_server, tiny_model_files, monkeypatch):
    url = file_server.put("checkpoints/last.pt", tiny_model_files.dinoiser_path.read_bytes())
    monkeypatch.setenv("INSIGHT_CATALOGUE", str(write_catalogue(tmp_path / "c.json", [
        {"id": "heads", "kind": "dinoiser", "title": "Heads", "source": {"url": url}, "size_bytes": None,
         "licence": "test", "sha256": None},
        {"id": "release", "kind": "sae-release", "title": "Release", "source": {"import": True},
         "notes": "download it from the authors"}])))
    events = []
    item = store.get("heads", progress=events.append)
    assert item.path == store.root / "dinoiser" / "heads" / "last.pt" and item.source == url
    assert item.sha256 == store.verify("heads").sha256 and len(item.sha256) == 64
    assert events[-1].done == item.size_bytes
    assert store.get("heads") == item and len(file_server.log) == 1  # installed: no request at all
    with pytest.raises(DownloadError, match="cannot be downloaded by the app: download it from the authors"):
        store.get("release")
    with pytest.raises(StoreError, match="no model 'nope' in the catalogue"):
        store.get("nope")


def test_get_refuses_a_download_that_is_not_a_valid_file(store, tmp_path, file_server, monkeypatch):
    url = file_server.put("last.pt", b"this is not a checkpoint")
    monkeypatch.setenv("INSIGHT_CATALOGUE", str(write_catalogue(tmp_path / "c.json", [
        {"id": "heads", "kind": "dinoiser", "title": "Heads", "source": {"url": url}}])))
    with pytest.raises(StoreError, match="not usable, so it was deleted"):
        store.get("heads")
    assert not (store.root / "dinoiser" / "heads" / "last.pt").exists() and store.find("heads") is None


def test_get_from_hub_uses_the_cache_without_network(store, tmp_path, tiny_model_files, monkeypatch):
    import socket

    cache = tmp_path / "hf"
    data = tiny_model_files.checkpoint_path.read_bytes()
    snap = place_in_hub_cache(cache, "org/tiny", "open_clip_model.safetensors", data)
    monkeypatch.setenv("INSIGHT_CATALOGUE", str(write_catalogue(tmp_path / "c.json", [
        {"id": "tiny", "kind": "openclip", "title": "Tiny", "licence": "MIT",
         "source": {"hf": {"repo": "org/tiny", "file": "open_clip_model.safetensors"},
                    "open_clip": {"model": "insight-tiny-vit", "pretrained": "tag"}}},
        {"id": "absent", "kind": "openclip", "title": "Absent",
         "source": {"hf": {"repo": "org/absent", "file": "open_clip_model.safetensors"}}}])))

    def no_network(*args, **kwargs):
        raise AssertionError("network touched")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    store = ModelStore(hub_cache_dir=cache)
    item = store.get("tiny")
    assert item.path == snap and (item.model, item.pretrained) == ("insight-tiny-vit", "tag")
    assert store.find_openclip("insight-tiny-vit", "tag") == item
    with pytest.raises(NetworkUnavailable, match="HF_HUB_OFFLINE"):
        store.get("absent")
    store.remove("tiny")
    assert not snap.exists() and store.find("tiny") is None


def test_import_release_makes_a_portable_bundle(store, tmp_path):
    from insight_desktop.core.concepts.bundle import ConceptModel

    m, d = 16, 8
    g = torch.Generator().manual_seed(0)
    W_dec = torch.nn.functional.normalize(torch.randn(m, d, generator=g), dim=1)
    torch.save({"W_enc": W_dec.t().clone(), "b_enc": torch.zeros(m), "W_dec": W_dec, "b_dec": torch.zeros(d),
                "k": torch.tensor(3), "threshold": torch.tensor(0.2), "group_sizes": torch.tensor([4, 12])},
               tmp_path / "ae.pt")
    (tmp_path / "names.txt").write_text("\n".join(f"c{i}" for i in range(m)))
    dense = np.eye(m, dtype=np.float32) * 10
    np.save(tmp_path / "D.npy", dense)
    item = store.import_release(tmp_path / "ae.pt", tmp_path / "names.txt", tmp_path / "D.npy")
    assert item.id == "insight-sae-vit-b16" and item.kind == "bundle"
    assert item in store.concept_models()
    spec = ConceptModel.load(item.path).manifest.backbone["spec"]
    assert spec["options"] == {"model": "ViT-B-16", "pretrained": "laion2b_s34b_b88k",
                               "dinoiser": "store:clip-dinoiser"}
    again = store.import_release(tmp_path / "ae.pt", tmp_path / "names.txt")
    assert again.id == "insight-sae-vit-b16-2"
    (tmp_path / "short.txt").write_text("a\nb")
    with pytest.raises(StoreError, match="has 2 names"):
        store.import_release(tmp_path / "ae.pt", tmp_path / "short.txt")
    bundle_copy = store.import_file(item.path)  # a bundle folder imports as a bundle
    assert bundle_copy.kind == "bundle" and bundle_copy.id != item.id
    assert not any((store.root / ".incoming").iterdir())


def test_get_from_hub_falls_back_to_the_bin_file(tmp_path, hub_online, tiny_model_files, monkeypatch):
    """Like open_clip: try open_clip_model.safetensors, then open_clip_pytorch_model.bin."""
    import io

    from safetensors.torch import load_file

    buf = io.BytesIO()
    torch.save(load_file(tiny_model_files.checkpoint_path), buf)
    hub_online.put("org/tiny/open_clip_pytorch_model.bin", buf.getvalue())
    monkeypatch.setenv("INSIGHT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INSIGHT_CATALOGUE", str(write_catalogue(tmp_path / "c.json", [
        {"id": "tiny", "kind": "openclip", "title": "Tiny", "licence": "MIT",
         "source": {"hf": {"repo": "org/tiny", "file": "open_clip_model.safetensors",
                           "fallback_files": ["open_clip_pytorch_model.bin"]},
                    "open_clip": {"model": "insight-tiny-vit", "pretrained": "tag"}}}])))
    store = ModelStore(hub_cache_dir=tmp_path / "hf")
    events = []
    item = store.get("tiny", progress=events.append)
    assert item.path.name == "open_clip_pytorch_model.bin" and item.path.read_bytes() == buf.getvalue()
    assert item.path.is_relative_to(tmp_path / "hf") and events[-1].done == len(buf.getvalue())
    assert item.source == f"http://127.0.0.1:{hub_online.port}/org/tiny/blob/main/open_clip_pytorch_model.bin"
    n = len(hub_online.log)
    assert store.get("tiny") == item and len(hub_online.log) == n  # installed: no request


def test_a_vit_b16_last_pt_is_taken_as_the_catalogue_entry(store, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    save_upstream_last_pt(tmp_path / "a" / "last.pt", upstream_heads(768, seed=0))
    save_upstream_last_pt(tmp_path / "b" / "last.pt", upstream_heads(768, seed=1))
    item = store.import_file(tmp_path / "a" / "last.pt")
    assert item.id == "clip-dinoiser" and item.licence == "see the repository"
    assert store.resolve("store:clip-dinoiser") == store.root / "dinoiser" / "clip-dinoiser" / "last.pt"
    other = store.import_file(tmp_path / "b" / "last.pt")  # another one does not replace it
    assert other.id == "dinoiser-last" and store.find("clip-dinoiser") == item
    with pytest.raises(StoreError, match="cannot be a model id"):
        store.import_file(tmp_path / "b" / "last.pt", entry_id="../evil")


def test_a_hub_entry_pinned_to_a_commit_takes_that_commit_only(tmp_path, tiny_model_files, monkeypatch):
    monkeypatch.setenv("INSIGHT_DATA_DIR", str(tmp_path / "data"))
    cache = tmp_path / "hf"
    pinned, other = "1" * 40, "2" * 40
    place_in_hub_cache(cache, "org/tiny", "open_clip_model.safetensors", tiny_model_files.checkpoint_path.read_bytes(),
                       commit=other)  # the branch moved on to another commit
    source = {"hf": {"repo": "org/tiny", "file": "open_clip_model.safetensors", "revision": pinned},
              "open_clip": {"model": "insight-tiny-vit", "pretrained": "tag"}}
    monkeypatch.setenv("INSIGHT_CATALOGUE", str(write_catalogue(tmp_path / "c.json", [
        {"id": "tiny", "kind": "openclip", "title": "Tiny", "source": source, "unpinned": "test: no sha256"}])))
    with pytest.raises(NetworkUnavailable, match="not in the Hugging Face cache"):
        ModelStore(hub_cache_dir=cache).get("tiny")  # main's file is not the pinned commit's
    source["hf"]["revision"] = other
    monkeypatch.setenv("INSIGHT_CATALOGUE", str(write_catalogue(tmp_path / "c.json", [
        {"id": "tiny", "kind": "openclip", "title": "Tiny", "source": source, "unpinned": "test: no sha256"}])))
    item = ModelStore(hub_cache_dir=cache).get("tiny")
    assert f"/org/tiny/blob/{other}/open_clip_model.safetensors" in item.source


def test_a_git_blob_pin_accepts_only_the_file_at_that_commit(store, tmp_path, file_server, tiny_model_files,
                                                             monkeypatch):
    """``git_blob`` pins a file served from a git commit: git's object id (``git hash-object``) of the bytes."""
    import subprocess

    data = tiny_model_files.dinoiser_path.read_bytes()
    (tmp_path / "blob").write_bytes(data)
    blob = subprocess.run(["git", "hash-object", str(tmp_path / "blob")], capture_output=True, text=True,
                          check=True).stdout.strip()
    url = file_server.put("last.pt", data)
    monkeypatch.setenv("INSIGHT_CATALOGUE", str(write_catalogue(tmp_path / "c.json", [
        {"id": "heads", "kind": "dinoiser", "title": "Heads", "source": {"url": url}, "git_blob": blob}])))
    assert store.get("heads").sha256 == store.verify("heads").sha256
    store.remove("heads")
    file_server.put("last.pt", data[:-1] + bytes([data[-1] ^ 1]))  # one bit differs
    with pytest.raises(ChecksumMismatch, match=f"not the one at that commit .*expected {blob[:12]}"):
        store.get("heads")
    assert not (store.root / "dinoiser" / "heads" / "last.pt").exists() and store.find("heads") is None
