"""The torchrun command and the sbatch script: rendered text that the shell, Slurm's directives
and the real ``insight build-model`` parser all read back as the build that was asked for."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest

from insight_desktop.cli import build_parser
from insight_desktop.core.build import BuildOptions
from insight_desktop.core.cluster_script import (
    ClusterJob,
    ClusterScriptError,
    build_arguments,
    sbatch_script,
    torchrun_command,
    write_script,
)

OPTIONS = BuildOptions(n_concepts=4096, k=16, level_fractions=(0.25, 0.75), train={"epochs": 2.5}, size=448,
                       thumbnails_per_concept=0)


def _job(**kw) -> ClusterJob:
    args = build_arguments("clip-dinoiser", OPTIONS, dinoiser="/shared/weights/last.pt")
    return ClusterJob(**{"folder": "/shared/my photos/it's here", "out": "/shared/out/model.zip",
                         "build_args": args, **kw})


def _build_argv(words: list[str]) -> list[str]:
    """The arguments after ``-m insight_desktop``: what ``python -m insight_desktop`` receives."""
    assert words[0] == "torchrun"
    i = words.index("-m")
    assert words[i + 1] == "insight_desktop"
    return words[i + 2:]


def _srun_line(script: str) -> str:
    joined = script.replace("\\\n", " ")
    (line,) = [ln for ln in joined.splitlines() if ln.startswith("srun ")]
    return line


def _directives(script: str) -> dict[str, str]:
    pairs = [ln.removeprefix("#SBATCH --").split("=", 1) for ln in script.splitlines() if ln.startswith("#SBATCH")]
    return dict(pairs)


def test_one_node_command_parses_back_into_the_same_build():
    words = shlex.split(torchrun_command(_job(gpus_per_node=4)))
    assert words[:6] == ["torchrun", "--standalone", "--nnodes", "1", "--nproc-per-node", "4"]
    args = build_parser().parse_args(_build_argv(words))
    assert args.command == "build-model"
    assert (args.folder, args.out) == ("/shared/my photos/it's here", "/shared/out/model.zip")
    assert (args.backbone, args.dinoiser, args.concepts, args.k, args.epochs, args.size, args.thumbnails) == \
        ("clip-dinoiser", "/shared/weights/last.pt", 4096, 16, 2.5, 448, 0)
    assert [float(f) for f in args.levels.split(",")] == [0.25, 0.75]
    assert args.device == "auto"          # each torchrun process takes its own GPU
    assert args.mode == "crop" and args.tau == 0.75


def test_defaults_are_left_out_of_the_command():
    args = build_arguments("demo-effnet-minilm", BuildOptions(train={"epochs": 3.0}))
    assert args == ("--backbone", "demo-effnet-minilm", "--k", "12", "--epochs", "3")


def test_sbatch_script_asks_slurm_for_nodes_times_gpus():
    script = sbatch_script(_job(nodes=8, gpus_per_node=8, cpus_per_gpu=6, partition="gpu", account="proj-1",
                                time_limit="2-00:00:00", job_name="imagenet"))
    assert script.startswith("#!/bin/bash\n")
    d = _directives(script)
    assert d == {"job-name": "imagenet", "nodes": "8", "ntasks-per-node": "1", "gpus-per-node": "8",
                 "cpus-per-task": "48", "time": "2-00:00:00", "partition": "gpu", "account": "proj-1",
                 "output": "%x-%j.log"}
    assert "export OMP_NUM_THREADS=6" in script
    words = shlex.split(_srun_line(script))
    assert words[:2] == ["srun", "--kill-on-bad-exit=1"]
    launcher = words[2:words.index("-m")]
    assert launcher == ["torchrun", "--nnodes", "8", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                        "$MASTER_ADDR:29500", "--rdzv-id", "$SLURM_JOB_ID", "--nproc-per-node", "8"]
    args = build_parser().parse_args(_build_argv(words[2:]))
    assert args.folder == "/shared/my photos/it's here" and args.k == 16


def test_sbatch_script_without_partition_or_account_leaves_them_to_slurm():
    d = _directives(sbatch_script(_job(nodes=1, gpus_per_node=2)))
    assert "partition" not in d and "account" not in d
    assert d["nodes"] == "1" and d["gpus-per-node"] == "2" and d["cpus-per-task"] == "16"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash to check the script's syntax")
@pytest.mark.parametrize("nodes", [1, 64])
def test_sbatch_script_is_valid_bash(tmp_path, nodes):
    path = write_script(tmp_path / "build.sbatch", sbatch_script(_job(nodes=nodes, gpus_per_node=8)))
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_multi_node_command_without_slurm_names_its_rendezvous():
    words = shlex.split(torchrun_command(_job(nodes=2, gpus_per_node=8, job_name="run7", port=29600)))
    assert words[1:9] == ["--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", "$MASTER_ADDR:29600",
                          "--rdzv-id", "run7"]


@pytest.mark.parametrize("change, words", [
    ({"nodes": 0}, "nodes"), ({"gpus_per_node": 0}, "GPUs per node"), ({"time_limit": "24h"}, "time limit"),
    ({"partition": "gpu; rm -rf ~"}, "partition"), ({"account": "a b"}, "account"), ({"folder": " "}, "folder"),
    ({"out": ""}, "save the model"), ({"port": 80}, "port"), ({"setup": "a\nb"}, "one line"),
])
def test_options_slurm_would_refuse_are_explained(change, words):
    with pytest.raises(ClusterScriptError, match=words):
        sbatch_script(_job(**change))


@pytest.mark.parametrize("limit", ["30", "90:00", "24:00:00", "2-00", "2-12:30:00"])
def test_slurm_time_formats_are_accepted(limit):
    assert f"#SBATCH --time={limit}\n" in sbatch_script(_job(time_limit=limit))


def test_write_script_replaces_atomically_and_is_executable(tmp_path):
    path = tmp_path / "sub" / "build.sbatch"
    write_script(path, "old\n")
    write_script(path, "#!/bin/bash\necho new\n")
    assert path.read_text() == "#!/bin/bash\necho new\n"
    assert path.stat().st_mode & 0o100
    assert [p.name for p in path.parent.iterdir()] == ["build.sbatch"]    # no temporary file left


def test_docs_show_what_the_module_renders():
    """docs/cluster.md's torchrun lines and sbatch script are this module's output, word for word."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "cluster.md").read_text(encoding="utf-8")
    args = ("--backbone", "clip-dinoiser", "--dinoiser", "store:clip-dinoiser", "--size", "448")
    base = {"folder": "/shared/imagenet/train", "out": "/shared/models/imagenet-448.zip", "build_args": args}
    assert torchrun_command(ClusterJob(**base, gpus_per_node=8)) + "\n" in doc
    assert torchrun_command(ClusterJob(**base, nodes=2, gpus_per_node=8)) + "\n" in doc
    script = sbatch_script(ClusterJob(**base, nodes=8, gpus_per_node=8, partition="gpu", time_limit="12:00:00",
                                      job_name="imagenet-448"))
    assert "```bash\n" + script.rstrip("\n") + "\n```" in doc
