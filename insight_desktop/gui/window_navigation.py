"""Moving through the window's list of images: unreadable files are skipped, not stopped at.

A folder of photos often holds one file that cannot be read (truncated, a different format
with an image suffix).  It must not block the way through the folder: next and previous step
over it, the filmstrip marks it, and a status-bar notice names it — a modal error only when
nothing in the list can be shown at all.  Also the window title and the "n / N" position,
which follow the image shown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence

from ..core.errors import user_message
from ..core.images import ImageLoadError
from .dialogs import APP_NAME, show_error
from .widgets.filmstrip import images_in_folder

#: how long a notice about skipped files stays in the status bar
NOTICE_MS = 15_000


class NavigationWindow(Protocol):
    """What these functions use of :class:`~.main_window.MainWindow` (a protocol, not an import,
    because the window module imports this one)."""

    images: list[Path]
    index: int
    document: Any            # Document
    filmstrip: Any           # Filmstrip
    position: Any            # QLabel
    model_path: Path | None
    folder: Path | None

    def open_images(self, paths: Sequence[str | Path], index: int = 0, folder: Path | None = None) -> None: ...

    def try_show_image(self, index: int) -> ImageLoadError | None: ...

    def statusBar(self) -> Any: ...  # noqa: N802 — Qt's name

    def setWindowTitle(self, title: str) -> None: ...  # noqa: N802 — Qt's name


def show_readable(window: NavigationWindow, start: int, step: int,
                  skipped: list[ImageLoadError] | None = None) -> bool:
    """Show the first image from ``start`` on, going by ``step`` (+1 or −1), that can be read.

    Unreadable ones on the way are marked in the filmstrip and named in a status-bar notice.
    False, with the window unchanged, when none can be read in that direction. The errors of the
    files skipped are appended to ``skipped`` when given."""
    assert step in (-1, 1)
    skipped = [] if skipped is None else skipped
    index = start
    while 0 <= index < len(window.images):
        error = window.try_show_image(index)
        if error is None:
            break
        skipped.append(error)
        index += step
    else:
        index = -1
    if skipped:
        note_unreadable(window, skipped)
        if index < 0 and window.index >= 0:
            window.filmstrip.set_current(window.index)  # the strip follows what is really shown
    return index >= 0


def open_first_readable(window: NavigationWindow, index: int) -> bool:
    """After a new list: show ``index`` or the nearest readable image after it (before it when
    none after). A modal error only when no image of the list can be read."""
    errors: list[ImageLoadError] = []
    if show_readable(window, index, +1, errors) or show_readable(window, index - 1, -1, errors):
        return True
    names = ", ".join(p.name for p in window.images[:5]) + (" …" if len(window.images) > 5 else "")
    if len(window.images) == 1:
        message = user_message(errors[0]) if errors else f"'{window.images[0].name}' cannot be read."
    else:
        message = f"None of the {len(window.images)} images can be read ({names})."
    show_error(window, "Could not open the image", message)  # type: ignore[arg-type]
    return False


def on_filmstrip_activated(window: NavigationWindow, index: int) -> None:
    """Arrow keys in the strip step over unreadable files like PgUp/PgDown; a click on one says
    why it cannot be shown and keeps the current image."""
    step = index - window.index
    if abs(step) == 1:
        show_readable(window, index, step)
        return
    error = window.try_show_image(index)
    if error is not None:
        note_unreadable(window, [error])
        if window.index >= 0:
            window.filmstrip.set_current(window.index)


def show_in_current_folder(window: NavigationWindow, path: Path) -> bool:
    """Show ``path`` within the folder being browsed, if it lies in it (the list re-read when
    the file is new to it). False when it is not in that folder: the caller opens it alone."""
    folder = window.folder
    if folder is None or not path.is_file() or path.parent.resolve() != folder.resolve():
        return False
    names = [p.name for p in window.images]
    if path.name not in names:
        paths = images_in_folder(folder)
        if path.name not in [p.name for p in paths]:
            return False
        window.open_images(paths, [p.name for p in paths].index(path.name), folder)
        return True
    index = names.index(path.name)
    error = window.try_show_image(index)
    if error is not None:
        note_unreadable(window, [error])
    return True


def note_unreadable(window: NavigationWindow, errors: list[ImageLoadError]) -> None:
    for error in errors:
        if error.path in window.images:
            window.filmstrip.mark_broken(window.images.index(error.path), error.reason)
    if len(errors) == 1:
        text = f"Skipped {errors[0].path.name}: {user_message(errors[0])}"
    else:
        text = f"Skipped {len(errors)} unreadable files: " + ", ".join(e.path.name for e in errors)
    window.statusBar().showMessage(text, NOTICE_MS)


def update_title_and_position(window: NavigationWindow) -> None:
    """Title "<image> — <model> — Insight Desktop", and "n / N" in the status bar.

    The title ends with the application display name on purpose: Qt appends that name to any
    window title that does not already end with it (X11, Wayland), which doubled it before."""
    image = window.document.image_path
    parts = [Path(image).name if image else None, window.model_path.name if window.model_path else None, APP_NAME]
    window.setWindowTitle(" — ".join(p for p in parts if p))
    n = len(window.images)
    window.position.setText(f"{window.index + 1} / {n}" if n and window.index >= 0 else "")
    window.position.setVisible(n > 0 and window.index >= 0)
