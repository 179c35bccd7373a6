"""The analysis engine: a concept model and its backbone, loaded once; ``analyze(image) → Analysis``.

**The stages of** :meth:`Analyzer.analyze`, each a method below, in order: class text embeddings
→ dense features (sliding windows) → SAE encoding (codes, x̂, faithfulness) → concepts ranked
(and the active concepts' decoder rows) → segmentation → classification. The :class:`.analysis.Analysis`
they make is all numpy, read-only: it crosses to the GUI.

**Windows** (:mod:`.tasks.windows`). The image is resized so its short side equals the window
(448 px, docs/method.md §6), long side at most ``MAX_ASPECT`` windows, so very small images are
enlarged to the scale the backbone works at, very large ones shrunk, and extreme panoramas stay
bounded (at most 7 windows). Windows run through the backbone a few at a time, so memory stays
bounded whatever the image size. Two window modes:

* ``"fast"`` (the app's default): the resized image is padded with black to whole patches and
  normalised (docs/method.md §1.1); 448-px windows slide over it every 224 px, the last one
  flush with the border, all starting on patch boundaries, so overlapping windows produce
  features for the *same* patches; those features (and FOUND background logits) are averaged
  where windows overlap and the SAE encodes each patch once.
* ``"reference"`` (``insight eval-seg``'s default): segmentation as the reference code computes
  it: windows placed on the resized image before padding, each window encoded through backbone
  and SAE on its own, class probabilities averaged where windows overlap. Concept maps,
  faithfulness and classification still come from the fast path's grid (a window both paths use
  runs once). ``benchmarks/bench_windows.py`` measures how often the two modes label a pixel
  differently.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np

from .analysis import Analysis, ConceptActivation, Faithfulness, grid_sampler
from .errors import StoppedByUser
from .tasks.classification import ClassificationResult, probe_classify, zero_shot
from .tasks.codes import PatchCodes
from .tasks.decoder import ActiveDecoder
from .tasks.pooling import PooledCodes, as_rgb, encode_pooled
from .tasks.prompts import TextEmbeddingCache, validate_classes
from .tasks.segmentation import SegmentationInputs, segment
from .tasks.windows import (
    FAST,
    MAX_ASPECT,
    REFERENCE,
    STRIDE,
    WINDOW,
    WindowGeometry,
    WindowRunner,
    WindowSegmentation,
    analysis_size,
    averaged_features,
    check_window_mode,
    reference_segmentation,
    window_batch,
    window_geometry,
)

if TYPE_CHECKING:
    import torch

__all__ = [  # the value types live in .analysis, the window geometry in .tasks.windows; both are importable here
    "Analysis", "AnalysisStopped", "Analyzer", "CPU_NOTICE", "ConceptActivation", "ENCODE_CHUNK", "Faithfulness",
    "MAX_ASPECT", "NO_BACKGROUND_NOTICE", "NO_THRESHOLD_NOTICE", "STRIDE", "WINDOW", "analysis_size", "grid_sampler",
]

#: where each stage of :meth:`Analyzer.analyze` starts on the progress bar (0..1): encoding class
#: prompts (only for classes not cached), then the backbone windows (most of the time), then the rest
_TEXT_START, _BACKBONE_START, _CONCEPTS_START = 0.0, 0.15, 0.85
#: patches per SAE call (bounds the dense [tokens, m] pre-activations)
ENCODE_CHUNK = 2048
CPU_NOTICE = ("No CUDA GPU is available: the analysis runs on the CPU, which is much slower "
              "(a GPU, if you add one, is used automatically).")
NO_THRESHOLD_NOTICE = ("This SAE has no inference threshold yet (trained too briefly): codes fall back to "
                       "BatchTopK over each image, so they depend on the image's other patches.")
NO_BACKGROUND_NOTICE = "Background was requested, but this backbone has no FOUND background head (no last.pt)."
NO_CONCEPTS_NOTICE = ("No concept fires in this image (every code is below the SAE's threshold): there are no "
                      "concept maps, and the segmentation and classification come from the decoder bias alone.")


class AnalysisStopped(StoppedByUser):
    """``should_stop()`` turned true during an analysis; nothing was returned."""


class Analyzer:
    """A concept model plus its backbone, loaded once (one per worker thread)."""

    def __init__(self, model: Any, *, backbone: Any = None, device: str | None = "auto",
                 prompt_cache: str | os.PathLike | None | bool = None,
                 should_stop: Callable[[], bool] | None = None):
        """``prompt_cache``: folder of class-prompt embeddings (None: the user cache dir; False:
        none; :class:`.tasks.prompts.TextEmbeddingCache`). ``should_stop()`` is asked between the
        loading stages (raises :class:`~.errors.StoppedByUser`), so a quit or a newer model stops
        a load without waiting for the rest of it."""
        def check_stop() -> None:
            if should_stop is not None and should_stop():
                raise StoppedByUser("loading the model was stopped")

        check_stop()
        import torch

        from .backbones import BackboneSpec
        from .concepts.bundle import BundleIncompatibleError, ConceptModel
        from .store.open_backbone import open_backbone

        self.model = model if isinstance(model, ConceptModel) else ConceptModel.load(model)
        check_stop()
        if backbone is None:
            spec = self.model.manifest.backbone.get("spec")
            if not spec:
                raise BundleIncompatibleError(f"concept model '{self.model.path}' does not record how to create its "
                                              "backbone; pass the backbone explicitly")
            backbone = open_backbone(BackboneSpec.from_dict(spec), device=device)
        check_stop()
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
        self.text_embeddings = TextEmbeddingCache(backbone, cache_dir=prompt_cache)
        self._parents_cache: dict[int, tuple[int, ...]] = {}
        self._b_dec = self.sae.b_dec.detach().double().cpu().numpy()

    # ------------------------------------------------------------------ helpers
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
        from .concepts.concept_catalog import catalog_of

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

        reference = check_window_mode(window_mode) == REFERENCE
        report = progress or _no_progress
        clock = _Clock(self.device)
        rgb = self._image(image)
        report("class prompts", _TEXT_START)
        with clock.stage("text"):
            prompts = self._prompts(classes, should_stop, lambda f: report(
                "class prompts", _TEXT_START + (_BACKBONE_START - _TEXT_START) * f)) if classes is not None else None
        report("features", _BACKBONE_START)
        per_window = reference and prompts is not None  # without classes nothing is segmented
        geo = window_geometry(rgb, self.backbone.preprocessing, window, stride)
        runner = WindowRunner(self.backbone, [geo.canvas_boxes] + ([geo.image_boxes] if per_window else []),
                              _stop_check(should_stop), lambda f: report(
                                  "features", _BACKBONE_START + (_CONCEPTS_START - _BACKBONE_START) * f),
                              batch=window_batch(self.device))
        windowed = None
        with torch.inference_mode():
            with clock.stage("backbone"):
                x, bg = averaged_features(runner, geo)
            if reference and prompts is not None:
                with clock.stage("windows"):
                    windowed = self._reference_segmentation(geo, runner, prompts, background, rgb.shape[:2])
            report("concepts", _CONCEPTS_START)
            with clock.stage("sae"):
                codes, faithfulness = self._encode(x, geo.grid)
        with clock.stage("concepts"):
            concepts, decoder = self._rank(codes), self._active_decoder(codes)
        patch = self.backbone.preprocessing.patch_size
        features = x.double().cpu().numpy()  # raw features: the opaque references' input
        seg = cls = probe = None
        if prompts is not None:
            report("segmentation", _CONCEPTS_START + 0.05)
            with clock.stage("segmentation"):
                sampler = grid_sampler(geo.grid, geo.size, patch, rgb.shape[:2])
                inputs = SegmentationInputs(codes, decoder, prompts.text, prompts.names, sampler, features=features,
                                            background_logits=bg if background else None)
                seg = segment(inputs, given=windowed)
        if classify:
            report("classification", 0.97)
            with clock.stage("classification"):
                cls, probe = self._classify(codes, decoder, features, prompts)
        report("done", 1.0)
        notices = self.notices + ((NO_BACKGROUND_NOTICE,) if background and bg is None else ()) + (
            () if concepts else (NO_CONCEPTS_NOTICE,))
        return Analysis(image_size=rgb.shape[:2], analysis_size=geo.size, patch_size=patch,
                        windows=len(geo.canvas_boxes), codes=codes, concepts=concepts, faithfulness=faithfulness,
                        background_logits=bg, segmentation=seg, classification=cls, probe=probe, notices=notices,
                        timings=MappingProxyType(clock.laps), decoder=decoder,
                        class_embeddings=None if prompts is None else prompts.text,
                        window_mode=REFERENCE if per_window else FAST)

    def segment_windows(self, image: np.ndarray | str | os.PathLike, classes: Sequence[str], *,
                        background: bool = False, window: int = WINDOW, stride: int = STRIDE,
                        should_stop: Callable[[], bool] | None = None,
                        progress: Callable[[str, float], None] | None = None) -> WindowSegmentation:
        """The reference segmentation alone (``window_mode="reference"``; what ``insight eval-seg``
        measures): labels, averaged probabilities and the opaque path's labels, without concept
        maps or explanations, so each window runs through the backbone once."""
        import torch

        report = progress or _no_progress
        rgb = self._image(image)
        prompts = self._prompts(classes, should_stop)
        geo = window_geometry(rgb, self.backbone.preprocessing, window, stride)
        runner = WindowRunner(self.backbone, [geo.image_boxes], _stop_check(should_stop),
                              lambda f: report("windows", f), batch=window_batch(self.device))
        with torch.inference_mode():
            result = self._reference_segmentation(geo, runner, prompts, background, rgb.shape[:2])
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
                         self.text_embeddings(classes), classes, opaque_features=pooled.mean_feature)

    def probe_classify(self, pooled: PooledCodes) -> ClassificationResult | None:
        """The bundle's probe on ``pooled``, or None when the bundle has no probe."""
        probe = self.model.probe
        if probe is None:
            return None
        W, class_names = probe
        return probe_classify(W, class_names, pooled.concepts, pooled.values)

    # ------------------------------------------------------------------ stages
    def _image(self, image: Any) -> np.ndarray:
        if isinstance(image, (str, os.PathLike)):
            from .images import load_image

            return load_image(Path(image))
        return as_rgb(image)

    def _prompts(self, classes: Sequence[str], should_stop: Callable[[], bool] | None = None,
                 progress: Callable[[float], None] | None = None) -> _Prompts:
        """The class list checked (a bad one fails before any model work) and its text embeddings
        (cached ones at once; encoding the others can be stopped and reports its progress)."""
        names = validate_classes(classes)
        try:
            return _Prompts(names, self.text_embeddings(names, should_stop=should_stop, progress=progress))
        except StoppedByUser as e:
            raise AnalysisStopped(str(e)) from None

    def _reference_segmentation(self, geo: WindowGeometry, runner: WindowRunner, prompts: _Prompts,
                                background: bool, out: tuple[int, int]) -> WindowSegmentation:
        """Reference mode's labels: each window through backbone and SAE on its own (:mod:`.tasks.windows`)."""
        return reference_segmentation(runner, geo, self._reconstruct, prompts.text, prompts.names, background, out)

    def _reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """``x̂ = decode(encode(x))`` [n, d] float32, a chunk of patches at a time."""
        import torch

        return torch.cat([self.sae.decode(self.sae.encode(x[i:i + ENCODE_CHUNK])).float()
                          for i in range(0, x.shape[0], ENCODE_CHUNK)])

    def _encode(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[PatchCodes, Faithfulness]:
        """SAE codes of every patch (a chunk at a time) and how well their decoding reconstructs ``x``."""
        import torch

        from .concepts.codes import SparseCodes

        parts, x_hat = [], []
        for start in range(0, x.shape[0], ENCODE_CHUNK):
            z = self.sae.encode(x[start:start + ENCODE_CHUNK])
            parts.append(SparseCodes.from_dense(z, eps=0.0))
            x_hat.append(self.sae.decode(z).float())
        return PatchCodes.concat_rows(parts, grid, self.model.n_concepts), _faithfulness(x, torch.cat(x_hat), grid)

    def _rank(self, codes: PatchCodes) -> tuple[ConceptActivation, ...]:
        ids, values = codes.pooled_max()
        patches = np.bincount(codes.indices, minlength=codes.n_concepts)
        rel = self.model.relations
        order = np.lexsort((ids, -values))
        return tuple(ConceptActivation(int(ids[i]), float(values[i]), int(rel.level[ids[i]]),
                                       self.parents(int(ids[i])), int(patches[ids[i]])) for i in order)

    def _active_decoder(self, codes: PatchCodes) -> ActiveDecoder:
        """``W_dec`` rows of the concepts active in ``codes`` and ``b_dec``: enough to decode them again."""
        active = codes.active_concepts()
        return ActiveDecoder(active, self.decoder_rows(active), self._b_dec)

    def _classify(self, codes: PatchCodes, decoder: ActiveDecoder, features: np.ndarray, prompts: _Prompts | None,
                  ) -> tuple[ClassificationResult | None, ClassificationResult | None]:
        """Zero-shot through concepts (with classes) and the bundle's probe (if any), both from the
        max-pooled codes; the opaque zero-shot reads the mean raw feature."""
        ids, values = codes.pooled_max()
        mean_feature = features.mean(axis=0)
        zero = None
        if prompts is not None:
            zero = zero_shot(ids, values, decoder.rows_of(ids), decoder.bias.astype(np.float64), prompts.text,
                             prompts.names, opaque_features=mean_feature)
        return zero, self.probe_classify(PooledCodes(ids, values, mean_feature, codes.n_concepts))


class _Prompts(NamedTuple):
    names: tuple[str, ...]  # the classes, checked
    text: np.ndarray        # [C, d] their unit text embeddings, read-only


def _no_progress(stage: str, fraction: float) -> None:
    pass


def _stop_check(should_stop: Callable[[], bool] | None) -> Callable[[], None]:
    def check() -> None:
        if should_stop is not None and should_stop():
            raise AnalysisStopped("analysis stopped")

    return check


def _faithfulness(x: torch.Tensor, x_hat: torch.Tensor, grid: tuple[int, int]) -> Faithfulness:
    import torch

    diff = x - x_hat
    total = float(((x - x.mean(dim=0)) ** 2).sum())
    fvu = float((diff ** 2).sum()) / total if total > 0 else float("nan")
    cosine = float(torch.nn.functional.cosine_similarity(x, x_hat, dim=1).mean())
    residual = np.ascontiguousarray(diff.norm(dim=1).reshape(grid).cpu().numpy())
    vectors = np.ascontiguousarray(diff.float().cpu().numpy())  # for "concepts + residual" (.tasks.whatif)
    for arr in (residual, vectors):
        arr.flags.writeable = False
    return Faithfulness(fvu, cosine, residual, vectors)


class _Clock:
    """Wall time per stage; waits for the GPU so each stage is charged its own work."""

    def __init__(self, device: torch.device):
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

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Charge the block (and whatever ran since the last lap) to ``name``."""
        yield
        self.lap(name)
