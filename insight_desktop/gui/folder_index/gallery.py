"""The concept gallery: where the selected concept fires most across the folder, from its index.

:class:`GalleryModel` asks the index for the concept's top patches (one per image) on a
one-thread :class:`~..jobs.JobPool` and then cuts a tile out of each image on a second pool: a
square around the patch, the patch outlined, :data:`TILE` px. Each new question (another
concept, another folder or model, the index grown) starts a new generation of both pools, so a
stale answer or tile is skipped or dropped, never shown. :class:`ConceptGallery` draws the
tiles large with the image's name and the activation under each, and says in words why it is
empty; a click asks to open that image with the concept's heatmap (``openRequested``). The
review panel embeds a one-row ``compact`` gallery on the same model.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QSize, Qt, Signal, Slot
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..jobs import JobPool, Outcome
from ..widgets.plain_text import escaped_tooltip

#: tile size in px (≥ 128: a patch must be recognisable)
TILE = 160
#: tiles in the gallery, and in the review panel's row
GALLERY_SIZE, COMPACT_SIZE = 24, 8
#: the tile shows at least this many patches across, and at least this share of the image's short side
CONTEXT_PATCHES, CONTEXT_SHARE = 4.0, 1 / 3
_BOX_COLOUR = (255, 214, 0)
_CACHE_TILES = 256


@dataclass(frozen=True)
class Tile:
    """One patch of the gallery: where it is (``path`` absolute), how strongly the concept fires there."""

    path: Path
    name: str          # relative to the indexed folder
    value: float
    row: int
    col: int
    box: tuple[float, float, float, float]


# ---------------------------------------------------------------------------- pool jobs (any thread)
def query_top_patches(index_path: Path, concept: int, n: int) -> tuple[Any, tuple[Tile, ...]]:
    """(IndexInfo, tiles) of ``concept``'s ``n`` best patches, one per image, best first."""
    from ...core.index import FolderIndex

    with FolderIndex(index_path) as index:
        info = index.info()
        hits = index.top_patches(concept, n, per_image=1)
    root = Path(info.folder)
    return info, tuple(Tile(root / h.path, h.path, float(h.value), h.row, h.col, tuple(map(float, h.box)))
                       for h in hits)


def cut_tile(path: Path, box: tuple[float, float, float, float], size: int = TILE) -> np.ndarray:
    """An RGB ``size`` × ``size`` tile around ``box`` (top, left, bottom, right in the image's
    pixels) with the box outlined. A JPEG is decoded at a reduced scale when the tile needs no
    more (``Image.draft``); raises ImageLoadError when the file cannot be read."""
    from PIL import Image, ImageDraw

    top, left, bottom, right = box
    patch = max(bottom - top, right - left, 1.0)
    rgb, scale = _load_scaled(path, size / (CONTEXT_PATCHES * patch))
    h, w = rgb.shape[0] / scale, rgb.shape[1] / scale          # the image's full size
    side = min(max(CONTEXT_PATCHES * patch, CONTEXT_SHARE * min(h, w)), min(h, w))
    cy, cx = (top + bottom) / 2, (left + right) / 2
    y0 = min(max(cy - side / 2, 0.0), h - side)
    x0 = min(max(cx - side / 2, 0.0), w - side)
    crop = (round(x0 * scale), round(y0 * scale), round((x0 + side) * scale), round((y0 + side) * scale))
    tile = Image.fromarray(rgb).crop(crop).resize((size, size), Image.Resampling.LANCZOS)
    k = size / side
    outline = [(left - x0) * k, (top - y0) * k, (right - x0) * k - 1, (bottom - y0) * k - 1]
    draw = ImageDraw.Draw(tile)
    draw.rectangle([outline[0] - 1, outline[1] - 1, outline[2] + 1, outline[3] + 1], outline=(0, 0, 0), width=4)
    draw.rectangle(outline, outline=_BOX_COLOUR, width=2)
    return np.ascontiguousarray(np.asarray(tile.convert("RGB")))


def _load_scaled(path: Path, scale: float) -> tuple[np.ndarray, float]:
    """The image (EXIF-oriented, as the index saw it), decoded at ≥ ``scale`` of its size where
    that is faster (JPEG); returns it and the scale it has."""
    from PIL import Image, ImageOps

    from ...core.images import DEFAULT_MAX_PIXELS, load_image

    if scale < 0.5 and path.is_file():
        try:
            with Image.open(path, formats=("JPEG",)) as im:
                w, h = im.size
                if 0 < w * h <= DEFAULT_MAX_PIXELS and im.mode in ("RGB", "L", "CMYK", "YCbCr"):
                    im.draft("RGB", (max(1, int(w * scale) + 1), max(1, int(h * scale) + 1)))
                    out = ImageOps.exif_transpose(im).convert("RGB")
                    return np.asarray(out), max(out.size) / max(w, h)
        except Exception:  # noqa: BLE001 — not a JPEG or a broken one: load_image decides and words the error
            pass
    return load_image(path), 1.0


def _qimage(rgb: np.ndarray) -> QImage:
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()  # owns its pixels


# ---------------------------------------------------------------------------- the model (GUI thread)
class GalleryModel(QObject):
    """The tiles of the document's concept in the current index, or why there are none."""

    changed = Signal()                # tiles and message replaced
    tileReady = Signal(int)           # the picture of tile i arrived (or its error)
    openRequested = Signal(object, int)   # image path, concept

    def __init__(self, document, parent: QObject | None = None, n: int = GALLERY_SIZE):
        super().__init__(parent)
        self.document, self.n = document, int(n)
        self.index_path: Path | None = None
        self.why_no_index = ""
        self.concept = -1
        self.info: Any = None
        self.tiles: tuple[Tile, ...] = ()
        self.pictures: dict[int, QImage] = {}
        self.errors: dict[int, str] = {}
        self.message = ""
        self.busy = False                 # a query is on its way
        self.active = True                # a view is on screen (set_active)
        self._stale = False               # a question was left unasked while inactive
        self._cache: OrderedDict[tuple, QImage] = OrderedDict()
        self._queries, self._cuts = JobPool(1, self), JobPool(2, self)
        self._queries.done.connect(self._on_query)
        self._cuts.done.connect(self._on_tile)
        document.conceptSelected.connect(self._on_concept)
        document.modelChanged.connect(self.refresh)

    def set_index(self, path: Path | None, why: str = "") -> None:
        """Query ``path`` from now on (None: there is no index; ``why`` says so and what to do)."""
        changed = path != self.index_path or why != self.why_no_index
        self.index_path, self.why_no_index = path, why
        if changed:
            self.refresh()

    def set_active(self, on: bool) -> None:
        """Whether a view of this model is on screen: only then are the index asked and images cut
        (a hidden gallery costs nothing); it catches up when shown."""
        self.active = bool(on)
        if self.active and self._stale:
            self.refresh()

    @Slot()
    def refresh(self, keep: bool = False) -> None:
        """Ask again (the concept, the index or its content changed). ``keep``: the same concept
        in a grown index: the tiles shown stay until the answer, unchanged ones are not cut again."""
        doc = self.document
        concept = doc.concept if doc.catalog is not None else -1
        keep = keep and concept == self.concept and bool(self.tiles)
        self._queries.new_generation()
        if not keep:
            self._cuts.new_generation()
            self.info, self.tiles, self.pictures, self.errors = None, (), {}, {}
        self.concept, self.busy, self._stale = concept, False, False
        if doc.catalog is None:
            self.message = "Open a concept model to see where its concepts fire in a folder."
        elif self.index_path is None:
            self.message = self.why_no_index or "Index this folder first: Analysis → Index This Folder (Ctrl+I)."
        elif concept < 0:
            self.message = "Select a concept to see where it fires most in this folder."
        elif not self.active:
            self.message, self._stale = "", True
        else:
            self.busy = True
            if not keep:
                self.message = "Looking in the folder index…"
            path, n = self.index_path, self.n
            self._queries.submit((path, concept), lambda _p, _s: query_top_patches(path, concept, n),
                                 "read the folder index")
        if not keep:
            self.changed.emit()

    def open(self, i: int) -> None:
        if 0 <= i < len(self.tiles):
            self.openRequested.emit(self.tiles[i].path, self.concept)

    def wait(self, ms: int = -1) -> bool:
        """Block until the queries and tiles asked for are done (tests); their results still queue."""
        return self._queries.wait(ms) and self._cuts.wait(ms)

    def shutdown(self) -> None:
        self._queries.shutdown()
        self._cuts.shutdown()

    # ------------------------------------------------------------------ answers
    @Slot(int)
    def _on_concept(self, concept: int) -> None:
        if concept != self.concept:
            self.refresh()

    @Slot(object, object)
    def _on_query(self, _key, outcome: Outcome) -> None:
        self.busy = False
        if outcome.failure is not None:
            self.message = f"{outcome.failure.title}: {outcome.failure.message}"
        elif outcome.succeeded:
            info, tiles = outcome.value
            if tiles == self.tiles and self.tiles:  # the index grew elsewhere: nothing to redraw
                self.info = info
                return
            self._cuts.new_generation()
            self.info, self.tiles, self.pictures, self.errors = info, tiles, {}, {}
            name = self.document.concept_name(self.concept)
            self.message = "" if self.tiles else (f"“{name}” fires in none of the {self.info.images:,} images "
                                                  "indexed in this folder.")
            for i, tile in enumerate(self.tiles):
                key = (str(tile.path), tile.box)
                if key in self._cache:
                    self._cache.move_to_end(key)
                    self.pictures[i] = self._cache[key]
                else:
                    self._cuts.submit((i, key), lambda _p, _s, t=tile: _qimage(cut_tile(t.path, t.box)),
                                      f"show {tile.name}")
        self.changed.emit()

    @Slot(object, object)
    def _on_tile(self, key, outcome: Outcome) -> None:
        i, cache_key = key
        if outcome.succeeded:
            self.pictures[i] = self._cache[cache_key] = outcome.value
            while len(self._cache) > _CACHE_TILES:
                self._cache.popitem(last=False)
        elif outcome.failure is not None:
            self.errors[i] = outcome.failure.message
        self.tileReady.emit(i)


# ---------------------------------------------------------------------------- the view
class ConceptGallery(QWidget):
    """The tiles of a :class:`GalleryModel`, large, with names and activations; click one to open it.
    ``compact``: one row of at most :data:`COMPACT_SIZE` smaller tiles (the review panel)."""

    def __init__(self, model: GalleryModel, parent: QWidget | None = None, *, compact: bool = False):
        super().__init__(parent)
        self.model, self.compact = model, compact
        self.tile = 128 if compact else TILE
        self.heading = QLabel(self)
        self.heading.setTextFormat(Qt.TextFormat.PlainText)
        self.heading.setWordWrap(True)
        self.message = QLabel(self)
        self.message.setTextFormat(Qt.TextFormat.PlainText)   # it quotes concept and file names
        self.message.setWordWrap(True)
        self.index_button = QToolButton(self)
        self.index_button.hide()
        self.list = QListWidget(self)
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setIconSize(QSize(self.tile, self.tile))
        line = self.fontMetrics().height()
        self.list.setGridSize(QSize(self.tile + 14, self.tile + 2 * line + 14))
        self.list.setUniformItemSizes(True)
        self.list.setWordWrap(True)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setToolTip("Click a patch to open its image with this concept's heatmap")
        if compact:
            self.list.setFlow(QListView.Flow.LeftToRight)
            self.list.setWrapping(False)
            self.list.setFixedHeight(self.tile + 2 * line + 14 + self.list.horizontalScrollBar().sizeHint().height())
            self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
            self.list.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        layout = QVBoxLayout(self)
        margin = 0 if compact else 4
        layout.setContentsMargins(margin, margin, margin, margin)
        layout.addWidget(self.heading)
        layout.addWidget(self.message)
        layout.addWidget(self.index_button, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.list, 1)
        layout.addStretch(0)   # takes the room only while the list is hidden: the words stay at the top
        self.list.itemClicked.connect(self._on_clicked)
        self.list.itemActivated.connect(self._on_clicked)
        model.changed.connect(self.fill)
        model.tileReady.connect(self._on_tile)
        model.document.conceptRenamed.connect(self._on_renamed)
        self.fill()

    def set_index_action(self, action) -> None:
        """The button offered when there is no index (the window's Index This Folder)."""
        self.index_button.setDefaultAction(action)

    @Slot()
    def fill(self) -> None:
        m = self.model
        self.list.clear()
        shown = m.tiles[:COMPACT_SIZE] if self.compact else m.tiles
        self.heading.setText(self._heading())
        self.heading.setVisible(bool(self.heading.text()))
        self.message.setText(m.message)
        self.message.setVisible(bool(m.message))
        self.index_button.setVisible(m.index_path is None and m.document.catalog is not None
                                     and self.index_button.defaultAction() is not None)
        self.list.setVisible(bool(shown))
        if self.compact and self.parentWidget() is not None:  # in the review panel only where there is an index
            self.setVisible(m.index_path is not None and m.document.catalog is not None)
        for i, tile in enumerate(shown):
            item = QListWidgetItem(self._placeholder(), f"{Path(tile.name).name}\n{tile.value:.3g}")
            item.setData(Qt.ItemDataRole.UserRole, i)
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            item.setToolTip(escaped_tooltip(f"{tile.name}\nactivation {tile.value:.4g} at patch row {tile.row}, "
                                            f"column {tile.col}\nClick to open it with this concept's heatmap"))
            self.list.addItem(item)
            self._on_tile(i)

    def names(self) -> list[str]:
        """The images shown, in order (relative to the indexed folder)."""
        return [self.model.tiles[int(self.list.item(r).data(Qt.ItemDataRole.UserRole))].name
                for r in range(self.list.count())]

    def _heading(self) -> str:
        m = self.model
        if m.concept < 0 or m.info is None or not m.tiles:
            return ""
        name = m.document.concept_name(m.concept)
        if self.compact:
            return f"Where it fires most in {Path(m.info.folder).name} (of {m.info.images:,} indexed images)"
        return (f"“{name}” (#{m.concept}): its strongest patch in each of the {len(m.tiles)} images where it fires "
                f"most, of {m.info.images:,} indexed in {Path(m.info.folder).name}")

    @Slot(int)
    def _on_tile(self, i: int) -> None:
        if i >= self.list.count():
            return
        item = self.list.item(i)
        picture = self.model.pictures.get(i)
        if picture is not None:
            pixmap = QPixmap.fromImage(picture)
            if pixmap.width() != self.tile:
                pixmap = pixmap.scaled(self.tile, self.tile, Qt.AspectRatioMode.KeepAspectRatio,
                                       Qt.TransformationMode.SmoothTransformation)
            item.setIcon(QIcon(pixmap))
        elif i in self.model.errors:
            item.setIcon(self._placeholder(broken=True))
            item.setToolTip(escaped_tooltip(f"{self.model.tiles[i].name}\ncannot be shown: {self.model.errors[i]}"))

    @Slot(int)
    def _on_renamed(self, concept: int) -> None:
        if concept == self.model.concept:
            self.heading.setText(self._heading())

    def _on_clicked(self, item: QListWidgetItem) -> None:
        self.model.open(int(item.data(Qt.ItemDataRole.UserRole)))

    def _placeholder(self, broken: bool = False) -> QIcon:
        pixmap = QPixmap(self.tile, self.tile)
        pixmap.fill(QColor(225, 225, 225))
        if broken:
            p = QPainter(pixmap)
            p.setPen(QColor(200, 40, 40))
            p.drawText(pixmap.rect(), Qt.AlignmentFlag.AlignCenter, "cannot be read")
            p.end()
        return QIcon(pixmap)
