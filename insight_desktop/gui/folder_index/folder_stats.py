"""Folder statistics from the folder index: where the selected concept fires, and what tells two
sub-folders apart, drawn with pyqtgraph.

Two horizontal bar charts (sub-folder and concept names on the left axis, where long names fit):

- **Frequency**: per sub-folder, the share of its images where the selected concept fires
  (:meth:`~insight_desktop.core.index.FolderIndex.frequency`); counts in the bar's tooltip.
- **Contrast**: the concepts that most distinguish sub-folder A from B, chosen in two combo
  boxes (:meth:`~insight_desktop.core.index.FolderIndex.contrast`): bars right of zero fire more
  often in A, left of zero in B; the length is the Wald z-score of the log odds ratio, so a
  difference seen in many images outranks the same difference seen in few. A click on a bar
  selects the concept in the app (``conceptClicked``).

All three queries run as one short job on the panel's own pool (each ≤ 100 ms on a 10k-image
index, but never on the GUI thread); a result that arrives after the index, the concept or the
groups changed is dropped. Names are drawn as plain text (axis labels are painted text; tooltips
are escaped).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pyqtgraph as pg
from PySide6.QtCore import QPoint, QPointF, Qt, Signal, Slot
from PySide6.QtGui import QColor, QCursor, QFontMetrics
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from ..jobs import JobPool, Outcome
from ..widgets.plain_text import escaped_tooltip
from .filmstrip_sort import NO_INDEX, index_stamp

A_COLOR = QColor(43, 131, 186)     # blue: more often in A
B_COLOR = QColor(230, 120, 20)     # orange: more often in B (blue/orange stay apart for colour-blind readers)
FREQ_COLOR = QColor(90, 150, 90)
TOP = "(top folder)"               # how the images directly in the indexed folder are named
PER_SIDE = 8                       # concepts shown toward each group
_ROW_PX = 22
_NAME_CHARS = 26


@dataclass(frozen=True)
class Snapshot:
    """What one query job read: the index's sub-folders, the concept's frequency, the contrast."""

    groups: tuple[str, ...]               # sub-folders and their ancestors, sorted
    frequency: Any = None                 # core.index.Frequency or None (no concept)
    contrast: Any = None                  # core.index.Contrast or None
    group_a: str = ""
    group_b: str = ""
    contrast_problem: str = ""            # why there is no contrast


def group_choices(folders: Sequence[str]) -> tuple[str, ...]:
    """Every sub-folder with indexed images and every folder above one ("a" for "a/x"), sorted; the
    top folder itself ("") is no group (it holds every other one)."""
    out: set[str] = set()
    for f in folders:
        parts = [p for p in f.split("/") if p]
        out.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return tuple(sorted(out))


def default_groups(groups: Sequence[str]) -> tuple[str, str]:
    """The first two top-level sub-folders (or the first two groups when there is one top level)."""
    top = [g for g in groups if "/" not in g]
    pick = top if len(top) >= 2 else list(groups)
    return (pick[0], pick[1]) if len(pick) >= 2 else ("", "")


def _overlap(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _snapshot_job(index: Path, concept: int, a: str, b: str):
    def job(_progress, _should_stop) -> Snapshot:  # on a pool thread, with its own connection
        from ...core.index import FolderIndex

        with FolderIndex(index) as fi:
            info = fi.info()
            groups = group_choices([s.folder for s in info.folders])
            frequency = fi.frequency(concept) if 0 <= concept < fi.n_concepts else None
            ga, gb = (a, b) if a in groups and b in groups else default_groups(groups)
            if len(groups) < 2:
                return Snapshot(groups, frequency, None, ga, gb, "A contrast needs two sub-folders with indexed "
                                f"images; this index has {len(groups) or 'no'} sub-folder{'s' * (len(groups) != 1)}.")
            if _overlap(ga, gb):
                return Snapshot(groups, frequency, None, ga, gb, "Choose two sub-folders that do not contain one "
                                "another.")
            return Snapshot(groups, frequency, fi.contrast(ga, gb, PER_SIDE), ga, gb)

    return job


def _elide(text: str, n: int = _NAME_CHARS) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


class BarChart(pg.PlotWidget):
    """Horizontal bars, one per row from the top, named on the left axis; hover shows a row's
    tooltip, a click emits its row."""

    rowClicked = Signal(int)
    # class defaults (replaced, never changed in place): Qt sends a resize while PlotWidget.__init__ runs
    values: list[float] = []
    _texts: list[pg.TextItem] = []
    _span = (0.0, 1.0)

    def __init__(self, x_label: str, parent: QWidget | None = None):
        super().__init__(parent, background="w")
        self.setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.getPlotItem().invertY(True)
        self.getPlotItem().showGrid(x=True, y=False, alpha=0.25)
        self.setLabel("bottom", x_label)
        for axis in ("left", "bottom"):
            self.getAxis(axis).setTextPen("k")
            self.getAxis(axis).setPen(QColor(120, 120, 120))
        self.bars: pg.BarGraphItem | None = None
        self.tips: list[str] = []
        self.scene().sigMouseMoved.connect(self._on_moved)
        self.scene().sigMouseClicked.connect(self._on_clicked)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_bars(self, names: Sequence[str], values: Sequence[float], brushes: Sequence[QColor],
                 tips: Sequence[str], texts: Sequence[str] = (), x_range: tuple[float, float] | None = None) -> None:
        item = self.getPlotItem()
        if self.bars is not None:
            item.removeItem(self.bars)
        for t in self._texts:
            item.removeItem(t)
        self._texts = []
        self.values, self.tips = list(values), list(tips)
        n = len(values)
        self.bars = None
        if n:  # (pyqtgraph 0.14 cannot draw an empty list of brushes)
            self.bars = pg.BarGraphItem(x0=[0.0] * n, y=list(range(n)), height=0.65, width=list(values),
                                        brushes=[pg.mkBrush(c) for c in brushes], pen=pg.mkPen(None))
            item.addItem(self.bars)
        for i, text in enumerate(texts):
            label = pg.TextItem(text, color=(60, 60, 60), anchor=(0 if values[i] >= 0 else 1, 0.5))
            label.setPos(values[i], i)
            item.addItem(label)
            self._texts.append(label)
        self.getAxis("left").setTicks([[(i, _elide(name)) for i, name in enumerate(names)]])
        self._span = x_range or (min([0.0, *values]), max([0.0, *values]) or 1.0)
        self._fit_x()
        item.setYRange(-0.6, max(n, 1) - 0.4, padding=0)
        self.setFixedHeight(60 + _ROW_PX * max(n, 1))
        self.setVisible(n > 0)   # empty axes say nothing; the labels above say why there are no bars

    def _fit_x(self) -> None:
        """The x range: the bars' span plus, on each side with bars, the pixels their value text
        needs (text is drawn at a fixed pixel size, so the room depends on the plot's width)."""
        if getattr(self, "plotItem", None) is None:
            return  # still in PlotWidget.__init__
        lo, hi = self._span
        fm = QFontMetrics(self.font())
        need = [fm.horizontalAdvance(t.toPlainText()) + 10 for t in self._texts]
        left = max([w for w, v in zip(need, self.values) if v < 0], default=0)
        right = max([w for w, v in zip(need, self.values) if v >= 0], default=0)
        width = max(1.0, self.getPlotItem().getViewBox().width())
        bars = max(width - left - right, width / 3)      # the bars keep a third, however long the texts
        per_px = (hi - lo or 1.0) / bars
        self.getPlotItem().setXRange(lo - left * per_px, hi + right * per_px, padding=0)

    def resizeEvent(self, event) -> None:  # noqa: N802 — Qt override
        super().resizeEvent(event)
        self._fit_x()

    def clear_bars(self) -> None:
        self.set_bars([], [], [], [])

    def row_at(self, scene_pos: QPointF) -> int:
        """The bar row under a scene position, −1 for none (beside the bars counts: rows are thin)."""
        vb = self.getPlotItem().getViewBox()
        if not vb.sceneBoundingRect().contains(scene_pos):
            return -1
        row = round(vb.mapSceneToView(scene_pos).y())
        return row if 0 <= row < len(self.values) else -1

    def row_center(self, row: int) -> QPoint:
        """Where row ``row``'s bar is, in the viewport's coordinates (tests click there)."""
        vb = self.getPlotItem().getViewBox()
        return self.mapFromScene(vb.mapViewToScene(QPointF(self.values[row] / 2, row)))

    def _on_moved(self, pos: QPointF) -> None:
        row = self.row_at(pos)
        if row >= 0 and self.tips[row]:
            QToolTip.showText(QCursor.pos(), escaped_tooltip(self.tips[row]), self)
        else:
            QToolTip.hideText()

    def _on_clicked(self, event) -> None:
        row = self.row_at(event.scenePos())
        if row >= 0 and event.button() == Qt.MouseButton.LeftButton:
            self.rowClicked.emit(row)


class FolderStatsPanel(QWidget):
    """The statistics of one folder index for the document's selected concept.

    :meth:`set_index` says which index applies (None, with the reason, when none does);
    ``indexRequested`` asks the window to index the folder; a click on a contrast bar selects
    its concept in the document (and emits ``conceptClicked``)."""

    conceptClicked = Signal(int)
    indexRequested = Signal()

    def __init__(self, document: Any, parent: QWidget | None = None, *, name_of: Callable[[int], str] | None = None):
        super().__init__(parent)
        self.document = document
        self.name_of = name_of or document.concept_name
        self.index: Path | None = None
        self.snapshot: Snapshot | None = None
        self.contrast_rows: list[int] = []     # concept of each contrast bar
        self._asked: tuple | None = None

        self.status = QLabel()
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.status.setWordWrap(True)
        self.index_button = QPushButton("Index This Folder")
        self.index_button.clicked.connect(self.indexRequested)
        self.index_button.hide()
        self.refresh_button = QToolButton()
        self.refresh_button.setText("Refresh")
        self.refresh_button.setToolTip("Read the folder index again (after indexing more images)")
        self.refresh_button.clicked.connect(lambda: self.refresh(force=True))
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.index_button)
        buttons.addWidget(self.refresh_button)

        self.freq_title = self._title()
        self.freq_chart = BarChart("% of its images")
        self.contrast_title = self._title()
        self.contrast_title.setText("Concepts that tell two sub-folders apart")
        self.group_a, self.group_b = QComboBox(), QComboBox()
        groups = QFormLayout()  # one row each: the dock may be narrow
        groups.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for combo, color, side in ((self.group_a, A_COLOR, "A"), (self.group_b, B_COLOR, "B")):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(6)
            combo.setToolTip(f"Concepts firing more often here are drawn {'right' if side == 'A' else 'left'} of zero")
            combo.currentIndexChanged.connect(lambda _i: self.refresh())
            label = QLabel(f"{side}:")   # in its bars' colour
            label.setStyleSheet(f"color: {color.name()}; font-weight: bold;")
            groups.addRow(label, combo)
        self.contrast_note = QLabel()
        self.contrast_note.setTextFormat(Qt.TextFormat.PlainText)
        self.contrast_note.setWordWrap(True)
        self.contrast_chart = BarChart("← B · z-score · A →")
        self.contrast_chart.rowClicked.connect(self._on_contrast_clicked)
        self.contrast_chart.setCursor(Qt.CursorShape.PointingHandCursor)

        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        layout.addWidget(self.freq_title)
        layout.addWidget(self.freq_chart)
        layout.addSpacing(8)
        layout.addWidget(self.contrast_title)
        layout.addLayout(groups)
        layout.addWidget(self.contrast_note)
        layout.addWidget(self.contrast_chart)
        layout.addStretch(1)

        self.pool = JobPool(1, self)
        self.pool.done.connect(self._on_snapshot)
        self.set_index(None, "")
        document.conceptSelected.connect(self._on_concept)
        document.conceptRenamed.connect(self._on_renamed)

    @staticmethod
    def _title() -> QLabel:
        label = QLabel()
        label.setTextFormat(Qt.TextFormat.PlainText)
        label.setWordWrap(True)
        font = label.font()
        font.setBold(True)
        label.setFont(font)
        return label

    # ------------------------------------------------------------------ inputs
    def set_index(self, index: Path | None, reason: str = "") -> None:
        """Show the statistics of ``index``; None: say ``reason`` (and offer to index the folder
        when the reason is that it has no index)."""
        changed = index != self.index
        self.index = index
        if index is None:
            self.pool.new_generation()
            self._asked = None
            self.snapshot = None
            self.status.setText(reason or "No folder index.")
            self.index_button.setVisible(NO_INDEX in reason)
            self._enable(False)
            self.freq_title.setText("Where the selected concept fires")
            self.freq_chart.clear_bars()
            self.contrast_chart.clear_bars()
            self.contrast_note.setText("")
            return
        self.index_button.hide()
        self._enable(True)
        if changed:
            self._fill_groups(())
        self.refresh(force=changed)

    @Slot()
    def refresh(self, force: bool = False) -> None:
        """Query the index for the current concept and groups (off the GUI thread)."""
        if self.index is None:
            return
        key = (index_stamp(self.index), self.document.concept, self.group_a.currentText(), self.group_b.currentText())
        if key == self._asked and not force:
            return
        self._asked = key
        self.pool.new_generation()
        self.status.setText(f"Reading the folder index… ({self.index.name})")
        self.pool.submit(key, _snapshot_job(self.index, *key[1:]), "read the folder index")

    # ------------------------------------------------------------------ results
    @Slot(object, object)
    def _on_snapshot(self, key: Any, outcome: Outcome) -> None:
        if key != self._asked:
            return  # the index, concept or groups changed since it was asked
        if not outcome.succeeded:
            message = outcome.failure.message if outcome.failure else "stopped"
            self.status.setText(f"Could not read the folder index: {message}")
            return
        snap: Snapshot = outcome.value
        self.snapshot = snap
        if snap.groups != self._groups() or (snap.group_a, snap.group_b) != (self.group_a.currentText(),
                                                                             self.group_b.currentText()):
            self._fill_groups(snap.groups, snap.group_a, snap.group_b)
            self._asked = (key[0], key[1], snap.group_a, snap.group_b)
        self.redraw()

    def redraw(self) -> None:
        """Draw the last snapshot (again, e.g. after a rename)."""
        snap = self.snapshot
        if snap is None:
            return
        freq = snap.frequency
        if freq is None:
            self.status.setText("Select a concept to see where it fires.")
            self.freq_title.setText("Where the selected concept fires")
            self.freq_chart.clear_bars()
        else:
            name = self.name_of(freq.concept)
            self.status.setText(f"'{name}' fires in {freq.images:,} of {freq.total:,} indexed images "
                                f"({freq.share:.0%}).")
            self.freq_title.setText(f"Where '{_elide(name, 40)}' fires, per sub-folder")
            per = freq.per_folder
            self.freq_chart.set_bars(
                [s.folder or TOP for s in per], [100.0 * s.share for s in per], [FREQ_COLOR] * len(per),
                [f"{s.folder or TOP}: '{name}' fires in {s.images:,} of {s.total:,} images ({s.share:.1%})"
                 for s in per],
                [f"{s.images}/{s.total}" for s in per], x_range=(0.0, 100.0))
        self._draw_contrast(snap)

    def _draw_contrast(self, snap: Snapshot) -> None:
        c = snap.contrast
        if c is None:
            self.contrast_note.setText(snap.contrast_problem)
            self.contrast_rows = []
            self.contrast_chart.clear_bars()
            return
        rows = [*c.toward_a, *c.toward_b]
        self.contrast_rows = [r.concept for r in rows]
        a, b = snap.group_a, snap.group_b
        self.contrast_note.setText(f"{c.n_a:,} images in A, {c.n_b:,} in B; beside each bar: the share of A's "
                                   "images it fires in / of B's. Click a bar to select the concept."
                                   if rows else "No concept fires more often in one of them than in the other.")
        tips = [f"{self.name_of(r.concept)} (concept {r.concept})\nfires in {r.images_a:,} of {c.n_a:,} images of "
                f"{a} ({r.share_a:.0%}) and {r.images_b:,} of {c.n_b:,} of {b} ({r.share_b:.0%})\n"
                f"log odds ratio {r.log_odds:+.2f}, z {r.z:+.1f}" for r in rows]
        self.contrast_chart.set_bars([self.name_of(r.concept) for r in rows], [r.z for r in rows],
                                     [A_COLOR if r.z > 0 else B_COLOR for r in rows], tips,
                                     [f"{r.share_a:.0%}/{r.share_b:.0%}" for r in rows])

    # ------------------------------------------------------------------ helpers
    def _enable(self, on: bool) -> None:
        for w in (self.freq_title, self.contrast_title, self.group_a, self.group_b, self.contrast_note):
            w.setEnabled(on)

    def _on_concept(self, _concept: int) -> None:
        if self.isVisible():  # a hidden panel asks when it is shown again
            self.refresh()

    def _on_renamed(self, _concept: int) -> None:
        if self.isVisible():
            self.redraw()

    def showEvent(self, event) -> None:  # noqa: N802 — Qt override
        super().showEvent(event)
        self.refresh()

    def _groups(self) -> tuple[str, ...]:
        return tuple(self.group_a.itemText(i) for i in range(self.group_a.count()))

    def _fill_groups(self, groups: Sequence[str], a: str = "", b: str = "") -> None:
        for combo, pick in ((self.group_a, a), (self.group_b, b)):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(list(groups))
            combo.setCurrentIndex(max(0, combo.findText(pick, Qt.MatchFlag.MatchExactly)) if groups else -1)
            combo.blockSignals(False)

    @Slot(int)
    def _on_contrast_clicked(self, row: int) -> None:
        if 0 <= row < len(self.contrast_rows):
            self.document.select_concept(self.contrast_rows[row])
            self.conceptClicked.emit(self.contrast_rows[row])
