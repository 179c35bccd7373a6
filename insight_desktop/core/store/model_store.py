"""The model store: reference weights and concept models, fetched or imported once, then offline.

Public API (the GUI's model dialogs and ``insight models`` use exactly this)::

    store = ModelStore(root=None, *, known_models=None, hub_cache_dir=None)
    store.root                                   user_data_dir()/"models" unless given
    store.known_models() -> tuple[KnownModel, ...]   the catalogue (:mod:`.known_models`)
    store.installed() -> list[InstalledModel]    the demo model first (removable=False), then the
                                                 index; missing files → broken=True, never raises for that
    store.concept_models() -> list[InstalledModel]   kind "bundle", not broken: what the app can open
    store.find(entry_id) -> InstalledModel | None
    store.get(entry_id, *, progress=None, should_stop=None) -> InstalledModel
    store.import_file(path, kind=None, *, title=None, entry_id=None, progress=None) -> InstalledModel
    store.import_release(sae_file, names_file, d_file=None, *, title=None, entry_id=None,
                         dinoiser="store:clip-dinoiser", tau=0.75, min_share=0.01) -> InstalledModel
    store.remove(entry_id) -> None
    store.resolve("store:<id>") -> Path
    store.verify(entry_id) -> InstalledModel
    store.find_openclip(model, pretrained) -> InstalledModel | None
    StoreError(RuntimeError); get() also raises download.DownloadError and its subclasses.

Layout: ``root/store.json`` (the index, see :mod:`.index`) and ``root/<kind>/<id>/<file>``;
imports are staged in ``root/.incoming`` (:mod:`.staging`: regular files only, size limits, and
leftovers of killed imports deleted when a store is opened).
An OpenCLIP checkpoint fetched by ``get`` stays in the Hugging Face cache (``hub_cache_dir``, default
huggingface_hub's), where ``open_clip`` — and so ``open_backbone(..., pretrained=<tag>)`` — finds
it offline; the index records its absolute path. Nothing is written into the install folder.

Integrity: a catalogue sha256 is checked on download; where the catalogue has none, the hash of
the first download is recorded (trust on first use) and checked by later ``get``/``verify``.
``get`` of an installed, verified item makes no network request at all. Bundles are checked by
loading them (their manifest holds the hashes of their parts).

Backbone specs refer to items as ``store:<id>`` (:func:`.open_backbone.open_backbone` resolves
them before the backbone is built), so a concept model stays portable between machines. The index
is written atomically; concurrent writers in *different* processes are not coordinated (the last
one wins).
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from pathlib import Path
from typing import Any

from .download import DownloadError, ProgressCallback, StopCallback
from .fetch import fetch_hub, fetch_url
from .files import delete_path, guess_kind, validate
from .index import InstalledModel, StoreError, file_sha256, now_iso, read_index, tree_size, write_index
from .known_models import KnownModel, KnownModelsError, load_known_models
from .staging import CopyProgress, clean_stale_staging, copy_in, file_sha256_capped, source_files, staging_area

STORE_PREFIX = "store:"
DEMO_ID = "demo"
#: ViT width of the catalogue's CLIP-DINOiser heads (ViT-B/16): an imported last.pt of this width
#: is taken to be that entry unless told otherwise
REFERENCE_DINOISER_WIDTH = 768
_LOCK = threading.Lock()

__all__ = ["DEMO_ID", "STORE_PREFIX", "InstalledModel", "ModelStore", "StoreError", "is_store_reference"]


def is_store_reference(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(STORE_PREFIX)


def _check_id(entry_id: str) -> None:
    """An id names a folder in the store: no path separators, no hidden names, not the demo's."""
    if entry_id == DEMO_ID:
        raise StoreError(f"the id {DEMO_ID!r} is reserved for the bundled demo model")
    if not entry_id or entry_id.startswith(".") or any(c in entry_id for c in "/\\: "):
        raise StoreError(f"{entry_id!r} cannot be a model id: use letters, digits, '-' and '_'")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "model"


class ModelStore:
    def __init__(self, root: str | os.PathLike | None = None, *, known_models: str | os.PathLike | None = None,
                 hub_cache_dir: str | os.PathLike | None = None):
        if root is None:
            from ..paths import user_data_dir

            root = user_data_dir() / "models"
        self.root = Path(root).expanduser().absolute()
        self.known_models_file = known_models  # None: INSIGHT_CATALOGUE or the bundled catalogue
        self.hub_cache_dir = hub_cache_dir
        clean_stale_staging(self.root)  # what imports killed mid-copy left in .incoming

    # -- listing -------------------------------------------------------------------------------
    def known_models(self) -> tuple[KnownModel, ...]:
        try:
            return load_known_models(self.known_models_file)
        except KnownModelsError as exc:
            raise StoreError(str(exc)) from None

    def _entry(self, entry_id: str) -> KnownModel | None:
        return next((e for e in self.known_models() if e.id == entry_id), None)

    def installed(self) -> list[InstalledModel]:
        items = [dataclasses.replace(i, broken=not i.path.exists()) for i in read_index(self.root)]
        demo = _demo_item()
        return ([demo] if demo else []) + items

    def concept_models(self) -> list[InstalledModel]:
        return [i for i in self.installed() if i.kind == "bundle" and not i.broken]

    def find(self, entry_id: str) -> InstalledModel | None:
        return next((i for i in self.installed() if i.id == entry_id), None)

    def find_openclip(self, model: str, pretrained: str) -> InstalledModel | None:
        """An installed OpenCLIP checkpoint of open_clip ``model`` with tag ``pretrained``."""
        return next((i for i in self.installed() if i.kind == "openclip" and not i.broken and i.model == model
                     and i.pretrained == pretrained), None)

    def resolve(self, reference: str) -> Path:
        """The installed file (or folder) that ``store:<id>`` refers to."""
        if not is_store_reference(reference):
            raise StoreError(f"{reference!r} is not a store reference (store:<id>)")
        entry_id = reference[len(STORE_PREFIX):]
        item = self.find(entry_id)
        if item is None:
            raise StoreError(f"model {entry_id!r} is not installed: run `insight models get {entry_id}` or import it")
        if item.broken:
            raise StoreError(f"the files of model {entry_id!r} are missing ({item.path}): run "
                             f"`insight models get {entry_id}` or import it again")
        return item.path

    # -- index ---------------------------------------------------------------------------------
    def _record(self, item: InstalledModel) -> InstalledModel:
        with _LOCK:
            items = [i for i in read_index(self.root) if i.id != item.id]
            write_index(self.root, [*items, item])
        return item

    def _forget(self, entry_id: str) -> None:
        with _LOCK:
            write_index(self.root, [i for i in read_index(self.root) if i.id != entry_id])

    # -- downloading ---------------------------------------------------------------------------
    def get(self, entry_id: str, *, progress: ProgressCallback | None = None,
            should_stop: StopCallback | None = None) -> InstalledModel:
        """Install catalogue entry ``entry_id`` (download once; afterwards no network at all)."""
        entry = self._entry(entry_id)
        if entry is None:
            known = ", ".join(e.id for e in self.known_models())
            raise StoreError(f"no model {entry_id!r} in the catalogue; known: {known}")
        if entry.import_only:
            raise DownloadError(f"{entry.title} cannot be downloaded by the app: {entry.notes}")
        existing = next((i for i in read_index(self.root) if i.id == entry_id), None)
        expected = entry.sha256 or (existing.sha256 if existing else None)
        if existing is not None and existing.path.is_file():
            actual = file_sha256(existing.path)
            if expected is None or actual == expected:
                return existing if existing.sha256 else self._record(dataclasses.replace(existing, sha256=actual))
        if entry.hf:
            path, sha, source = fetch_hub(entry, expected, self.hub_cache_dir, progress, should_stop)
        else:
            path, sha, source = fetch_url(entry, self.root / entry.kind / entry.id, expected, progress, should_stop)
        oc = entry.open_clip
        return self._record(InstalledModel(
            id=entry.id, kind=entry.kind, title=entry.title, path=path, size_bytes=tree_size(path), sha256=sha,
            licence=entry.licence, source=source, installed_at=now_iso(), model=oc[0] if oc else None,
            pretrained=oc[1] if oc else None))

    # -- importing -----------------------------------------------------------------------------
    def import_file(self, path: str | os.PathLike, kind: str | None = None, *, title: str | None = None,
                    entry_id: str | None = None, progress: CopyProgress | None = None) -> InstalledModel:
        """Validate ``path`` (weights file, bundle .zip or folder), copy it into the store, record it.

        ``kind`` is guessed when None. ``entry_id`` installs the file as that catalogue entry (or
        under that id); without it a matching catalogue entry is chosen by hash (or, for a ViT-B/16
        CLIP-DINOiser last.pt, the catalogue's CLIP-DINOiser), else an id from the file name.
        Only regular files are copied, within :mod:`.staging`'s size limits (a folder holding a link,
        device or pipe is refused before anything is read); ``path`` itself may be a link. A file
        that is already installed (same size and sha256) is recognised before it is copied, and
        that item is returned. ``progress(done, total)`` reports the bytes copied.
        """
        src = Path(path).expanduser().absolute()
        if not src.exists():
            raise StoreError(f"{src} does not exist")
        real = src.resolve()  # the path named may be a link (the Hugging Face cache is made of them)
        files = source_files(real)  # regular files only, within the limits: checked before reading anything
        if entry_id is not None:
            _check_id(entry_id)
        if real.is_file():
            same = self._installed_copy(real, files[0][1], kind, entry_id)
            if same is not None:
                return same  # the same file again: nothing to copy
        kind = kind or guess_kind(src)
        entry = self._entry(entry_id) if entry_id else None
        if entry is not None and entry.kind != kind:
            raise StoreError(f"{src.name} is a {kind} file, but {entry.id} is a {entry.kind}")
        oc = entry.open_clip if entry else None
        info = validate(src, kind, openclip_model=oc[0] if oc else None)
        with staging_area(self.root) as staging:
            staged, sha = copy_in(real, staging, name=src.name, progress=progress)
            if entry is not None and entry.sha256 and sha != entry.sha256:
                got = f"sha256 {sha[:12]}…" if sha else "a folder, not one file"  # copy_in hashes files only
                raise StoreError(f"{src.name} is not the file of {entry.id} ({got}, the catalogue "
                                 f"says {entry.sha256[:12]}…)")
            if entry is None and entry_id is None:
                entry = self._match_entry(kind, sha, info)
            new_id = entry.id if entry else (entry_id or self._free_id(f"{kind}-{src.stem}" if kind != "bundle"
                                                                      else src.stem))
            final = self._place(staged, kind, new_id)
        oc = entry.open_clip if entry else None
        return self._record(InstalledModel(
            id=new_id, kind=kind, title=title or (entry.title if entry else src.name), path=final,
            size_bytes=tree_size(final), sha256=sha, licence=entry.licence if entry else "unknown",
            source=f"imported from {src}", installed_at=now_iso(),
            model=oc[0] if oc else info.get("model"), pretrained=oc[1] if oc else None))

    def _installed_copy(self, real: Path, size: int, kind: str | None, entry_id: str | None) -> InstalledModel | None:
        """The installed item with the bytes of file ``real`` (``entry_id``'s only, when given), or None.

        Only items of the same size are candidates, so the file is hashed (one read, no copy) only
        when it may be a duplicate.
        """
        candidates = [i for i in self.installed() if not i.broken and i.sha256 and i.size_bytes == size
                      and (kind is None or i.kind == kind) and (entry_id is None or i.id == entry_id)]
        if not candidates:
            return None
        sha = file_sha256_capped(real)
        return next((i for i in candidates if i.sha256 == sha), None)

    def _match_entry(self, kind: str, sha: str | None, info: dict) -> KnownModel | None:
        same_kind = [e for e in self.known_models() if e.kind == kind]
        by_hash = next((e for e in same_kind if sha and e.sha256 == sha), None)
        if by_hash is not None:
            return by_hash
        if kind == "dinoiser" and info.get("width") == REFERENCE_DINOISER_WIDTH and len(same_kind) == 1:
            e = same_kind[0]
            held = self.find(e.id)
            if e.sha256 is None and (held is None or held.broken or held.sha256 == sha):
                return e
        return None

    def _free_id(self, wanted: str) -> str:
        base, taken = _slug(wanted), {i.id for i in self.installed()} | {e.id for e in self.known_models()}
        candidate, n = base, 2
        while candidate in taken or candidate == DEMO_ID:
            candidate, n = f"{base}-{n}", n + 1
        return candidate

    def _place(self, staged: Path, kind: str, entry_id: str) -> Path:
        """Move a staged copy to ``root/<kind>/<id>/<name>``, replacing what that id held."""
        folder = self.root / kind / entry_id
        delete_path(folder)
        folder.mkdir(parents=True)
        final = folder / staged.name
        os.replace(staged, final)
        return final

    def import_release(self, sae_file: str | Path, names_file: str | Path,
                       d_file: str | Path | None = None, *, title: str | None = None,
                       entry_id: str | None = None, dinoiser: str | None = "store:clip-dinoiser",
                       tau: float = 0.75, min_share: float = 0.01) -> InstalledModel:
        """The authors' release (SAE state dict, names, optional D matrix) as a bundle in the store.

        Its backbone spec is the reference one with ``dinoiser`` (a ``store:`` id by default) and
        the open_clip tag as ``pretrained`` — a tag resolves through the Hugging Face cache or, for an
        imported checkpoint, through the store, so the bundle works on any machine that has either.
        """
        from ..concepts.bundle import BundleError
        from ..import_cfm import CFMImportError, reference_backbone
        from ..import_cfm import import_release as build_release
        from ..sae import SAEError

        if entry_id is not None:
            _check_id(entry_id)
        for given in (sae_file, names_file, d_file):  # regular files within the limits (not a pipe, not /dev/zero)
            if given is not None and Path(given).exists():
                source_files(Path(given).expanduser().absolute().resolve())
        release = next((e for e in self.known_models() if e.kind == "sae-release"), None)
        new_id = entry_id or (release.id if release and self.find(release.id) is None
                              else self._free_id(release.id if release else "insight-release"))
        spec = reference_backbone(dinoiser)
        with staging_area(self.root) as staging:
            out = staging / new_id
            try:
                build_release(sae_file, names_file, out, relations_file=d_file, backbone=spec, tau=tau,
                              min_share=min_share, command="insight models import-release")
            except (CFMImportError, SAEError, BundleError, OSError) as exc:
                raise StoreError(f"cannot import the release: {exc}") from None
            validate(out, "bundle")
            final = self._place(out, "bundle", new_id)
        return self._record(InstalledModel(
            id=new_id, kind="bundle", title=title or (release.title if release else "Imported release"), path=final,
            size_bytes=tree_size(final), sha256=None, licence=release.licence if release else "unknown",
            source=f"imported from {Path(sae_file).absolute()}", installed_at=now_iso()))

    # -- removing and checking -----------------------------------------------------------------
    def remove(self, entry_id: str) -> None:
        item = self.find(entry_id)
        if item is None:
            raise StoreError(f"model {entry_id!r} is not installed")
        if not item.removable:
            raise StoreError(f"{item.title} ships with the app and cannot be removed")
        self._delete_files(item)
        self._forget(entry_id)

    def _delete_files(self, item: InstalledModel) -> None:
        folder = self.root / item.kind / item.id
        if item.path.parent == folder:
            delete_path(folder)
        elif item.path.is_relative_to(self.root):
            delete_path(item.path)
        elif item.path.is_symlink():  # the Hugging Face cache: a snapshot link and its blob
            blob = item.path.resolve()
            item.path.unlink(missing_ok=True)
            if blob.parent.name == "blobs":
                blob.unlink(missing_ok=True)
        else:
            item.path.unlink(missing_ok=True)

    def verify(self, entry_id: str) -> InstalledModel:
        """Check an installed item's files again: sha256 (recorded on first use if unknown), bundles by loading."""
        item = self.find(entry_id)
        if item is None:
            raise StoreError(f"model {entry_id!r} is not installed")
        if item.broken:
            raise StoreError(f"the files of model {entry_id!r} are missing ({item.path})")
        if item.kind == "bundle":
            validate(item.path, "bundle")
        if not item.path.is_file():
            return item
        actual = file_sha256(item.path)
        if item.sha256 is None and item.removable:
            return self._record(dataclasses.replace(item, sha256=actual))
        if item.sha256 is not None and actual != item.sha256:
            raise StoreError(f"{item.title} ({entry_id}) has changed or is damaged: sha256 {actual[:12]}…, recorded "
                             f"{item.sha256[:12]}…. Remove it and get or import it again")
        return item


def _demo_item() -> InstalledModel | None:
    from ..paths import demo_model_path

    path = demo_model_path()
    if path is None:
        return None
    return InstalledModel(id=DEMO_ID, kind="bundle", title="Demo concept model (EfficientNet-Lite0 + MiniLM, offline)",
                          path=path, size_bytes=path.stat().st_size, sha256=None, licence="Apache-2.0",
                          source="bundled with the app", installed_at="", removable=False)
