"""What the main window does with files: start-up, drops, models, sessions, exports, recent files.

Kept apart from :mod:`.main_window` so the window module stays about layout and wiring. Every
function takes the window; every failure shows a message and leaves the window as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence

from PySide6.QtWidgets import QFileDialog, QMenu

from ..core.errors import user_message
from ..core.images import IMAGE_SUFFIXES
from ..core.paths import resource_path, sample_images
from .dialogs import show_error
from .session import (
    SESSION_FILTER,
    SESSION_SUFFIX,
    Session,
    SessionError,
    apply_session_selections,
    apply_session_to_document,
    load_session,
    save_session,
    session_from_document,
)
from .window_navigation import NOTICE_MS

MODEL_FILTER = "Concept models (*.zip manifest.json);;All files (*)"
DEFAULT_SAMPLE = "rocket.jpg"  # its strongest concepts on the demo model: rocket, shipyard, missile


class FilesWindow(Protocol):
    """The main window as these functions see it: what they use of :class:`~.main_window.MainWindow`
    (a QWidget too, the parent of their dialogs). A protocol rather than an import, because the
    window module imports this one."""

    settings: Any            # AppSettings
    document: Any            # Document
    status: Any              # JobStatus
    canvas: Any              # ImageCanvas
    hover: Any               # QLabel
    images: list[Path]
    index: int
    folder: Path | None
    model_path: Path | None
    _pending_session: Session | None

    def load_model(self, path: str | Path) -> None: ...

    def statusBar(self) -> Any: ...

    def open_images(self, paths: Sequence[str | Path], index: int = 0, folder: Path | None = None) -> None: ...

    def open_folder(self, folder: str | Path) -> None: ...

    def open_recent(self) -> None: ...

    def clear_recent(self) -> None: ...


def default_model() -> Path | None:
    from ..core.paths import demo_model_path

    return demo_model_path()


def start(window: FilesWindow, images: Sequence[str | Path], model: str | Path | None,
          session: str | Path | None) -> None:
    if session is not None:
        open_session(window, session)
        return
    notice = ""
    if not images and model is None:
        try:
            if restore_last_session(window):
                return
        except SessionError as exc:  # carry on with the samples, say so without a dialog
            notice = str(exc)
    model = Path(model) if model else window.settings.last_model_path()
    if model is None or not model.exists():
        model = default_model()
    if model is None:
        show_error(window, "No concept model", "No concept model is installed. Open one with File → Open Model…")
    else:
        window.load_model(model)
    if images:
        open_paths(window, [Path(p) for p in images])
    else:
        samples = sample_images()
        first = next((i for i, p in enumerate(samples) if p.name == DEFAULT_SAMPLE), 0)
        window.open_images(samples, first, resource_path("samples"))
    if notice:
        window.statusBar().showMessage(notice, NOTICE_MS)


def is_model(path: Path) -> bool:
    return (path.is_file() and path.suffix.lower() == ".zip") or (path.is_dir() and (path / "manifest.json").is_file())


def open_paths(window: FilesWindow, paths: Sequence[Path]) -> None:
    """Open whatever was dropped or named: a model, a session, a folder, or image files."""
    images = []
    for path in paths:
        if is_model(path):
            window.load_model(path)
        elif path.name.endswith(SESSION_SUFFIX):
            open_session(window, path)
            return
        elif path.is_dir():
            window.open_folder(path)
            return
        elif path.suffix.lower() in IMAGE_SUFFIXES or path.is_file():
            images.append(path)
        else:
            show_error(window, "Nothing to open", f"'{path}' does not exist.")
    if images:
        window.open_images(images)


def ask_open_model(window: FilesWindow) -> None:
    path, _ = QFileDialog.getOpenFileName(window, "Open a concept model", str(window.model_path or ""), MODEL_FILTER)
    if path:
        p = Path(path)
        window.load_model(p.parent if p.name == "manifest.json" else p)


# ---------------------------------------------------------------------- sessions
def current_session(window: FilesWindow) -> Session:
    return session_from_document(window.document, window.images, max(window.index, 0), window.model_path,
                                 window.status.device_choice(), folder=window.folder)


def ask_save_session(window: FilesWindow) -> None:
    path, _ = QFileDialog.getSaveFileName(window, "Save session", "untitled" + SESSION_SUFFIX, SESSION_FILTER)
    if not path:
        return
    if not path.endswith(SESSION_SUFFIX):
        path += SESSION_SUFFIX
    try:
        save_session(path, current_session(window))
    except (SessionError, OSError) as exc:
        show_error(window, "Could not save the session", user_message(exc))
        return
    window.settings.add_recent_file(path)
    window.hover.setText(f"Session saved to {path}")


def ask_open_session(window: FilesWindow) -> None:
    path, _ = QFileDialog.getOpenFileName(window, "Open session", "", SESSION_FILTER)
    if path:
        open_session(window, path)


def open_session(window: FilesWindow, path: str | Path) -> None:
    try:
        session = load_session(path)
    except SessionError as exc:
        show_error(window, "Could not open the session", user_message(exc))
        return
    window.settings.add_recent_file(path)
    _apply_session(window, session)


def _apply_session(window: FilesWindow, session: Session, quiet: bool = False) -> None:
    window.status.set_device_choice(session.device)
    model = session.model_path
    if quiet and (model is None or not model.exists()):
        model = default_model()  # the last model is gone: carry on with the demo rather than fail
    if model is not None and model != window.model_path:
        window.load_model(model)
    apply_session_to_document(session, window.document)
    present = list(session.present)
    if session.missing and not quiet:
        show_error(window, "Some images are missing",
                   f"{len(session.missing)} image(s) of the session no longer exist:\n"
                   + "\n".join(str(p) for p in session.missing[:10]))
    window._pending_session = session  # selections need the analysis of the session's image
    current = session.current_image
    index = present.index(current) if current in present else 0
    window.open_images(present, index, session.folder)


def finish_session(window: FilesWindow, session: Session) -> None:
    apply_session_selections(session, window.document)


# ---------------------------------------------------------------------- the last session
def last_session_path(window: FilesWindow) -> Path:
    """Next to the settings file, so that what was open comes back with the window's settings."""
    return Path(window.settings.qsettings.fileName()).parent / f"last{SESSION_SUFFIX}"


def save_last_session(window: FilesWindow) -> None:
    """On closing: remember the images, model, classes, selections and view (best effort)."""
    if not window.images:
        return
    try:
        save_session(last_session_path(window), current_session(window))
    except (SessionError, OSError, ValueError):
        pass  # a read-only or full disk must not stop the window from closing


def restore_last_session(window: FilesWindow) -> bool:
    """On starting without arguments: reopen what was open last time, if its images still exist.

    A last session that cannot be read is moved aside to ``last.insight-session.broken`` (kept,
    for a bug report, and replaced by the next broken one) and SessionError says so: the caller
    then opens the samples, so a bad file costs one notice, not a blank window on every start."""
    path = last_session_path(window)
    if not path.is_file():
        return False
    try:
        session = load_session(path)
    except SessionError as exc:
        aside = path.with_name(path.name + ".broken")
        try:
            path.replace(aside)
            kept = f"; it was kept as '{aside}'"
        except OSError:
            kept = ""
        raise SessionError(f"The last session could not be restored ({exc}){kept}. "
                           "The sample images are open instead.") from exc
    if not session.present:
        return False
    _apply_session(window, session, quiet=True)
    return True


# ---------------------------------------------------------------------- exports
def _save_path(window: FilesWindow, title: str, suggested: str, filters: str) -> str:
    stem = window.document.image_path.stem if window.document.image_path else "insight"
    path, _ = QFileDialog.getSaveFileName(window, title, f"{stem}-{suggested}", filters)
    return path


def ask_export_view(window: FilesWindow) -> None:
    if window.document.image is None:
        show_error(window, "Nothing to export", "Open an image first.")
        return
    path = _save_path(window, "Export view", "view.png", "PNG images (*.png)")
    if path:
        _export(window, lambda: window.canvas.export_image(path), path)


def ask_export_mask(window: FilesWindow) -> None:
    a = window.document.analysis
    if a is None or a.segmentation is None:
        show_error(window, "Nothing to export", "There is no segmentation yet: press Segment (Ctrl+Return).")
        return
    path = _save_path(window, "Export label mask", "labels.png", "PNG images (*.png)")
    if path:
        from ..core.report import save_label_mask

        _export(window, lambda: save_label_mask(path, a.segmentation), path)


def ask_export_contributions(window: FilesWindow) -> None:
    a = window.document.analysis
    if a is None:
        show_error(window, "Nothing to export", "There is no analysis yet.")
        return
    path = _save_path(window, "Export contributions", "contributions.csv", "CSV (*.csv);;JSON (*.json)")
    if path:
        from ..core.report import provenance, save_contributions

        doc = window.document
        source = provenance(a, image=doc.image_path, model=doc.catalog.path if doc.catalog else None,
                            backbone=doc.catalog.backbone_id if doc.catalog else None)
        # names as shown now (the user's renames included), not as when the image was analysed
        _export(window, lambda: save_contributions(path, a, doc.concept_name, source), path)


def _export(window: FilesWindow, write, path: str) -> None:
    try:
        write()
    except (OSError, ValueError) as exc:  # a full disk or an unwritable folder: say so, lose nothing
        show_error(window, "Could not export", f"Writing '{path}' failed: {exc}")
        return
    window.hover.setText(f"Saved {path}")


# ---------------------------------------------------------------------- recent files
def fill_recent_menu(window: FilesWindow, menu: QMenu) -> None:
    menu.clear()
    recent = window.settings.recent_files()
    for path in recent:
        action = menu.addAction(path.name + ("/" if path.is_dir() else ""))  # open_paths opens a folder as one
        action.setToolTip(str(path))
        action.setData(str(path))
        action.triggered.connect(window.open_recent)
    if not recent:
        menu.addAction("No recent files").setEnabled(False)
    else:
        menu.addSeparator()
        menu.addAction("Clear Recent Files").triggered.connect(window.clear_recent)
