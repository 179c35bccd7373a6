"""The Qt-free core: images → backbone features → SAE concept codes → concept model → tasks.

Nothing under ``insight_desktop.core`` imports PySide6, pyqtgraph or ``insight_desktop.gui``
(an import-linter contract in pyproject.toml enforces it).
"""
