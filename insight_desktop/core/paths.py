"""Where things live: bundled resources, and per-user folders from platformdirs.

Nothing is ever written into the install folder (ARCHITECTURE rule 7).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

APP_NAME = "insight-desktop"
APP_AUTHOR = "insight"


def resources_dir() -> Path:
    """The installed ``resources/`` folder (package ``insight_desktop.resources``)."""
    return Path(str(resources.files("insight_desktop.resources")))


def resource_path(*parts: str) -> Path:
    path = resources_dir().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"bundled resource missing: {'/'.join(parts)} (looked in {resources_dir()})")
    return path


#: the demo concept model shipped with the app (``make demo-model`` builds it), under resources/
DEMO_MODEL = ("models", "demo-concepts.zip")


def demo_model_path() -> Path | None:
    """The bundled demo concept model, or None in a checkout where it has not been built."""
    path = resources_dir().joinpath(*DEMO_MODEL)
    return path if path.is_file() else None


def sample_images() -> list[Path]:
    folder = resources_dir() / "samples"
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})


def user_cache_dir() -> Path:
    """Per-user cache (text-embedding caches, demo models); ``INSIGHT_CACHE_DIR`` overrides."""
    override = os.environ.get("INSIGHT_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, APP_AUTHOR))


def user_data_dir() -> Path:
    """Per-user data (imported models); ``INSIGHT_DATA_DIR`` overrides."""
    override = os.environ.get("INSIGHT_DATA_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, APP_AUTHOR))
