"""Switching concepts off (``z_j = 0``) and showing what the prediction becomes, undoably.

A :class:`SwitchState` says what is switched off (concepts, the Matryoshka levels above ``L``)
and in which mode. :func:`derive` turns the worker's Analysis (the *base*) and a state into a
:class:`WhatIfView`: an Analysis of the same image whose codes, segmentation and classification
are recomputed from the codes without those concepts (nothing else: names, the ranking of the
concepts, faithfulness and the opaque path stay the base's), plus what changed against the base.
Everything comes from the Analysis alone — codes, the active decoder rows, ``b_dec`` and the
class embeddings — so no worker round trip is made.

:class:`SwitchController` puts the derived Analysis into the document, so every view (the
segmentation layer, the panels, the contribution charts) shows the "what if" without knowing
about it. A recomputation takes tens to hundreds of ms (a 448-px image with 8 classes), so it
runs on a one-thread :class:`~..jobs.JobPool`; only the result for the last state asked for is
shown, older ones are dropped. Every change of state is one :class:`SwitchCommand` on the
curation's QUndoStack; undo shows the previous state's Analysis again — the very object shown
before (the last few are kept), so the views are exactly what they were.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Hashable

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QUndoCommand, QUndoStack

from ...core.analysis import Analysis
from ...core.tasks.classification import PROBE, ClassificationResult, zero_shot
from ...core.tasks.decoder import without_concepts
from ...core.tasks.segmentation import segment
from ..jobs import JobPool, Outcome

CONCEPTS_ONLY = "concepts only"
WITH_RESIDUAL = "concepts + residual"
#: derived views kept per base, so undo and redo show the very Analysis shown before (fewer for
#: big images: each holds labels and probabilities at full size, ~6 bytes a pixel with "changed")
VIEW_CACHE = 16
VIEW_CACHE_BYTES = 400_000_000
#: an undo command id: consecutive level-slider moves merge into one undo step
_LEVEL_COMMAND_ID = 1917


@dataclass(frozen=True)
class SwitchState:
    """What is switched off: ``off`` concepts, and every concept of a level above ``level`` (None:
    all levels shown); ``keep_residual``: "concepts + residual" instead of "concepts only"."""

    off: frozenset[int] = frozenset()
    level: int | None = None
    keep_residual: bool = False

    @property
    def mode(self) -> str:
        return WITH_RESIDUAL if self.keep_residual else CONCEPTS_ONLY

    def removed(self, base: Analysis) -> np.ndarray:
        """The concepts active in ``base`` whose codes are set to 0, int64 ascending."""
        ids = np.array([c.concept for c in base.concepts], dtype=np.int64)
        levels = np.array([c.level for c in base.concepts], dtype=np.int64)
        drop = np.isin(ids, np.fromiter(self.off, np.int64, len(self.off)))
        if self.level is not None:
            drop |= levels > self.level
        return np.sort(ids[drop])

    def key(self, base: Analysis) -> Hashable:
        """Two states with the same key show the same Analysis (switching off an inactive concept
        changes nothing)."""
        return tuple(self.removed(base).tolist()), self.keep_residual


@dataclass(frozen=True, eq=False)
class WhatIfView:
    """The base Analysis, the state, and the Analysis that state gives (``analysis`` is ``base``
    itself when nothing is switched off in "concepts only")."""

    base: Analysis
    state: SwitchState
    analysis: Analysis
    removed: np.ndarray                       # int64: the concepts set to 0
    before_labels: np.ndarray | None          # [H, W] what the labels are with nothing switched off (this mode)
    changed: np.ndarray | None                # bool [H, W]: pixels whose label changed
    class_names: tuple[str, ...] = ()         # segmentation labels' names (with background)
    shares_before: np.ndarray = field(default_factory=lambda: np.zeros(0))  # pixel share per label
    shares_after: np.ndarray = field(default_factory=lambda: np.zeros(0))
    logits_before: np.ndarray | None = None   # zero-shot classification, if any
    logits_after: np.ndarray | None = None
    notes: tuple[str, ...] = ()

    @property
    def changed_pixels(self) -> int:
        return int(np.count_nonzero(self.changed)) if self.changed is not None else 0


# ---------------------------------------------------------------------------- recomputation (no Qt)
def reference_labels(base: Analysis) -> np.ndarray | None:
    """The labels "with nothing switched off" on the path the switches recompute: the base's own
    (fast window mode), else this grid's, recomputed once (the reference per-window labels do
    not decompose over concepts, so a difference to them would not be the switch's)."""
    seg = base.segmentation
    if seg is None or base.class_embeddings is None:
        return None
    if seg.window_mode == "fast":
        return seg.labels
    return segment(base.segmentation_inputs()).labels


def derive(base: Analysis, state: SwitchState, reference: np.ndarray | None = None) -> WhatIfView:
    """The view of ``base`` with ``state``'s concepts switched off (exact: ``z_j = 0``).

    "concepts only": the concept path (labels, segments' and classes' explanations) from the codes
    without them; ``changed`` against the concept path with nothing off. "concepts + residual":
    the same concept path, and the opaque path — the prediction from the features — made from
    ``x − their contributions`` (the core's :func:`~insight_desktop.core.tasks.whatif.switch_off`
    with the residual the Analysis keeps): the Analysis' ``opaque_labels`` / ``opaque_logits``
    become those, and ``changed`` is against the features' own labels."""
    removed = state.removed(base)
    notes: list[str] = []
    if removed.size:
        analysis = _concepts_only(base, removed)
        before = reference if reference is not None else reference_labels(base)
    else:  # nothing switched off: the base as it is, nothing changed
        analysis = base
        before = base.segmentation.labels if base.segmentation is not None else None
    after = analysis.segmentation.labels if analysis.segmentation is not None else None
    logits_before = base.classification.logits if base.classification is not None else None
    logits_after = analysis.classification.logits if analysis.classification is not None else None
    if state.keep_residual:
        analysis, before, after, logits_before, logits_after = _with_residual(base, analysis, removed)
        notes.append(f"{WITH_RESIDUAL}: the features x with the switched-off concepts' contributions taken "
                     "out; the opaque prediction shows it")
    seg = analysis.segmentation
    changed = None
    names: tuple[str, ...] = ()
    shares_before = shares_after = np.zeros(0)
    if seg is not None and before is not None and after is not None:
        changed = np.asarray(after) != np.asarray(before)
        names = seg.class_names
        shares_before, shares_after = _shares(before, len(names)), _shares(after, len(names))
    return WhatIfView(base, state, analysis, removed, before, changed, names, shares_before, shares_after,
                      logits_before, logits_after, tuple(notes))


def _concepts_only(base: Analysis, removed: np.ndarray) -> Analysis:
    """``base`` with the codes of ``removed`` set to 0 and segmentation and classification made again."""
    codes = without_concepts(base.codes, removed)
    core = core_whatif()
    if core is not None:
        seg, cls = core.explain(base, codes)
        if cls is not None and base.classification is not None:
            cls = replace(cls, opaque_logits=base.classification.opaque_logits)  # x's: the codes do not enter
    else:
        seg = base.segmentation
        if seg is not None and base.class_embeddings is not None:
            seg = segment(base.segmentation_inputs(codes))
        cls = _zero_shot_again(base, codes)
    note = f"What if: {removed.size} concept{'s' * (removed.size != 1)} switched off (z = 0)."
    return replace(base, codes=codes, segmentation=seg, classification=cls,
                   probe=_probe_again(base.probe, removed), notices=base.notices + (note,))


def _zero_shot_again(base: Analysis, codes) -> ClassificationResult | None:
    """Zero-shot through concepts from the max-pooled ``codes`` (a kept concept's max is unchanged;
    ``‖x̂‖`` is not); the opaque reference does not depend on the codes and is kept."""
    cls = base.classification
    if cls is None or base.class_embeddings is None:
        return cls
    ids, values = codes.pooled_max()
    out = zero_shot(ids, values, base.decoder.rows_of(ids), base.decoder.bias, base.class_embeddings,
                    cls.class_names)
    return replace(out, opaque_logits=cls.opaque_logits)


def _probe_again(probe: ClassificationResult | None, removed: np.ndarray) -> ClassificationResult | None:
    """The probe ``logits = W z̄`` is linear without a bias: the removed concepts' columns go, exactly."""
    if probe is None or probe.method != PROBE or not removed.size:
        return probe
    contributions = np.array(probe.contributions, dtype=np.float64)
    contributions[:, np.isin(probe.concepts, removed)] = 0.0
    logits = contributions.sum(axis=1) + probe.bias
    e = np.exp(logits - logits.max())
    for arr in (contributions, logits):
        arr.flags.writeable = False
    return replace(probe, contributions=contributions, logits=logits, probabilities=e / e.sum())


def _with_residual(base: Analysis, analysis: Analysis, removed: np.ndarray):
    """``analysis`` (the concept path without ``removed``) with its opaque path made from
    ``x − Σ_{j off} z_j W_dec[j]``; (analysis, labels before, after, logits before, after)."""
    core = core_whatif()
    if core is None:
        raise ValueError(f"'{WITH_RESIDUAL}' needs the core's what-if module, which this version lacks")
    result = core.switch_off(base, removed.tolist(), keep_residual=True)
    seg, cls = analysis.segmentation, analysis.classification
    before = after = logits_before = logits_after = None
    if seg is not None and result.segmentation is not None:
        before, after = result.segmentation.labels_before, result.segmentation.labels_after
        seg = replace(seg, opaque_labels=after)
    if cls is not None and result.classification is not None:
        logits_before, logits_after = result.classification.logits_before, result.classification.logits_after
        cls = replace(cls, opaque_logits=logits_after)
    return replace(analysis, segmentation=seg, classification=cls), before, after, logits_before, logits_after


def core_whatif():
    """The core's what-if module (:mod:`insight_desktop.core.tasks.whatif`), or None where this
    version lacks it (then the concept path is recomputed here and "concepts + residual" is off)."""
    try:
        from ...core.tasks import whatif
    except ImportError:
        return None
    return whatif


def residual_available(analysis: Analysis | None = None) -> bool:
    """Whether "concepts + residual" can be shown (for ``analysis``: it must keep ``x − x̂``)."""
    if core_whatif() is None:
        return False
    return analysis is None or getattr(analysis.faithfulness, "residual_vectors", None) is not None


def _shares(labels: np.ndarray, n: int) -> np.ndarray:
    counts = np.bincount(np.asarray(labels).ravel(), minlength=n)[:n].astype(np.float64)
    return counts / max(counts.sum(), 1.0)


# ---------------------------------------------------------------------------- the controller (Qt)
class SwitchCommand(QUndoCommand):
    """One change of the switches of one base Analysis; undo shows the state before it again.
    Made obsolete (and dropped by the stack) once another image's analysis is shown."""

    def __init__(self, controller: "SwitchController", base: Analysis, before: SwitchState, after: SwitchState,
                 text: str):
        super().__init__(text)
        self.controller, self.base, self.before, self.after = controller, base, before, after
        self._level_only = before.off == after.off and before.keep_residual == after.keep_residual

    def id(self) -> int:  # noqa: A003 — Qt's name
        return _LEVEL_COMMAND_ID if self._level_only else -1

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 — Qt override
        if not isinstance(other, SwitchCommand) or other.base is not self.base or not other._level_only:
            return False
        self.after = other.after
        return True

    def redo(self) -> None:
        if not self.controller.show(self.base, self.after):
            self.setObsolete(True)

    def undo(self) -> None:
        if not self.controller.show(self.base, self.before):
            self.setObsolete(True)


class SwitchController(QObject):
    """The switches of the Analysis the document shows, on ``undo_stack`` (the curation's)."""

    stateChanged = Signal(object)    # SwitchState now wanted (the check boxes follow at once)
    viewChanged = Signal(object)     # WhatIfView now shown, or None (no analysis)
    failed = Signal(str)             # a recomputation that could not be made, in words

    def __init__(self, document, undo_stack: QUndoStack, parent: QObject | None = None):
        super().__init__(parent)
        self.document, self.undo_stack = document, undo_stack
        self.base: Analysis | None = None
        self.state = SwitchState()
        self.view: WhatIfView | None = None      # the last view shown
        self._shown: Analysis | None = None      # what this controller put into the document
        self._reference: np.ndarray | None = None
        self._views: OrderedDict[Hashable, WhatIfView] = OrderedDict()
        self._wanted: Hashable | None = None
        self._pool = JobPool(1, self)
        self._pool.done.connect(self._on_done)
        document.analysisChanged.connect(self._on_analysis_changed)
        self._on_analysis_changed()

    # ------------------------------------------------------------------ what the user does (undoable)
    def set_off(self, concepts, off: bool, text: str | None = None) -> bool:
        """Switch ``concepts`` off (or on again) as one undo step; False when nothing changes."""
        concepts = frozenset(int(j) for j in concepts)
        new = self.state.off | concepts if off else self.state.off - concepts
        verb = "Switch off" if off else "Switch on"
        return self.change(replace(self.state, off=new), text or f"{verb} {len(concepts)} concept(s)")

    def toggle(self, concepts, text: str | None = None) -> bool:
        """Switch ``concepts`` off unless the first of them is off already (then on again)."""
        concepts = [int(j) for j in concepts]
        return bool(concepts) and self.set_off(concepts, concepts[0] not in self.state.off, text)

    def restore_all(self) -> bool:
        return self.change(SwitchState(level=None, keep_residual=self.state.keep_residual), "Restore all concepts")

    def set_level(self, level: int | None) -> bool:
        return self.change(replace(self.state, level=level),
                           "Show all levels" if level is None else f"Show levels 1–{level}")

    def set_keep_residual(self, on: bool) -> bool:
        mode = WITH_RESIDUAL if on else CONCEPTS_ONLY
        return self.change(replace(self.state, keep_residual=bool(on)), f"Show {mode}")

    def change(self, state: SwitchState, text: str) -> bool:
        if self.base is None or state == self.state:
            return False
        self.undo_stack.push(SwitchCommand(self, self.base, self.state, state, text))
        return True

    # ------------------------------------------------------------------ showing
    def show(self, base: Analysis, state: SwitchState) -> bool:
        """Show ``state`` of ``base``; False (nothing done) when another analysis is shown now."""
        if base is not self.base:
            return False
        self.state = state
        self.stateChanged.emit(state)
        key = state.key(base)
        found = self._views.get(key)
        if found is not None:
            self._views.move_to_end(key)
            self._wanted = None
            self._present(replace(found, state=state) if found.state != state else found)
            return True
        if key == ((), False):  # nothing off: the base itself, no work
            self._wanted = None
            self._present(self._remember(key, derive(base, state, self._reference)))
            return True
        self._wanted = key
        reference = self._reference

        def job(_progress, _should_stop):
            return derive(base, state, reference)

        self._pool.submit((id(base), key), job, "recompute the prediction without those concepts")
        return True

    def pending(self) -> bool:
        """A recomputation asked for has not been shown yet."""
        return self._wanted is not None

    def wait(self, ms: int = -1) -> bool:
        """Block until the recomputations asked so far ended (tests, benchmarks); results still queue."""
        return self._pool.wait(ms)

    def shutdown(self) -> None:
        self._pool.shutdown()

    @Slot(object, object)
    def _on_done(self, job_key: Hashable, outcome: Outcome) -> None:
        base_id, key = job_key  # type: ignore[misc]
        if self.base is None or base_id != id(self.base) or key != self._wanted:
            return  # stale: another state (or image) was asked for meanwhile
        self._wanted = None
        if not outcome.succeeded or outcome.value is None:
            message = outcome.failure.message if outcome.failure is not None else "it was stopped"
            self.failed.emit(message)
            return
        view = outcome.value
        if self._reference is None and not view.state.keep_residual:
            self._reference = view.before_labels
        self._present(self._remember(key, view))

    def _remember(self, key: Hashable, view: WhatIfView) -> WhatIfView:
        self._views[key] = view
        h, w = view.base.image_size
        limit = max(2, min(VIEW_CACHE, VIEW_CACHE_BYTES // max(6 * h * w, 1)))
        while len(self._views) > limit:
            self._views.popitem(last=False)
        return view

    def _present(self, view: WhatIfView) -> None:
        self.view = view
        doc = self.document
        if doc.analysis is not view.analysis:
            segment_shown = doc.segment
            self._shown = view.analysis
            doc.set_analysis(view.analysis)
            if segment_shown >= 0 and view.analysis.segmentation is not None \
                    and view.analysis.segmentation.segment(segment_shown) is not None:
                doc.select_segment(segment_shown)  # the user keeps looking at the same segment
        self.viewChanged.emit(view)

    def _on_analysis_changed(self) -> None:
        a = self.document.analysis
        if a is not None and a is self._shown:
            return  # ours
        # A new analysis from the worker (or the cache): its switches start all on.
        self._pool.new_generation()
        self._views.clear()
        self._wanted = None
        self.base, self._shown, self.state = a, a, SwitchState()
        self._reference = None
        self.view = None
        if a is not None:
            seg = a.segmentation
            # the fast mode's labels are the reference as they are; the reference window mode's
            # are made again on this grid by the first recomputation (on the pool), not here
            fast = seg is not None and a.class_embeddings is not None and seg.window_mode == "fast"
            self._reference = seg.labels if fast else None
            self.view = self._remember(SwitchState().key(a), derive(a, SwitchState(), self._reference))
        self.stateChanged.emit(self.state)
        self.viewChanged.emit(self.view)
