#!/usr/bin/env bash
# Create (or update) .venv-bench: the virtualenv that holds the REFERENCE implementation the
# authors used, dictionary_learning's MatryoshkaBatchTopKTrainer (PyPI `dictionary-learning`
# 0.1.0), next to the same torch as the app's .venv, so that bench_sae.py compares like with like.
# It is a separate environment because dictionary-learning pins heavy deps (nnsight, wandb, ...)
# that the app must not carry. Idempotent: re-running it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-bench
TORCH_VERSION="${TORCH_VERSION:-2.14.1}"
DL_VERSION="${DL_VERSION:-0.1.0}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $($PY --version)"
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)

if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    "${PIP[@]}" "torch==$TORCH_VERSION"
fi

if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('dictionary-learning') != '$DL_VERSION')" 2>/dev/null; then
    # With all its declared dependencies when they resolve against this torch; otherwise the
    # package alone plus what its trainer modules import (einops). The package __init__ also
    # imports nnsight (for ActivationBuffer, which the benchmark does not use); bench_sae.py
    # stands in an empty module for it when it is absent.
    if ! "${PIP[@]}" "dictionary-learning==$DL_VERSION" "torch==$TORCH_VERSION"; then
        echo "full install of dictionary-learning failed; installing it without its optional-for-us deps"
        "${PIP[@]}" --no-deps "dictionary-learning==$DL_VERSION"
        "${PIP[@]}" einops tqdm numpy
    fi
fi

"$VENV/bin/python" - <<'PY'
import importlib.metadata as m
import torch
print(f"reference env ready: torch {torch.__version__}, dictionary-learning {m.version('dictionary-learning')}")
PY
