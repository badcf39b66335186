# depthq: set-up and everyday commands. Every target installs what it needs into .venv.
#   make demo    train/evaluate the main job on the built-in photos (CPU is fine)
#   make test    run the test suite
#   make bench   run the benchmarks against vector-quantize-pytorch and the naive loop
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Install torch first: on these machines torch==2.13.0 is a local CPU wheel; elsewhere any
# torch >= 2.4 works (override with `make TORCH='torch==2.5.1' ...`).
TORCH ?= torch==2.13.0

.PHONY: install test demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install "$(TORCH)" \
		|| $(BIN)/python -m pip install "torch>=2.4"
	$(BIN)/python -m pip install -e ".[test]"
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

demo: $(VENV)/.installed
	$(BIN)/depthq demo

bench: $(VENV)/.installed
	$(BIN)/python -m pip install -e ".[bench]"
	$(BIN)/python benchmarks/quantizer.py
	$(BIN)/python benchmarks/model.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
