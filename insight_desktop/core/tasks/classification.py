"""Image classification explained concept by concept (docs/method.md §6).

**(b) Zero-shot through concepts (ours).** The image-level concept vector is the max over
patches, ``z̄_j = max_q z_j(q)`` (docs/method.md §3); it is decoded, ``x̂ = z̄ W_dec + b_dec``, and
compared with the class text embeddings: ``logit_c = 100 · ⟨x̂/‖x̂‖, t_c⟩``. As in segmentation,
concept ``j`` contributes ``100 · z̄_j S_jc / ‖x̂‖`` (``S_jc = ⟨W_dec[j], t_c⟩``) and the bias
``100 ⟨b_dec, t_c⟩ / ‖x̂‖``; they add up to the logit exactly. The **opaque reference** uses the
mean of the raw patch features instead (max-pooling raw feature dimensions has no meaning; the
mean is what dense-CLIP zero-shot classification uses).

**(a) Concept bottleneck.** A sparse linear probe ``logits = W z̄`` (no bias) trained with
:func:`.probe.train_probe`; concept ``j`` contributes ``W_cj z̄_j`` to class ``c``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .codes import ConceptContribution, ranked_contributions
from .segmentation import LOGIT_SCALE

ZERO_SHOT = "zero-shot"
PROBE = "probe"


@dataclass(frozen=True)
class ClassExplanation:
    """``logit`` of class ``class_index`` = Σ ``contributions`` + ``bias`` (exactly)."""

    class_index: int
    name: str
    logit: float
    probability: float
    bias: float
    contributions: tuple[ConceptContribution, ...]


@dataclass(frozen=True, eq=False)
class ClassificationResult:
    """Class scores of one image and their concept decomposition.

    ``contributions[c, i]`` is what concept ``concepts[i]`` (image-level activation
    ``activations[i]``) adds to ``logits[c]``; ``logits = contributions.sum(1) + bias``.
    """

    method: str                       # "zero-shot" or "probe"
    class_names: tuple[str, ...]
    logits: np.ndarray                # float64 [C]
    probabilities: np.ndarray         # float64 [C], softmax of the logits
    concepts: np.ndarray              # int64 [n], ascending
    activations: np.ndarray           # float32 [n]: z̄ (max-pooled codes)
    contributions: np.ndarray         # float64 [C, n]
    bias: np.ndarray                  # float64 [C] (zeros for the probe)
    opaque_logits: np.ndarray | None  # float64 [C]: the raw-feature reference (zero-shot only)

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.logits))

    @property
    def predicted_name(self) -> str:
        return self.class_names[self.predicted]

    @property
    def opaque_predicted(self) -> int | None:
        return None if self.opaque_logits is None else int(np.argmax(self.opaque_logits))

    def top(self, k: int = 5) -> list[tuple[int, str, float]]:
        """The ``k`` most probable classes as (index, name, probability)."""
        order = np.argsort(-self.logits, kind="stable")[:k]
        return [(int(c), self.class_names[c], float(self.probabilities[c])) for c in order]

    def explain(self, class_index: int | None = None, top: int | None = None) -> ClassExplanation:
        """Ranked concept contributions to one class (default: the predicted one)."""
        c = self.predicted if class_index is None else int(class_index)
        return ClassExplanation(c, self.class_names[c], float(self.logits[c]), float(self.probabilities[c]),
                                float(self.bias[c]),
                                ranked_contributions(self.concepts, self.contributions[c], top))


def zero_shot(concepts: np.ndarray, activations: np.ndarray, decoder_rows: np.ndarray, b_dec: np.ndarray,
              text: np.ndarray, class_names: Sequence[str], *,
              opaque_features: np.ndarray | None = None) -> ClassificationResult:
    """Zero-shot classification of the pooled codes ``(concepts, activations)``.

    ``decoder_rows`` [n, d] are the ``W_dec`` rows of ``concepts``; ``text`` [C, d] unit class
    embeddings; ``opaque_features`` [d] the mean raw patch feature (for the reference), or None.
    """
    concepts, activations = _pooled(concepts, activations)
    b = np.asarray(b_dec, dtype=np.float64).reshape(-1)
    # by b's width, not −1: with no concept active there are 0 rows, and the logits are b's alone
    W = np.asarray(decoder_rows, dtype=np.float64).reshape(concepts.size, b.size)
    text = np.asarray(text, dtype=np.float64)
    x_hat = activations.astype(np.float64) @ W + b
    norm = max(float(np.linalg.norm(x_hat)), 1e-12)
    similarity = W @ text.T                                              # S [n, C]
    contributions = (LOGIT_SCALE / norm) * (activations[:, None] * similarity).T
    bias = (LOGIT_SCALE / norm) * (b @ text.T)
    opaque = None
    if opaque_features is not None:
        f = np.asarray(opaque_features, dtype=np.float64)
        opaque = LOGIT_SCALE * (text @ f) / max(float(np.linalg.norm(f)), 1e-12)
    return _result(ZERO_SHOT, class_names, concepts, activations, contributions, bias, opaque)


def probe_classify(W: np.ndarray, class_names: Sequence[str], concepts: np.ndarray, activations: np.ndarray,
                   ) -> ClassificationResult:
    """Concept-bottleneck probe ``logits = W z̄`` (W [C, m]) on the pooled codes."""
    concepts, activations = _pooled(concepts, activations)
    W = np.asarray(W)
    if concepts.size and concepts.max() >= W.shape[1]:
        raise ValueError(f"the probe reads {W.shape[1]} concepts; the codes have concept {concepts.max()}")
    contributions = W[:, concepts].astype(np.float64) * activations[None, :].astype(np.float64)
    return _result(PROBE, class_names, concepts, activations, contributions, np.zeros(W.shape[0]), None)


def _pooled(concepts: Any, activations: Any) -> tuple[np.ndarray, np.ndarray]:
    concepts = np.asarray(concepts, dtype=np.int64).reshape(-1)
    activations = np.asarray(activations, dtype=np.float32).reshape(-1)
    if concepts.shape != activations.shape:
        raise ValueError(f"{concepts.size} concepts but {activations.size} activations")
    order = np.argsort(concepts, kind="stable")
    return concepts[order], activations[order]


def _result(method, class_names, concepts, activations, contributions, bias, opaque) -> ClassificationResult:
    class_names = tuple(str(c) for c in class_names)
    if len(class_names) != contributions.shape[0]:
        raise ValueError(f"{len(class_names)} class names for {contributions.shape[0]} classes")
    logits = contributions.sum(axis=1) + bias
    e = np.exp(logits - logits.max())
    probabilities = e / e.sum()
    for arr in (logits, probabilities, concepts, activations, contributions, bias, opaque):
        if arr is not None:
            arr.flags.writeable = False
    return ClassificationResult(method, class_names, logits, probabilities, concepts, activations, contributions,
                                bias, opaque)
