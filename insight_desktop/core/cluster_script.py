"""The command and the Slurm script that build a concept model on a cluster: text, nothing run.

``insight build-model`` runs unchanged under ``torchrun`` (one process per GPU; NCCL between
them), and Slurm starts torchrun once per node with ``srun``. This module renders both for a
folder and the build's options, N nodes × G GPUs — the same text ``docs/cluster.md`` shows and
the Build dialog's "Build on a cluster…" saves. No scheduler of our own: placement, node lists and
restarts stay torchrun's and Slurm's. The build keeps its finished work in ``OUT.work/``, so
submitting the same script again continues a job that ran out of time.

The command runs the package as a module (``torchrun -m insight_desktop build-model …``, the
same as the ``insight`` entry point), so the cluster needs the project installed in the Python
environment the script activates, not the ``insight`` script on ``PATH``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .build import BuildOptions

#: what torchrun runs in every process: ``python -m insight_desktop build-model …``
MODULE = "insight_desktop"
DEFAULT_PORT = 29500
_TIME = re.compile(r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$")    # Slurm: MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]
_NAME = re.compile(r"^[A-Za-z0-9_.+-]*$")


class ClusterScriptError(ValueError):
    """An option the script cannot use (the message says which and why)."""


@dataclass(frozen=True)
class ClusterJob:
    """One build on ``nodes`` × ``gpus_per_node`` GPUs; paths as the cluster sees them."""

    folder: str
    out: str
    #: ``insight build-model`` options after FOLDER and ``--out`` (see :func:`build_arguments`)
    build_args: tuple[str, ...] = ()
    nodes: int = 1
    gpus_per_node: int = 8
    partition: str = ""
    account: str = ""
    time_limit: str = "24:00:00"
    cpus_per_gpu: int = 8
    job_name: str = "insight-build"
    #: a line that makes ``python`` the environment with insight-desktop installed
    setup: str = "source ~/insight-venv/bin/activate"
    port: int = DEFAULT_PORT

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node

    def validate(self) -> None:
        """Raise :class:`ClusterScriptError` for options Slurm or torchrun would refuse later, on the cluster."""
        if not self.folder.strip():
            raise ClusterScriptError("choose the folder of images")
        if not self.out.strip():
            raise ClusterScriptError("choose where to save the model")
        if not 1 <= self.nodes <= 4096:
            raise ClusterScriptError(f"nodes must be between 1 and 4096, not {self.nodes}")
        if not 1 <= self.gpus_per_node <= 64:
            raise ClusterScriptError(f"GPUs per node must be between 1 and 64, not {self.gpus_per_node}")
        if not 1 <= self.cpus_per_gpu <= 256:
            raise ClusterScriptError(f"CPUs per GPU must be between 1 and 256, not {self.cpus_per_gpu}")
        if not 1024 <= self.port <= 65535:
            raise ClusterScriptError(f"the port must be between 1024 and 65535, not {self.port}")
        if not _TIME.match(self.time_limit.strip()):
            raise ClusterScriptError(f"time limit {self.time_limit!r}: write it as Slurm does, e.g. 24:00:00 "
                                     "or 2-00:00:00 (days-hours:minutes:seconds)")
        for label, value in (("partition", self.partition), ("account", self.account), ("job name", self.job_name)):
            if not _NAME.match(value.strip()):
                raise ClusterScriptError(f"the {label} {value!r} may hold only letters, digits and _ . + -")
        if "\n" in self.setup:
            raise ClusterScriptError("the environment line must be one line")


def build_arguments(backbone: str, options: BuildOptions, dinoiser: str | None = None) -> tuple[str, ...]:
    """The ``insight build-model`` options that reproduce what the Build dialog chose.

    Only what the dialog sets or differs from the command's defaults is written, so the script
    stays readable; ``--device`` is left to ``auto`` (under torchrun each process takes its own
    GPU, ``cuda:LOCAL_RANK``).
    """
    from .build import BuildOptions

    default = BuildOptions()
    args: list[str] = ["--backbone", backbone]
    if dinoiser:
        args += ["--dinoiser", dinoiser]
    if options.n_concepts:
        args += ["--concepts", str(options.n_concepts)]
    args += ["--k", str(options.k)]
    if options.level_fractions:
        args += ["--levels", ",".join(f"{f:.6g}" for f in options.level_fractions)]
    epochs = options.train.get("epochs")
    if epochs is not None:
        args += ["--epochs", f"{float(epochs):g}"]
    for flag, attr in (("--mode", "mode"), ("--size", "size"), ("--tau", "tau"),
                       ("--thumbnails", "thumbnails_per_concept")):
        value = getattr(options, attr)
        if value != getattr(default, attr) and value is not None:
            args += [flag, str(value)]
    return tuple(args)


class _Shell(str):
    """Shell text the script means literally (a quoted ``"$VARIABLE"``), never quoted again."""


def _quote(parts: list[str]) -> str:
    # the script's own $VARIABLES stay expandable; everything else (paths, options) is quoted
    return " ".join(p if isinstance(p, _Shell) else shlex.quote(p) for p in parts)


def torchrun_argv(job: ClusterJob, *, slurm: bool = False) -> list[str]:
    """``torchrun … -m insight_desktop build-model FOLDER --out OUT …`` as arguments.

    One node: ``--standalone`` (torchrun picks a free local port). Several: the c10d rendezvous on
    the first node (``"$MASTER_ADDR"``; the sbatch script sets it, or set it yourself).
    """
    argv = ["torchrun"]
    if job.nodes == 1:
        argv += ["--standalone", "--nnodes", "1"]
    else:
        rdzv_id = _Shell('"$SLURM_JOB_ID"') if slurm else job.job_name.strip() or "insight-build"
        argv += ["--nnodes", str(job.nodes), "--rdzv-backend", "c10d",
                 "--rdzv-endpoint", _Shell(f'"$MASTER_ADDR:{job.port}"'), "--rdzv-id", rdzv_id]
    argv += ["--nproc-per-node", str(job.gpus_per_node), "-m", MODULE,
             "build-model", job.folder, "--out", job.out, *job.build_args]
    return argv


def torchrun_command(job: ClusterJob, *, slurm: bool = False) -> str:
    """The torchrun command as one shell line (run it on every node, or once with one node)."""
    job.validate()
    return _quote(torchrun_argv(job, slurm=slurm))


def sbatch_script(job: ClusterJob) -> str:
    """A complete Slurm batch script: one torchrun per node through ``srun``, G processes each."""
    job.validate()
    cpus = job.cpus_per_gpu * job.gpus_per_node
    header = [
        "#!/bin/bash",
        f"#SBATCH --job-name={job.job_name.strip() or 'insight-build'}",
        f"#SBATCH --nodes={job.nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gpus-per-node={job.gpus_per_node}",
        f"#SBATCH --cpus-per-task={cpus}",
        f"#SBATCH --time={job.time_limit.strip()}",
    ]
    if job.partition.strip():
        header.append(f"#SBATCH --partition={job.partition.strip()}")
    if job.account.strip():
        header.append(f"#SBATCH --account={job.account.strip()}")
    header.append("#SBATCH --output=%x-%j.log")
    body = [
        "",
        f"# Insight Desktop: build a concept model from {_comment(job.folder)}",
        f"# on {job.nodes} node{'s' * (job.nodes != 1)} x {job.gpus_per_node} GPU{'s' * (job.gpus_per_node != 1)} "
        f"({job.world_size} process{'es' * (job.world_size != 1)}, NCCL between them).",
        "# The folder and the output must be on a file system every node sees. Finished work is kept in",
        f"# {_comment(job.out)}.work/: submitting this script again continues where the last job stopped.",
        "set -eo pipefail",
        job.setup.strip() or ":",
        "set -u   # after the setup line: some activate scripts read unset variables",
        f"export OMP_NUM_THREADS={job.cpus_per_gpu}",
        'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "export MASTER_ADDR",
        "",
        "srun --kill-on-bad-exit=1 " + _continued(torchrun_argv(job, slurm=True)),
        "",
    ]
    return "\n".join(header + body)


def _continued(argv: list[str]) -> str:
    """The torchrun line broken after its launcher options and before the build's, for reading."""
    split = argv.index("-m")
    head, tail = _quote(argv[:split]), _quote(argv[split:])
    return f"{head} \\\n    {tail}"


def _comment(text: str) -> str:
    return text.replace("\n", " ")


def write_script(path: str | Path, text: str) -> Path:
    """Save the script atomically (a half-written script is never left behind), executable by its owner."""
    import os

    from .fileio import atomic_write_bytes

    path = Path(path)
    atomic_write_bytes(path, text.encode("utf-8"))
    os.chmod(path, os.stat(path).st_mode | 0o100)
    return path
