# `make repro` and `make test` set everything up first; both are safe to run again.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Where the CS224N-format files are: ../shared/data beside this checkout, or beside the
# local repository it was cloned from (a clone made elsewhere). `make setup` copies them to
# data/raw, which DVC tracks (data/raw.dvc): queued experiments then find them in DVC's cache.
ORIGIN := $(patsubst %/.git,%,$(shell git config --get remote.origin.url 2>/dev/null))
SHARED_DATA ?= $(firstword $(wildcard ../shared/data $(ORIGIN)/../shared/data))
# The CPU build on PyPI; a GPU user installs their own torch into .venv first.
TORCH  ?= torch==2.13.0

.PHONY: setup data repro groups smoke test test-all deps bench clean

setup: $(STAMP) data

# --no-compile: byte-compiling every installed file took most of torch's install (62 s against
# 15 s here); the last line compiles only what the stages and DVC import. Python would do that on
# first use, but not where PYTHONDONTWRITEBYTECODE is set (as on this project's machines): there
# every stage recompiled torch and transformers, 24 s of imports instead of 9.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet --no-compile "$(TORCH)"
	$(BIN)/python -m pip install --quiet --no-compile -e ".[test]"
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -c "$(WARM_IMPORTS)"
	touch $(STAMP)
WARM_IMPORTS := import smartmtl.train.runner, smartmtl.results.analysis, smartmtl.results.report, smartmtl.app.cli, \
  transformers.models.bert.modeling_bert, transformers.models.auto.modeling_auto, dvc.cli, dvc.repo, pytest

# A different copy of the data changes data/raw.dvc: git shows it, and `dvc repro` prepares again.
data: $(STAMP)
	@if [ -L data/raw ]; then rm data/raw; fi  # checkouts made before the data entered DVC
	@if [ ! -d data/raw ]; then \
	  if [ -d "$(SHARED_DATA)" ]; then cp -r "$(SHARED_DATA)" data/raw && echo "data/raw <- $(SHARED_DATA)"; \
	  else echo "No data at '$(SHARED_DATA)' (by default ../shared/data beside this checkout or its origin):" \
	    "run make SHARED_DATA=/path/to/data, or copy your CS224N files to data/raw"; exit 1; fi; fi
	@$(BIN)/dvc add --quiet data/raw

# Stage commands call `python`: the venv's must come first on PATH.
repro: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# On a GPU (docs/fused.md): every fine-tuning run of params.yaml trained in fused groups
# (`smartmtl groups`: each Table 2 row's seeds, Table 3's grid, Figure 3's runs), all the groups
# side by side (xargs -P: a batch-8 step leaves a GPU idle between kernel launches), the groups
# dealt round-robin to GPUS devices; then `dvc commit` records them as their stages' outputs
# and `dvc repro` does the rest (ensemble, analysis, report).
GPUS ?= 1
GROUPS_AT_ONCE ?= 16
FINETUNE_STAGES := finetune-descriptive finetune finetune-smart grid table2-cell sst_lambda
groups: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro pretrain
	mkdir -p logs
	$(BIN)/smartmtl groups | awk -v gpus=$(GPUS) '{ print (NR - 1) % gpus, $$0 }' \
	  | xargs -P $(GROUPS_AT_ONCE) -L 1 sh -c 'CUDA_VISIBLE_DEVICES=$$0 $(BIN)/smartmtl train-group $$1 \
	    > logs/group-$$1.log 2>&1 && echo "group $$1 trained" || { echo "group $$1 failed: logs/group-$$1.log"; exit 255; }'
	$(BIN)/dvc commit --force $(FINETUNE_STAGES)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# The smoke preset end to end on a copy of this working tree in .smoke/, so that this
# checkout's params.yaml and results stay as they are; its code runs, not the installed one.
# tests/smoke_project.py makes the copy, the same one the end-to-end test runs.
smoke: setup
	$(BIN)/python tests/smoke_project.py .smoke
	cd .smoke && export PATH="$(CURDIR)/$(BIN):$$PATH" PYTHONPATH="$(CURDIR)/.smoke/src" \
	  && start=$$(date +%s) && dvc repro \
	  && echo "smoke: dvc repro took $$(( $$(date +%s) - start )) s"
	@echo "smoke results: .smoke/metrics/report.md, .smoke/metrics/summary.json"

# `make test`: what a developer runs often; `make test-all` adds the slow end-to-end tests.
# Test files run side by side, one per core (pytest-xdist; each worker's torch and the stages it
# starts take one core's share, tests/conftest.py): the end-to-end tests spend most of their time
# starting DVC's stages, one Python process each, which one core does alone. At most 4 workers:
# each holds torch and a model (1.0-1.7 GB measured), and four files hold most of the slow
# suite's time.
PYTEST := $(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile
test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(PYTEST) -m "not slow"

test-all: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(PYTEST)

# dvc.lock keeps the entries of stages dvc.yaml no longer defines (a renamed stage, a shrunk
# sweep): this drops them. Which code each stage runs, the fingerprint stage works out itself.
deps: setup
	$(BIN)/python tests/test_dvc_deps.py

# The benchmark trains on the prepared splits: a fresh clone has none, so prepare them first
# (nothing to do when they are current).
bench: setup
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro prepare
	$(BIN)/python bench/train_step.py

clean:
	rm -rf $(VENV) data/prepared models predictions checkpoints stale .smoke
