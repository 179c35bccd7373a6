"""Which download addresses the model store accepts: HTTPS only, and which of them are pinned.

Model files are code-adjacent data (the app runs them), so they travel over HTTPS only: a plain
``http://`` address — in the catalogue, from a redirect, or as the Hub endpoint — is refused.
The one exception is the loopback server of the test suite, and only while a test switches
:data:`ALLOW_LOOPBACK_HTTP_FOR_TESTS` on (a module attribute: no catalogue, environment variable
or command-line option can set it).

"Pinned" means that the bytes behind an address cannot change: a catalogue sha256, or at least
an address that names a commit rather than a branch (:func:`moving_ref`).
"""

from __future__ import annotations

import re
import urllib.parse

#: Tests set this (``monkeypatch.setattr(urls, "ALLOW_LOOPBACK_HTTP_FOR_TESTS", True)``) to talk to
#: their own ``http://127.0.0.1`` server; nothing else may
ALLOW_LOOPBACK_HTTP_FOR_TESTS = False
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_COMMIT = re.compile(r"[0-9a-f]{40}")


def insecure_reason(url: object) -> str | None:
    """Why ``url`` must not be downloaded from (in words), or None when it is an HTTPS address."""
    if not isinstance(url, str):
        return "it is not an address"
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "https" and parts.hostname:
        return None
    if scheme == "http" and ALLOW_LOOPBACK_HTTP_FOR_TESTS and parts.hostname in _LOOPBACK:
        return None
    if scheme == "http":
        return "plain http:// is not accepted for model files (anyone on the way could swap them): use https://"
    return "only https:// addresses are accepted"


def is_commit(revision: str | None) -> bool:
    """True for a full 40-hex git commit id (immutable), False for branches, tags and None."""
    return isinstance(revision, str) and bool(_COMMIT.fullmatch(revision))


def moving_ref(url: str) -> str | None:
    """The branch or tag a GitHub or Hugging Face file address follows, or None when it names a commit.

    Only the address forms of those two hosts are understood (raw.githubusercontent.com/<o>/<r>/<ref>/…,
    github.com/<o>/<r>/raw|blob/<ref>/…, huggingface.co/<repo…>/resolve/<ref>/…); others give None.
    """
    parts = urllib.parse.urlsplit(url)
    host, segments = (parts.hostname or "").lower(), [s for s in parts.path.split("/") if s]
    ref = None
    if host == "raw.githubusercontent.com" and len(segments) >= 4:
        ref = segments[2]
    elif host == "github.com" and len(segments) >= 5 and segments[2] in ("raw", "blob"):
        ref = segments[3]
    elif host.endswith("huggingface.co") and "resolve" in segments[:-1]:
        ref = segments[segments.index("resolve") + 1]
    return None if ref is None or is_commit(ref) else urllib.parse.unquote(ref)
