# make demo  - the main job on embedded defaults
# make test  - every check: ruff, import layers, mypy --strict, pytest
# make bench - benchmarks (figures are reported in README.md)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck unit bench system-deps ceph-bindings clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]' --config-settings editable_mode=compat
	touch $@

demo: $(STAMP)
	$(BIN)/pieceworks demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Tools the tests run for real (qemu-img, qemu-nbd, dot, a Ceph cluster); installed once, as root.
system-deps:
	scripts/install-system-deps.sh

# Debian's librados/librbd Python bindings, made importable from the venv (rbd driver).
ceph-bindings: $(STAMP) system-deps
	$(BIN)/python scripts/ceph/link_bindings.py

unit: $(STAMP) system-deps ceph-bindings
	$(BIN)/pytest

test: lint typecheck unit

bench: $(STAMP) system-deps ceph-bindings
	scripts/install-system-deps.sh borg:borgbackup
	$(BIN)/python bench/cli_vs_peers.py --size-mib 1024 --trials 3
	$(BIN)/python bench/registry_find.py
	$(BIN)/python bench/backup_throughput.py --size-mib 1024
	$(BIN)/python bench/stores.py --size-mib 1024
	$(BIN)/python bench/replicate.py --size-mib 1024
	$(BIN)/python bench/ceph_rbd.py --size-mib 1024

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
