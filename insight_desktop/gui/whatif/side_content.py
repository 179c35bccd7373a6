"""What the panes of the side-by-side view show, as plain numpy (no widgets): the photo and one
RGBA layer at display size, made with the canvas's own functions (:mod:`insight_desktop.gui.layers`),
and what the layer says at an image pixel (the cursor readout).

Levels and switch-offs are recomputed with :func:`insight_desktop.core.tasks.whatif.switch_off`
(labels only, "concepts only": ``z_j = 0`` for the concepts switched off, or for every concept
deeper than level L — docs/method.md §2's nested prefixes).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Callable, Sequence

import numpy as np

from ...core.tasks.render import class_colours
from ...core.tasks.segmentation import BACKGROUND_NAME
from ...core.tasks.whatif import switch_off
from ..layers import colormap_lut, heat_rgba, label_rgba, nearest_labels, patch_activation, photo_preview


@dataclass(frozen=True)
class PaneContent:
    """What one pane shows: a title, the photo and one layer over it (display size), and what the
    layer means at an image pixel (the readout)."""

    title: str
    photo: np.ndarray | None                 # RGB uint8, None: nothing to show
    image_size: tuple[int, int]              # (H, W) of the image the pixels refer to
    layer: np.ndarray | None = None          # RGBA uint8 at display size
    value_at: Callable[[int, int], str] | None = None   # image pixel (y, x) → what the layer says there
    legend: tuple[tuple[str, tuple[int, int, int]], ...] = ()   # (name, colour) of the labels shown

    def readout(self, y: int, x: int) -> str:
        value = self.value_at(y, x) if self.value_at is not None else ""
        return f"x {x}, y {y}" + (f" · {value}" if value else "")


def empty(title: str) -> PaneContent:
    return PaneContent(title, None, (1, 1))


def concept_content(image: np.ndarray, analysis, concept: int, name: str, colormap: str = "inferno",
                    preview: np.ndarray | None = None, title: str = "") -> PaneContent:
    """The concept's heat (the canvas's display: z² upsampled, over its max) and ``z`` under the cursor."""
    photo = preview if preview is not None else photo_preview(image)
    size = photo.shape[:2]
    heat = analysis.display_map(concept, size) if concept >= 0 else np.zeros(size, np.float32)

    def value_at(y: int, x: int) -> str:
        r, c = analysis.patch_at(y, x)
        return f"{name} z = {patch_activation(analysis, r, c, concept):.3f}"

    return PaneContent(title or name, photo, image.shape[:2], heat_rgba(heat, colormap_lut(colormap), 0.0), value_at)


def labels_content(image: np.ndarray, labels: np.ndarray, class_names: Sequence[str], title: str,
                   preview: np.ndarray | None = None, before: np.ndarray | None = None) -> PaneContent:
    """Segmentation ``labels`` [H, W] in the class colours; with ``before`` (labels of the same
    image), the readout also says what a changed pixel was."""
    photo = preview if preview is not None else photo_preview(image)
    names = tuple(class_names)
    colours = class_colours(len(names), background=bool(names) and names[-1] == BACKGROUND_NAME)
    shown = nearest_labels(labels, photo.shape[:2])
    layer = label_rgba(shown, colours)
    present = np.flatnonzero(np.bincount(shown.ravel(), minlength=len(names)))
    legend = tuple((names[i], colours[i]) for i in present if i < len(names))

    def value_at(y: int, x: int) -> str:
        now = names[int(labels[y, x])]
        if before is None or int(before[y, x]) == int(labels[y, x]):
            return now
        return f"{now} (was {names[int(before[y, x])]})"

    return PaneContent(title, photo, image.shape[:2], layer, value_at, legend)


def dominant_content(image: np.ndarray, analysis, level: int, name: Callable[[int], str],
                     preview: np.ndarray | None = None) -> PaneContent:
    """Without classes, a level's map: each patch coloured by its strongest concept of level ≤ L."""
    photo = preview if preview is not None else photo_preview(image)
    kept = np.array(sorted(c.concept for c in analysis.concepts if c.level <= level), dtype=np.int64)
    h, w = analysis.grid
    if kept.size:
        maps = analysis.codes.maps(kept).reshape(kept.size, h, w)
        grid = np.where(maps.max(axis=0) > 0, maps.argmax(axis=0), -1)
    else:
        maps, grid = np.zeros((0, h, w), np.float32), np.full((h, w), -1)
    dh, dw = photo.shape[:2]
    ih, iw = analysis.image_size
    rows = np.array([analysis.patch_at((i + 0.5) * ih / dh, 0)[0] for i in range(dh)])
    cols = np.array([analysis.patch_at(0, (j + 0.5) * iw / dw)[1] for j in range(dw)])
    colours = class_colours(max(kept.size, 1)) + [(0, 0, 0)]
    shown = np.where(grid >= 0, grid, len(colours) - 1)
    layer = label_rgba(shown[rows][:, cols], colours, hidden=[len(colours) - 1])

    def value_at(y: int, x: int) -> str:
        r, c = analysis.patch_at(y, x)
        k = int(grid[r, c])
        return f"{name(int(kept[k]))} z = {float(maps[k, r, c]):.3f}" if k >= 0 else "no concept of these levels"

    return PaneContent(f"Level ≤ {level}: strongest concept", photo, image.shape[:2], layer, value_at)


@dataclass(frozen=True, eq=False)
class BeforeAfter:
    """Segmentation labels before and after switching ``off`` off, in ``mode`` ("concepts only" or
    "concepts + residual", :mod:`insight_desktop.core.tasks.whatif`)."""

    class_names: tuple[str, ...]
    before: np.ndarray
    after: np.ndarray
    off: tuple[int, ...]
    mode: str


def switched(analysis, concepts: Sequence[int]) -> BeforeAfter | None:
    """``concepts`` switched off in ``analysis`` ("concepts only"); None without a segmentation.
    Labels only (:func:`~insight_desktop.core.tasks.whatif.switch_off`), not their explanations."""
    result = switch_off(analysis, concepts)
    seg = result.segmentation
    if seg is None:
        return None
    return BeforeAfter(seg.class_names, seg.labels_before, seg.labels_after, result.switched_off, result.mode)


def through_level(analysis, level: int) -> BeforeAfter | None:
    """The labels through levels 1..``level`` (``after``; docs/method.md §2's nested prefixes: the
    codes of deeper concepts set to 0, "concepts only") against the full model's (``before``)."""
    return switched(analysis, [c.concept for c in analysis.concepts if c.level > level])


def legend_html(legend: Sequence[tuple[str, tuple[int, int, int]]]) -> str:
    """A line of coloured squares and class names (rich text for a QLabel)."""
    return "  ".join(f'<span style="color: rgb{tuple(colour)};">■</span>&nbsp;{escape(name)}'
                     for name, colour in legend)
