"""Running on several processes (torchrun, Slurm ``srun``) or on one: the process group in one value.

``torchrun`` (and Slurm through it) starts N copies of the same command and tells each who it is
in environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``).
:func:`from_environment` reads them and joins the process group once — NCCL when the processes
use CUDA, gloo on CPUs — or, without them, returns the single-process context, in which every
collective is the identity. Code written against :class:`DistContext` therefore runs unchanged
on one process. No scheduler of our own: placement, restarts and node lists are torchrun's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_ENV = ("RANK", "WORLD_SIZE")


class DistError(RuntimeError):
    """The process group cannot be set up (a message says what is missing)."""


@dataclass(frozen=True)
class DistContext:
    """Who this process is among ``world_size`` (rank 0 writes shared files)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = "none"   # "nccl", "gloo", or "none" for a single process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def all_reduce_sum(self, tensor: Any) -> Any:
        """Sum ``tensor`` over all ranks, in place (every rank gets the sum); returns it."""
        if self.distributed:
            import torch.distributed as td

            td.all_reduce(tensor, op=td.ReduceOp.SUM)
        return tensor

    def all_reduce_max(self, tensor: Any) -> Any:
        """Element-wise maximum over all ranks, in place; returns it."""
        if self.distributed:
            import torch.distributed as td

            td.all_reduce(tensor, op=td.ReduceOp.MAX)
        return tensor

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` on one process."""
        if not self.distributed:
            return [obj]
        import torch.distributed as td

        out: list[Any] = [None] * self.world_size
        td.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank."""
        if not self.distributed:
            return obj
        import torch.distributed as td

        box = [obj if self.rank == src else None]
        td.broadcast_object_list(box, src=src)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as td

            td.barrier()


SINGLE = DistContext()


def launched_by_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process was started as one rank of several (``WORLD_SIZE`` > 1)."""
    env = os.environ if environ is None else environ
    return all(k in env for k in _ENV) and int(env.get("WORLD_SIZE", "1")) > 1


def choose_backend(device_type: str) -> str:
    """NCCL for CUDA processes, gloo otherwise (CPUs, or a torch built without NCCL)."""
    import torch.distributed as td

    if device_type == "cuda" and td.is_nccl_available():
        return "nccl"
    return "gloo"


def from_environment(device_type: str = "cpu", environ: Mapping[str, str] | None = None) -> DistContext:
    """The context of this process: joins torchrun's process group (once) when launched by it,
    else :data:`SINGLE`. ``device_type`` ("cuda" or "cpu") picks the backend."""
    env = os.environ if environ is None else environ
    if not launched_by_torchrun(env):
        return SINGLE
    import torch.distributed as td

    if not td.is_available():
        raise DistError("this torch build has no torch.distributed: run on one process")
    try:
        rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0"))
    except ValueError as e:
        raise DistError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers: {e}") from None
    if not td.is_initialized():
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in env]
        if missing:
            raise DistError(f"{', '.join(missing)} not set: start the command with torchrun (or srun + torchrun)")
        td.init_process_group(backend=choose_backend(device_type), rank=rank, world_size=world)
    return DistContext(rank, world, local, td.get_backend())


def shutdown() -> None:
    """Leave the process group (at the end of a torchrun command)."""
    import torch.distributed as td

    if td.is_available() and td.is_initialized():
        td.destroy_process_group()
