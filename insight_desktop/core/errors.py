"""What every layer needs to know about errors: "stopped by the user" is one type, and one
function turns an error into words for the user.

Long work polls ``should_stop()`` and raises a :class:`StoppedByUser` (or a subclass that says
what stopped: a build, a download, an analysis) when it turns true. Callers — the GUI's jobs
and worker, the CLI — recognise a stop by this one class, never by an exception's name.

Imports nothing heavy (no torch, no Qt): the GUI imports it on its thread.
"""

from __future__ import annotations


class StoppedByUser(Exception):
    """Work stopped because the user asked (``should_stop()`` turned true): not a failure. The
    message says how far it got and whether running it again resumes."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Host or device memory ran out. torch's OutOfMemoryError says "CUDA out of memory" (or "MPS
    backend out of memory"), so its text is enough and torch need not be imported here."""
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


def user_message(exc: BaseException, what: str = "") -> str:
    """``exc`` in words a user can act on, without a traceback; ``what`` ("build the model") is
    what was being done, for the out-of-memory advice."""
    if is_out_of_memory(exc):
        to = f" to {what}" if what else ""
        return (f"There was not enough memory{to}. Close other programs, choose the CPU device, or use fewer or "
                "smaller images.")
    if isinstance(exc, OSError) and exc.filename and exc.strerror:  # "[Errno 28] …" reads badly
        return f"{exc.strerror}: {exc.filename}"
    return str(exc) or type(exc).__name__


def describe_error(exc: BaseException, what: str) -> tuple[str, str]:
    """A dialog's title and message for ``exc`` raised while trying to ``what``."""
    title = "Out of memory" if is_out_of_memory(exc) else f"Could not {what}"
    return title, user_message(exc, what)
