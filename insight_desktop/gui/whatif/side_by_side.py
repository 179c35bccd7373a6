"""Side by side: two image views whose zoom and pan are linked, with a cursor readout in both.

Four comparisons (:data:`MODES`): the same image with two concepts; the same image through two
Matryoshka levels (docs/method.md §2: the explanation through the first-L prefix of the
dictionary, codes of deeper concepts set to 0); before and after switching concepts off
(``z_j = 0``, "concepts only": x̂ without them); two images with the same concept.

Everything a pane shows is recomputed from the Analysis already in the GUI (no worker round
trip), with the functions the main canvas draws with (:mod:`insight_desktop.gui.layers`), at its
display size. The two ViewBoxes are pyqtgraph-linked (``setXLink`` / ``setYLink``), so the
linking itself is pyqtgraph's. Both views share one frame, the first image's pixels; a second
image of another size is scaled into it keeping its aspect, and each readout names its own
image's pixel.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ...core.tasks.whatif import mean_iou
from ..jobs import JobPool, Outcome
from ..layers import photo_preview
from ..widgets.image_viewbox import QtImageViewBox, cosmetic_pen
from .side_content import (
    PaneContent,
    concept_content,
    dominant_content,
    empty,
    labels_content,
    legend_html,
    switched,
    through_level,
)

#: the comparisons offered, key → title
MODES: dict[str, str] = {"concepts": "Two concepts", "levels": "Two levels", "switch": "Before / after switch-off",
                         "images": "Two images, one concept"}
NEEDS_CLASSES = "Segment with classes first (Analysis → Segment with Classes): a switch-off changes the segmentation."
NOTHING_OFF = ("Nothing is switched off: tick concepts in the concept tree or on the contribution bars "
               "(Shift: the whole subtree).")
CURSOR_COLOUR = "#00e5ff"
#: recomputed results kept per analysis (levels and switch-offs looked at again are instant)
RESULTS_KEPT = 16
#: what :attr:`SideBySideView.before_after` returns while its result is being computed
PENDING = object()


# ------------------------------------------------------------------------------ one view
class LinkedPane(QWidget):
    """One image view (the canvas's ViewBox class) with a crosshair and a readout under it."""

    hovered = Signal(float, float)   # frame coordinates (x, y) under the mouse; NaN when it left

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.content = empty("")
        self.scale = 1.0    # frame units per pixel of this pane's image
        self.title = QLabel()
        self.title.setStyleSheet("font-weight: bold;")
        self.legend = QLabel()
        self.legend.setWordWrap(True)
        self.readout = QLabel(" ")
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.view = pg.GraphicsLayoutWidget()
        self.view.setAcceptDrops(False)
        self.viewbox = QtImageViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.view.ci.addItem(self.viewbox, 0, 0)
        self.photo_item = pg.ImageItem(axisOrder="row-major")
        self.layer_item = pg.ImageItem(axisOrder="row-major")
        self.layer_item.setOpacity(0.6)
        self.layer_item.setZValue(1)
        self.viewbox.addItem(self.photo_item)
        self.viewbox.addItem(self.layer_item)
        self.cross = [pg.InfiniteLine(angle=a, movable=False, pen=cosmetic_pen(CURSOR_COLOUR)) for a in (90, 0)]
        for line in self.cross:
            line.setZValue(10)
            line.hide()
            self.viewbox.addItem(line, ignoreBounds=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.legend)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.readout)
        self.view.scene().sigMouseMoved.connect(self._on_mouse_moved)

    def set_content(self, content: PaneContent, frame: tuple[int, int]) -> None:
        """Show ``content`` in the shared ``frame`` (H, W): its image fitted in, keeping its aspect."""
        self.content = content
        self.title.setText(content.title)
        self.legend.setText(legend_html(content.legend))
        self.legend.setVisible(bool(content.legend))
        h, w = content.image_size
        self.scale = min(frame[0] / h, frame[1] / w)
        rect = QRectF(0, 0, w * self.scale, h * self.scale)
        for item, pixels in ((self.photo_item, content.photo), (self.layer_item, content.layer)):
            if pixels is None:
                item.clear()
                item.hide()
            else:
                item.setImage(pixels, autoLevels=False, levels=None)  # uint8 as is
                item.setRect(rect)
                item.show()

    def pixel_at(self, fx: float, fy: float) -> tuple[int, int] | None:
        """The pixel (y, x) of this pane's image at frame point (fx, fy), None outside it."""
        if self.content.photo is None or not (math.isfinite(fx) and math.isfinite(fy)):
            return None
        y, x = math.floor(fy / self.scale), math.floor(fx / self.scale)
        h, w = self.content.image_size
        return (y, x) if 0 <= y < h and 0 <= x < w else None

    def show_cursor(self, fx: float, fy: float) -> None:
        """Put the crosshair at frame point (fx, fy) and say what is under it (blank outside the image)."""
        pixel = self.pixel_at(fx, fy)
        for line, value in zip(self.cross, (fx, fy)):
            line.setVisible(pixel is not None)
            if pixel is not None:
                line.setValue(value)
        self.readout.setText(self.content.readout(*pixel) if pixel is not None else " ")

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        if not self.viewbox.sceneBoundingRect().contains(scene_pos):
            self.hovered.emit(math.nan, math.nan)
            return
        p = self.viewbox.mapSceneToView(scene_pos)
        self.hovered.emit(p.x(), p.y())


# ------------------------------------------------------------------------------ the two views
class SideBySideView(QWidget):
    """Two linked panes and the choice of what they compare (see the module docstring)."""

    secondImageWanted = Signal(str)   # a path from :meth:`set_images`: show its analysis (wiring_side)

    def __init__(self, document, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        #: the Analysis the levels are cut from: the document's; the wiring points it at the what-if
        #: switches' base (the worker's Analysis, with nothing switched off) when those are installed
        self.base: Callable[[], Any] = lambda: document.analysis
        #: what the before/after mode shows; the wiring points it at the what-if switches' state,
        #: else it is the selected concept switched off ("concepts only")
        self.before_after: Callable[[], Any] = self._selected_switched_off   # BeforeAfter, None or PENDING
        #: the right image of "two images": (path, RGB, its display copy, its Analysis or None)
        self.second: tuple[Path, np.ndarray, np.ndarray, Any] | None = None
        self._kept: dict[tuple, Any] = {}     # (kind, value) → a recomputed result of ``_kept_for``
        self._kept_for: object | None = None
        self._asked: set[tuple] = set()       # keys on their way from the pool
        # Recomputing a level's or a switch-off's labels takes ~50–150 ms (448 px, 8 classes): on a
        # one-thread pool, so the GUI thread only draws (the canvas layers' way, ..widgets.canvas_layers)
        self._pool = JobPool(1, self)
        self._pool.done.connect(self._on_computed)
        self.waiting_text = ""   # why the right image has no analysis yet, when it is not simply being made
        self._stale = False      # something changed while hidden: redraw when shown
        self._cursor = (math.nan, math.nan)   # frame point under the mouse
        self.mode = QComboBox()
        for key, title in MODES.items():
            self.mode.addItem(title, key)
        self.concept_a, self.concept_b = QComboBox(), QComboBox()
        self.level_a, self.level_b = QSpinBox(), QSpinBox()
        self.switch_label = QLabel()
        self.switch_label.setWordWrap(True)
        self.image_b = QComboBox()
        self.image_b.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.images_label = QLabel()
        self.controls = QStackedWidget()
        pages = {"concepts": (QLabel("Left"), self.concept_a, QLabel("Right"), self.concept_b),
                 "levels": (QLabel("Left: levels 1 to"), self.level_a, QLabel("Right: levels 1 to"), self.level_b),
                 "switch": (self.switch_label,),
                 "images": (self.images_label, QLabel("Right image"), self.image_b)}
        for key in MODES:
            page = QWidget()
            row = QHBoxLayout(page)
            row.setContentsMargins(0, 0, 0, 0)
            for widget in pages[key]:
                row.addWidget(widget)
            row.addStretch(1)
            self.controls.addWidget(page)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.hide()
        self.panes = (LinkedPane(), LinkedPane())
        self.panes[1].viewbox.setXLink(self.panes[0].viewbox)   # pyqtgraph links both ways
        self.panes[1].viewbox.setYLink(self.panes[0].viewbox)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        for pane in self.panes:
            splitter.addWidget(pane)
            pane.hovered.connect(self.show_cursor)
        top = QHBoxLayout()
        top.addWidget(self.mode)
        top.addWidget(self.controls, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.message)
        layout.addWidget(splitter, 1)
        self._frame: tuple[int, int] | None = None
        self.mode.currentIndexChanged.connect(self._on_mode)
        for combo in (self.concept_a, self.concept_b):
            combo.currentIndexChanged.connect(self.refresh)
        for spin in (self.level_a, self.level_b):
            spin.valueChanged.connect(self.refresh)
        self.image_b.activated.connect(self._on_image_picked)   # picked by the user, also the same one again
        document.analysisChanged.connect(self._on_analysis)
        document.imageChanged.connect(self._on_analysis)
        document.conceptSelected.connect(self._on_concept)
        document.conceptRenamed.connect(self._on_concept)
        self._on_analysis()

    # ------------------------------------------------------------------ choices
    def set_mode(self, key: str) -> None:
        self.mode.setCurrentIndex(list(MODES).index(key))

    def current_mode(self) -> str:
        return str(self.mode.currentData())

    def set_images(self, paths: Sequence[Path]) -> None:
        """The images the right pane can show in "two images" mode (the filmstrip's list)."""
        current = self.image_b.currentData()
        self.image_b.blockSignals(True)
        self.image_b.clear()
        self.image_b.addItem("(choose an image)", "")
        for path in paths:
            self.image_b.addItem(Path(path).name, str(path))
        index = self.image_b.findData(current) if current else 0
        self.image_b.setCurrentIndex(max(index, 0))
        self.image_b.blockSignals(False)

    def set_second(self, path: Path, image: np.ndarray, analysis, preview: np.ndarray | None = None) -> None:
        """The right pane's image in "two images" mode, and its analysis (None: still coming)."""
        self.second = (Path(path), image, preview if preview is not None else photo_preview(image), analysis)
        index = self.image_b.findData(str(path))
        if index >= 0 and index != self.image_b.currentIndex():
            self.image_b.blockSignals(True)
            self.image_b.setCurrentIndex(index)
            self.image_b.blockSignals(False)
        self.refresh()

    def _on_image_picked(self) -> None:
        path = self.image_b.currentData()
        if path:
            self.secondImageWanted.emit(str(path))

    def _on_mode(self) -> None:
        self.controls.setCurrentIndex(self.mode.currentIndex())
        self.refresh()

    def _on_analysis(self) -> None:
        a, doc = self.document.analysis, self.document
        ranked = [c.concept for c in a.concepts] if a is not None else []
        for combo, pick in ((self.concept_a, 0), (self.concept_b, 1)):
            wanted = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            for j in ranked:
                combo.addItem(doc.concept_name(j), j)
            index = combo.findData(wanted) if wanted is not None else -1
            combo.setCurrentIndex(index if index >= 0 else min(pick, combo.count() - 1))
            combo.blockSignals(False)
        n_levels = len(doc.catalog.relations.group_ends) if doc.catalog is not None else 1
        for spin, value in ((self.level_a, 1), (self.level_b, n_levels)):
            spin.blockSignals(True)
            spin.setRange(1, max(n_levels, 1))
            if spin.value() > n_levels or a is None:
                spin.setValue(value)
            spin.blockSignals(False)
        if self.level_a.value() == self.level_b.value() == 1 and n_levels > 1:
            self.level_b.setValue(n_levels)  # a first useful pair: the coarsest level against all
        self.refresh()

    def _on_concept(self, *_args) -> None:
        for i in range(self.concept_a.count()):  # names may have changed
            for combo in (self.concept_a, self.concept_b):
                combo.setItemText(i, self.document.concept_name(int(combo.itemData(i))))
        if self.current_mode() in ("switch", "images"):
            self.refresh()

    # ------------------------------------------------------------------ drawing
    def showEvent(self, event) -> None:  # noqa: N802 — Qt override
        super().showEvent(event)
        if self._stale:
            self.refresh()

    def refresh(self, *_args) -> None:
        """Recompute both panes for the current mode and choices (when hidden: once shown again)."""
        if not self.isVisible():
            self._stale = True
            return
        self._stale = False
        doc = self.document
        a, image = doc.analysis, doc.image
        self.message.hide()
        if image is None or a is None or tuple(a.image_size) != image.shape[:2]:
            contents = (empty("No analysis yet"), empty(""))
        else:
            contents = self._contents(a, image)
        frame = contents[0].image_size if contents[0].photo is not None else None
        for pane, content in zip(self.panes, contents):
            pane.set_content(content, frame or content.image_size)
            pane.show_cursor(*self._cursor)   # the readout of what is shown now
        if frame is not None and frame != self._frame:   # a new image: show all of it
            self.panes[0].viewbox.setRange(QRectF(0, 0, frame[1], frame[0]), padding=0)
        self._frame = frame

    def _say(self, text: str) -> None:
        self.message.setText(text)
        self.message.show()

    def _contents(self, a, image) -> tuple[PaneContent, PaneContent]:
        doc, mode, preview = self.document, self.current_mode(), self.document.preview
        colormap = doc.overlay.colormap
        if mode == "concepts":
            ja, jb = (int(c.currentData()) if c.currentData() is not None else -1
                      for c in (self.concept_a, self.concept_b))
            return (concept_content(image, a, ja, doc.concept_name(ja), colormap, preview),
                    concept_content(image, a, jb, doc.concept_name(jb), colormap, preview))
        if mode == "levels":
            base = self.base() or a
            levels = (self.level_a.value(), self.level_b.value())
            if base.segmentation is None or base.class_embeddings is None:
                return tuple(dominant_content(image, base, L, doc.concept_name, preview)  # type: ignore[return-value]
                             for L in levels)
            out = []
            for L in levels:
                title = f"Segmentation through level{' 1' if L == 1 else f's 1–{L}'}"
                found = self._computed(base, ("level", L), lambda L=L: through_level(base, L))
                if found is not None:
                    title += f" · mIoU against all levels {mean_iou(found.after, found.before):.2f}"
                out.append(labels_content(image, found.after, found.class_names, title, preview) if found is not None
                           else PaneContent(f"{title} (computing…)", preview if preview is not None
                                            else photo_preview(image), image.shape[:2]))
            return out[0], out[1]
        if mode == "switch":
            change = self.before_after()
            if change is PENDING:
                photo = preview if preview is not None else photo_preview(image)
                return (PaneContent("Before", photo, image.shape[:2]),
                        PaneContent("After (computing…)", photo, image.shape[:2]))
            if change is None:
                self.switch_label.setText("")
                self._say(NEEDS_CLASSES)
                return empty("Before"), empty("After")
            names = ", ".join(doc.concept_name(j) for j in change.off) or "nothing"
            if not change.off:
                self._say(NOTHING_OFF)
            self.switch_label.setText(f"Switched off: {names} — shown: {change.mode}")
            return (labels_content(image, change.before, change.class_names, "Before", preview),
                    labels_content(image, change.after, change.class_names,
                                   f"After switching off {len(change.off)} concept(s) ({change.mode})", preview,
                                   before=change.before))
        # two images, the concept selected in the window
        j = doc.concept
        name = doc.concept_name(j)
        self.images_label.setText(f"Concept: {name}")
        left = concept_content(image, a, j, name, colormap, preview, title=f"{_label(doc.image_path)}: {name}")
        if self.second is None:
            self._say(self.waiting_text or "Choose the image to compare with (the window's image list, as in the "
                      "filmstrip).")
            return left, empty("")
        path, image_b, preview_b, analysis_b = self.second
        if analysis_b is None:
            self._say(self.waiting_text or f"Analysing {path.name}…")
            return left, PaneContent(f"{path.name}: analysing…", preview_b, image_b.shape[:2])
        return left, concept_content(image_b, analysis_b, j, name, colormap, preview_b, title=f"{path.name}: {name}")

    def _computed(self, analysis, key: tuple, make: Callable[[], Any]) -> Any:
        """A result recomputed from ``analysis`` (``make()``), or None while it is being made on the
        view's thread (it redraws when the result comes). Results are kept while ``analysis`` is
        the one compared, so levels and switch-offs looked at again are instant."""
        if self._kept_for is not analysis:
            self._pool.new_generation()   # results for another analysis are not wanted
            self._kept, self._kept_for, self._asked = {}, analysis, set()
        if key in self._kept:
            return self._kept[key]
        if key not in self._asked:
            self._asked.add(key)
            self._pool.submit((id(analysis), key), lambda _progress, _should_stop: make(),
                              "recompute the prediction for the side-by-side view")
        return None

    @Slot(object, object)
    def _on_computed(self, job_key: Any, outcome: Outcome) -> None:
        analysis_id, key = job_key
        if self._kept_for is None or id(self._kept_for) != analysis_id or key not in self._asked:
            return   # for an analysis no longer compared
        self._asked.discard(key)
        if not outcome.succeeded:
            message = outcome.failure.message if outcome.failure is not None else "it was stopped"
            self._say(f"Could not recompute: {message}")
            return
        if len(self._kept) >= RESULTS_KEPT:
            self._kept.pop(next(iter(self._kept)))   # the oldest
        self._kept[key] = outcome.value
        self.refresh()

    def pending(self) -> bool:
        """A recomputation asked for has not come back yet."""
        return bool(self._asked)

    def wait(self, ms: int = -1) -> bool:
        """Block until the recomputations asked so far ended (tests); their results still queue."""
        return self._pool.wait(ms)

    def shutdown(self) -> None:
        self._pool.shutdown()

    def _selected_switched_off(self) -> Any:
        """Without the what-if switches: the selected concept switched off ("concepts only");
        :data:`PENDING` while that is being computed."""
        a, j = self.base(), self.document.concept
        if a is None or a.segmentation is None or a.class_embeddings is None:
            return None
        found = self._computed(a, ("off", j), lambda: switched(a, [j] if j >= 0 else []))
        return PENDING if found is None else found

    def show_cursor(self, fx: float, fy: float) -> None:
        """The crosshair and readout at frame point (fx, fy) in both panes (NaN: the mouse left)."""
        self._cursor = (fx, fy)
        for pane in self.panes:
            pane.show_cursor(fx, fy)


def _label(path: Path | None) -> str:
    return path.name if path is not None else "this image"
