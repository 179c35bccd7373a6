"""A horizontal strip of thumbnails of the images of a folder, decoded lazily off the GUI thread.

Only the thumbnails that are on screen (plus a margin) are requested; each is decoded by a short
job on the strip's own :class:`~insight_desktop.gui.jobs.JobPool` and handed back to the GUI
thread as a QImage.  A new list starts a new generation of the pool, so thumbnails of a previous
folder are skipped, or dropped when they arrive late.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps
from PySide6.QtCore import QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QListView,
    QListWidget,
    QListWidgetItem,
    QSizePolicy,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from ...core.images import DEFAULT_MAX_PIXELS, ImageLoadError, find_images, load_image
from .. import screen_fit
from ..jobs import JobPool, Outcome
from .plain_text import escaped_tooltip

THUMBNAIL_SIZE = 96
#: drawn under the red cross of a file that cannot be read
BROKEN_LABEL = "unreadable"
#: item data role holding the thumbnail state: "loading", "ready" or "broken"
STATE_ROLE = Qt.ItemDataRole.UserRole + 1
#: item data role holding the image path (a str)
PATH_ROLE = Qt.ItemDataRole.UserRole + 2
_MARGIN = 8  # items beyond each edge of the view that are decoded ahead of scrolling


def thumbnail_size_for(screen_height: int) -> int:
    """The thumbnail size for a screen ``screen_height`` logical px tall: THUMBNAIL_SIZE, smaller on
    a short screen (1366×768 at 150 % is 512 px tall; at 200 %, 384), where a 96 px strip took a
    third of the height and pushed the window past the screen."""
    return THUMBNAIL_SIZE if screen_height >= 700 else 72 if screen_height >= 480 else 48


def images_in_folder(folder: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """The image files of ``folder`` in natural order ("img2" before "img10"), by suffix."""
    return find_images(folder, recursive=recursive)


def load_thumbnail(path: str | os.PathLike, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """An RGB uint8 thumbnail of the image at ``path``, at most ``size`` pixels on each side.

    JPEGs are decoded at a reduced scale (``Image.draft``: 1/2 … 1/8 of the pixels, much faster
    for camera photos); every other file, and any JPEG the fast path cannot handle, goes through
    :func:`core.images.load_image`, so conversions, size limits and error messages are the
    core's.  Raises ImageLoadError.
    """
    path = Path(path)
    rgb = _draft_jpeg(path, size) if path.is_file() else None  # a FIFO must never reach Image.open
    if rgb is None:
        rgb = Image.fromarray(load_image(path))
    rgb.thumbnail((size, size), Image.Resampling.LANCZOS)
    return np.ascontiguousarray(np.asarray(rgb.convert("RGB")))


def _draft_jpeg(path: Path, size: int) -> Image.Image | None:
    try:
        with Image.open(path, formats=("JPEG",)) as im:
            w, h = im.size
            if not 0 < w * h <= DEFAULT_MAX_PIXELS or im.mode not in ("RGB", "L", "CMYK", "YCbCr"):
                return None
            im.draft("RGB", (size, size))  # decoder-level downscale, still ≥ size on each side
            return ImageOps.exif_transpose(im).convert("RGB")
    except Exception:  # not a JPEG, or a broken one: load_image decides and words the error
        return None


def _thumbnail_job(path: Path, size: int):
    """The pool job for one thumbnail: a QImage, or an ImageLoadError the item shows."""

    def job(progress, should_stop) -> QImage:  # on a pool thread
        rgb = load_thumbnail(path, size)
        h, w = rgb.shape[:2]
        # copy(): the QImage must own its pixels once the numpy array is gone
        return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()

    return job


def _placeholder(size: int, broken: bool) -> QIcon:
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(0, 0, 0, 0))
    p = QPainter(pixmap)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setPen(QPen(QColor(150, 150, 150), 2))
    p.setBrush(QColor(225, 225, 225))
    p.drawRoundedRect(6, 14, size - 12, size - 28, 6, 6)
    if broken:  # a red cross: this file could not be read
        p.setPen(QPen(QColor(200, 40, 40), 4))
        m = size // 3
        p.drawLine(m, m, size - m, size - m)
        p.drawLine(size - m, m, m, size - m)
    p.end()
    return QIcon(pixmap)


class _ThumbnailDelegate(QStyledItemDelegate):
    """Draws the thumbnail centred in its cell and the current one inside a highlight frame
    (the default icon-mode look tints the picture and highlights an empty text line instead)."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index) -> None:
        rect = option.rect.adjusted(2, 2, -2, -2)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if option.state & QStyle.StateFlag.State_Selected:
            painter.setPen(QPen(option.palette.highlight().color(), 3))
            painter.setBrush(option.palette.highlight().color().lighter(170))
            painter.drawRoundedRect(rect, 5, 5)
        icon = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(icon, QIcon) and not icon.isNull():
            size = icon.actualSize(option.decorationSize)
            pixmap = icon.pixmap(size)
            painter.drawPixmap(rect.center().x() - size.width() // 2 + 1,
                               rect.center().y() - size.height() // 2 + 1, pixmap)
        if index.data(STATE_ROLE) == "broken":  # words as well as the red cross: not just a missing thumbnail
            painter.setPen(QColor(170, 30, 30))
            painter.drawText(rect.adjusted(0, 0, 0, -4), Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom,
                             BROKEN_LABEL)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index) -> QSize:  # noqa: N802 — Qt override
        return option.decorationSize + QSize(12, 12)


class Filmstrip(QWidget):
    """Thumbnails of a list of images in a row; the current one is selected (highlighted).

    User actions — a click, the arrow keys, :meth:`next` and :meth:`previous` — emit
    ``imageActivated(index)``; :meth:`set_current` and :meth:`set_images` do not, so the main
    window can follow its own image loads without a loop.  ``next``/``previous`` stop at the
    ends rather than wrapping: a folder is a sequence, and wrapping would hide its end.
    """

    imageActivated = Signal(int)

    def __init__(self, parent: QWidget | None = None, *, thumbnail_size: int | None = None):
        super().__init__(parent)
        if thumbnail_size is None:  # as large as the screen allows
            thumbnail_size = thumbnail_size_for(screen_fit.available_geometry(self).height())
        self.thumbnail_size = thumbnail_size
        self._paths: list[Path] = []
        self._requested: set[int] = set()
        self._quiet = False  # set while the current row changes programmatically
        self._loading_icon = _placeholder(thumbnail_size, broken=False)
        self.broken_icon = _placeholder(thumbnail_size, broken=True)

        self._pool = JobPool(max(1, min(4, (os.cpu_count() or 2) - 1)), self)
        self._pool.done.connect(self._on_thumbnail)

        self.list = QListWidget(self)
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setFlow(QListView.Flow.LeftToRight)
        self.list.setWrapping(False)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setUniformItemSizes(True)
        self.list.setIconSize(QSize(thumbnail_size, thumbnail_size))
        self.list.setGridSize(QSize(thumbnail_size + 12, thumbnail_size + 12))
        self.list.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setItemDelegate(_ThumbnailDelegate(self.list))
        self.list.setFixedHeight(thumbnail_size + 12 + self.list.horizontalScrollBar().sizeHint().height() + 6)
        self.list.currentRowChanged.connect(self._on_current_row_changed)
        self.list.horizontalScrollBar().valueChanged.connect(self._request_visible)

        layout = QHBoxLayout(self)  # a row: controls may go left of the thumbnails (gui.folder_index)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list)
        # As tall as the strip, never taller: a taller dock only took height from the image and panels.
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)

    # ------------------------------------------------------------------ public API
    def set_images(self, paths: Sequence[str | os.PathLike], current: int = 0) -> None:
        """Show ``paths`` (thumbnails load as they come into view); select ``current``."""
        self._pool.new_generation()  # thumbnails still on their way belong to the old list
        self._requested.clear()
        self._paths = [Path(p) for p in paths]
        self._quiet = True
        try:
            self.list.clear()
            for path in self._paths:
                item = QListWidgetItem(self._loading_icon, "")
                item.setToolTip(escaped_tooltip(str(path)))
                item.setData(STATE_ROLE, "loading")
                item.setData(PATH_ROLE, str(path))
                item.setSizeHint(self.list.gridSize())
                self.list.addItem(item)
        finally:
            self._quiet = False
        self.set_current(current)
        self._request_visible()
        QTimer.singleShot(0, self._request_visible)  # again once the layout knows its geometry

    def images(self) -> list[Path]:
        return list(self._paths)

    def count(self) -> int:
        return len(self._paths)

    def current_index(self) -> int:
        """The selected image, −1 when the strip is empty."""
        return self.list.currentRow()

    def set_current(self, index: int) -> None:
        """Select ``index`` (clamped into range) and scroll to it, without emitting imageActivated."""
        if not self._paths:
            return
        index = min(max(int(index), 0), len(self._paths) - 1)
        self._quiet = True
        try:
            self.list.setCurrentRow(index)
        finally:
            self._quiet = False
        self.list.scrollToItem(self.list.item(index))

    def next(self) -> int:
        """Move to the next image and emit imageActivated; stops at the last one. Returns the index."""
        return self._step(+1)

    def previous(self) -> int:
        """Move to the previous image and emit imageActivated; stops at the first one."""
        return self._step(-1)

    def mark_broken(self, index: int, reason: str) -> None:
        """Mark ``index`` as a file that cannot be read (the window found out before its thumbnail did)."""
        item = self.list.item(index)
        item.setIcon(self.broken_icon)
        item.setData(STATE_ROLE, "broken")
        item.setToolTip(escaped_tooltip(f"{self._paths[index]}\ncannot show this image: {reason}"))

    def thumbnail_state(self, index: int) -> str:
        """"loading", "ready" or "broken"."""
        return self.list.item(index).data(STATE_ROLE)

    def wait_for_thumbnails(self, msecs: int = -1) -> bool:
        """Block until queued thumbnail jobs are done (tests, shutdown); True when all finished."""
        return self._pool.wait(msecs)

    def shutdown(self) -> None:
        """Drop queued jobs and wait for running ones (call before the application quits)."""
        self._pool.shutdown()

    # ------------------------------------------------------------------ internals
    def _step(self, delta: int) -> int:
        if not self._paths:
            return -1
        row = self.list.currentRow()
        target = min(max(row + delta, 0), len(self._paths) - 1)
        if target != row:
            self.list.setCurrentRow(target)  # emits imageActivated through _on_current_row_changed
            self.list.scrollToItem(self.list.item(target))
        return target

    @Slot(int)
    def _on_current_row_changed(self, row: int) -> None:
        if row >= 0:
            self.list.item(row).setSelected(True)
            if not self._quiet:
                self.imageActivated.emit(row)

    @Slot()
    def _request_visible(self, *_: object) -> None:
        n = len(self._paths)
        if not n:
            return
        cell = max(1, self.list.gridSize().width())
        left = self.list.horizontalScrollBar().value()
        width = max(self.list.viewport().width(), cell)
        first = max(0, left // cell - _MARGIN)
        last = min(n - 1, (left + width) // cell + _MARGIN)
        for row in range(first, last + 1):
            if row not in self._requested:
                self._requested.add(row)
                self._pool.submit(row, _thumbnail_job(self._paths[row], self.thumbnail_size),
                                  f"show {self._paths[row].name}")

    @Slot(object, object)
    def _on_thumbnail(self, row: int, outcome: Outcome) -> None:
        if not 0 <= row < self.list.count():
            return  # the pool already dropped thumbnails of a list that is no longer shown
        item = self.list.item(row)
        if not outcome.succeeded:
            failure = outcome.failure
            error = failure.error.reason if failure and isinstance(failure.error, ImageLoadError) else (
                failure.message if failure else "stopped")
            self.mark_broken(row, error)
        elif item.data(STATE_ROLE) != "broken":  # a thumbnail may decode where the whole image cannot
            item.setIcon(QIcon(QPixmap.fromImage(outcome.value)))
            item.setData(STATE_ROLE, "ready")

    def resizeEvent(self, event) -> None:  # noqa: N802 — Qt override
        super().resizeEvent(event)
        self._request_visible()

    def showEvent(self, event) -> None:  # noqa: N802 — Qt override
        super().showEvent(event)
        self._request_visible()
