"""Tasks explained through concepts (docs/method.md §6): segmentation, classification, the probe.

Every result is an immutable dataclass of read-only numpy arrays with *exact* concept
contributions: for every logit, Σ contributions + bias = logit.
"""

from .classification import ClassExplanation, ClassificationResult, probe_classify, zero_shot
from .codes import ConceptContribution, PatchCodes
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
from .segmentation import BACKGROUND_DELTA, PixelExplanation, Segment, SegmentationResult, segment
from .windows import WindowScores, WindowSegmentation, window_segmentation

__all__ = [
    "BACKGROUND_DELTA", "ClassExplanation", "ClassListError", "ClassificationResult", "ConceptContribution",
    "GridSampler", "NeighbourGram", "PatchCodes", "PixelExplanation", "PooledCodes", "ProbeError", "ProbeFit",
    "Segment", "SegmentationResult", "TextEmbeddingCache", "class_text_embeddings", "encode_pooled", "fit_probe",
    "parse_class_list", "pooled_matrix", "probe_classify", "read_class_file", "segment", "stratified_split",
    "train_probe", "validate_classes", "WindowScores", "WindowSegmentation", "window_segmentation", "zero_shot",
]
