"""The image view's layers at display size, made here or on a pool thread, and at full size for export.

On screen every layer is made at :func:`~insight_desktop.gui.layers.display_size` (at most
2048 px on the long side) from the grid-level maps, and placed over the photo in image
coordinates, so a 48-megapixel photo costs the GUI thread what a 3-megapixel one does. Where a
layer is bigger than :data:`SYNC_PIXELS` it is made on a one-thread :class:`~..jobs.JobPool`:
the GUI thread only swaps the finished image in. Each layer remembers the key (its inputs) of
the image it should show; a result for another key is stale and dropped, and a job whose key is
no longer wanted skips its work. An exported PNG is made at full resolution, as before, by
:func:`full_resolution_layers`.
"""

from __future__ import annotations

from typing import Callable, Hashable

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot

from ..jobs import JobPool, Outcome
from ..layers import (
    DisplayMapCache,
    colormap_lut,
    heat_rgba,
    label_rgba,
    nearest_labels,
    residual_rgba,
    training_max,
)

#: drawing order of the layers over the photo (heat last: it is what the user is looking at)
LAYERS = ("segmentation", "residual", "heatmap")
#: layers up to this many display pixels are made at once on the GUI thread (< 5 ms); bigger ones on a thread
SYNC_PIXELS = 600_000

MakeFn = Callable[[], np.ndarray]


class CanvasLayers(QObject):
    """Makes the canvas's layer images (RGBA uint8 at ``size``) for given inputs.

    :meth:`request` returns the image at once when it is small, else None, and ``ready(name,
    key, rgba)`` follows on the GUI thread unless the request was superseded meanwhile.
    """

    ready = Signal(str, object, object)  # layer name, key, RGBA

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.size: tuple[int, int] = (1, 1)
        self.maps = DisplayMapCache()
        self.residual_top = 0.0             # largest value of the residual layer last made (its bar's top)
        self._residual: tuple[object, tuple, np.ndarray] | None = None  # (analysis, size, upsampled residual)
        self._wanted: dict[str, Hashable] = {}
        # One thread: the heavy steps are numpy calls that release the GIL, and the machine this
        # must stay smooth on has two cores, one of them the GUI's.
        self._pool = JobPool(1, self)
        self._pool.done.connect(self._on_done)

    def reset(self, size: tuple[int, int]) -> None:
        """A new image shown at ``size``: whatever was asked for the last one is dropped."""
        self._pool.new_generation()
        self._wanted.clear()
        self.size = (int(size[0]), int(size[1]))
        self._residual = None

    def pending(self) -> bool:
        """A layer asked for has not been drawn yet."""
        return bool(self._wanted)

    def wanted(self, name: str) -> Hashable | None:
        return self._wanted.get(name)

    def forget(self, name: str) -> None:
        """The layer is hidden: a result still on its way is not wanted."""
        self._wanted.pop(name, None)

    def request(self, name: str, key: Hashable, make: MakeFn) -> np.ndarray | None:
        self._wanted[name] = key
        if self.size[0] * self.size[1] <= SYNC_PIXELS:
            return make()

        def job(_progress, _should_stop):
            return make() if self._wanted.get(name) == key else None  # superseded before it started

        self._pool.submit((name, key), job, f"draw the {name} layer")
        return None

    def wait(self, ms: int = -1) -> bool:
        """Block until the jobs asked so far are done (tests, benchmarks); their results still queue."""
        return self._pool.wait(ms)

    def shutdown(self) -> None:
        self._pool.shutdown()

    @Slot(object, object)
    def _on_done(self, job_key: Hashable, outcome: Outcome) -> None:
        name, key = job_key  # type: ignore[misc]
        if self._wanted.get(name) != key or not outcome.succeeded or outcome.value is None:
            return  # stale, or failed (a layer that cannot be drawn keeps the last one; nothing to tell)
        self.ready.emit(name, key, outcome.value)

    # ------------------------------------------------------------------ what each layer is made of
    def heat(self, analysis, concept: int, overlay, catalog) -> np.ndarray:
        scale = training_max(catalog, concept) if overlay.heat_scale == "model" else None
        heat = self.maps.heat(analysis, concept, self.size, scale)
        return heat_rgba(heat, colormap_lut(overlay.colormap), overlay.threshold)

    def segmentation(self, seg, overlay) -> np.ndarray:
        labels = seg.opaque_labels if overlay.show_opaque else seg.labels
        return label_rgba(nearest_labels(labels, self.size), _class_colours(seg), overlay.hidden_labels)

    def residual(self, analysis) -> np.ndarray:
        residual = self.upsampled_residual(analysis, self.size)
        self.residual_top = float(residual.max()) if residual.size else 0.0
        return residual_rgba(residual)

    def upsampled_residual(self, analysis, size: tuple[int, int]) -> np.ndarray:
        kept = self._residual
        if kept is not None and kept[0] is analysis and kept[1] == tuple(size):
            return kept[2]
        grid = np.asarray(analysis.faithfulness.residual, dtype=np.float32)
        out = analysis.sampler(tuple(size)).upsample_full(grid[None])[0]
        self._residual = (analysis, tuple(size), out)
        return out


def _class_colours(seg) -> list[tuple[int, int, int]]:
    from ...core.tasks.render import class_colours

    return class_colours(len(seg.class_names), background=seg.background_label is not None)


def full_resolution_layers(document, shown: dict[str, float]) -> list[tuple[np.ndarray, float]]:
    """``(rgba, opacity)`` at the image's full size of the layers named in ``shown`` (name →
    opacity), in drawing order: what an exported PNG holds, the same pixels as before layers
    were drawn at display size. The heat scale follows the overlay setting."""
    a, ov = document.analysis, document.overlay
    out = []
    for name in LAYERS:
        if name not in shown or a is None:
            continue
        if name == "heatmap":
            scale = training_max(document.catalog, document.concept) if ov.heat_scale == "model" else None
            if scale is None:
                heat = a.display_map(document.concept)
            else:
                heat = DisplayMapCache(1).heat(a, document.concept, tuple(a.image_size), scale)
            rgba = heat_rgba(heat, colormap_lut(ov.colormap), ov.threshold)
        elif name == "segmentation":
            seg = a.segmentation
            rgba = label_rgba(seg.opaque_labels if ov.show_opaque else seg.labels, _class_colours(seg),
                              ov.hidden_labels)
        else:
            grid = np.asarray(a.faithfulness.residual, dtype=np.float32)
            rgba = residual_rgba(a.sampler().upsample_full(grid[None])[0])
        out.append((rgba, shown[name]))
    return out


def heat_scale_label(document) -> str:
    """What heat 1 is, for the colour bars: this image's strongest activation of the concept, or
    its strongest in the model's training data (the image's when the bundle has none for it)."""
    if document.overlay.heat_scale == "model":
        if training_max(document.catalog, document.concept) is not None:
            return "relative activation (training max = 1)"
        return "relative activation (image max = 1: no training max)"
    return "relative activation (image max = 1)"


def write_figure(document, rgb: np.ndarray, heat_shown: bool, segmentation_shown: bool, path) -> None:
    """Write ``rgb`` (the full-size composite) as a PNG with a colour bar (heatmap shown) and a
    class legend (segmentation shown), atomically."""
    from ...core.fileio import atomic_output
    from ...core.tasks.render import class_colours, legend_png
    from ..layers import colorbar_image, figure

    doc, panels = document, []
    if heat_shown:
        panels.append(colorbar_image(colormap_lut(doc.overlay.colormap), rgb.shape[0],
                                     doc.concept_name(doc.concept), heat_scale_label(doc)))
    seg = doc.analysis.segmentation if doc.analysis is not None else None
    if seg is not None and segmentation_shown:
        labels = seg.opaque_labels if doc.overlay.show_opaque else seg.labels
        n = len(seg.class_names)
        counts = np.bincount(labels.ravel(), minlength=n)[:n]
        colours = class_colours(n, background=seg.background_label is not None)
        keep = [i for i in range(n) if i not in doc.overlay.hidden_labels]
        if keep:
            panels.append(legend_png([seg.class_names[i] for i in keep], [colours[i] for i in keep],
                                     [int(counts[i]) for i in keep]))
    with atomic_output(path) as fh:
        figure(rgb, panels).save(fh, format="PNG")
