"""Matryoshka BatchTopK sparse autoencoder (SPEC §2): module, trainer, file io, importers."""

from .config import REFERENCE_GROUP_FRACTIONS, SAEConfig, TrainConfig, group_sizes_from_fractions

__all__ = ["REFERENCE_GROUP_FRACTIONS", "SAEConfig", "TrainConfig", "group_sizes_from_fractions"]
