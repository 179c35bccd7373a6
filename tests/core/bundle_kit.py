"""A tiny valid concept-model bundle as bytes, and tools to damage it (for the untrusted-bundle tests)."""

from __future__ import annotations

import functools
import hashlib
import json
import struct
import zipfile
from pathlib import Path

import numpy as np

M, D = 12, 6
#: the id of ``tests.core.fakes.TextColourBackbone(d=D)``, so the tiny model can analyse images
BACKBONE_ID = f"test-text-colour/d{D}/p16/s0"


@functools.lru_cache(maxsize=1)
def tiny_members() -> dict[str, bytes]:
    """The members of a valid 12-concept bundle (thumbnails for concepts 0 and 5), built once."""
    import tempfile

    import torch

    from insight_desktop.core.concepts.bundle import write_bundle
    from insight_desktop.core.concepts.codes import SparseCodes
    from insight_desktop.core.concepts.compute import compute_relations_from_codes
    from insight_desktop.core.concepts.naming import ConceptNames, NameCandidate
    from insight_desktop.core.sae import MatryoshkaSAE, SAEConfig

    torch.manual_seed(0)
    sae = MatryoshkaSAE(SAEConfig(d_in=D, n_concepts=M, k=2, group_sizes=(4, 8)))
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
        sae.threshold.fill_(0.25)
    rng = np.random.default_rng(0)
    z = rng.random((200, M)) * (rng.random((200, M)) < 0.3)
    relations = compute_relations_from_codes([(SparseCodes.from_dense(z), np.arange(200))], M, (4, 12))
    names = ConceptNames(names=tuple(f"word{i}" for i in range(M)),
                         candidates=tuple((NameCandidate(f"word{i}", "noun", "english", 0.5),) for i in range(M)),
                         method="hierarchy")
    backbone = {"id": BACKBONE_ID, "spec": {"name": "test-text-colour", "options": {"d": D}}, "feature_dim": D}
    with tempfile.TemporaryDirectory() as tmp:
        out = write_bundle(Path(tmp) / "m", backbone=backbone, sae=sae, relations=relations, names=names,
                           provenance={"images": 3, "tokens": 200}, thumbnails={0: b"\xff\xd8jpeg0", 5: b"\xff\xd8j5"})
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def manifest() -> dict:
    return json.loads(tiny_members()["manifest.json"])


def with_manifest(members: dict[str, bytes], data) -> dict[str, bytes]:
    """``members`` with ``data`` (any JSON value, or raw bytes) as the manifest."""
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return {**members, "manifest.json": raw}


def rehashed(members: dict[str, bytes], part: str, data: bytes) -> dict[str, bytes]:
    """``members`` with ``part`` replaced by ``data`` and the manifest's hash of it updated."""
    man = json.loads(members["manifest.json"])
    man["files"][part] = hashlib.sha256(data).hexdigest()
    return {**members, part: data, "manifest.json": json.dumps(man).encode()}


def relations_with_metadata(meta_json: str) -> bytes:
    """The tiny bundle's relations part with its JSON metadata replaced by ``meta_json``."""
    from safetensors.numpy import load, save

    return save(load(tiny_members()["relations.safetensors"]), metadata={"insight_relations": meta_json})


def write_zip(path: Path, members: dict[str, bytes], compress: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def write_folder(path: Path, members: dict[str, bytes]) -> Path:
    for name, data in members.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


def patch_zip_member(data: bytes, name: str, *, flags: int | None = None, method: int | None = None,
                     size: int | None = None) -> bytes:
    """A zip's bytes with member ``name``'s flag bits, compression method or uncompressed size
    overwritten in both its local and its central-directory header."""
    out = bytearray(data)
    raw = name.encode()
    with zipfile.ZipFile(__import__("io").BytesIO(data)) as zf:
        local = zf.getinfo(name).header_offset
    pos = out.find(b"PK\x01\x02")
    while pos >= 0:
        n = struct.unpack_from("<H", out, pos + 28)[0]
        if bytes(out[pos + 46:pos + 46 + n]) == raw:
            break
        pos = out.find(b"PK\x01\x02", pos + 4)
    assert pos >= 0, name
    for base, (f_at, m_at, s_at) in ((local, (6, 8, 22)), (pos, (8, 10, 24))):
        if flags is not None:
            struct.pack_into("<H", out, base + f_at, flags)
        if method is not None:
            struct.pack_into("<H", out, base + m_at, method)
        if size is not None:
            struct.pack_into("<I", out, base + s_at, size)
    return bytes(out)
