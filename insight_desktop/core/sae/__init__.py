"""Matryoshka BatchTopK sparse autoencoder (docs/method.md §2): module, trainer, file io, importers."""

from .config import REFERENCE_GROUP_FRACTIONS, SAEConfig, TrainConfig, group_sizes_from_fractions
from .data import ArrayTokenSource, TokenSource
from .errors import SAEError
from .importers import import_dictionary_learning
from .io import SAE_FORMAT_VERSION, load_sae, save_sae
from .losses import LossParts, matryoshka_loss_dense
from .model import MatryoshkaSAE, geometric_median
from .schedule import RunPlan, plan_run
from .topk import batch_topk_dense, batch_topk_indices
from .trainer import TrainProgress, TrainResult, train_sae, update_threshold

__all__ = [
    "REFERENCE_GROUP_FRACTIONS", "SAEConfig", "TrainConfig", "group_sizes_from_fractions",
    "ArrayTokenSource", "TokenSource", "SAEError", "import_dictionary_learning",
    "SAE_FORMAT_VERSION", "load_sae", "save_sae", "LossParts", "matryoshka_loss_dense",
    "MatryoshkaSAE", "geometric_median", "batch_topk_dense", "batch_topk_indices",
    "TrainProgress", "TrainResult", "train_sae", "update_threshold", "RunPlan", "plan_run",
]
