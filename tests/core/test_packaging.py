"""The package is shaped as ARCHITECTURE.md says: light imports, a Qt-free core, resources installed."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import insight_desktop

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT).stdout


def test_importing_the_package_imports_neither_torch_nor_qt():
    out = _run("import sys, insight_desktop, insight_desktop.cli; "
               "print(sorted(m for m in ('torch', 'PySide6', 'open_clip') if m in sys.modules))")
    assert out.strip() == "[]"


def test_core_modules_never_import_qt():
    names = [m.name for m in pkgutil.walk_packages(insight_desktop.__path__, "insight_desktop.")
             if m.name.startswith("insight_desktop.core")]
    assert "insight_desktop.core.features" in names
    out = _run("import importlib, sys\n"
               f"for n in {names!r}: importlib.import_module(n)\n"
               "print(sorted(m for m in sys.modules "
               "if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'superqt', 'shiboken6') "
               "or m.startswith('insight_desktop.gui')))")
    assert out.strip() == "[]"


def test_every_package_is_listed_for_installation():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {"insight_desktop"} | {m.name for m in pkgutil.walk_packages(insight_desktop.__path__, "insight_desktop.")
                                   if m.ispkg}
    assert found <= listed, f"add to pyproject [tool.setuptools] packages: {sorted(found - listed)}"


def test_sample_images_and_licences_are_installed_resources():
    from insight_desktop.core.paths import resources_dir, sample_images

    samples = sample_images()
    assert len(samples) >= 1
    licences = (resources_dir() / "samples" / "LICENSES.md").read_text()
    for s in samples:
        assert s.name in licences
