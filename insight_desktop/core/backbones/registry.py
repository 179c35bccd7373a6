"""The backbone registry: backbones created by short name (as open_clip's model configs, SAELens' registry).

The built-in backbones are registered here through small wrappers that import their module on
first use, so torch and open_clip load only then; the backbone modules do not import the
registry, so there is no import circle. :func:`register_backbone` adds others (plugins, tests).
"""

from __future__ import annotations

from typing import Any, Callable

from .base import Backbone, BackboneError, BackboneSpec


def _clip_dinoiser(**options: Any) -> Backbone:
    from .clip_dinoiser import create_clip_dinoiser

    return create_clip_dinoiser(**options)


def _demo_effnet_minilm(**options: Any) -> Backbone:
    from .demo_effnet_minilm import create_demo_effnet_minilm

    return create_demo_effnet_minilm(**options)


#: name → factory ``factory(device=..., **options) -> Backbone``
_REGISTRY: dict[str, Callable[..., Backbone]] = {
    "clip-dinoiser": _clip_dinoiser,
    "demo-effnet-minilm": _demo_effnet_minilm,
}


def register_backbone(name: str) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    """Decorator: register a backbone factory ``factory(device=..., **options) -> Backbone``."""

    def deco(factory: Callable[..., Backbone]) -> Callable[..., Backbone]:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return deco


def available_backbones() -> list[str]:
    return sorted(_REGISTRY)


def create_backbone(spec: BackboneSpec | str, device: str | None = "auto", **options: Any) -> Backbone:
    """Build a registered backbone from a spec (or a name plus options)."""
    if isinstance(spec, str):
        spec = BackboneSpec(spec, options)
    elif options:
        spec = BackboneSpec(spec.name, {**spec.options, **options})
    try:
        factory = _REGISTRY[spec.name]
    except KeyError:
        raise BackboneError(f"unknown backbone {spec.name!r}; available: {', '.join(sorted(_REGISTRY))}") from None
    return factory(device=device, **spec.options)
