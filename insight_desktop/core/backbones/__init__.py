"""Backbones: dense language-aligned patch features and text embeddings (docs/method.md §1)."""

from .base import Backbone, BackboneError, BackboneSpec, DenseOutput, Preprocessing
from .registry import available_backbones, create_backbone, register_backbone

__all__ = [
    "Backbone",
    "BackboneError",
    "BackboneSpec",
    "DenseOutput",
    "Preprocessing",
    "available_backbones",
    "create_backbone",
    "register_backbone",
]
