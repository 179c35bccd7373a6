"""The Models dialog says which catalogue entries have no hash known in advance (unpinned)."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt

from insight_desktop.core.store import ModelStore
from insight_desktop.gui.model_manager import ModelManagerDialog


def test_the_hash_column_shows_pinned_unpinned_and_why(qtbot, tmp_path, monkeypatch):
    catalogue = tmp_path / "c.json"
    catalogue.write_text(json.dumps([
        {"id": "pinned", "kind": "dinoiser", "title": "Pinned", "sha256": "ab" * 32,
         "source": {"url": "https://example.com/a.pt"}},
        {"id": "loose", "kind": "dinoiser", "title": "Loose", "unpinned": "upstream publishes no hash",
         "source": {"url": "https://example.com/b.pt"}},
        {"id": "manual", "kind": "sae-release", "title": "Manual", "source": {"import": True}}]))
    monkeypatch.setenv("INSIGHT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INSIGHT_CATALOGUE", str(catalogue))
    dialog = ModelManagerDialog(ModelStore())
    qtbot.addWidget(dialog)
    table = dialog.available
    column = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())].index("Hash")
    cells = {table.item(r, 0).data(Qt.ItemDataRole.UserRole): table.item(r, column) for r in range(table.rowCount())}
    assert cells["pinned"].text() == "pinned"
    assert cells["loose"].text().startswith("unpinned") and cells["loose"].toolTip() == "upstream publishes no hash"
    assert cells["manual"].text() == ""
    assert table.item(0, 4).text() == "not installed"  # the Status column stays where it was
