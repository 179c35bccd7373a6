# The two commands: `make run` and `make test`. Both create or update .venv as needed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Re-install only when the project's dependencies change.
STAMP  := $(VENV)/.insight-installed

.PHONY: run test setup lint bench-sae demo-model clean-venv

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(PY) -m insight_desktop

test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q $(if $(CI),-p no:cacheprovider,)

# Rebuild resources/models/demo-concepts.zip (seeded; ~15 min on 2 CPU cores, mostly naming).
demo-model: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) scripts/build_demo_model.py

bench-sae: $(STAMP)
	bash benchmarks/setup_bench_env.sh
	$(PY) benchmarks/bench_sae.py

clean-venv:
	rm -rf $(VENV)
