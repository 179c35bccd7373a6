"""With HF_HUB_OFFLINE=1 and no network, listing the store and opening the demo model still work."""

from __future__ import annotations

import os
import socket

import pytest

from insight_desktop.core.paths import demo_model_path


@pytest.fixture
def no_network(monkeypatch):
    attempts = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError(101, "Network is unreachable (test)")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.mark.skipif(demo_model_path() is None, reason="resources/models/demo-concepts.zip not built")
def test_store_and_demo_analyzer_never_touch_the_network(no_network, tmp_path, monkeypatch):
    from insight_desktop.core.engine import Analyzer
    from insight_desktop.core.paths import resource_path
    from insight_desktop.core.store import ModelStore

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    monkeypatch.setenv("INSIGHT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INSIGHT_CACHE_DIR", str(tmp_path / "cache"))
    store = ModelStore()
    (demo,) = store.concept_models()
    analyzer = Analyzer(store.resolve(demo.reference), device="cpu")
    analysis = analyzer.analyze(resource_path("samples", "chelsea.png"), classes=["cat", "dog"])
    assert analysis is not None
    assert no_network == []
