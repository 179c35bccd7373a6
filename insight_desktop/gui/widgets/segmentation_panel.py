"""The segmentation panel: the class list to segment into, the legend of the result, and why a
segment got its label.

The panel only edits the document and shows what is in it: the Segment button emits
``segmentRequested`` and the main window asks the worker (the panel never computes).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QGroupBox,
    QHeaderView,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...core.tasks.codes import ConceptContribution
from ...core.tasks.prompts import ClassListError, validate_classes
from ...core.tasks.render import class_colours
from .class_list_editor import ClassListEditor
from .contribution_chart import ContributionChart
from .wrapping_row import WrappedLabel, WrappingRow

_LABEL = Qt.ItemDataRole.UserRole
#: the legend always has room for this many classes (all of them when fewer): the chart of a
#: selected segment grows below it, and must not squeeze the legend down to a few rows
LEGEND_ROWS = 8
_ERROR_STYLE = "color: #c0392b;"


class SegmentationPanel(QWidget):
    """Classes to segment into, the legend of ``analysis.segmentation`` and the selected segment's reasons."""

    segmentRequested = Signal()

    def __init__(self, document, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.classes = ClassListEditor()
        self.background = QCheckBox("Background (FOUND)")
        self.background.setToolTip("Pixels the backbone's FOUND head calls background, and no class claims "
                                   "with 99 % certainty, get an extra 'background' label")
        self.segment_button = QPushButton("Segment")
        self.segment_button.setDefault(True)
        self.notice = WrappedLabel()  # plain text: it quotes file names and class names
        self.notice.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        # Always shown, two lines tall: a notice that came and went moved the Add/Remove row above it
        # and caused misclicks. A longer message is clipped; its tooltip holds all of it.
        self.notice.setFixedHeight(2 * self.notice.fontMetrics().lineSpacing() + 2)
        self.legend = QTreeWidget()
        self.legend.setHeaderLabels(["Class", "Pixels"])
        self.legend.setRootIsDecorated(False)
        self.legend.setUniformRowHeights(True)
        self.legend.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.legend.header().setStretchLastSection(False)
        self.legend.setToolTip("Tick to show a class on the image; click a row to see why it got that label")
        self.agreement = WrappedLabel()
        self.show_segmentation = QCheckBox("Show segmentation")
        self.show_opaque = QCheckBox("Opaque prediction")
        self.show_opaque.setToolTip("Draw the prediction from the raw backbone features instead of the concepts")
        self.chart = ContributionChart(name_of=document.concept_name)

        # Flow layouts: on a narrow panel these rows wrap instead of scrolling the panel sideways.
        row = WrappingRow(self.background, self.segment_button)
        toggles = WrappingRow(self.show_segmentation, self.show_opaque)
        classes_box = QGroupBox("Classes to find")
        box = QVBoxLayout(classes_box)
        box.addWidget(self.classes, 1)
        box.addWidget(row)
        box.addWidget(self.notice)
        result_box = QGroupBox("Segmentation")
        box = QVBoxLayout(result_box)
        box.addWidget(self.legend, 1)
        box.addWidget(self.agreement)
        box.addWidget(toggles)
        box.addWidget(self.chart)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(classes_box, 1)
        layout.addWidget(result_box, 1)

        self._syncing = False
        self._busy = False
        self._awaiting = False   # Segment pressed: show the segmentation when it arrives
        self._problem = ""
        self.classes.edited.connect(self._classes_edited)
        self.classes.problem.connect(self._file_problem)
        self.background.toggled.connect(self._background_toggled)
        self.segment_button.clicked.connect(self._segment_clicked)
        self.legend.itemChanged.connect(self._legend_ticked)
        self.legend.itemSelectionChanged.connect(self._legend_selected)
        self.show_segmentation.toggled.connect(self._show_segmentation_toggled)
        self.show_opaque.toggled.connect(self._show_opaque_toggled)
        self.chart.conceptClicked.connect(document.select_concept)
        document.classesChanged.connect(self._on_classes)
        document.analysisChanged.connect(self._on_analysis)
        document.imageChanged.connect(self._image_changed)
        document.modelChanged.connect(self._refresh_notice)
        document.overlayChanged.connect(self._on_overlay)
        document.segmentSelected.connect(self._on_segment)
        document.conceptSelected.connect(self.chart.set_highlighted)
        document.conceptRenamed.connect(self.chart.refresh_names)
        self._on_classes()
        self._on_analysis()

    def set_busy(self, busy: bool) -> None:
        """While the worker segments, the button says so and cannot be pressed again."""
        self._busy = bool(busy)
        self.segment_button.setText("Segmenting…" if self._busy else "Segment")
        self._refresh_notice()

    def analysed_classes(self) -> tuple[str, ...] | None:
        """The class prompts of the current segmentation (without FOUND's background), or None."""
        seg = self.document.analysis.segmentation if self.document.analysis is not None else None
        if seg is None:
            return None
        return seg.class_names[:seg.background_label] if seg.background_label is not None else seg.class_names

    # ------------------------------------------------------------------ document → widgets
    def _on_classes(self) -> None:
        if self.classes.names() != self.document.classes:
            self.classes.set_names(self.document.classes)
        self._syncing = True
        self.background.setChecked(self.document.background)
        self._syncing = False
        self._refresh_notice()

    def _on_analysis(self) -> None:
        seg = self.document.analysis.segmentation if self.document.analysis is not None else None
        self._syncing = True
        self.legend.clear()
        if seg is not None:
            colours = class_colours(len(seg.class_names), background=seg.background_label is not None)
            total = max(int(seg.labels.size), 1)
            pixels = {s.label: s.pixels for s in seg.segments}
            for label, (name, colour) in enumerate(zip(seg.class_names, colours)):
                n = pixels.get(label, 0)
                share = f"{100 * n / total:.1f} %" if n == 0 or 100 * n / total >= 0.05 else "< 0.1 %"
                item = QTreeWidgetItem([name, share])
                item.setData(0, _LABEL, label)
                item.setIcon(0, _swatch(colour))
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                item.setToolTip(1, f"{n:,} of {total:,} pixels")
                self.legend.addTopLevelItem(item)
            self.legend.resizeColumnToContents(1)
            self._keep_legend_rows(len(seg.class_names))
            self.agreement.setText(f"Concept path agrees with the opaque prediction on {100 * seg.agreement:.1f} % "
                                   "of pixels")
        else:
            self.agreement.setText("")
        self._syncing = False
        self._on_overlay()
        self._on_segment(self.document.segment)
        if seg is not None and self._awaiting:
            self._awaiting = False
            self.document.set_overlay(show_segmentation=True)
        self._busy = False
        self.segment_button.setText("Segment")
        self._refresh_notice()

    def _keep_legend_rows(self, n: int) -> None:
        """Give the legend the height of ``min(n, LEGEND_ROWS)`` rows (the panel scrolls instead)."""
        rows = max(1, min(n, LEGEND_ROWS))
        row = self.legend.sizeHintForRow(0) if self.legend.topLevelItemCount() else self.fontMetrics().height() + 4
        self.legend.setMinimumHeight(self.legend.header().sizeHint().height() + rows * max(row, 1)
                                     + 2 * self.legend.frameWidth() + 2)

    def _on_overlay(self) -> None:
        o = self.document.overlay
        self._syncing = True
        for i in range(self.legend.topLevelItemCount()):
            item = self.legend.topLevelItem(i)
            hidden = item.data(0, _LABEL) in o.hidden_labels
            item.setCheckState(0, Qt.CheckState.Unchecked if hidden else Qt.CheckState.Checked)
        self.show_segmentation.setChecked(o.show_segmentation)
        self.show_opaque.setChecked(o.show_opaque)
        self._syncing = False

    def _on_segment(self, label: int) -> None:
        self._syncing = True
        self.legend.clearSelection()
        for i in range(self.legend.topLevelItemCount()):
            item = self.legend.topLevelItem(i)
            if item.data(0, _LABEL) == label:
                self.legend.setCurrentItem(item)
        self._syncing = False
        self._show_reasons(label)

    def _show_reasons(self, label: int) -> None:
        seg = self.document.analysis.segmentation if self.document.analysis is not None else None
        if seg is None:
            self.chart.clear("No segmentation yet: press Segment")
            return
        s = seg.segment(label) if label >= 0 else None
        if label < 0:
            self.chart.clear("Click a class in the legend (or a place in the image) to see why it got its label")
        elif s is None:
            self.chart.clear(f"No pixel is labelled '{seg.class_names[label]}'" if label < len(seg.class_names)
                             else "No such segment")
        elif label == seg.background_label:
            self.chart.clear("The background comes from the FOUND head, which has no concept explanation")
        else:
            # Per pixel: the bars then add up to the mean logit the title names, not a sum over thousands of pixels.
            per_pixel = [ConceptContribution(c.concept, c.value / s.pixels) for c in s.contributions]
            self.chart.set_contributions(per_pixel, s.bias / s.pixels,
                                         f"Why '{s.name}' here: mean logit {s.mean_logit:.2f} "
                                         f"per pixel over {s.pixels:,} px")
        self.chart.set_highlighted(self.document.concept)

    def _refresh_notice(self) -> None:
        doc = self.document
        problem = self._problem
        if not problem:
            try:
                validate_classes(self.classes.names())
            except ClassListError as exc:
                problem = str(exc)
        analysed = self.analysed_classes()
        seg = doc.analysis.segmentation if doc.analysis is not None else None
        if problem:
            text = problem
        elif self._busy:
            text = "Segmenting…"
        elif doc.image is None:
            text = "Open an image to segment it"
        elif analysed is None:
            text = "Press Segment to label every pixel with one of these classes"
        elif analysed != doc.classes or (seg.background_label is not None) != doc.background:
            text = "Classes changed — press Segment"
        else:
            text = ""
        self.notice.setText(text)
        self.notice.setToolTip(text)
        self.notice.setStyleSheet(_ERROR_STYLE if problem else "")
        self.segment_button.setEnabled(not problem and not self._busy and doc.image is not None
                                       and doc.catalog is not None)

    # ------------------------------------------------------------------ user → document
    def _classes_edited(self, names: tuple) -> None:
        self._problem = ""
        self.document.set_classes(names)
        self._refresh_notice()  # the list may be invalid (a duplicate) and equal to the document's

    def _file_problem(self, message: str) -> None:
        self._problem = message
        self._refresh_notice()

    def _background_toggled(self, on: bool) -> None:
        if not self._syncing:
            self.document.set_classes(self.document.classes, background=on)

    def _segment_clicked(self) -> None:
        seg = self.document.analysis.segmentation if self.document.analysis is not None else None
        if seg is not None and self.analysed_classes() == self.document.classes \
                and (seg.background_label is not None) == self.document.background:
            self.document.set_overlay(show_segmentation=True)  # already there: the worker has nothing to do
        else:
            self._awaiting = True
        self.segmentRequested.emit()

    def _image_changed(self) -> None:
        self._awaiting = False  # a request for the previous image is dropped as stale
        self._refresh_notice()

    def _legend_ticked(self, item: QTreeWidgetItem, column: int) -> None:
        if self._syncing or column != 0:
            return
        hidden = {self.legend.topLevelItem(i).data(0, _LABEL) for i in range(self.legend.topLevelItemCount())
                  if self.legend.topLevelItem(i).checkState(0) != Qt.CheckState.Checked}
        self.document.set_overlay(hidden_labels=frozenset(hidden))

    def _legend_selected(self) -> None:
        if self._syncing:
            return
        items = self.legend.selectedItems()
        self.document.select_segment(items[0].data(0, _LABEL) if items else -1)

    def _show_segmentation_toggled(self, on: bool) -> None:
        if not self._syncing:
            self.document.set_overlay(show_segmentation=on)

    def _show_opaque_toggled(self, on: bool) -> None:
        if not self._syncing:
            self.document.set_overlay(show_opaque=on)


def _swatch(colour, size: int = 14) -> QIcon:
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(*colour))
    return QIcon(pixmap)
