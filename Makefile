# The README's two commands: `make repro` and `make test`. Both set up .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PATH := $(abspath $(VENV))/bin:$(PATH)
export PATH
# Each notebook kernel and torch itself use the machine's cores; keep BLAS from oversubscribing.
export OMP_NUM_THREADS ?= 2
export MPLBACKEND := Agg

.PHONY: repro test data venv clean-venv

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	$(VENV)/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

venv: $(VENV)/.installed

# A fresh clone has no DVC remote: rebuild data/ deterministically from installed packages.
data: venv
	@if [ ! -d data ]; then python -m vrlic.data fetch data; fi
	@if [ ! -d .git ]; then dvc config --local core.no_scm true; fi

repro: data
	dvc repro

test: data
	python -m pytest -q

clean-venv:
	rm -rf $(VENV)
