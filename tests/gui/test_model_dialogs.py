"""The first-run dialog and the model manager, driven by clicks, on a store in a temporary folder."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QMessageBox

from insight_desktop.core.fileio import format_size
from insight_desktop.core.paths import demo_model_path
from insight_desktop.core.store import ModelStore
from insight_desktop.gui.first_run import FirstRunDialog
from insight_desktop.gui.model_manager import ModelManagerDialog
from insight_desktop.gui.settings import AppSettings
from tests.core.http_fixture import file_server  # noqa: F401 — a fixture


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("INSIGHT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("INSIGHT_CATALOGUE", raising=False)
    return ModelStore()


@pytest.fixture
def manager(qtbot, store):
    dialog = ModelManagerDialog(store)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def wait_idle(qtbot, manager):
    qtbot.waitUntil(lambda: manager.job is None, timeout=60_000)


def select(table, text):
    for r in range(table.rowCount()):
        if table.item(r, 0).text().startswith(text) or table.item(r, 0).data(Qt.ItemDataRole.UserRole) == text:
            table.selectRow(r)
            return r
    raise AssertionError(f"{text!r} is not listed")


def test_first_run_choosing_the_demo_model_opens_it(qtbot, tmp_path, store, monkeypatch):
    from insight_desktop.gui.main_window import MainWindow

    window = MainWindow(AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)))
    qtbot.addWidget(window)
    requested = []
    monkeypatch.setattr(window.worker, "load_model", lambda path, device: requested.append(path))
    window.show_first_run()
    dialog = window.findChild(FirstRunDialog)
    assert dialog.isVisible() and window.settings.first_run_done()
    qtbot.mouseClick(dialog.demo, Qt.MouseButton.LeftButton)
    assert requested == [demo_model_path()] and window.model_path == demo_model_path()
    assert not dialog.isVisible()


def test_first_run_reference_choice_opens_the_model_manager(qtbot, store):
    dialog = FirstRunDialog(store)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.mouseClick(dialog.reference, Qt.MouseButton.LeftButton)
    assert isinstance(dialog.manager, ModelManagerDialog) and dialog.manager.isVisible()
    dialog.manager.close()


def test_the_manager_lists_the_demo_model_and_the_catalogue(manager):
    assert manager.installed_ids() == ["demo"]
    known = {manager.available.item(r, 0).data(Qt.ItemDataRole.UserRole): manager.available.item(r, 4).text()
             for r in range(manager.available.rowCount())}
    assert known["openclip-vit-b-16-laion2b"] == "not installed" and known["insight-sae-vit-b16"] == "import only"
    select(manager.installed, "demo")
    assert manager.open_button.isEnabled() and not manager.remove_button.isEnabled()  # bundled: cannot be removed
    select(manager.available, "insight-sae-vit-b16")
    assert not manager.download_button.isEnabled()  # import only


def test_importing_a_tiny_checkpoint_lists_it_and_remove_takes_it_away(qtbot, manager, store, tiny_model_files,
                                                                        monkeypatch):
    manager.import_path(tiny_model_files.dinoiser_path)
    assert manager.job is not None and manager.progress.isVisible() and manager.cancel_button.isVisible()
    wait_idle(qtbot, manager)
    assert not manager.progress.isVisible()
    ids = manager.installed_ids()
    assert len(ids) == 2 and store.find(ids[1]).kind == "dinoiser"
    assert "installed" in manager.status.text()
    select(manager.installed, ids[1])
    assert manager.remove_button.isEnabled()
    monkeypatch.setattr(QMessageBox, "exec", lambda self: QMessageBox.StandardButton.Yes)
    qtbot.mouseClick(manager.remove_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, manager)
    assert manager.installed_ids() == ["demo"] and store.find(ids[1]) is None


def test_a_bad_file_is_refused_with_a_message(qtbot, manager, tmp_path):
    bad = tmp_path / "weights.safetensors"
    bad.write_bytes(b"not a checkpoint")
    manager.import_path(bad)
    wait_idle(qtbot, manager)
    assert manager.installed_ids() == ["demo"] and "Could not" in manager.status.text()


def test_download_with_progress_then_open_a_bundle(qtbot, manager, store, tmp_path, file_server, tiny_model_files,
                                                   tiny_bundle, monkeypatch):
    url = file_server.put("checkpoints/last.pt", tiny_model_files.dinoiser_path.read_bytes())
    catalogue = tmp_path / "c.json"
    catalogue.write_text(json.dumps([{"id": "heads", "kind": "dinoiser", "title": "Heads", "source": {"url": url},
                                      "size_bytes": None, "licence": "test", "sha256": None}]))
    monkeypatch.setenv("INSIGHT_CATALOGUE", str(catalogue))
    manager.refresh()
    shown = []  # what the progress line said while downloading
    real = manager._on_progress
    monkeypatch.setattr(manager, "_on_progress", lambda *args: (real(*args), shown.append(manager.status.text())))
    select(manager.available, "heads")
    qtbot.mouseClick(manager.download_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, manager)
    size = format_size(tiny_model_files.dinoiser_path.stat().st_size)
    assert shown and shown[-1].startswith(f"Downloading heads: {size} of {size} at ")
    assert manager.progress.value() == manager.progress.maximum() == 1000
    assert "heads" in manager.installed_ids() and manager.available.item(0, 4).text() == "installed"
    assert len(file_server.log) == 1

    store.import_file(tiny_bundle)
    manager.refresh()
    bundle = next(i for i in store.installed() if i.kind == "bundle" and i.id != "demo")
    select(manager.installed, bundle.id)
    with qtbot.waitSignal(manager.modelChosen) as chosen:
        qtbot.mouseClick(manager.open_button, Qt.MouseButton.LeftButton)
    assert chosen.args == [str(bundle.path)]


def test_the_welcome_dialog_closes_without_choosing_and_says_the_demo_is_loading(qtbot, store):
    dialog = FirstRunDialog(store)
    qtbot.addWidget(dialog)
    chosen = []
    dialog.modelChosen.connect(chosen.append)
    dialog.show()
    assert "instantly" not in dialog.demo.description() and "loading" in dialog.demo.description().lower()
    close = dialog.close_buttons.button(dialog.close_buttons.StandardButton.Close)
    qtbot.mouseClick(close, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible() and chosen == []


def test_the_models_dialog_has_a_close_button(qtbot, manager):
    close = manager.close_buttons.button(manager.close_buttons.StandardButton.Close)
    assert close is not None and close.isVisible()
    qtbot.mouseClick(close, Qt.MouseButton.LeftButton)
    assert not manager.isVisible()


def test_model_titles_and_messages_are_shown_as_plain_text(qtbot, manager):
    """A model title (from a catalogue or a bundle someone sent) is never rendered as markup."""
    manager._on_failed("<img src='/tmp/x.png'><b>t</b>", "broke <i>here</i>", "")
    assert "&lt;img src='/tmp/x.png'&gt;&lt;b&gt;t&lt;/b&gt;" in manager.status.text()
    assert "broke &lt;i&gt;here&lt;/i&gt;" in manager.status.text()
    manager._on_done(type("Item", (), {"title": "<b>x</b>"})())
    assert manager.status.text() == "Done: &lt;b&gt;x&lt;/b&gt; is installed."
