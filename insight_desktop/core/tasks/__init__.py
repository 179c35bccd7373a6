"""Tasks explained through concepts (docs/method.md §6): segmentation, classification, the probe.

Every result is an immutable dataclass of read-only numpy arrays with *exact* concept
contributions: for every logit, Σ contributions + bias = logit. Concepts appear by id only; their
names are looked up where they are shown (:class:`..concepts.names.NameBook`).
"""

from .classification import ClassExplanation, ClassificationResult, probe_classify, zero_shot
from .codes import ConceptContribution, PatchCodes
from .decoder import ActiveDecoder, without_concepts
from .pooling import PooledCodes, encode_pooled, pooled_matrix
from .probe import ProbeError, ProbeFit, fit_probe, stratified_split, train_probe
from .prompts import (
    ClassListError,
    TextEmbeddingCache,
    class_text_embeddings,
    parse_class_list,
    read_class_file,
    validate_classes,
)
from .resample import GridSampler, NeighbourGram
from .segmentation import (
    BACKGROUND_DELTA,
    PixelExplanation,
    Segment,
    SegmentationInputs,
    SegmentationResult,
    segment,
)
from .windows import WindowScores, WindowSegmentation, window_segmentation

__all__ = [
    "ActiveDecoder", "BACKGROUND_DELTA", "ClassExplanation", "ClassListError", "ClassificationResult",
    "ConceptContribution", "GridSampler", "NeighbourGram", "PatchCodes", "PixelExplanation", "PooledCodes",
    "ProbeError", "ProbeFit", "Segment", "SegmentationInputs", "SegmentationResult", "TextEmbeddingCache",
    "class_text_embeddings", "encode_pooled", "fit_probe", "parse_class_list", "pooled_matrix", "probe_classify",
    "read_class_file", "segment", "stratified_split", "train_probe", "validate_classes", "WindowScores",
    "WindowSegmentation", "window_segmentation", "without_concepts", "zero_shot",
]
