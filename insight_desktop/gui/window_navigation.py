"""Moving through the window's list of images: unreadable files are skipped, not stopped at.

A folder of photos often holds one file that cannot be read (truncated, a different format
with an image suffix).  It must not block the way through the folder: next and previous step
over it, the filmstrip marks it, and a status-bar notice names it — a modal error only when
nothing in the list can be shown at all. The decoding happens off the GUI thread
(:mod:`.window_images`); what to do with its result is decided here, in :func:`finish_load`.
Also the window title and the "n / N" position, which follow the image shown.
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
    loader: Any              # window_images.ImageLoader
    settings: Any            # AppSettings

    def request_analysis(self) -> None: ...

    def open_images(self, paths: Sequence[str | Path], index: int = 0, folder: Path | None = None) -> None: ...

    def statusBar(self) -> Any: ...  # noqa: N802 — Qt's name

    def setWindowTitle(self, title: str) -> None: ...  # noqa: N802 — Qt's name


# Images are decoded off the GUI thread (window_images): each function below starts a load that
# tries images in some order; finish_load says what happened once the first readable one is found.
def show_readable(window: NavigationWindow, start: int, step: int) -> None:
    """Show the first image from ``start`` on, going by ``step`` (+1 or −1), that can be read.

    Unreadable ones on the way are marked in the filmstrip and named in a status-bar notice; the
    window stays as it is when none can be read in that direction."""
    assert step in (-1, 1)
    order = range(start, len(window.images)) if step > 0 else range(start, -1, -1)
    window.loader.load(window.images, list(order), "step")


def open_first_readable(window: NavigationWindow, index: int) -> None:
    """After a new list: show ``index`` or the nearest readable image after it (before it when
    none after). A modal error only when no image of the list can be read."""
    order = [*range(index, len(window.images)), *range(index - 1, -1, -1)]
    window.loader.load(window.images, order, "first")


def on_filmstrip_activated(window: NavigationWindow, index: int) -> None:
    """Arrow keys in the strip step over unreadable files like PgUp/PgDown; a click on one says
    why it cannot be shown and keeps the current image."""
    step = index - window.index
    if abs(step) == 1:
        show_readable(window, index, step)
        return
    window.loader.load(window.images, [index], "pick")


def finish_load(window: NavigationWindow, loaded: Any) -> None:
    """A load came back (``window_images.Loaded``): show its image, name the files it skipped."""
    errors = list(loaded.errors)
    if errors:
        note_unreadable(window, errors)
    if loaded.index >= 0:
        show_loaded(window, loaded)
        return
    if window.index >= 0:
        window.filmstrip.set_current(window.index)  # the strip follows what is really shown
    if loaded.purpose == "first":
        names = ", ".join(p.name for p in window.images[:5]) + (" …" if len(window.images) > 5 else "")
        if len(window.images) == 1:
            message = user_message(errors[0]) if errors else f"'{window.images[0].name}' cannot be read."
        else:
            message = f"None of the {len(window.images)} images can be read ({names})."
        show_error(window, "Could not open the image", message)  # type: ignore[arg-type]


def show_loaded(window: NavigationWindow, loaded: Any) -> None:
    """Put a decoded image on screen: the document, the strip, the recent files; then analyse it."""
    window.index = loaded.index
    window.filmstrip.set_current(loaded.index)
    window.settings.add_recent_file(window.folder or loaded.path)  # a folder is one entry, not one per image
    window.document.set_image(loaded.path, loaded.rgb, loaded.preview)  # the canvas fits it (or a session's view)
    window.request_analysis()
    update_title_and_position(window)


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
    window.loader.load(window.images, [names.index(path.name)], "pick")
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
