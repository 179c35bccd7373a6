"""The Matryoshka level slider: the explanation through levels 1..L only, and how far it is from
the full one.

The dictionary's levels are nested prefixes (docs/method.md §2): the concepts of levels 1..L are a
model of their own, so the level-L explanation is the codes with every concept of a level above
``L`` set to 0 ("concepts only"), segmented and classified again (:class:`~.switches.SwitchState`
``level``). The small plot shows, for every ``L``, the mIoU of the level-L segmentation against
the full model's and the FVU of the level-L reconstruction; both are computed on a pool thread
once per analysis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from ...core.analysis import Analysis
from ...core.tasks.decoder import without_concepts
from ...core.tasks.segmentation import segment
from ..jobs import JobPool, Outcome
from .switches import SwitchState, core_whatif, reference_labels

#: the FVU in the plot, when the Analysis does not keep the features: against the full reconstruction
FVU_VS_FULL = "FVU vs the full reconstruction x̂"
FVU_VS_FEATURES = "FVU vs the features x"


@dataclass(frozen=True, eq=False)
class LevelCurve:
    levels: np.ndarray   # int64 [n]: 1..n
    miou: np.ndarray     # float64 [n]: mIoU of the level-L labels against the full model's (NaN: no segmentation)
    fvu: np.ndarray      # float64 [n]
    fvu_label: str


def n_levels(base: Analysis, catalog=None) -> int:
    """How many Matryoshka levels the model has (the catalog's), else the highest level seen here."""
    ends = getattr(getattr(catalog, "relations", None), "group_ends", None)
    if ends:
        return len(ends)
    return max((c.level for c in base.concepts), default=1)


def miou(labels: np.ndarray, reference: np.ndarray) -> float:
    """Mean over the labels present in either of IoU(labels == c, reference == c)."""
    a, b = np.asarray(labels).ravel(), np.asarray(reference).ravel()
    n = int(max(a.max(initial=0), b.max(initial=0))) + 1
    inter = np.bincount(a[a == b], minlength=n).astype(np.float64)
    union = np.bincount(a, minlength=n) + np.bincount(b, minlength=n) - inter
    present = union > 0
    return float(np.mean(inter[present] / union[present])) if present.any() else float("nan")


def level_curve(base: Analysis, levels: int) -> LevelCurve:
    """mIoU against the full model's labels and FVU for each prefix 1..``levels``: the core's
    (:func:`~insight_desktop.core.tasks.whatif.level_curve`; FVU against the features x = x̂ + the
    residual the Analysis keeps), else made here against the full reconstruction x̂
    (Σ‖x̂ − x̂_L‖² / Σ‖x̂ − mean x̂‖², 0 at the top level)."""
    core = core_whatif()
    if core is not None:
        got = core.level_curve(base, levels)
        label = FVU_VS_FEATURES if got.fvu_against == "features" else FVU_VS_FULL
        return LevelCurve(np.asarray(got.levels, dtype=np.int64), np.asarray(got.miou), np.asarray(got.fvu), label)
    full = base.decoder.decode(base.codes)
    total = float(((full - full.mean(axis=0)) ** 2).sum())
    reference = reference_labels(base)
    ls = np.arange(1, levels + 1, dtype=np.int64)
    miou_out, fvu_out = np.full(levels, np.nan), np.full(levels, np.nan)
    for i, level in enumerate(ls):
        removed = SwitchState(level=int(level)).removed(base)
        codes = without_concepts(base.codes, removed)
        if removed.size:
            fvu_out[i] = float(((full - base.decoder.decode(codes)) ** 2).sum()) / total if total > 0 else np.nan
        else:
            fvu_out[i] = 0.0
        if reference is not None:
            labels = segment(base.segmentation_inputs(codes)).labels if removed.size else reference
            miou_out[i] = miou(labels, reference)
    return LevelCurve(ls, miou_out, fvu_out, FVU_VS_FULL)


class LevelsPanel(QWidget):
    """A slider 1..n (n: all levels, the full explanation) and the mIoU / FVU plot against L."""

    levelChosen = Signal(object)   # int L, or None for all levels

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.n = 1
        self.curve: LevelCurve | None = None
        self._base: Analysis | None = None
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(1, 1)
        self.slider.setPageStep(1)
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider.setTickInterval(1)
        self.slider.setToolTip("Explain with the concepts of levels 1..L only (the first L nested prefixes "
                               "of the dictionary); at the right end, all levels")
        self.label = QLabel()
        self.plot = pg.PlotWidget(background=None)
        self.plot.setMinimumHeight(140)
        self.plot.setMouseEnabled(False, False)
        self.plot.hideButtons()
        self.plot.addLegend(offset=(-5, 5))
        self.plot.setLabel("bottom", "level L")
        self.plot.setYRange(0.0, 1.0)
        self.miou_curve = self.plot.plot([], [], pen=pg.mkPen("#2b83ba", width=2), symbol="o", symbolSize=6,
                                         name="mIoU vs full")
        self.fvu_curve = self.plot.plot([], [], pen=pg.mkPen("#d7191c", width=2), symbol="s", symbolSize=6,
                                        name="FVU")
        self.marker = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#888888", style=Qt.PenStyle.DashLine))
        self.plot.addItem(self.marker)
        row = QHBoxLayout()
        row.addWidget(QLabel("Levels 1 –"))
        row.addWidget(self.slider, 1)
        row.addWidget(self.label)
        box = QVBoxLayout(self)
        box.addLayout(row)
        box.addWidget(self.plot)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.caption.setStyleSheet("color: palette(mid);")
        box.addWidget(self.caption)
        self._pool = JobPool(1, self)
        self._pool.done.connect(self._on_done)
        self.slider.valueChanged.connect(self._on_slider)
        self.set_analysis(None, 1)

    def set_analysis(self, base: Analysis | None, levels: int) -> None:
        """A new base analysis of a model with ``levels`` levels: the slider at all levels, the curve made anew."""
        self._pool.new_generation()
        self._base, self.n, self.curve = base, max(1, int(levels)), None
        self.slider.blockSignals(True)
        self.slider.setRange(1, self.n)
        self.slider.setValue(self.n)
        self.slider.blockSignals(False)
        self.slider.setEnabled(base is not None and self.n > 1)
        self._show_level(self.n)
        self.miou_curve.setData([], [])
        self.fvu_curve.setData([], [])
        self.caption.setText("")
        if base is not None and self.n > 1:
            n = self.n
            self._pool.submit(id(base), lambda _p, _s: level_curve(base, n), "compute the level curve")

    def show_level(self, level: int | None) -> None:
        """Follow the state (undo, restore): the slider at ``level`` (None: all), without asking again."""
        value = self.n if level is None else int(level)
        self.slider.blockSignals(True)
        self.slider.setValue(value)
        self.slider.blockSignals(False)
        self._show_level(value)

    def _show_level(self, value: int) -> None:
        self.label.setText(f"{value} of {self.n}" + (" (all)" if value >= self.n else ""))
        self.marker.setValue(value)

    def _on_slider(self, value: int) -> None:
        self._show_level(value)
        self.levelChosen.emit(None if value >= self.n else int(value))

    def wait(self, ms: int = -1) -> bool:
        return self._pool.wait(ms)

    def shutdown(self) -> None:
        self._pool.shutdown()

    @Slot(object, object)
    def _on_done(self, key, outcome: Outcome) -> None:
        if self._base is None or key != id(self._base) or not outcome.succeeded:
            return
        curve: LevelCurve = outcome.value
        self.curve = curve
        self.miou_curve.setData(curve.levels.astype(float), np.nan_to_num(curve.miou, nan=0.0))
        self.fvu_curve.setData(curve.levels.astype(float), curve.fvu)
        self.plot.setXRange(1, self.n, padding=0.05)
        top = float(np.nanmax(np.r_[curve.fvu, 1.0]))
        self.plot.setYRange(0.0, top, padding=0.05)
        text = f"Blue: mIoU of the level-L segmentation against all levels'. Red: {curve.fvu_label}."
        self.caption.setText(text)
        self.plot.setToolTip(text)
