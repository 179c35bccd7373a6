"""The state the views show: model catalog, image, analysis, selections and view settings.

One :class:`Document` per window, on the GUI thread. Panels read it and listen to its
signals; user actions call its setters. Changing a selection or a view setting only emits a
signal — the views re-render from the Analysis already here (ARCHITECTURE rule 4); only a new
image, new classes or a new model make the main window ask the worker for work.

This module imports no Qt (an import-linter contract checks it), as ndv's models: the signals
are psygnal's, emitted synchronously on the caller's thread, so the state can be driven and
tested without a QApplication, and widgets only adapt it. psygnal holds a bound-method listener
weakly: a panel that is garbage collected stops listening by itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from psygnal import Signal

if TYPE_CHECKING:
    from insight_desktop.core.analysis import Analysis
    from insight_desktop.core.concepts.concept_catalog import ConceptCatalog

#: colormaps offered for the concept heatmap (pyqtgraph / matplotlib names)
COLORMAPS = ("inferno", "viridis", "magma", "plasma", "turbo", "CET-L17")
#: class lists offered in the segmentation panel
CLASS_PRESETS: dict[str, tuple[str, ...]] = {
    "Everyday scene": ("person", "cat", "dog", "car", "building", "tree", "sky", "road", "grass", "table"),
    "Animals": ("cat", "dog", "bird", "horse", "cow", "sheep", "fish", "insect"),
    "Food and kitchen": ("coffee cup", "plate", "spoon", "table", "food", "bottle"),
    "Outdoors": ("sky", "cloud", "water", "mountain", "tree", "grass", "sand", "rock", "building"),
}
#: how the heat is scaled: "image", by the image's own strongest activation of the concept (a weak
#: activation looks as hot as a strong one), or "model", by the concept's strongest activation in
#: the model's training data (the same colour means the same activation in every image)
HEAT_SCALES = ("image", "model")
DEFAULT_CLASSES: tuple[str, ...] = ("cat", "dog", "person", "coffee cup", "rocket", "flower", "building", "sky")


@dataclass(frozen=True)
class OverlaySettings:
    """How the layers over the image are drawn (a value: replace it, never mutate it)."""

    show_heatmap: bool = True
    show_segmentation: bool = False
    show_residual: bool = False
    show_opaque: bool = False         # draw the opaque (raw-feature) segmentation instead of the concept one
    colormap: str = "inferno"
    heatmap_opacity: float = 0.6
    threshold: float = 0.0            # heat below this (0..1 of the map's max) is transparent
    mask_opacity: float = 0.5
    hidden_labels: frozenset[int] = field(default_factory=frozenset)
    heat_scale: str = "image"         # one of HEAT_SCALES

    def to_dict(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["hidden_labels"] = sorted(self.hidden_labels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "OverlaySettings":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "hidden_labels" in known:
            known["hidden_labels"] = frozenset(int(v) for v in known["hidden_labels"])
        out = cls(**known)
        if out.colormap not in COLORMAPS:
            out = replace(out, colormap=cls.colormap)
        if out.heat_scale not in HEAT_SCALES:
            out = replace(out, heat_scale=cls.heat_scale)
        return out


@dataclass(frozen=True)
class Region:
    """A rectangle of the image in pixels, [top, bottom) × [left, right). A click selects one
    patch: ``patch`` (row, column) then names it, since a patch's pixel borders are fractional."""

    top: int
    left: int
    bottom: int
    right: int
    patch: tuple[int, int] | None = None


class Document:
    """The single source of truth for one window."""

    modelChanged = Signal()          # catalog replaced (or cleared)
    imageChanged = Signal()          # a new image; the analysis is cleared
    analysisChanged = Signal()       # a new analysis (or None)
    conceptSelected = Signal(int)    # concept id, −1 for none
    segmentSelected = Signal(int)    # segmentation label, −1 for none
    regionSelected = Signal(object)  # Region or None
    overlayChanged = Signal()        # OverlaySettings replaced
    classesChanged = Signal()        # class list edited (not yet analysed)
    conceptRenamed = Signal(int)     # the name shown for this concept id changed (nothing to re-analyse)

    def __init__(self) -> None:
        self.catalog: ConceptCatalog | None = None
        self.image_path: Path | None = None
        self.image: np.ndarray | None = None      # RGB uint8, read-only
        #: a copy of ``image`` at most screen-sized, for drawing (made off the GUI thread by whoever
        #: decoded the image); None: the view makes its own
        self.preview: np.ndarray | None = None
        self.analysis: Analysis | None = None     # the analysis of *this* image, or None
        self.concept: int = -1
        self.segment: int = -1
        self.region: Region | None = None
        self.overlay = OverlaySettings()
        self.classes: tuple[str, ...] = DEFAULT_CLASSES
        self.background: bool = False
        #: the image view's visible area, {"rect": [x, y, width, height]} in image pixels; kept by
        #: the canvas so that a session saves it, None before an image is shown
        self.view: dict[str, Any] | None = None
        #: (image, view) a reopened session asks for: the canvas shows it once that image is shown
        self.view_to_restore: tuple[Path, dict[str, Any]] | None = None
        #: who carries out :meth:`rename_concept` when set (the curation, so a rename is saved and
        #: undoable: gui.review.curation_controller); None: the name book is renamed directly
        self.renamer: Callable[[int, str | None], None] | None = None

    # ------------------------------------------------------------------ model, image, analysis
    def set_catalog(self, catalog: ConceptCatalog | None) -> None:
        if self.catalog is not None:
            self.catalog.names.renamed.disconnect(self._on_renamed)
        self.catalog = catalog
        if catalog is not None:  # the catalog's name book is the one name source; whoever renames, views follow
            catalog.names.renamed.connect(self._on_renamed)
        self.analysis = None
        self.concept = -1
        self.segment = -1
        self.modelChanged.emit()
        self.analysisChanged.emit()
        self.conceptSelected.emit(-1)

    def set_image(self, path: Path | None, rgb: np.ndarray, preview: np.ndarray | None = None) -> None:
        rgb = np.ascontiguousarray(rgb)
        rgb.flags.writeable = False
        self.image_path, self.image = (Path(path) if path else None), rgb
        self.preview = preview if preview is not None and preview.shape[2:] == rgb.shape[2:] else None
        self.analysis = None
        self.segment = -1
        self.region = None
        self.imageChanged.emit()
        self.analysisChanged.emit()
        self.regionSelected.emit(None)

    def set_analysis(self, analysis: Analysis | None) -> None:
        self.analysis = analysis
        self.segment = -1
        self.analysisChanged.emit()
        if self.concept < 0 and analysis is not None and analysis.concepts:
            self.select_concept(analysis.concepts[0].concept)  # something to look at straight away
        else:
            self.conceptSelected.emit(self.concept)

    # ------------------------------------------------------------------ selections
    def select_concept(self, concept: int) -> None:
        concept = int(concept)
        if self.catalog is None or not (0 <= concept < self.catalog.n_concepts):
            concept = -1
        if concept != self.concept:
            self.concept = concept
            self.conceptSelected.emit(concept)

    def select_segment(self, label: int) -> None:
        label = int(label)
        if label != self.segment:
            self.segment = label
            self.segmentSelected.emit(label)

    def select_region(self, region: Region | None) -> None:
        if region != self.region:
            self.region = region
            self.regionSelected.emit(region)

    # ------------------------------------------------------------------ settings
    def set_overlay(self, **changes: Any) -> None:
        new = replace(self.overlay, **changes)
        if new != self.overlay:
            self.overlay = new
            self.overlayChanged.emit()

    def set_classes(self, classes: tuple[str, ...] | list[str], background: bool | None = None) -> None:
        classes = tuple(c.strip() for c in classes if c.strip())
        bg = self.background if background is None else bool(background)
        if classes != self.classes or bg != self.background:
            self.classes, self.background = classes, bg
            self.classesChanged.emit()

    # ------------------------------------------------------------------ names
    def concept_name(self, concept: int) -> str:
        """The name shown for ``concept`` now (the model's, or the user's edit); every view asks here."""
        concept = int(concept)
        if self.catalog is not None and 0 <= concept < self.catalog.n_concepts:
            return self.catalog.name(concept)
        return f"concept {concept}"

    def rename_concept(self, concept: int, name: str | None) -> None:
        """Show ``concept`` as ``name`` everywhere (None or blank: back to the model's name). The
        analysis holds ids only, so nothing is computed again; views redraw on ``conceptRenamed``."""
        if self.catalog is None:
            raise ValueError("no concept model is loaded")
        if self.renamer is not None:
            self.renamer(int(concept), name)
        else:
            self.catalog.names.rename(concept, name)

    def _on_renamed(self, concept: int) -> None:
        self.conceptRenamed.emit(int(concept))

    # ------------------------------------------------------------------ derived
    def concept_activation(self, concept: int) -> float:
        """Image-level activation of ``concept`` in the current analysis (0 when inactive or none)."""
        if self.analysis is None:
            return 0.0
        c = self.analysis.concept(concept)
        return c.activation if c is not None else 0.0

    def region_patches(self, region: Region) -> tuple[slice, slice]:
        """The patch rows and columns of the current analysis that ``region`` covers (at least one)."""
        a = self.analysis
        if a is None:
            raise ValueError("no analysis: a region covers no patches yet")
        h, w = a.grid
        if region.patch is not None and 0 <= region.patch[0] < h and 0 <= region.patch[1] < w:
            r, c = region.patch
            return slice(r, r + 1), slice(c, c + 1)
        return a.patches_under(region.top, region.left, region.bottom, region.right)
