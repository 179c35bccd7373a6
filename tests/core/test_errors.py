"""One "stopped by the user" type, and one function that words an error for a user."""

from __future__ import annotations

import pytest

from insight_desktop.core.errors import StoppedByUser, describe_error, user_message


def test_every_stop_of_the_core_is_one_type_and_keeps_its_own_family():
    from insight_desktop.core.build import BuildStopped
    from insight_desktop.core.concepts.vocab import NamingCancelled, NamingError
    from insight_desktop.core.engine import AnalysisStopped
    from insight_desktop.core.store.download import (
        DownloadCancelled,
        DownloadError,
        DownloadInterrupted,
    )

    for stop in (BuildStopped, NamingCancelled, AnalysisStopped, DownloadCancelled):
        assert issubclass(stop, StoppedByUser)
    assert issubclass(NamingCancelled, NamingError) and issubclass(DownloadCancelled, DownloadError)
    assert not issubclass(DownloadInterrupted, StoppedByUser)  # a broken connection is not the user's doing


@pytest.mark.parametrize("exc, message", [
    (OSError(28, "No space left on device", "/out/m.zip"), "No space left on device: /out/m.zip"),
    (OSError("plain"), "plain"),
    (ValueError("the class 'cat' is listed twice"), "the class 'cat' is listed twice"),
    (KeyError(), "KeyError"),                                  # no text: at least say what it was
])
def test_user_message_is_the_errors_own_words_without_errno_noise(exc, message):
    assert user_message(exc) == message


def test_out_of_memory_reads_as_advice_host_or_device():
    gpu = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")  # what torch says
    for exc in (MemoryError(), gpu):
        title, message = describe_error(exc, "analyse chelsea.png")
        assert title == "Out of memory"
        assert message.startswith("There was not enough memory to analyse chelsea.png.") and "smaller images" in message
    assert user_message(MemoryError()).startswith("There was not enough memory. Close other programs")
    assert describe_error(ValueError("bad"), "load the model 'x.zip'") == ("Could not load the model 'x.zip'", "bad")
