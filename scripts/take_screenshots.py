"""Screenshots of the main states of the app, for the README (docs/screenshots/*.png).

Run: ``.venv/bin/python scripts/take_screenshots.py`` — offscreen unless DISPLAY is set (under
Xvfb the window manager-less X server gives the same pictures). Uses the bundled demo model on
the CPU and drives the window through the same calls its menus and panels make.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"


def main() -> int:
    if not os.environ.get("DISPLAY"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tmp = tempfile.mkdtemp()
    os.environ["INSIGHT_DATA_DIR"] = os.path.join(tmp, "data")  # the folder index of shot 10 goes here
    from PySide6.QtCore import QSettings, Qt
    from PySide6.QtTest import QTest

    from insight_desktop.core.paths import resource_path
    from insight_desktop.gui.app import create_application
    from insight_desktop.gui.main_window import MainWindow
    from insight_desktop.gui.settings import AppSettings

    app = create_application()
    window = MainWindow(AppSettings(QSettings(os.path.join(tmp, "s.ini"), QSettings.Format.IniFormat)))
    window.status.set_device_choice("cpu")
    window.resize(1500, 940)
    window.show()
    # the offscreen screen is 800 px wide: the docks got that share; give them the 1500 px one
    window.resizeDocks([window.docks["concepts"], window.docks["tasks"]], [380, 460], Qt.Orientation.Horizontal)
    doc = window.document

    def settle(seconds: float = 0.3) -> None:
        end = time.time() + seconds
        while time.time() < end:
            app.processEvents()
            time.sleep(0.01)

    def wait_analysis() -> None:
        while doc.analysis is None or window.worker.is_busy:
            app.processEvents()
            time.sleep(0.01)
        settle()

    def shot(name: str) -> None:
        settle()
        OUT.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(OUT / f"{name}.png"))
        print(f"wrote {OUT / name}.png")

    window.start([resource_path("samples", "rocket.jpg"), resource_path("samples", "coffee.png")])
    wait_analysis()
    shot("01-heatmap")

    window.tree.search.setText("aircraft")
    settle(0.8)
    hits = doc.catalog.find("aircraft")
    if len(hits):
        active = [int(j) for j in hits if doc.concept_activation(int(j)) > 0]
        doc.select_concept(active[0] if active else int(hits[0]))
    shot("02-search-and-inspector")
    window.tree.search.clear()

    window.next_image()
    doc.set_classes(("coffee cup", "spoon", "table", "sugar"))
    window.request_analysis()
    wait_analysis()
    doc.set_overlay(show_segmentation=True, show_heatmap=False, mask_opacity=0.55)
    seg = doc.analysis.segmentation
    cup = seg.class_names.index("coffee cup")
    doc.select_segment(cup if seg.segment(cup) is not None else int(seg.labels[seg.labels.shape[0] // 2,
                                                                              seg.labels.shape[1] // 2]))
    window.show_panel(window.segmentation)
    if window.segmentation.chart.bars():  # click the strongest bar: its concept is selected
        QTest.mouseClick(window.segmentation.chart, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                         window.segmentation.chart.bar_center(0))
    shot("03-segmentation-explained")

    doc.set_overlay(show_segmentation=False, show_heatmap=True)
    window.show_panel(window.classification)
    shot("04-classification-explained")

    a = doc.analysis
    h, w = a.image_size
    window.canvas.fit()
    settle()
    pos = window.canvas.image_to_view(h * 0.45, w * 0.5).toPoint()
    QTest.mouseClick(window.canvas.view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
    window.show_panel(window.region)
    shot("05-concepts-at-a-patch")

    # 10, 11: the samples as a folder with two sub-folders, indexed; the gallery and the statistics
    folder = Path(tmp) / "samples"
    for sub, names in (("nature", ("chelsea.png", "flower.jpg")),
                       ("made", ("rocket.jpg", "camera.png", "china.jpg", "coffee.png", "astronaut.png"))):
        (folder / sub).mkdir(parents=True)
        for name in names:
            (folder / sub / name).write_bytes(resource_path("samples", name).read_bytes())
    window.open_folder(folder)
    while doc.image_path is None or Path(doc.image_path).parent.parent != folder:  # the decode is async
        app.processEvents()
        time.sleep(0.01)
    settle(0.5)
    wait_analysis()
    window.actions.index_folder.trigger()
    settle(0.5)
    while window.folder_index.job.is_running():
        app.processEvents()
        time.sleep(0.05)
    a = doc.analysis
    doc.select_concept(int(a.concepts[0].concept))
    window.actions.concept_gallery.trigger()
    settle(3.0)
    shot("10-concept-gallery")
    window.docks["gallery"].hide()
    window.actions.folder_stats.trigger()
    settle(3.0)
    shot("11-folder-statistics")
    window.docks["folder_stats"].hide()

    # 12: what if — the cat photo segmented, the concepts that made "cat" switched off
    window.open_images([resource_path("samples", "chelsea.png"), resource_path("samples", "coffee.png")])
    while doc.image_path is None or Path(doc.image_path).name != "chelsea.png":
        app.processEvents()
        time.sleep(0.01)
    doc.set_classes(("cat", "dog", "person", "coffee cup", "rocket", "flower", "building", "sky"))
    window.request_analysis()
    settle(0.5)
    wait_analysis()
    seg = doc.analysis.segmentation
    cat = seg.class_names.index("cat")
    contributors = [c.concept for c in seg.segment(cat).contributions[:5] if c.value > 0]
    doc.set_overlay(show_segmentation=True, show_heatmap=False, mask_opacity=0.55)
    window.actions.whatif_panel.setChecked(True)
    window.whatif.controller.set_off(contributors, True)
    window.whatif.controller.wait()
    shot("12-what-if")

    # 13: side by side — before and after the switch-off, linked
    window.actions.side_by_side.setChecked(True)
    window.side_by_side.view.set_mode("switch")
    settle(3.0)
    shot("13-side-by-side")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
