"""A row of buttons that wraps onto more rows when its panel is narrow, and a label that wraps likewise.

A panel on a laptop at 150–200 % is 190–280 logical pixels wide; a plain QHBoxLayout of six
buttons made it wider than that, so its dock scrolled sideways.  The row lays its widgets out
with superqt's QFlowLayout and asks for the height it needs at its current width as its
*minimum* height.  It does not advertise height-for-width: through a QScrollArea and a
QTabWidget that turns every panel above it to its preferred height (a narrow panel then ran
to three times the screen's height), and a QScrollArea ignores it on a QTabWidget anyway.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget
from superqt import QFlowLayout

#: px between buttons, both ways (Fusion's layout spacing is −1, "ask the widgets")
SPACING = 6


class _Flow(QFlowLayout):
    def _doLayout(self, rect: QRect, test_only: bool = False) -> int:  # noqa: N802 — superqt's name
        # One pixel wider: QFlowLayout wraps an item that ends on the last pixel column, as the Qt
        # example it was translated from does (it compares with QRect.right(), which is width − 1).
        return super()._doLayout(rect.adjusted(0, 0, 1, 0), test_only)


class WrappingRow(QWidget):
    """``widgets`` side by side, wrapped onto as many rows as the width needs."""

    def __init__(self, *widgets: QWidget, parent: QWidget | None = None):
        super().__init__(parent)
        self.flow = _Flow(self)
        self.flow.setContentsMargins(0, 0, 0, 0)
        self.flow.setHorizontalSpacing(SPACING)
        self.flow.setVerticalSpacing(SPACING)
        for w in widgets:
            self.flow.addWidget(w)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self._height = -1

    def hasHeightForWidth(self) -> bool:  # noqa: N802 — Qt override
        return False

    def rows(self) -> int:
        """How many rows the widgets take at the current width."""
        tops = {self.flow.itemAt(i).geometry().top() for i in range(self.flow.count())}
        return len(tops)

    def _needed(self, width: int) -> int:
        return self.flow.heightForWidth(width)

    def sizeHint(self) -> QSize:
        hints = [self.flow.itemAt(i).sizeHint() for i in range(self.flow.count())]
        width = sum(h.width() for h in hints) + SPACING * max(len(hints) - 1, 0)
        return QSize(width, self._needed(self.width()) if self.width() > 0 else max((h.height() for h in hints),
                                                                                   default=0))

    def minimumSizeHint(self) -> QSize:
        widest = max((self.flow.itemAt(i).sizeHint().width() for i in range(self.flow.count())), default=0)
        return QSize(widest, self._needed(max(self.width(), widest)))

    def resizeEvent(self, event) -> None:  # noqa: N802 — Qt override
        super().resizeEvent(event)
        height = self._needed(self.width())
        if height != self._height:  # wrapped or unwrapped: the panel must give (or take back) the room
            self._height = height
            self.updateGeometry()


class WrappedLabel(QLabel):
    """A word-wrapped label that asks for the height of its lines at its current width as its minimum.

    A plain word-wrapped QLabel advertises height-for-width.  A vertical box layout then gives
    such an item its *preferred* height for the width as its minimum while the layout's own
    minimum (what the Explanations dock's scroll area allots) counts its real minimum, so the
    panel ran short and the group box below got less than its minimum: the agreement line was
    drawn over the legend.
    """

    def __init__(self, text: str = "", parent: QWidget | None = None):
        super().__init__(text, parent)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self._height = -1

    def hasHeightForWidth(self) -> bool:  # noqa: N802 — Qt override
        return False

    def _needed(self) -> int:
        return max(super().heightForWidth(max(self.width(), 1)), self.fontMetrics().height()) if self.text() else 0

    def minimumSizeHint(self) -> QSize:
        return QSize(self.fontMetrics().averageCharWidth() * 12, self._needed())

    def sizeHint(self) -> QSize:
        return QSize(super().sizeHint().width(), self._needed())

    def setText(self, text: str) -> None:  # noqa: N802 — Qt override
        super().setText(text)
        self._height = self._needed()
        self.updateGeometry()

    def resizeEvent(self, event) -> None:  # noqa: N802 — Qt override
        super().resizeEvent(event)
        height = self._needed()
        if height != self._height:
            self._height = height
            self.updateGeometry()
