# `make repro` and `make test` set everything up first; both are safe to run again.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Where the CS224N-format files are: ../shared/data beside this checkout, or beside the
# local repository it was cloned from (a clone made elsewhere); data/raw links to it.
ORIGIN := $(patsubst %/.git,%,$(shell git config --get remote.origin.url 2>/dev/null))
SHARED_DATA ?= $(firstword $(wildcard ../shared/data $(ORIGIN)/../shared/data))
# The CPU build on PyPI; a GPU user installs their own torch into .venv first.
TORCH  ?= torch==2.13.0

.PHONY: setup repro test smoke bench clean

setup: $(STAMP) data/raw

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

data/raw:
	@mkdir -p data
	@if [ -d "$(SHARED_DATA)" ]; then ln -sfn "$$(cd "$(SHARED_DATA)" && pwd)" data/raw && echo "data/raw -> $(SHARED_DATA)"; \
	else echo "No data at '$(SHARED_DATA)' (by default ../shared/data beside this checkout or its origin):" \
	  "run make SHARED_DATA=/path/to/data, link your copy to data/raw, or set data.raw_dir in params.yaml"; fi

# Stage commands call `python`: the venv's must come first on PATH.
repro: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python bench/train_step.py

clean:
	rm -rf $(VENV) data/prepared models predictions checkpoints
