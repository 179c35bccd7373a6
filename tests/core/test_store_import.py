"""Imports copy regular files only, within size limits; killed imports leave nothing behind after the
next start; a file that is already installed is recognised by its hash before anything is copied."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from insight_desktop.core.store import ModelStore, StoreError, model_store, staging

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("INSIGHT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("INSIGHT_CATALOGUE", raising=False)
    return ModelStore()


def fake_bundle_folder(path: Path) -> Path:
    """A folder that looks like a bundle (it has a manifest): the member checks run before validation."""
    (path / "parts").mkdir(parents=True)
    (path / "manifest.json").write_text("{}")
    (path / "parts" / "sae.safetensors").write_bytes(b"x" * 100)
    return path


def everything_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


def assert_nothing_copied(store: ModelStore) -> None:
    assert [p for p in everything_under(store.root) if not p.startswith(".incoming")] == []
    assert everything_under(store.root / ".incoming") == []  # staging cleaned up


# ------------------------------------------------------------------------------ regular files only
def test_a_symlink_to_dev_zero_in_a_folder_bundle_is_refused_at_once(store, tmp_path):
    bundle = fake_bundle_folder(tmp_path / "evil")
    os.symlink("/dev/zero", bundle / "parts" / "names.json")
    with pytest.raises(StoreError, match=r"evil: member parts/names\.json is a symbolic link \(to /dev/zero\)"):
        store.import_file(bundle, "bundle")
    assert_nothing_copied(store)


def test_a_symlinked_private_file_is_never_copied_into_the_store(store, tmp_path):
    secret = tmp_path / "private" / "id_rsa"
    secret.parent.mkdir()
    secret.write_bytes(b"PRIVATE KEY 0123456789")
    bundle = fake_bundle_folder(tmp_path / "evil")
    os.symlink(secret, bundle / "thumbnails.bin")
    with pytest.raises(StoreError, match=r"member thumbnails\.bin is a symbolic link"):
        store.import_file(bundle, "bundle")
    assert_nothing_copied(store)
    assert not any(b"PRIVATE KEY" in p.read_bytes() for p in store.root.rglob("*") if p.is_file())


def test_a_symlinked_folder_inside_a_bundle_is_refused(store, tmp_path):
    bundle = fake_bundle_folder(tmp_path / "evil")
    os.symlink(tmp_path, bundle / "parts" / "up")
    with pytest.raises(StoreError, match=r"member parts/up is a symbolic link"):
        store.import_file(bundle, "bundle")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_pipe_in_a_bundle_is_refused_without_blocking(store, tmp_path):
    bundle = fake_bundle_folder(tmp_path / "evil")
    os.mkfifo(bundle / "parts" / "codes.bin")
    with pytest.raises(StoreError, match=r"member parts/codes\.bin is not a regular file"):
        store.import_file(bundle, "bundle")
    with pytest.raises(StoreError, match="neither a regular file nor a folder"):
        store.import_file(bundle / "parts" / "codes.bin", "dinoiser")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_release_files_must_be_regular_files(store, tmp_path):
    os.mkfifo(tmp_path / "names.txt")
    (tmp_path / "ae.pt").write_bytes(b"x")
    with pytest.raises(StoreError, match=r"names\.txt is neither a regular file nor a folder"):
        store.import_release(tmp_path / "ae.pt", tmp_path / "names.txt")
    with pytest.raises(StoreError, match="zero is neither a regular file"):
        store.import_release("/dev/zero", tmp_path / "ae.pt")


def test_the_path_named_may_be_a_link_and_keeps_its_name(store, tmp_path, tiny_model_files):
    link = tmp_path / "snapshot" / "heads.pt"  # like a Hugging Face cache snapshot: a link to a blob
    link.parent.mkdir()
    os.symlink(tiny_model_files.dinoiser_path, link)
    item = store.import_file(link)
    assert item.path.name == "heads.pt" and not item.path.is_symlink()
    assert item.path.read_bytes() == tiny_model_files.dinoiser_path.read_bytes()


def test_copying_a_folder_keeps_every_regular_file(tmp_path):
    bundle = fake_bundle_folder(tmp_path / "b")
    (bundle / "parts" / "deep").mkdir()
    (bundle / "parts" / "deep" / "x.bin").write_bytes(b"y" * 5000)
    (tmp_path / "staged").mkdir()
    target, sha = staging.copy_in(bundle, tmp_path / "staged")
    assert sha is None and everything_under(target) == everything_under(bundle)
    assert (target / "parts" / "deep" / "x.bin").read_bytes() == b"y" * 5000


# ------------------------------------------------------------------------------------- size limits
def test_size_limits_per_file_and_in_all(store, tmp_path, monkeypatch):
    bundle = fake_bundle_folder(tmp_path / "big")
    (bundle / "parts" / "codes.bin").write_bytes(b"z" * 3000)
    monkeypatch.setattr(staging, "MAX_IMPORT_FILE_BYTES", 2000)
    with pytest.raises(StoreError, match=r"big: member parts/codes\.bin is .* more than the .* a model file may have"):
        store.import_file(bundle, "bundle")
    with pytest.raises(StoreError, match=r"codes\.bin is .* more than"):
        store.import_file(bundle / "parts" / "codes.bin", "dinoiser")
    monkeypatch.setattr(staging, "MAX_IMPORT_FILE_BYTES", 10_000)
    monkeypatch.setattr(staging, "MAX_IMPORT_TOTAL_BYTES", 3050)
    with pytest.raises(StoreError, match=r"the import would be more than .* in all"):
        store.import_file(bundle, "bundle")
    assert_nothing_copied(store)


def test_the_limit_holds_while_copying_a_file_that_grows(tmp_path, monkeypatch):
    src = tmp_path / "w.pt"
    src.write_bytes(b"a" * 10_000)
    monkeypatch.setattr(staging, "COPY_CHUNK", 1000)
    monkeypatch.setattr(staging, "MAX_IMPORT_FILE_BYTES", 12_000)
    files = staging.source_files(src)  # sizes checked now…
    assert files == [(Path(), 10_000)]
    src.write_bytes(b"a" * 50_000)  # …then the file grows before it is copied
    monkeypatch.setattr(staging, "source_files", lambda p: files)
    (tmp_path / "staged").mkdir()
    with pytest.raises(StoreError, match=r"w\.pt grew past .* while it was being read"):
        staging.copy_in(src, tmp_path / "staged")


# ----------------------------------------------------------------------------- duplicates by hash
def test_an_installed_file_is_recognised_before_copying(store, tmp_path, tiny_model_files, monkeypatch):
    first = store.import_file(tiny_model_files.dinoiser_path)
    again = tmp_path / "elsewhere" / "renamed.pt"  # the same bytes under another name
    again.parent.mkdir()
    again.write_bytes(tiny_model_files.dinoiser_path.read_bytes())

    def must_not_run(*args, **kwargs):
        raise AssertionError("a duplicate was copied or validated again")

    monkeypatch.setattr(model_store, "copy_in", must_not_run)
    monkeypatch.setattr(model_store, "validate", must_not_run)
    monkeypatch.setattr(model_store, "staging_area", must_not_run)
    assert store.import_file(tiny_model_files.dinoiser_path) == first
    assert store.import_file(again) == first
    assert store.import_file(again, entry_id=first.id) == first
    assert [i.id for i in store.installed() if i.removable] == [first.id]


def test_an_explicit_new_id_makes_a_second_copy_and_reports_progress(store, tmp_path, tiny_model_files):
    first = store.import_file(tiny_model_files.dinoiser_path)
    copied = []
    other = store.import_file(tiny_model_files.dinoiser_path, entry_id="heads-copy",
                              progress=lambda done, total: copied.append((done, total)))
    assert other.id == "heads-copy" and other.sha256 == first.sha256  # another id: a second copy on purpose
    assert copied[-1] == (first.size_bytes, first.size_bytes)


# ---------------------------------------------------------------------------------- killed imports
KILLED_IMPORT = textwrap.dedent("""
    import sys, time
    from insight_desktop.core.store import ModelStore, model_store

    model_store.validate = lambda *args, **kwargs: {}  # no torch: this process only has to copy

    def pause(done, total):
        print("copying", done, total, flush=True)
        time.sleep(600)  # killed here, mid-copy

    ModelStore(sys.argv[1]).import_file(sys.argv[2], "dinoiser", progress=pause)
""")


def start_import(root: Path, src: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", KILLED_IMPORT, str(root), str(src)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("copying"), line
    return proc


def staged(root: Path) -> list[str]:
    return sorted(p.name for p in (root / ".incoming").iterdir())


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")
def test_a_killed_import_is_cleaned_up_when_the_store_is_next_opened(tmp_path):
    root = tmp_path / "models"
    src = tmp_path / "w.pt"
    src.write_bytes(os.urandom(3 * staging.COPY_CHUNK))
    killed = start_import(root, src)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    killed.stdout.close()
    leftovers = staged(root)
    assert len(leftovers) == 2 and leftovers[1] == leftovers[0] + ".lock"  # tmpX and tmpX.lock
    assert (root / ".incoming" / leftovers[0] / "w.pt").exists()  # the partial copy
    running = start_import(root, src)  # another import, alive and mid-copy: must not be touched
    try:
        alive = [n for n in staged(root) if n not in leftovers]
        assert len(alive) == 2
        ModelStore(root)  # opening the store cleans up
        assert staged(root) == alive
    finally:
        running.kill()
        running.wait()
        running.stdout.close()
    ModelStore(root)
    assert staged(root) == [] and ModelStore(root).find("dinoiser-w") is None


def test_leftovers_of_an_app_without_locks_are_cleaned_up(tmp_path, monkeypatch):
    root = tmp_path / "models"
    old = root / ".incoming" / "tmpa1b2c3"
    old.mkdir(parents=True)
    (old / "last.pt").write_bytes(b"partial")
    monkeypatch.setattr(staging, "_STARTED", old.stat().st_mtime - 1)  # made after this process started
    ModelStore(root)
    assert old.exists()  # perhaps an import that is just starting: kept
    monkeypatch.setattr(staging, "_STARTED", old.stat().st_mtime + 1)
    ModelStore(root)
    assert not old.exists()
