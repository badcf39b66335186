# depthq: set-up and everyday commands. Every target installs what it needs into .venv.
#   make demo    train/evaluate the main job on real photos (CPU is fine); installs the scenes photos
#   make scenes  install the Debian wallpaper packages of the scenes data set, where apt is usable
#   make test    run the test suite
#   make bench   run the benchmarks against vector-quantize-pytorch and the naive loop
#   make lint    ruff (format check and lint rules) and mypy over depthq/ (configured in pyproject.toml)
#   make docs    build the documentation site into site/ (mkdocs build --strict)
#   make reference-docs  regenerate docs/reference/cli.md and config.md from the code
#   make results-docs    regenerate the results pages and the README's tables from docs/results/*.json
#   make docs-check      fail when a generated page differs from what the code and results give now
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Install torch first: on these machines torch==2.13.0 is a local CPU wheel; elsewhere any
# torch >= 2.4 works (override with `make TORCH='torch==2.5.1' ...`).
TORCH ?= torch==2.13.0

.PHONY: install test lint lint-install demo bench clean scenes docs docs-install reference-docs results-docs docs-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install "$(TORCH)" \
		|| $(BIN)/python -m pip install "torch>=2.4"
	$(BIN)/python -m pip install -e ".[test]"
	@# triton, where its wheel installs (Linux x86-64): the tests run the fused search kernel in
	@# Triton's CPU interpreter; elsewhere (or if the wheel fails) those tests skip and say why
	@if $(BIN)/python -c "import platform, sys; sys.exit(platform.system() != 'Linux' or platform.machine() != 'x86_64')"; then \
		$(BIN)/python -m pip install -e ".[triton]" || echo "make: the triton wheel did not install; tests/quantize/test_triton_search.py will skip"; \
	else echo "make: no triton wheel for this platform; tests/quantize/test_triton_search.py will skip"; fi
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

# Lint: ruff and mypy (the `lint` extra); mypy reads its settings (files, strictness, the
# third-party packages without type hints) from pyproject.toml.
$(VENV)/.lint-installed: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install -e ".[lint]"
	touch $@

lint-install: $(VENV)/.lint-installed

lint: $(VENV)/.lint-installed
	$(BIN)/ruff format --check depthq tools
	$(BIN)/ruff check depthq tools benchmarks
	$(BIN)/mypy

# The scenes data set's photographs come from Debian packages. Install them where apt-get runs as
# root or with passwordless sudo; never fail: print what to run instead (the demo then uses the
# built-in photos and says so). `make test` does not need them.
scenes: $(VENV)/.installed
	@missing="$$($(BIN)/python -c 'from depthq.data.scenes import missing_packages as m; print(*m())')"; \
	all="$$($(BIN)/python -c 'from depthq.data.scenes import PACKAGES; print(*PACKAGES)')"; \
	if [ -z "$$missing" ]; then echo "scenes: the wallpaper packages are installed"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=none; fi; \
	if ! command -v apt-get >/dev/null 2>&1 || [ "$$sudo" = none ]; then \
		echo "scenes: cannot install $$missing here (no apt-get, or not root and no passwordless sudo)."; \
		echo "        run: sudo apt-get install -y $$all   (the demo uses the built-in photos until then)"; exit 0; fi; \
	echo "scenes: installing $$all (about 170 MB)"; \
	$$sudo apt-get install -y $$all || { $$sudo apt-get update && $$sudo apt-get install -y $$all; } \
		|| echo "scenes: apt-get failed; run: sudo apt-get install -y $$all (the demo uses the built-in photos until then)"

demo: $(VENV)/.installed scenes
	$(BIN)/depthq demo

bench: $(VENV)/.installed
	$(BIN)/python -m pip install -e ".[bench]"
	$(BIN)/python benchmarks/quantizer.py
	$(BIN)/python benchmarks/model.py
	$(BIN)/python benchmarks/train_loop.py

# The documentation: mkdocs-material and mkdocstrings (the `docs` extra). Nothing is fetched at
# build time (no social cards, no web fonts), so it builds offline.
$(VENV)/.docs-installed: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install -e ".[docs]"
	touch $@

docs-install: $(VENV)/.docs-installed

docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict  # (the banner about mkdocs 2 says nothing to a reader)

reference-docs: $(VENV)/.installed
	$(BIN)/python tools/gendocs.py reference

results-docs: $(VENV)/.installed
	$(BIN)/python tools/gendocs.py results

docs-check: $(VENV)/.installed
	$(BIN)/python tools/gendocs.py --check

clean:
	rm -rf $(VENV) .pytest_cache build site *.egg-info
