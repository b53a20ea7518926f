# Every target works on a fresh machine with only python3 and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check --quiet
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench bench-sqlalchemy clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade "pip>=25.1"

# Tools and test dependencies (pyproject [dependency-groups]); reinstalled when pyproject changes.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) install --group test --group lint --group bench
	touch $(STAMP)

demo: | $(VENV)/bin/python
	$(PIP) install "sqlalchemy>=2.0"  # examples/sqlalchemy_*.py
	$(PIP) install --force-reinstall --no-deps .
	@for f in examples/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict src/tocsin

# Tests import the installed package (pytest --import-mode=importlib), not src/.
pytest: $(STAMP)
	$(PIP) install --force-reinstall --no-deps .
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: $(STAMP)
	$(PIP) install --force-reinstall --no-deps .
	$(PY) benchmarks/run.py $(BENCH_ARGS)

bench-sqlalchemy: $(STAMP)
	$(PIP) install --force-reinstall --no-deps .
	$(PY) benchmarks/bench_sqlalchemy.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis

# The property-based state machine with many more fresh examples than `make test` runs:
# TOCSIN_HYPOTHESIS_DEEP=1 (the default here) runs 1,500, TOCSIN_HYPOTHESIS_DEEP=N runs N.
# A failure is saved in .hypothesis/ and replayed first by the next run (deep or not);
# PYTEST_ARGS=--hypothesis-seed=N makes a run repeatable.
.PHONY: hypothesis-deep
hypothesis-deep: $(STAMP)
	$(PIP) install --force-reinstall --no-deps .
	TOCSIN_HYPOTHESIS_DEEP=$${TOCSIN_HYPOTHESIS_DEEP:-1} $(PY) -m pytest tests/test_signal_hypothesis.py \
		-p no:randomly -o faulthandler_timeout=0 $(PYTEST_ARGS)
