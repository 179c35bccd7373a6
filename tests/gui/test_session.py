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
from insight_desktop.gui.window_files import DEFAULT_SAMPLE


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


# ---------------------------------------------------------------------- untrusted session files
def _write(path, **fields):
    path.write_text(json.dumps({"format": "insight-desktop-session", "version": 1, **fields}))
    return path


def test_deeply_nested_json_is_a_session_error_not_a_recursion_error(tmp_path):
    path = tmp_path / "deep.insight-session"
    path.write_text('{"format": "insight-desktop-session", "version": 1, "view": ' + "[" * 100_000
                    + "]" * 100_000 + "}")
    with pytest.raises(SessionError, match="nested too deeply"):
        load_session(path)


@pytest.mark.parametrize("overlay, field", [
    ({"heatmap_opacity": "x"}, "overlay.heatmap_opacity"),
    ({"heatmap_opacity": 7}, "overlay.heatmap_opacity"),
    ({"threshold": float("nan")}, "overlay.threshold"),
    ({"mask_opacity": None}, "overlay.mask_opacity"),
    ({"show_heatmap": "yes"}, "overlay.show_heatmap"),
    ({"colormap": 3}, "overlay.colormap"),
    ({"hidden_labels": [1, "2"]}, "hidden labels"),
    ({"hidden_labels": [-1]}, "hidden labels"),
    ({"hidden_labels": {"a": 1}}, "overlay.hidden_labels"),
])
def test_overlay_fields_are_type_checked_before_they_reach_the_document(tmp_path, overlay, field):
    with pytest.raises(SessionError, match=field.replace(".", r"\.")):
        load_session(_write(tmp_path / "s.json", overlay=overlay))


def test_valid_overlay_values_and_an_unknown_colormap_still_load(tmp_path):
    s = load_session(_write(tmp_path / "s.json", overlay={"heatmap_opacity": 1, "threshold": 0.25, "colormap": "nope",
                                                          "hidden_labels": [4, 2], "from_a_newer_version": 1}))
    assert s.overlay == OverlaySettings(heatmap_opacity=1.0, threshold=0.25, hidden_labels=frozenset({2, 4}))
    assert isinstance(s.overlay.heatmap_opacity, float)


@pytest.mark.parametrize("fields, message", [
    ({"classes": ["x" * 5000]}, "class name is 5,000 characters long"),
    ({"classes": ["c"] * 20_001}, "'classes' has 20,001 entries"),
    ({"images": ["a" * 5000 + ".png"]}, "image path is 5,004 characters"),
    ({"images": ["a\0.png"]}, "without NUL"),
    ({"model_path": 3}, "'model_path' to be text"),
    ({"device": "cuda:" + "0" * 100}, "'device' is 105 characters"),
    ({"concept": 2**70}, "'concept' to be a whole number from -1"),
    ({"segment": -2}, "'segment'"),
    ({"concept": 1.5}, "'concept'"),
    ({"view": {"rect": [1, 2, {"deep": [1]}]}}, "'view.rect' to be numbers or text"),
    ({"view": {"rect": [0] * 17}}, "'view.rect' has 17 entries"),
    ({"view": {f"k{i}": 1 for i in range(33)}}, "'view' has 33 keys"),
    ({"view": {"zoom": float("inf")}}, "'view.zoom' to be finite"),
    ({"background": "x" * 10_000}, "a text of 10,000 characters"),
])
def test_fields_are_bounded_and_typed(tmp_path, fields, message):
    with pytest.raises(SessionError, match=message):
        load_session(_write(tmp_path / "s.json", **fields))


def test_huge_numbers_and_huge_files_are_session_errors(tmp_path, monkeypatch):
    import insight_desktop.gui.session as session_module

    path = tmp_path / "s.json"
    path.write_text('{"format": "insight-desktop-session", "version": 1, "index": ' + "9" * 10_000 + "}")
    with pytest.raises(SessionError, match="damaged"):
        load_session(path)
    monkeypatch.setattr(session_module, "MAX_SESSION_BYTES", 100)
    _write(path, classes=["a" * 200])
    with pytest.raises(SessionError, match="too large"):
        load_session(path)


def test_an_unknown_home_directory_is_a_plain_path(tmp_path):
    s = load_session(_write(tmp_path / "s.json", images=["~no-such-user-h15/a.png"]))
    assert s.missing == s.images and len(s.images) == 1


def test_fifty_thousand_missing_images_are_found_in_one_pass(tmp_path):
    present = [_png(tmp_path / f"p{i}.png") for i in range(3)]
    listed = [str(tmp_path / f"gone{i}.png") for i in range(50_000)]
    listed[10_000:10_000] = [str(present[0])]
    listed.append(str(present[1]))
    listed.insert(0, str(present[2]))
    s = load_session(_write(tmp_path / "s.json", images=listed, index=10_001))
    assert len(s.missing) == 50_000 and s.present == (present[2], present[0], present[1])
    assert s.current_image == present[0]


def test_a_window_opens_a_session_of_fifty_thousand_missing_images(qtbot, window, tmp_path):
    from PySide6.QtWidgets import QMessageBox

    from insight_desktop.core.paths import resource_path
    from insight_desktop.gui import window_files

    chelsea = resource_path("samples", "chelsea.png")
    listed = [str(tmp_path / f"gone{i}.png") for i in range(50_000)] + [str(chelsea)]
    window_files.open_session(window, _write(tmp_path / "many.insight-session", images=listed, index=50_000))
    assert window.images == [chelsea]
    qtbot.waitUntil(lambda: window.document.image_path == chelsea, timeout=30_000)
    boxes = [b for b in window.findChildren(QMessageBox) if b.isVisible()]
    assert len(boxes) == 1 and "50000 image(s) of the session no longer exist" in boxes[0].text()


@pytest.mark.parametrize("content", ["[" * 100_000, '{"format": "insight-desktop-session", "version": 1, '
                                     '"overlay": {"heatmap_opacity": "x"}, "images": ["a.png"]}'])
def test_a_broken_last_session_falls_back_to_the_samples_and_is_kept_aside(qtbot, tmp_path, content):
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QMessageBox

    from insight_desktop.core.paths import resource_path
    from insight_desktop.gui.main_window import MainWindow
    from insight_desktop.gui.settings import AppSettings

    last = tmp_path / "last.insight-session"
    last.write_text(content)
    for attempt in range(2):  # the next start is quiet: the broken file is no longer in the way
        w = MainWindow(AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)))
        qtbot.addWidget(w)
        w.status.set_device_choice("cpu")
        w.start()
        qtbot.waitUntil(lambda w=w: w.document.image_path == resource_path("samples", DEFAULT_SAMPLE),
                        timeout=30_000)
        assert not [b for b in w.findChildren(QMessageBox) if b.isVisible()]  # a notice, not a dialog
        notice = w.statusBar().currentMessage()
        if attempt == 0:
            assert "last session could not be restored" in notice and "last.insight-session.broken" in notice
        else:
            assert "could not be restored" not in notice
        assert not last.exists() and (tmp_path / "last.insight-session.broken").read_text() == content
        qtbot.waitUntil(lambda w=w: w.document.analysis is not None and not w.worker.is_busy, timeout=60_000)
        w.images = []  # closing must not save a new last session for the second start
        w.close()


@pytest.mark.parametrize("value", [10**400, -(10**400), float("inf"), float("-inf")])
def test_out_of_range_overlay_numbers_are_session_errors(tmp_path, value):
    path = tmp_path / "s.json"
    path.write_text('{"format": "insight-desktop-session", "version": 1, "overlay": {"threshold": '
                    + (json.dumps(value) if isinstance(value, float) else str(value)) + "}}")
    with pytest.raises(SessionError, match="overlay.threshold"):
        load_session(path)
