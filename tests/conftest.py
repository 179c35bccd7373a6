"""Test-wide settings (headless Qt, no network waits) and the shared tiny-model fixtures."""

import os

# Before anything imports Qt or huggingface_hub.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Caches the app keeps under the user cache dir (class-prompt embeddings, …) go to a throwaway folder.
os.environ.setdefault("INSIGHT_CACHE_DIR", __import__("tempfile").mkdtemp(prefix="insight-test-cache-"))

import pytest  # noqa: E402 — after the environment is set


@pytest.fixture(scope="session")
def tiny_model_files(tmp_path_factory):
    """Files of a tiny seeded open_clip ViT (4 blocks, width 64, d = 32, 224 px, patch 16):
    ``.config_path`` (JSON), ``.checkpoint_path`` (safetensors), ``.dinoiser_path`` (last.pt)."""
    from insight_desktop.core.backbones.tiny import build_tiny_openclip

    # 4 blocks so that "third from last" (block 1) differs from the first and the last block.
    return build_tiny_openclip(tmp_path_factory.mktemp("tiny_openclip"), seed=0, layers=4)


@pytest.fixture
def tiny_backbone(tiny_model_files):
    """The tiny model as a ``clip-dinoiser`` backbone with DINOiser heads, on CPU."""
    from insight_desktop.core.backbones import create_backbone

    return create_backbone(
        "clip-dinoiser",
        device="cpu",
        model=str(tiny_model_files.config_path),
        pretrained=str(tiny_model_files.checkpoint_path),
        dinoiser=str(tiny_model_files.dinoiser_path),
    )


def pytest_configure(config):
    # `make fuzz` selects these; `make test` runs them too, with a few derandomised examples each.
    config.addinivalue_line("markers", "fuzz: property tests over crafted files (INSIGHT_FUZZ_EXAMPLES=N for more)")
