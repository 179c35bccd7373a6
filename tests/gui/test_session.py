"""Sessions: round trips, relative paths, versions, damaged files, atomic saves, the document."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from insight_desktop.gui.document import Document, OverlaySettings
from insight_desktop.gui.session import (
    SESSION_VERSION,
    Session,
    SessionError,
    apply_session_to_document,
    load_session,
    save_session,
    session_from_document,
)


def _png(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)
    return path


@pytest.fixture
def full_session(tmp_path):
    images = (_png(tmp_path / "imgs" / "a.png"), _png(tmp_path / "imgs" / "b.png"))
    return Session(images=images, index=1, model_path=tmp_path / "models" / "m.zip", device="cuda",
                   classes=("cat", "coffee cup"), background=True, concept=7, segment=2,
                   overlay=OverlaySettings(show_heatmap=False, show_segmentation=True, show_residual=True,
                                           show_opaque=True, colormap="viridis", heatmap_opacity=0.25,
                                           threshold=0.4, mask_opacity=0.8, hidden_labels=frozenset({0, 3})),
                   view={"zoom": 2.5, "center": [10, 20]}, folder=tmp_path / "imgs")


def test_round_trip_preserves_every_field(tmp_path, full_session):
    path = tmp_path / "s.insight-session"
    save_session(path, full_session)
    loaded = load_session(path)
    assert loaded == full_session
    assert loaded.overlay.hidden_labels == frozenset({0, 3})
    assert loaded.view == {"zoom": 2.5, "center": [10, 20]}
    assert loaded.missing == ()
    assert loaded.current_image == tmp_path / "imgs" / "b.png"


def test_paths_inside_the_session_folder_are_stored_relative(tmp_path, full_session):
    outside = _png(tmp_path / "elsewhere" / "c.png")
    session_dir = tmp_path / "project"
    inside = _png(session_dir / "pics" / "a.png")
    session = Session(images=(inside, outside), model_path=session_dir / "m.zip", folder=session_dir / "pics")
    save_session(session_dir / "s.json", session)

    raw = json.loads((session_dir / "s.json").read_text())
    assert raw["images"] == ["pics/a.png", str(outside)]
    assert raw["model_path"] == "m.zip" and raw["folder"] == "pics"

    # The whole folder moves: relative paths follow it, the absolute one stays.
    moved = tmp_path / "moved"
    os.rename(session_dir, moved)
    loaded = load_session(moved / "s.json")
    assert loaded.images == (moved / "pics" / "a.png", outside)
    assert loaded.model_path == moved / "m.zip" and loaded.folder == moved / "pics"
    assert loaded.missing == ()


def test_missing_images_are_reported_not_fatal(tmp_path):
    a = _png(tmp_path / "a.png")
    save_session(tmp_path / "s.json", Session(images=(a, tmp_path / "gone.png"), index=1))
    loaded = load_session(tmp_path / "s.json")
    assert loaded.images == (a, tmp_path / "gone.png")
    assert loaded.missing == (tmp_path / "gone.png",)
    assert loaded.index == 1


def test_newer_version_is_refused_with_a_readable_message(tmp_path, full_session):
    path = tmp_path / "s.json"
    save_session(path, full_session)
    data = json.loads(path.read_text())
    data["version"] = SESSION_VERSION + 1
    path.write_text(json.dumps(data))
    with pytest.raises(SessionError, match=r"newer Insight Desktop.*Update"):
        load_session(path)


@pytest.mark.parametrize("text, message", [
    ('{"format": "insight-desktop-session", "version": 1, "images": [', "damaged"),
    ('{"format": "something-else", "version": 1}', "not an Insight Desktop session"),
    ('[1, 2, 3]', "not an Insight Desktop session"),
    ('{"format": "insight-desktop-session", "version": 1, "images": "a.png"}', "'images' to be a list"),
    ('{"format": "insight-desktop-session", "version": 1, "device": "tpu"}', "unknown device"),
    ('{"format": "insight-desktop-session", "version": 1, "index": true}', "'index'"),
])
def test_bad_files_raise_session_error(tmp_path, text, message):
    path = tmp_path / "s.json"
    path.write_text(text)
    with pytest.raises(SessionError, match=message):
        load_session(path)


def test_missing_file_raises_session_error(tmp_path):
    with pytest.raises(SessionError, match="not found"):
        load_session(tmp_path / "nope.json")


def test_failed_write_leaves_the_old_session_intact(tmp_path, full_session, monkeypatch):
    path = tmp_path / "s.json"
    save_session(path, full_session)
    before = path.read_bytes()

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(SessionError, match="No space left"):
        save_session(path, Session(classes=("dog",)))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["s.json"]  # no temporary left behind
    monkeypatch.undo()
    assert load_session(path) == full_session


def test_document_round_trip(tmp_path, full_session):
    """A session taken from one document and applied to a fresh one gives the same settings."""
    source = Document()
    apply_session_to_document(full_session, source)
    assert source.classes == ("cat", "coffee cup") and source.background is True
    assert source.overlay == full_session.overlay
    assert source.segment == 2
    assert source.concept == -1  # no model loaded: the concept cannot be selected yet

    session = session_from_document(source, full_session.images, 1, full_session.model_path, "cpu",
                                    folder=full_session.folder)
    assert session.classes == full_session.classes and session.overlay == full_session.overlay
    assert session.device == "cpu" and session.segment == 2 and session.images == full_session.images

    target = Document()
    changed = []  # the document's signals are synchronous: emitted before apply_session_to_document returns
    target.classesChanged.connect(lambda: changed.append("classes"))
    target.overlayChanged.connect(lambda: changed.append("overlay"))
    apply_session_to_document(session, target)
    assert sorted(changed) == ["classes", "overlay"]
    assert (target.classes, target.background, target.overlay) == (source.classes, True, source.overlay)


def test_concept_is_selected_when_the_model_is_loaded(document):
    apply_session_to_document(Session(classes=("sky",), concept=5), document)
    assert document.concept == 5 and document.classes == ("sky",)
    assert session_from_document(document, [], 0, None).concept == 5


def test_the_view_travels_through_the_document(full_session):
    """The image view keeps its visible area in the document; a session saves it and asks for it back."""
    source = Document()
    source.view = {"rect": [10.0, 20.0, 30.0, 40.0]}
    session = session_from_document(source, full_session.images, 1, None)
    assert Session.from_dict(session.to_dict()).view == {"rect": [10.0, 20.0, 30.0, 40.0]}
    target = Document()
    apply_session_to_document(session, target)
    assert target.view_to_restore == (full_session.images[1], {"rect": [10.0, 20.0, 30.0, 40.0]})
    apply_session_to_document(Session(images=full_session.images), target)
    assert target.view_to_restore is None  # a session without a view leaves the fit
