# The README's two commands: `make repro` and `make test`. Both set up .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PATH := $(abspath $(VENV))/bin:$(PATH)
export PATH
# Each notebook kernel and torch itself use the machine's cores; keep BLAS from oversubscribing.
export OMP_NUM_THREADS ?= 2
# Bit-identical reruns: MKL may otherwise use fewer threads than asked when the machine is busy,
# which changes the order of its sums (and the results) from run to run; and its GEMMs may take
# alignment-dependent code paths unless conditional numerical reproducibility is strict.
export MKL_DYNAMIC := FALSE
export OMP_DYNAMIC := FALSE
export MKL_CBWR := AUTO,STRICT
export MPLBACKEND := Agg

.PHONY: repro test verify scratch noise solvers scaling lab step data venv clean-venv

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'  # keep pip's bytecode: under PYTHONDONTWRITEBYTECODE=1 no import writes it, and each process would recompile torch (~14 s)
	$(VENV)/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

venv: $(VENV)/.installed

# A fresh clone has no DVC remote: rebuild data/ deterministically from installed packages.
data: venv
	@if [ ! -d data ]; then python -m vrlic.data.embedded fetch data; fi
	@if [ ! -d .git ]; then dvc config --local core.no_scm true; fi

repro: data
	dvc repro

# One pytest-xdist worker per core, whole files each (a module's fixtures are built once), one
# thread each; the slowest tests are listed at the end. TEST_WORKERS=1: one process, two threads.
TEST_WORKERS ?= auto
test: data
	python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

# The paper's literal yardstick as well (opt-in, about 8 min more on 2 cores): stage 01 trains the
# anchor of every λ from scratch, not the base alone, and every stage after it adds the scratch
# reference to its tables. DVC's own way to set a parameter: params.yaml keeps the switch on
# (`git checkout params.yaml && dvc repro` goes back; the models stay, nothing retrains).
scratch: data
	dvc exp run -S base_models.scratch_anchors=true

# After `make repro`: every regenerated number against the committed one, BD-rates against their
# committed seed spread. Exit 0: identical; 1: reproduced within the seed noise; 2: not reproduced.
verify: venv
	python -m vrlic.verify

# The seed spread of every BD-rate: stages 02–04 again with 2 more seeds (after `make repro`),
# side by side with one thread each; then stage 05 is redrawn with it.
noise: data
	python -m vrlic.study.noise --seeds 2 --jobs 2
	dvc repro -f -s figures

# The solver study (after `make noise`): every solver of params.yaml's `solvers:` from the same base,
# at equal iterations, for each seed → results/solvers.{json,csv}; then stage 05 is redrawn.
solvers: data
	python -m vrlic.study.solver_study --jobs 2
	dvc repro -f -s figures

# The scaling study (opt-in, hours on 2 cores, built up over several runs): the gap to equal-budget
# fine-tuned anchors against the post-training budget, the width, the base's budget and the λ range,
# a base per seed → results/scaling/ (one file per point, never recomputed), results/scaling.{csv,json},
# README's generated answer; then stage 05 is redrawn. SCALING_ARGS, e.g. --minutes 60 or --list.
scaling: data
	python -m vrlic.scaling.run $(SCALING_ARGS)
	dvc repro -f -s figures

# Step through one stage without touching the tracked results: `make step STAGE=03 PROFILE=smoke`
# runs notebook 03 with every output under outputs/scratch/smoke/, the stages it needs built there first.
STAGE ?= 01
step: data
	python -m vrlic.pipeline.scratch $(STAGE) $(if $(PROFILE),--profile $(PROFILE))

# Step through the notebooks: JupyterLab from the project's environment; jupytext opens the
# notebooks/*.py sources as notebooks, each parameters cell reads params.yaml's profile, and a
# notebook run by hand writes to outputs/scratch/<profile>/, never to the tracked results.
lab: data
	@python -c "import jupyterlab" 2>/dev/null || python -m pip install --quiet 'jupyterlab>=4'
	jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)  # containers often run as root

clean-venv:
	rm -rf $(VENV)
