"""A horizontal bar chart of concept contributions to one logit: why a class won (or lost).

Custom-painted rather than a pyqtgraph plot: a handful of labelled bars needs exact hit-testing
for clicks and readable text labels, which a QPainter gives with less machinery. The chart shows
the ``top`` contributions by size (largest first), then the remaining concepts summed into one
light-grey bar and the bias as a grey bar, so the bars always add up to the whole logit. While
rejected concepts are hidden (:meth:`ContributionChart.set_hidden`), their contributions are
summed into one "rejected concepts" bar (:func:`~insight_desktop.core.curation.fold_rejected`),
so the bars still add up exactly. Bars hold concept ids; their labels are looked up by
``name_of`` each time they are drawn, so :meth:`ContributionChart.refresh_names` is all a rename
needs.
"""

from __future__ import annotations

from typing import Callable, Sequence

from PySide6.QtCore import QPoint, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFontMetrics, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QStyle, QStyleOptionButton, QToolTip, QWidget

from ...core.curation.fold import REJECTED_LABEL, fold_rejected
from .plain_text import escaped_tooltip

POSITIVE = QColor(43, 131, 186)   # blue: speaks for the class
NEGATIVE = QColor(215, 25, 28)    # red: speaks against (blue/red stays apart for colour-blind readers)
BIAS = QColor(150, 150, 150)
REST = QColor(205, 205, 205)
REJECTED = QColor(185, 160, 160)  # the rejected concepts' sum: muted, neither for nor against
HIGHLIGHT = QColor(255, 170, 0)

_ROW = 20        # px per bar row
_GAP = 4         # px between a bar and its row's edges
_PAD = 6
_VALUE_W = 64    # px reserved right of the bars for value text
_MIN_BARS = 40   # px the bars keep however long the labels are
_BOX = 13        # px of a switch check box (switchable charts)


def elide_words(fm: QFontMetrics, text: str, width: int) -> str:
    """``text`` cut to ``width`` px at the end of a word ("136 other…"), else at the right ("ornith…").

    Never in the middle (Qt's ElideMiddle made "136 oth…oncepts", which reads as neither).
    """
    if fm.horizontalAdvance(text) <= width:
        return text
    words = text.split(" ")
    for n in range(len(words) - 1, 0, -1):
        head = " ".join(words[:n]).rstrip(" ,;:·-") + "…"
        if fm.horizontalAdvance(head) <= width:
            return head
    return fm.elidedText(text, Qt.TextElideMode.ElideRight, width)


class ContributionChart(QWidget):
    """Bars of ``ConceptContribution(concept, value)`` labelled ``name_of(concept)``; a click on a
    concept's row emits its id."""

    conceptClicked = Signal(int)
    #: a concept bar's check box was clicked (switch the concept off; True: with its subtree, Shift)
    switchToggled = Signal(int, bool)

    def __init__(self, parent: QWidget | None = None, top: int = 12,
                 name_of: Callable[[int], str] | None = None):
        super().__init__(parent)
        self.top = int(top)
        self._name_of = name_of or (lambda concept: f"concept {concept}")
        self._title = ""
        self._message = "Nothing to explain yet"
        self._bars: list[tuple[int, float]] = []         # (concept, value) shown as concept bars
        self._rest: tuple[int, float] | None = None      # (how many concepts, their sum) not shown
        self._bias: float | None = None
        self._rejected: tuple[int, float] | None = None  # (how many rejected concepts, their sum), folded
        self._hidden: frozenset[int] = frozenset()
        self._given: tuple[list, float | None, str] | None = None   # what set_contributions was given
        self._highlight = -1
        self.switchable = False  # a check box before each concept bar (gui.whatif turns it on)
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Minimum)

    # ------------------------------------------------------------------ data
    def set_contributions(self, contributions: Sequence, bias: float | None = None, title: str = "") -> None:
        """Show the ``top`` largest of ``contributions`` (by size), the rest summed, and ``bias``
        (the hidden concepts' summed first, into one "rejected concepts" bar)."""
        contributions = list(contributions)
        self._given = (contributions, bias, title)
        self._rejected = None
        if self._hidden:
            folded = fold_rejected(contributions, self._hidden)
            contributions = list(folded.kept)
            if folded.n_rejected:
                self._rejected = (folded.n_rejected, folded.rejected_value)
        ranked = sorted(contributions, key=lambda c: (-abs(c.value), c.concept))
        shown = sorted(ranked[:self.top], key=lambda c: (-c.value, c.concept))
        rest = ranked[self.top:]
        self._bars = [(int(c.concept), float(c.value)) for c in shown]
        self._rest = (len(rest), float(sum(c.value for c in rest))) if rest else None
        self._bias = None if bias is None else float(bias)
        self._title = title
        self._message = "" if (self._bars or self._bias is not None) else "No concept contributes"
        self._changed()

    def clear(self, message: str = "Nothing to explain yet") -> None:
        self._bars, self._rest, self._bias, self._title, self._message = [], None, None, "", message
        self._rejected, self._given = None, None
        self._changed()

    def set_hidden(self, concepts) -> None:
        """Sum the contributions of ``concepts`` (the rejected ones) into one bar from now on
        (an empty set: show them as any other concept again)."""
        concepts = frozenset(int(j) for j in concepts)
        if concepts != self._hidden:
            self._hidden = concepts
            if self._given is not None:
                self.set_contributions(*self._given)

    def rejected(self) -> tuple[int, float] | None:
        """(number of rejected concepts, summed value) of the "rejected concepts" bar, or None."""
        return self._rejected

    def refresh_names(self) -> None:
        """Draw the labels again (a concept was renamed; the bars stay)."""
        self._changed()

    def set_highlighted(self, concept: int) -> None:
        """Outline the bar of ``concept`` (the document's selected concept; −1 for none)."""
        if concept != self._highlight:
            self._highlight = int(concept)
            self.update()

    def bars(self) -> list[tuple[int, float]]:
        """The concept bars as drawn, top to bottom: (concept, value)."""
        return list(self._bars)

    def labels(self) -> list[str]:
        """The row labels as drawn, top to bottom (concepts, then the rest and the bias)."""
        return [r[0] for r in self._rows()]

    def bias(self) -> float | None:
        return self._bias

    def rest(self) -> tuple[int, float] | None:
        """(number of concepts, summed value) folded into the "other concepts" bar, or None."""
        return self._rest

    def title(self) -> str:
        return self._title

    def message(self) -> str:
        """The empty-state text ('' while bars are shown)."""
        return self._message

    def total(self) -> float:
        """Sum of every bar (concepts, the rest and the bias): the whole logit."""
        return (sum(v for _, v in self._bars) + (self._rest[1] if self._rest else 0.0)
                + (self._rejected[1] if self._rejected else 0.0) + (self._bias or 0.0))

    # ------------------------------------------------------------------ geometry
    def _rows(self) -> list[tuple[str, float, QColor, int]]:
        """(label, value, colour, concept or −1) per drawn row, top to bottom."""
        rows = [(self._name_of(c), v, POSITIVE if v >= 0 else NEGATIVE, c) for c, v in self._bars]
        if self._rest:
            rows.append((f"{self._rest[0]} other concept{'s' * (self._rest[0] != 1)}", self._rest[1], REST, -1))
        if self._rejected:
            n = self._rejected[0]
            label = f"{n} {REJECTED_LABEL}" if n != 1 else f"1 {REJECTED_LABEL.removesuffix('s')}"
            rows.append((label, self._rejected[1], REJECTED, -1))
        if self._bias is not None:
            rows.append(("bias", self._bias, BIAS, -1))
        return rows

    def _title_height(self) -> int:
        return QFontMetrics(self.font()).height() + _PAD if self._title else 0

    def _label_width(self) -> int:
        """Up to 40 % of the width for labels, more when the summary rows ("136 other concepts",
        "bias") need it: they say what their bars are, so they are cut last."""
        fm = QFontMetrics(self.font())
        rows = self._rows()
        widest = max((fm.horizontalAdvance(r[0]) for r in rows), default=0) + _PAD
        summary = max((fm.horizontalAdvance(r[0]) for r in rows if r[3] < 0), default=0) + _PAD
        short = fm.horizontalAdvance(f"{self._rest[0]} others") + _PAD if self._rest else 0  # the least they get
        room = self.width() - _VALUE_W - 3 * _PAD - _MIN_BARS
        floor = summary if summary <= room else short  # too narrow for "213 other concepts": "213 others"
        return min(widest, max(60, short, room), max(60, int(self.width() * 0.4), floor))

    def _scale(self) -> tuple[float, float, int, int]:
        """(lowest value, highest value, x of the axis start, axis width in px)."""
        values = [r[1] for r in self._rows()]
        lo, hi = min(0.0, *values), max(0.0, *values)
        x0 = _PAD + self._label_width()
        return lo, hi, x0, max(10, self.width() - x0 - _VALUE_W - _PAD)

    def _x(self, v: float, lo: float, hi: float, x0: int, width: int) -> float:
        return x0 + (v - lo) / (hi - lo) * width if hi > lo else float(x0)

    def _row_rect(self, i: int) -> QRect:
        return QRect(0, _PAD + self._title_height() + i * _ROW, self.width(), _ROW)

    def bar_rect(self, i: int) -> QRectF:
        """The drawn rectangle of row ``i`` (concept bars first, then the rest, then the bias)."""
        rows = self._rows()
        lo, hi, x0, width = self._scale()
        a, b = self._x(0.0, lo, hi, x0, width), self._x(rows[i][1], lo, hi, x0, width)
        row = self._row_rect(i)
        left, right = min(a, b), max(a, b)
        return QRectF(left, row.top() + _GAP, max(right - left, 1.0), _ROW - 2 * _GAP)

    def bar_center(self, i: int) -> QPoint:
        """Centre of bar ``i`` in widget coordinates (for clicks in tests and tooltips)."""
        return self.bar_rect(i).center().toPoint()

    def _row_at(self, pos: QPoint) -> int:
        top = _PAD + self._title_height()
        i = (pos.y() - top) // _ROW if pos.y() >= top else -1
        return i if 0 <= i < len(self._rows()) else -1

    def sizeHint(self) -> QSize:
        return QSize(320, self.minimumSizeHint().height())

    def minimumSizeHint(self) -> QSize:
        rows = max(len(self._rows()), 2)
        return QSize(160, 2 * _PAD + self._title_height() + rows * _ROW)  # fits a 200 % laptop panel

    def _changed(self) -> None:
        self.updateGeometry()
        self.update()

    # ------------------------------------------------------------------ events
    def box_rect(self, i: int) -> QRect:
        """The check box of concept bar ``i`` (left of its label), when :attr:`switchable`."""
        row = self._row_rect(i)
        return QRect(2, row.top() + (_ROW - _BOX) // 2, _BOX, _BOX)

    def _box(self) -> int:
        return _BOX + 2 if self.switchable else 0

    def mousePressEvent(self, event: QMouseEvent) -> None:
        i = self._row_at(event.position().toPoint())
        if (event.button() == Qt.MouseButton.LeftButton and 0 <= i < len(self._bars) and self.switchable
                and event.position().x() < self._box() + 2):
            shift = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
            self.switchToggled.emit(self._bars[i][0], shift)
        elif event.button() == Qt.MouseButton.LeftButton and 0 <= i < len(self._bars):
            self.conceptClicked.emit(self._bars[i][0])
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        i = self._row_at(event.position().toPoint())
        clickable = 0 <= i < len(self._bars)
        self.setCursor(Qt.CursorShape.PointingHandCursor if clickable else Qt.CursorShape.ArrowCursor)
        if i >= 0:
            label, value, _, concept = self._rows()[i]
            QToolTip.showText(event.globalPosition().toPoint(),
                              self.tooltip_text(label, value, concept, clickable), self)
        super().mouseMoveEvent(event)

    @staticmethod
    def tooltip_text(label: str, value: float, concept: int, clickable: bool) -> str:
        """A row's tooltip: the name in full (escaped: a name is text, never markup) and its value."""
        what = f"{label} (concept {concept})" if concept >= 0 else label
        return escaped_tooltip(f"{what}: {value:+.4g}" + ("\nclick to show this concept" if clickable else ""))

    def drawn_labels(self) -> list[str]:
        """The row labels as painted at the current width (elided where they do not fit)."""
        fm, width = QFontMetrics(self.font()), self._label_width() - _PAD - self._box()
        labels = []
        for label, _, _, concept in self._rows():
            if (concept < 0 and self._rest and label.endswith(("other concept", "other concepts"))
                    and fm.horizontalAdvance(label) > width):
                label = f"{self._rest[0]} others"  # "213 other concepts" in short, rather than "213 other…"
            labels.append(elide_words(fm, label, width))
        return labels

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        text = self.palette().color(self.foregroundRole())
        fm = QFontMetrics(self.font())
        rows = self._rows()
        if self._title:
            p.setPen(text)
            p.drawText(QRect(_PAD, _PAD, self.width() - 2 * _PAD, fm.height()), Qt.AlignmentFlag.AlignLeft,
                       fm.elidedText(self._title, Qt.TextElideMode.ElideRight, self.width() - 2 * _PAD))
        if not rows:
            muted = QColor(text)
            muted.setAlpha(150)
            p.setPen(muted)
            p.drawText(self.rect().adjusted(_PAD, _PAD + self._title_height(), -_PAD, -_PAD),
                       Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._message)
            return
        lo, hi, x0, width = self._scale()
        label_w = self._label_width()
        for i, ((_, value, colour, concept), shown) in enumerate(zip(rows, self.drawn_labels())):
            row = self._row_rect(i)
            p.setPen(text)
            if self.switchable and concept >= 0:  # checked: the concept is on; a click switches it off
                box = QStyleOptionButton()
                box.rect, box.state = self.box_rect(i), QStyle.StateFlag.State_Enabled | QStyle.StateFlag.State_On
                self.style().drawPrimitive(QStyle.PrimitiveElement.PE_IndicatorCheckBox, box, p, self)
            p.drawText(QRect(_PAD + self._box(), row.top(), label_w - _PAD - self._box(), _ROW),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, shown)
            rect = self.bar_rect(i)
            p.fillRect(rect, colour)
            if concept >= 0 and concept == self._highlight:
                p.setPen(QPen(HIGHLIGHT, 2))
                p.drawRect(rect.adjusted(-1, -1, 1, 1))
            p.setPen(text)
            p.drawText(QRectF(rect.right() + 4, row.top(), _VALUE_W, _ROW),
                       Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, f"{value:+.3g}")
        zero = round(self._x(0.0, lo, hi, x0, width))
        axis = QColor(text)
        axis.setAlpha(120)
        p.setPen(axis)
        top = self._row_rect(0).top()
        p.drawLine(zero, top, zero, top + len(rows) * _ROW)
