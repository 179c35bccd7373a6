"""Choosing the torch device: CUDA when available, else CPU; the user may override."""

from __future__ import annotations

DEVICE_CHOICES = ("auto", "cpu", "cuda")


class DeviceError(RuntimeError):
    """The requested device cannot be used."""


def resolve_device(choice: str | None = "auto"):
    """Return a ``torch.device`` for ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    import torch

    choice = (choice or "auto").strip().lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {choice!r} was requested but CUDA is not available on this machine")
        dev = torch.device(choice)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {choice!r} does not exist: {torch.cuda.device_count()} CUDA device(s) present")
        return dev
    raise DeviceError(f"unknown device {choice!r}; use one of auto, cpu, cuda, cuda:N")
