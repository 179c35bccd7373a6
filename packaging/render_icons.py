"""Render the application icon (resources/icons/insight-desktop.svg) to the PNG sizes that
freedesktop icon themes use: packaging/icons/hicolor/<N>x<N>/apps/insight-desktop.png.

    .venv/bin/python packaging/render_icons.py

Uses only PySide6 (QtSvg), so no other tool is needed. The PNGs are committed; rerun this after
changing the SVG. tests/e2e/test_packaging_spec.py checks that every size is there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SVG = ROOT / "resources" / "icons" / "insight-desktop.svg"
ICONS = ROOT / "packaging" / "icons" / "hicolor"
SIZES = (16, 32, 48, 64, 128, 256)
NAME = "insight-desktop.png"


def png_path(size: int) -> Path:
    return ICONS / f"{size}x{size}" / "apps" / NAME


def render(svg: Path = SVG, sizes: tuple[int, ...] = SIZES) -> list[Path]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 (QPainter needs one)
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"cannot read {svg}")
    written = []
    for size in sizes:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        renderer.render(painter)
        painter.end()
        out = png_path(size)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not image.save(str(out), "PNG"):
            raise SystemExit(f"cannot write {out}")
        written.append(out)
    return written


if __name__ == "__main__":
    for path in render():
        print(path.relative_to(ROOT))
