"""Errors raised by the SAE package."""


class SAEError(RuntimeError):
    """An SAE file, checkpoint or state dict cannot be used; the message names the file and the reason."""
