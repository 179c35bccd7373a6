"""``insight info FILE``: say what a file is and what it holds, without loading a model."""

from __future__ import annotations

import json
from pathlib import Path


def describe(path: Path) -> str:
    """A short human-readable description of a token store, SAE, checkpoint, weights or image."""
    if not path.exists():
        raise FileNotFoundError(f"'{path}' does not exist")
    suffix = path.suffix.lower()
    if (path / "manifest.json").is_file() or suffix == ".zip":
        from .concepts.bundle import ConceptModel

        model = ConceptModel.load(path, eager=False)
        sae = model.sae
        return "\n".join([model.summary(), f"relations      {model.relations.summary()}",
                          *training_lines(float(sae.threshold), sae.training_info)])
    if path.is_dir():
        return _describe_dir(path)
    if suffix == ".safetensors":
        return _describe_safetensors(path)
    if suffix in {".pt", ".pth", ".bin", ".ckpt"}:
        return _describe_torch(path)
    from .images import IMAGE_SUFFIXES, load_image

    if suffix in IMAGE_SUFFIXES:
        rgb = load_image(path)
        return f"image          {path}\nsize           {rgb.shape[1]}×{rgb.shape[0]} px"
    raise ValueError(f"'{path}': not a file type Insight Desktop knows (concept model, token store, .safetensors, "
                     ".pt, image)")


def _describe_dir(path: Path) -> str:
    from .features import MANIFEST, TokenStore

    if (path / MANIFEST).exists():
        return TokenStore(path).summary()
    state = path / "trainer_state.json"
    if state.exists():
        s = json.loads(state.read_text())
        keys = ("step", "epoch", "tokens_seen", "threshold", "threshold_updates", "aux_steps", "max_dead")
        lines = [f"{k:<14} {s[k]}" for k in keys if k in s]
        tc, plan = s.get("train_config", {}), s.get("plan", {})
        if plan:
            lines.append(f"{'total_steps':<14} {plan.get('total_steps')}")
        lines += [f"{k:<14} {tc[k]}" for k in ("threshold_start_step", "dead_tokens") if k in tc]
        return "SAE training checkpoint " + str(path) + "\n" + "\n".join(lines)
    raise ValueError(f"'{path}' is a folder but neither a token store nor an SAE checkpoint")


def _describe_safetensors(path: Path) -> str:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
            threshold = float(fh.get_tensor("threshold").reshape(-1)[0]) if "threshold" in shapes else None
    except Exception as exc:  # noqa: BLE001 — safetensors raises several types for damaged files
        raise ValueError(f"'{path}' is not a readable safetensors file: {exc}") from exc
    lines = [f"safetensors    {path}"]
    if "insight_sae_config" in meta:
        from .sae import SAEConfig

        cfg = SAEConfig.from_dict(json.loads(meta["insight_sae_config"]))
        lines = [f"Insight SAE    {path}",
                 f"architecture   {cfg.architecture}",
                 f"size           d = {cfg.d_in}, {cfg.n_concepts} concepts, k = {cfg.k}",
                 f"levels         {len(cfg.group_sizes)}: sizes {list(cfg.group_sizes)}, "
                 f"prefix ends {list(cfg.group_ends)}"]
        if threshold is not None:
            from .sae.io import training_info_of

            lines += training_lines(threshold, training_info_of(meta))
    n_params = 0
    for name, shape in sorted(shapes.items()):
        count = 1
        for s in shape:
            count *= s
        n_params += count
        lines.append(f"  {name:<12} {list(shape)}")
    lines.append(f"parameters     {n_params:,}")
    return "\n".join(lines)


def _describe_torch(path: Path) -> str:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 — torch raises many types for damaged or unsafe files
        raise ValueError(f"'{path}' is not a readable (weights-only) torch checkpoint: {exc}") from exc
    from .backbones.openclip_loading import state_dict_of

    state = state_dict_of(obj)
    if state is None:
        return f"torch file     {path}\ncontent        {type(obj).__name__}"
    obj = state
    tensors = {k: v for k, v in obj.items() if hasattr(v, "shape")}
    kind = "torch checkpoint"
    if any("obj_proj." in k for k in tensors):
        kind = "CLIP-DINOiser weights (obj_proj + bkg_decoder)"
    elif {"W_enc", "W_dec", "b_dec"} <= tensors.keys():
        kind = "dictionary_learning SAE state dict"
    lines = [f"{kind}\nfile           {path}", f"tensors        {len(tensors)}"]
    if kind.startswith("dictionary_learning") and "threshold" in tensors and tensors["threshold"].numel() == 1:
        lines += training_lines(float(tensors["threshold"]), None)
    for name in sorted(tensors)[:12]:
        lines.append(f"  {name:<30} {list(tensors[name].shape)}")
    if len(tensors) > 12:
        lines.append(f"  … {len(tensors) - 12} more")
    return "\n".join(lines)


def training_lines(threshold: float, info: dict | None) -> list[str]:
    """What a model's user must know about how its SAE was trained: is θ estimated, did AuxK run.

    ``info`` is the SAE's training record (:func:`.sae.trainer.training_record`); None for SAEs
    trained before runs were recorded, and for imported ones.
    """
    if threshold >= 0:
        updates = (info or {}).get("threshold_updates")
        theta = f"{threshold:.6g}" + (f" (EMA over the last {updates:,} steps)" if updates else "")
    else:
        theta = "not estimated — inference falls back to per-chunk BatchTopK (codes depend on the other patches)"
    lines = [f"threshold θ    {theta}"]
    if info is None:
        return lines + ["AuxK           unknown (no training record: imported, or trained before runs were recorded)"]
    aux, dead = info.get("aux_steps"), info.get("max_dead")
    tc, run = info.get("train_config", {}), info.get("run", {})
    if aux is None:
        lines.append("AuxK           unknown (resumed from a checkpoint that did not count it)")
    elif aux:
        lines.append(f"AuxK           ran in {aux:,} of {info.get('steps', 0):,} steps "
                     f"(up to {dead or 0:,} dead latents)")
    else:
        lines.append(f"AuxK           never ran: no latent stayed silent for {tc.get('dead_tokens', '?'):,} tokens"
                     if isinstance(tc.get("dead_tokens"), int) else "AuxK           never ran")
    auto = set(run.get("auto", ()))
    parts = [f"{k.replace('_', ' ')} {tc[k]:,}" + (" (auto)" if k in auto else "")
             for k in ("threshold_start_step", "dead_tokens") if isinstance(tc.get(k), int)]
    lines.append(f"trained        {info.get('steps', 0):,} steps, {info.get('tokens_seen', 0):,} tokens"
                 + ("; " + ", ".join(parts) if parts else ""))
    return lines
