# The two commands of the quick start. Each creates or reuses .venv and installs what it needs.
#   make bench   the default benchmark on the embedded datasets -> reports/latest/index.html
#   make test    the unit tests and the smoke-scale cases (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# bench needs the core dependencies only; test adds the test extra (scikit-image, Ray), which
# the first `make bench` of a fresh clone does not wait for
CORE   := $(VENV)/.saliencybench-core
STAMP  := $(VENV)/.saliencybench-installed
ARGS   ?=

.PHONY: bench test speed install clean-cache

install: $(STAMP)

$(CORE): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	@touch $(CORE)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP) $(CORE)

# A failed case is a verdict of the benchmark (a method that did not beat random), shown in the
# report; bench then still exits 0 (--allow-verdicts). An error (an exception, a crashed worker)
# always fails it. STRICT=1 makes verdicts fail the command too. WORKERS xdist workers of one
# torch thread each (--threads is part of a trained model's key, so the numbers depend on neither
# WORKERS nor -n); the plugin hands each worker whole scopes (a metric on one model), heaviest
# first (suite/schedule.py). On 2 cores two one-thread workers measured faster than one process
# of two threads (README, "Quick start"). About 2 GB of memory per worker.
WORKERS ?= 2
bench: $(CORE)
	@$(PY) -m pytest cases/ --scale small -p no:cacheprovider -n $(WORKERS) --threads 1 -v \
		-rfEs $(if $(STRICT),,--allow-verdicts) $(ARGS)

test: $(STAMP)
	NUMBA_DISABLE_JIT=1 $(PY) -m pytest tests/test_kernels_*.py -q -p no:cacheprovider
	$(PY) -m pytest -n 2 --scale smoke -p no:cacheprovider $(ARGS)
	$(PY) -m pytest benchmarks/ --benchmark-disable -q -p no:cacheprovider

# The speed benchmarks (pytest-benchmark), saved under .benchmarks/ for --benchmark-compare and
# --ratio-baseline (README, "Speed benchmarks"). Extra pytest arguments: make speed ARGS='-k road'
speed: $(STAMP)
	$(PY) -m pytest benchmarks/ --benchmark-only --benchmark-autosave -p no:cacheprovider $(ARGS)

clean-cache:
	rm -rf .cache/saliencybench
