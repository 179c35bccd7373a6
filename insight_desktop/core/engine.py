"""The analysis engine: a concept model and its backbone, loaded once; ``analyze(image) → Analysis``.

**Image geometry (ours).** The image is resized (bicubic) so its short side equals the window
(448 px, docs/method.md §6), unless that makes the long side exceed ``MAX_ASPECT`` windows, in
which case the long side is ``MAX_ASPECT · window`` instead — so very small images are enlarged
to the scale the backbone works at, very large ones shrunk, and extreme panoramas stay bounded
(at most 7 windows). Windows run through the backbone a few at a time, so memory stays bounded
whatever the image size. Two window modes:

* ``"fast"`` (the app's default): the resized image is padded with black to whole patches and
  normalised (docs/method.md §1.1); 448-px windows slide over it every 224 px, the last one
  flush with the border, all starting on patch boundaries, so overlapping windows produce
  features for the *same* patches; those features (and FOUND background logits) are averaged
  where windows overlap and the SAE encodes each patch once.
* ``"reference"`` (``insight eval-seg``'s default): segmentation as the reference code computes
  it (:mod:`.tasks.windows`): windows placed on the resized image before padding, each window
  encoded through backbone and SAE on its own, class probabilities averaged where windows
  overlap. Concept maps, faithfulness and classification still come from the fast path's grid
  (a window both paths use runs once). ``benchmarks/bench_windows.py`` measures how often the
  two modes label a pixel differently.

**What an Analysis holds.** Sparse codes on the patch grid (CSR, never ``[m, h, w]``), the
concepts ranked by their image-level activation (max over patches, docs/method.md §3), faithfulness
(FVU, mean cosine(x, x̂), residual map), optionally segmentation and classification with exact
concept contributions (:mod:`.tasks`). Everything is numpy, read-only: it crosses to the GUI.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .tasks.classification import ClassificationResult, probe_classify, zero_shot
from .tasks.codes import PatchCodes
from .tasks.pooling import PooledCodes, as_rgb, encode_pooled
from .tasks.prompts import TextEmbeddingCache, validate_classes
from .tasks.resample import GridSampler
from .tasks.segmentation import SegmentationResult, segment
from .tasks.windows import (
    FAST,
    REFERENCE,
    WindowRunner,
    WindowScores,
    WindowSegmentation,
    check_window_mode,
    describe_windows,
    window_segmentation,
)

WINDOW = 448
STRIDE = 224
#: the long side of the analysed image is at most this many windows
MAX_ASPECT = 4
#: share of the progress bar given to the backbone windows
_BACKBONE_SHARE = 0.8
#: patches per SAE call (bounds the dense [tokens, m] pre-activations)
ENCODE_CHUNK = 2048
CPU_NOTICE = ("No CUDA GPU is available: the analysis runs on the CPU, which is much slower "
              "(a GPU, if you add one, is used automatically).")
NO_THRESHOLD_NOTICE = ("This SAE has no inference threshold yet (trained too briefly): codes fall back to "
                       "BatchTopK over each image, so they depend on the image's other patches.")
NO_BACKGROUND_NOTICE = "Background was requested, but this backbone has no FOUND background head (no last.pt)."


class AnalysisStopped(RuntimeError):
    """``should_stop()`` turned true during an analysis; nothing was returned."""


def analysis_size(height: int, width: int, window: int = WINDOW) -> tuple[int, int]:
    """Size (H', W') the backbone sees: short side = ``window``, long side ≤ ``MAX_ASPECT · window``."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}×{width}")
    scale = window / min(height, width)
    if max(height, width) * scale > MAX_ASPECT * window:
        scale = MAX_ASPECT * window / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def grid_sampler(grid: tuple[int, int], size: tuple[int, int], patch: int, out: tuple[int, int]) -> GridSampler:
    """Bilinear map from the patch grid of an image analysed at ``size`` (H', W') to an ``out``
    (H, W) rendering of the whole image (the grid also covers the padding below/right of it)."""
    out_h, out_w = (int(v) for v in out)
    return GridSampler.make(grid, (out_h, out_w), (size[0] / (out_h * patch), size[1] / (out_w * patch)))


@dataclass(frozen=True)
class ConceptActivation:
    """A concept active in the image: its image-level activation (max over patches) and context."""

    concept: int
    name: str
    activation: float
    level: int
    parents: tuple[int, ...]
    patches: int  # patches where it fires


@dataclass(frozen=True, eq=False)
class Faithfulness:
    """How well the concepts reconstruct the features they explain (docs/method.md §6, ours).

    ``fvu`` = Σ‖x − x̂‖² / Σ‖x − x̄‖² over the image's patches (NaN if the features do not vary
    at all); ``cosine`` = mean over patches of cos(x, x̂); ``residual`` = ‖x − x̂‖ per patch [h, w].
    """

    fvu: float
    cosine: float
    residual: np.ndarray


@dataclass(frozen=True, eq=False)
class Analysis:
    """Everything computed for one image; read-only numpy, safe to hand to another thread."""

    image_size: tuple[int, int]        # (H, W) of the image as given
    analysis_size: tuple[int, int]     # (H', W') the backbone saw, before padding to whole patches
    patch_size: int
    windows: int
    codes: PatchCodes
    concepts: tuple[ConceptActivation, ...]   # ranked by activation, largest first
    faithfulness: Faithfulness
    background_logits: np.ndarray | None      # [h, w] FOUND logits (background where ≤ 0), if any
    segmentation: SegmentationResult | None
    classification: ClassificationResult | None
    probe: ClassificationResult | None
    notices: tuple[str, ...]
    timings: Mapping[str, float]              # seconds per stage
    window_mode: str = FAST                   # which sliding-window mode produced it (module docstring)

    @property
    def window_description(self) -> str:
        return describe_windows(self.window_mode, self.windows)

    @property
    def grid(self) -> tuple[int, int]:
        return self.codes.grid

    def concept(self, j: int) -> ConceptActivation | None:
        return next((c for c in self.concepts if c.concept == j), None)

    def concept_map(self, j: int) -> np.ndarray:
        """``z_j`` on the patch grid, float32 [h, w]."""
        return self.codes.concept_map(j)

    def sampler(self, size: tuple[int, int] | None = None) -> GridSampler:
        """Bilinear grid → pixels map for an output of ``size`` (H, W) covering the whole image."""
        return grid_sampler(self.grid, self.analysis_size, self.patch_size, size or self.image_size)

    def display_map(self, j: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """docs/method.md §3 display: square the map, upsample bilinearly to ``size`` (default: the image size),
        divide by its max; float32 [H, W] in 0..1 (all zero where the concept does not fire)."""
        m = self.concept_map(j)
        out = self.sampler(size).upsample_full((m * m)[None])[0]
        top = float(out.max())
        if top > 0:
            out /= top
        out.flags.writeable = False
        return out


class Analyzer:
    """A concept model plus its backbone, loaded once (one per worker thread)."""

    def __init__(self, model: Any, *, backbone: Any = None, device: str | None = "auto"):
        import torch

        from .backbones import BackboneSpec, create_backbone
        from .bundle import BundleIncompatibleError, ConceptModel

        self.model = model if isinstance(model, ConceptModel) else ConceptModel.load(model)
        if backbone is None:
            spec = self.model.manifest.backbone.get("spec")
            if not spec:
                raise BundleIncompatibleError(f"concept model '{self.model.path}' does not record how to create its "
                                              "backbone; pass the backbone explicitly")
            backbone = create_backbone(BackboneSpec.from_dict(spec), device=device)
        self.model.check_backbone(backbone)
        self.backbone = backbone
        self.device = torch.device(backbone.device)
        notices = []
        if (device or "auto").strip().lower() == "auto" and self.device.type == "cpu":
            notices.append(CPU_NOTICE)
        notices.extend(getattr(backbone, "notices", ()))
        self.sae = self.model.sae.to(self.device).eval()
        if float(self.sae.threshold) < 0:
            notices.append(NO_THRESHOLD_NOTICE)
        self.notices: tuple[str, ...] = tuple(notices)
        self.text_embeddings = TextEmbeddingCache(backbone)
        self._names_cache: tuple[Any, tuple[str, ...]] = (None, ())
        self._parents_cache: dict[int, tuple[int, ...]] = {}
        self._b_dec = self.sae.b_dec.detach().double().cpu().numpy()

    # ------------------------------------------------------------------ helpers
    def concept_name(self, j: int) -> str:
        names = self.model.names
        if self._names_cache[0] is not names:  # names are replaced (never mutated) when edited
            self._names_cache = (names, names.display_names)
        return self._names_cache[1][int(j)]

    def parents(self, j: int) -> tuple[int, ...]:
        """All parents of concept ``j``, best first (cached: ranking asks for hundreds per image)."""
        found = self._parents_cache.get(j)
        if found is None:
            found = self._parents_cache[j] = tuple(self.model.relations.parents_of(int(j)))
        return found

    def decoder_rows(self, concepts: np.ndarray) -> np.ndarray:
        """``W_dec`` rows of ``concepts`` as float64 numpy [n, d]."""
        import torch

        idx = torch.as_tensor(np.array(concepts, dtype=np.int64), device=self.sae.W_dec.device)  # a writable copy
        return self.sae.W_dec.detach().index_select(0, idx).double().cpu().numpy()

    def catalog(self):
        """The model's names, hierarchy and thumbnails as one immutable value (for a viewer)."""
        from .catalog import catalog_of

        return catalog_of(self.model, device=str(self.device), notices=self.notices)

    def close(self) -> None:
        self.model.close()

    # ------------------------------------------------------------------ one image, fully
    def analyze(self, image: np.ndarray | str | os.PathLike, classes: Sequence[str] | None = None, *,
                background: bool = False, window: int = WINDOW, stride: int = STRIDE, window_mode: str = FAST,
                classify: bool = True, should_stop: Callable[[], bool] | None = None,
                progress: Callable[[str, float], None] | None = None) -> Analysis:
        """Concepts of one image; with ``classes``, also segmentation and zero-shot classification.

        ``image``: an RGB uint8 array (greyscale H×W is accepted) or a file path. ``background``:
        label FOUND background (docs/method.md §1.4) as an extra class. ``window_mode``: "fast" or
        "reference" (module docstring; it only changes the segmentation, and is recorded in the
        Analysis as the mode that ran). With ``classify``, the bundle's probe (if it has one)
        classifies too. Both classifiers read the max-pooled codes of the analysed grid, so no
        second backbone pass is needed; the probe was trained on centre crops (:meth:`pooled`),
        whose statistics are close but not identical. Raises :class:`AnalysisStopped` when
        ``should_stop()`` turns true between windows. ``progress(stage, fraction)`` is called as
        the work advances (fraction in 0..1 over the whole analysis; the backbone windows take most of it).
        """
        import torch

        per_window = check_window_mode(window_mode) == REFERENCE and bool(classes)
        report = progress or (lambda stage, fraction: None)
        clock = _Clock(self.device)
        rgb = self._image(image)
        classes = validate_classes(classes) if classes is not None else None  # fail before any model work
        text = self.text_embeddings(classes) if classes else None
        clock.lap("text")
        notices = list(self.notices)
        geo = self._geometry(rgb, window, stride)
        runner = WindowRunner(self.backbone, [geo.canvas_boxes] + ([geo.image_boxes] if per_window else []),
                              _stop_check(should_stop), lambda f: report("features", _BACKBONE_SHARE * f))
        with torch.inference_mode():
            x, bg = self._dense(geo, runner)
            clock.lap("backbone")
            windowed = None
            if per_window:
                windowed = self._window_segmentation(geo, runner, text, classes, background, rgb.shape[:2])
                clock.lap("windows")
            report("concepts", _BACKBONE_SHARE)
            if background and bg is None:
                notices.append(NO_BACKGROUND_NOTICE)
            codes, x_hat = self._encode(x, geo.grid)
            faith = _faithfulness(x, x_hat, geo.grid)
            clock.lap("sae")
        concepts = self._rank(codes)
        patch = self.backbone.preprocessing.patch_size
        clock.lap("concepts")
        seg = cls = probe = None
        x_np = x.double().cpu().numpy() if classes or classify else None
        if classes:
            report("segmentation", _BACKBONE_SHARE + 0.05)
            active = codes.active_concepts()
            sampler = grid_sampler(codes.grid, geo.size, patch, rgb.shape[:2])
            seg = segment(codes, x_hat.double().cpu().numpy(), x_np, self.decoder_rows(active), active, self._b_dec,
                          text, classes, sampler, background_logits=bg if background else None,
                          concept_names=self.concept_name, given=windowed)
            clock.lap("segmentation")
        if classify:
            report("classification", 0.97)
            ids, values = codes.pooled_max()
            mean_feature = x_np.mean(axis=0)  # the opaque reference's image vector
            if classes:
                cls = zero_shot(ids, values, self.decoder_rows(ids), self._b_dec, text, classes,
                                concept_names=self.concept_name, opaque_features=mean_feature)
            probe = self.probe_classify(PooledCodes(ids, values, mean_feature, codes.n_concepts))
            clock.lap("classification")
        report("done", 1.0)
        return Analysis(rgb.shape[:2], geo.size, patch, len(geo.canvas_boxes), codes, concepts, faith, bg, seg, cls,
                        probe, tuple(notices), MappingProxyType(clock.laps),
                        window_mode=REFERENCE if per_window else FAST)

    def segment_windows(self, image: np.ndarray | str | os.PathLike, classes: Sequence[str], *,
                        background: bool = False, window: int = WINDOW, stride: int = STRIDE,
                        should_stop: Callable[[], bool] | None = None,
                        progress: Callable[[str, float], None] | None = None) -> WindowSegmentation:
        """The reference segmentation alone (``window_mode="reference"``; what ``insight eval-seg``
        measures): labels, averaged probabilities and the opaque path's labels, without concept
        maps or explanations, so each window runs through the backbone once."""
        import torch

        report = progress or (lambda stage, fraction: None)
        rgb = self._image(image)
        classes = validate_classes(classes)
        text = self.text_embeddings(classes)
        geo = self._geometry(rgb, window, stride)
        runner = WindowRunner(self.backbone, [geo.image_boxes], _stop_check(should_stop),
                              lambda f: report("windows", f))
        with torch.inference_mode():
            result = self._window_segmentation(geo, runner, text, classes, background, rgb.shape[:2])
        report("done", 1.0)
        return result

    # ------------------------------------------------------------------ many images, image level
    def pooled(self, images: Sequence[Any], *, batch_size: int = 16,
               should_stop: Callable[[], bool] | None = None) -> list[PooledCodes]:
        """``z̄`` (max-pooled codes) of the centre crop of every image (arrays or paths)."""
        return encode_pooled(self.backbone, self.sae, [self._image(im) for im in images], batch_size=batch_size,
                             should_stop=should_stop)

    def zero_shot(self, pooled: PooledCodes, classes: Sequence[str]) -> ClassificationResult:
        classes = validate_classes(classes)
        return zero_shot(pooled.concepts, pooled.values, self.decoder_rows(pooled.concepts), self._b_dec,
                         self.text_embeddings(classes), classes, concept_names=self.concept_name,
                         opaque_features=pooled.mean_feature)

    def probe_classify(self, pooled: PooledCodes) -> ClassificationResult | None:
        """The bundle's probe on ``pooled``, or None when the bundle has no probe."""
        probe = self.model.probe
        if probe is None:
            return None
        W, class_names = probe
        return probe_classify(W, class_names, pooled.concepts, pooled.values, concept_names=self.concept_name)

    # ------------------------------------------------------------------ stages
    def _image(self, image: Any) -> np.ndarray:
        if isinstance(image, (str, os.PathLike)):
            from .images import load_image

            return load_image(Path(image))
        return as_rgb(image)

    def _geometry(self, rgb: np.ndarray, window: int, stride: int) -> "_Geometry":
        from .images import tile_boxes

        p = self.backbone.preprocessing.patch_size
        if window <= 0 or stride <= 0 or window % p or stride % p or stride > window:
            raise ValueError(f"window ({window}) and stride ({stride}) must be positive multiples of the patch size "
                             f"{p}, with stride ≤ window")
        size = analysis_size(rgb.shape[0], rgb.shape[1], window)
        image = _resize(rgb, size)
        canvas = self.backbone.preprocessing.to_tensor(image, mode="full")  # [3, h·p, w·p], black padding
        return _Geometry(size, image, canvas, (canvas.shape[1] // p, canvas.shape[2] // p),
                         tile_boxes(canvas.shape[1], canvas.shape[2], window, stride),
                         tile_boxes(size[0], size[1], window, stride))

    def _dense(self, geo: "_Geometry", runner: "WindowRunner"):
        """Fast path: features [h·w, d] averaged over windows (float32, on the device) and
        background logits [h, w] or None."""
        import torch

        p = self.backbone.preprocessing.patch_size
        h, w = geo.grid
        feats = torch.zeros(self.backbone.feature_dim, h, w, device=self.device)
        bg = torch.zeros(h, w, device=self.device)
        count = torch.zeros(h, w, device=self.device)
        has_bg = True
        for (t, l, b, r), f, g in runner.run(geo.canvas_boxes, lambda box: geo.canvas[:, box[0]:box[2], box[1]:box[3]]):
            cell = (slice(t // p, b // p), slice(l // p, r // p))
            feats[(slice(None), *cell)] += f
            count[cell] += 1
            if g is None:
                has_bg = False
            else:
                bg[cell] += g
        x = (feats / count).flatten(1).T.contiguous()
        return x, (_readonly((bg / count).cpu().numpy()) if has_bg else None)

    def _window_segmentation(self, geo: "_Geometry", runner: "WindowRunner", text: np.ndarray,
                             classes: Sequence[str], background: bool, out: tuple[int, int]) -> WindowSegmentation:
        """Reference path: each window of the unpadded image through backbone and SAE on its own."""
        import torch

        pre = self.backbone.preprocessing
        scores = []

        def crop(b):  # each window is padded on its own, as the reference pads each crop
            return pre.to_tensor(geo.image[b[0]:b[2], b[1]:b[3]], mode="full")

        for box, f, g in runner.run(geo.image_boxes, crop):
            d, gh, gw = f.shape
            x = f.flatten(1).T.contiguous()
            x_hat = torch.cat([self.sae.decode(self.sae.encode(x[i:i + ENCODE_CHUNK])).float()
                               for i in range(0, x.shape[0], ENCODE_CHUNK)])
            scores.append(WindowScores.of(box, x_hat.double().cpu().numpy().reshape(gh, gw, d),
                                          x.double().cpu().numpy().reshape(gh, gw, d), text,
                                          None if g is None else g.cpu().numpy()))
        return window_segmentation(scores, classes, geo.size, out, pre.patch_size, background=background)

    def _encode(self, x, grid: tuple[int, int]):
        import torch

        from .relations_codes import SparseCodes

        parts, x_hat = [], []
        for start in range(0, x.shape[0], ENCODE_CHUNK):
            z = self.sae.encode(x[start:start + ENCODE_CHUNK])
            parts.append(SparseCodes.from_dense(z, eps=0.0))
            x_hat.append(self.sae.decode(z).float())
        return PatchCodes.concat_rows(parts, grid, self.model.n_concepts), torch.cat(x_hat)

    def _rank(self, codes: PatchCodes) -> tuple[ConceptActivation, ...]:
        ids, values = codes.pooled_max()
        patches = np.bincount(codes.indices, minlength=codes.n_concepts)
        rel = self.model.relations
        order = np.lexsort((ids, -values))
        return tuple(ConceptActivation(int(ids[i]), self.concept_name(int(ids[i])), float(values[i]),
                                       int(rel.level[ids[i]]), self.parents(int(ids[i])),
                                       int(patches[ids[i]])) for i in order)


@dataclass(frozen=True, eq=False)
class _Geometry:
    size: tuple[int, int]                   # (H', W') the image is resized to
    image: np.ndarray                       # that image, uint8
    canvas: Any                             # it normalised and black-padded to whole patches [3, h·p, w·p]
    grid: tuple[int, int]                   # (h, w) patches of the canvas
    canvas_boxes: list[tuple[int, int, int, int]]  # fast-path windows, on the padded canvas
    image_boxes: list[tuple[int, int, int, int]]   # reference windows, on the image before padding


def _stop_check(should_stop: Callable[[], bool] | None) -> Callable[[], None]:
    def check() -> None:
        if should_stop is not None and should_stop():
            raise AnalysisStopped("analysis stopped")

    return check


def _faithfulness(x, x_hat, grid: tuple[int, int]) -> Faithfulness:
    import torch

    diff = x - x_hat
    total = float(((x - x.mean(dim=0)) ** 2).sum())
    fvu = float((diff ** 2).sum()) / total if total > 0 else float("nan")
    cosine = float(torch.nn.functional.cosine_similarity(x, x_hat, dim=1).mean())
    return Faithfulness(fvu, cosine, _readonly(diff.norm(dim=1).reshape(grid).cpu().numpy()))


def _resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if rgb.shape[:2] == tuple(size):
        return rgb
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), Image.BICUBIC))


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


class _Clock:
    """Wall time per stage; waits for the GPU so each stage is charged its own work."""

    def __init__(self, device):
        self.device = device
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self._last
        self._last = now
