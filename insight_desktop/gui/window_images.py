"""Showing an image of the window's list: decoded off the GUI thread, the newest request wins.

Decoding an 8000 × 6000 JPEG takes ~0.7 s and its screen copy
(:func:`~insight_desktop.gui.layers.photo_preview`) ~0.3 s more, far too long for the GUI
thread. A *load* tries images of the list in a given order (for Next: 5, 6, 7, …) on a
one-thread :class:`~.jobs.JobPool` and comes back with the first readable one and the errors of
those it stepped over; :mod:`.window_navigation` decides the order and what to say about the
skipped files. A new load makes the one before it stale (the pool's generations): its result is
dropped, so the image shown is always the one asked for last. Until it arrives the window keeps
showing the image it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot

from ..core.errors import StoppedByUser
from ..core.images import ImageLoadError, load_image
from . import window_navigation
from .jobs import JobPool, Outcome
from .layers import photo_preview


@dataclass(frozen=True, eq=False)
class Loaded:
    """What a load found: image ``index`` of the list (−1: none of those tried could be read)."""

    index: int
    path: Path | None
    rgb: np.ndarray | None
    preview: np.ndarray | None
    errors: tuple[ImageLoadError, ...]
    purpose: str       # what the caller asked for it ("step", "first", "pick"): window_navigation's word


def load_first_readable(paths: Sequence[Path], order: Sequence[int], purpose: str,
                        should_stop: Callable[[], bool] = lambda: False) -> Loaded:
    """Decode ``paths[i]`` for i in ``order`` until one can be read (with its screen copy)."""
    errors: list[ImageLoadError] = []
    for i in order:
        if should_stop():
            raise StoppedByUser("a newer image was asked for")
        try:
            rgb = load_image(paths[i])
        except ImageLoadError as exc:
            errors.append(exc)
            continue
        rgb.flags.writeable = False
        return Loaded(i, Path(paths[i]), rgb, photo_preview(rgb), tuple(errors), purpose)
    return Loaded(-1, None, None, None, tuple(errors), purpose)


class ImageLoader(QObject):
    """Runs loads one at a time; ``loaded(Loaded)`` for the newest only, on the GUI thread;
    ``failed(title, message)`` when a load broke for another reason than an unreadable file."""

    loaded = Signal(object)
    failed = Signal(str, str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._pool = JobPool(1, self)
        self._pool.done.connect(self._on_done)
        self._pending: tuple[int, ...] | None = None  # the order of the load still to come back

    def load(self, paths: Sequence[Path], order: Sequence[int], purpose: str) -> None:
        paths, order = list(paths), tuple(int(i) for i in order)
        self._pool.new_generation()
        self._pending = order
        self._pool.submit(order, lambda _progress, should_stop: load_first_readable(paths, order, purpose,
                                                                                     should_stop),
                          "open the image")

    def is_loading(self) -> bool:
        return self._pending is not None

    def target(self) -> int | None:
        """The first image the pending load tries (where Next counts from while it is on its way)."""
        return self._pending[0] if self._pending else None

    def cancel(self) -> None:
        self._pool.new_generation()
        self._pending = None

    def wait(self, ms: int = -1) -> bool:
        """Block until the decoding asked for is done (tests, benchmarks); its result still queues."""
        return self._pool.wait(ms)

    def shutdown(self) -> None:
        self._pending = None
        self._pool.shutdown()

    @Slot(object, object)
    def _on_done(self, _order: Any, outcome: Outcome) -> None:
        self._pending = None
        if outcome.failure is not None:
            self.failed.emit(outcome.failure.title, outcome.failure.message)
        elif outcome.succeeded:
            self.loaded.emit(outcome.value)


class ImagesWindow(Protocol):
    """What these functions use of :class:`~.main_window.MainWindow`."""

    images: list[Path]
    index: int
    folder: Path | None
    document: Any            # Document
    filmstrip: Any           # Filmstrip
    settings: Any            # AppSettings
    docks: dict[str, Any]
    loader: ImageLoader

    def request_analysis(self) -> None: ...


def open_images(window: ImagesWindow, paths: Sequence[str | Path], index: int = 0,
                folder: Path | None = None) -> None:
    """A new list of images (a folder, a selection, a session's): show ``index``, or the nearest readable one."""
    if folder is None and len(paths) == 1 and window_navigation.show_in_current_folder(window, Path(paths[0])):
        return  # one image of the folder being browsed: keep the folder listed
    window.images = [Path(p) for p in paths]
    window.folder = folder
    window.filmstrip.set_images(window.images, max(0, index))
    window.docks["images"].setVisible(len(window.images) > 1)
    window.index = -1
    if window.images:
        window_navigation.open_first_readable(window, min(max(0, index), len(window.images) - 1))
    else:
        window.loader.cancel()
    window_navigation.update_title_and_position(window)  # type: ignore[arg-type]


def open_folder(window: ImagesWindow, folder: str | Path) -> None:
    """Every image of ``folder`` (natural order), from its first readable one; a folder whose images
    are all in sub-folders (a dataset's ``healthy/`` and ``diseased/``) opens those; a message when
    it holds none."""
    from .dialogs import show_error
    from .widgets.filmstrip import images_in_folder

    folder = Path(folder)
    paths = images_in_folder(folder) or images_in_folder(folder, recursive=True)
    if not paths:
        show_error(window, "No images in this folder",  # type: ignore[arg-type]
                   f"'{folder}' holds no image files Insight can read.")
        return
    window.settings.set_last_folder(folder)
    open_images(window, paths, 0, folder)


def step(window: ImagesWindow, direction: int) -> None:
    """Next (+1) or previous (−1) readable image, counted from the one on its way if any."""
    target = window.loader.target()
    here = window.index if target is None else target
    if 0 <= here + direction < len(window.images):
        window_navigation.show_readable(window, here + direction, direction)
