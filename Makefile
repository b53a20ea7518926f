# Every target works on a fresh machine with only python3 and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check --quiet
STAMP  := $(VENV)/.installed

# `make test` runs pytest on every CPython that pyproject's classifiers claim and this
# machine has, each in its own venv: .venv for the default $(PYTHON), .venvs/3.X for the others.
PYTHON_VERSIONS := $(shell sed -n 's/.*"Programming Language :: Python :: \(3\.[0-9][0-9]*\)".*/\1/p' pyproject.toml)
PYENV_ROOT ?= $(HOME)/.pyenv
# Shell: print the interpreter for CPython $$v: python$$v if it runs and can make a venv (a
# pyenv shim runs only for the pyenv versions selected; Debian's python3.X needs python3.X-venv),
# else the newest $(PYENV_ROOT)/versions/$$v.N; nothing if none.
FIND_PYTHON = for exe in python$$v $$(ls -d $(PYENV_ROOT)/versions/$$v.* 2>/dev/null \
	| grep -E '/[0-9]+\.[0-9]+\.[0-9]+$$' | sort -rV | sed "s|$$|/bin/python$$v|"); do \
	$$exe -c "import sys, ensurepip; v = '%d.%d' % sys.version_info[:2]; sys.exit(v != '$$v' or print(sys.executable))" \
	2>/dev/null && break; done

.PHONY: demo test lint typecheck pytest pytest-pure pytest-all dist bench bench-sqlalchemy bench-jobs bench-broadcast test-stress docs docs-check clean

$(VENV)/bin/python:
	@$(PYTHON) -c '' || { echo "No $(PYTHON) here: install Python 3.10+ or pass PYTHON=/path/to/python3"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade "pip>=25.1"

# Tools and test dependencies (pyproject [dependency-groups]); reinstalled when pyproject changes.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) install --group test --group lint --group bench --group docs
	touch $(STAMP)

demo: | $(VENV)/bin/python
	$(PIP) install "sqlalchemy>=2.0" "fastapi>=0.115" "uvicorn>=0.30" "httpx>=0.27"  # examples/sqlalchemy_*.py, examples/blog
	$(PIP) install --force-reinstall --no-deps .
	@for f in examples/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples docs/_ext setup.py
	$(VENV)/bin/ruff format --check src tests benchmarks examples docs/_ext setup.py
	PYTHONPATH=src $(VENV)/bin/lint-imports  # the layers of docs/design.md (pyproject [tool.importlinter])

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict src/tocsin

# Tests import the installed package (pytest --import-mode=importlib), not src/. The install
# compiles the optional C accelerator where a C compiler is found (setup.py), so this runs the
# compiled send(); PYTEST_PYTHON_OPTS (e.g. -X dev) go to the interpreter.
pytest: $(STAMP)
	$(PIP) install --force-reinstall --no-deps .
	$(PY) $(PYTEST_PYTHON_OPTS) -m pytest $(PYTEST_ARGS)

# The suite in pure Python (TOCSIN_NO_EXTENSIONS=1) on the installed package.
pytest-pure: $(STAMP)
	$(PIP) install --force-reinstall --no-deps .
	TOCSIN_NO_EXTENSIONS=1 $(PY) -m pytest $(PYTEST_ARGS)

# pytest on the default $(PYTHON) (.venv), then on every other CPython 3.X found (.venvs/3.X);
# TOCSIN_NOT_DEFAULT_PYTHON=1 on the others skips the slow Celery tests (tests/test_jobs_celery.py).
# The C accelerator is compiled wherever a compiler is; on the default interpreter the compiled run
# is made under `python -X dev` with PYTHONMALLOC=debug (C refcount and memory errors abort), and
# a second run checks pure Python (TOCSIN_NO_EXTENSIONS=1); the others run compiled only.
# A missing version is reported and skipped (an error under CI=true); a missing default interpreter
# is an error.
pytest-all: $(STAMP)
	@default=$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])') || exit 1; \
	runs="$$default=$(PYTHON)"; missing=; \
	for v in $(PYTHON_VERSIONS); do \
		[ "$$v" = "$$default" ] && continue; \
		exe=$$($(FIND_PYTHON)); \
		if [ -n "$$exe" ]; then runs="$$runs $$v=$$exe"; else missing="$$missing $$v"; fi; \
	done; \
	echo "pytest on CPython $$(echo $$runs | sed 's/=[^ ]*//g') (pyproject: $(PYTHON_VERSIONS)); missing:$${missing:- none}"; \
	passed=; failed=; \
	for run in $$runs; do \
		v=$${run%%=*}; exe=$${run#*=}; venv=.venvs/$$v; [ "$$v" = "$$default" ] && venv=$(VENV); \
		echo "== pytest on CPython $$v: $$exe, in $$venv"; start=$$(date +%s); \
		other=; [ "$$v" = "$$default" ] || other=1; \
		if [ -z "$$other" ]; then \
			echo "== (compiled, under -X dev with PYTHONMALLOC=debug)"; \
			PYTHONMALLOC=debug $(MAKE) --no-print-directory pytest PYTHON="$$exe" VENV=$$venv \
				PYTEST_PYTHON_OPTS="-X dev"; \
		else TOCSIN_NOT_DEFAULT_PYTHON=1 $(MAKE) --no-print-directory pytest PYTHON="$$exe" VENV=$$venv; fi \
		&& result=passed || result=failed; \
		echo "== CPython $$v: $$result in $$(( $$(date +%s) - start )) s"; \
		if [ $$result = passed ]; then passed="$$passed $$v"; else failed="$$failed $$v"; fi; \
		if [ -z "$$other" ]; then \
			echo "== pytest on CPython $$v in pure Python (TOCSIN_NO_EXTENSIONS=1)"; start=$$(date +%s); \
			$(MAKE) --no-print-directory pytest-pure PYTHON="$$exe" VENV=$$venv && result=passed || result=failed; \
			echo "== CPython $$v, pure Python: $$result in $$(( $$(date +%s) - start )) s"; \
			if [ $$result = passed ]; then passed="$$passed $$v-pure"; else failed="$$failed $$v-pure"; fi; \
		fi; \
	done; \
	echo "pytest passed on:$${passed:- none}; failed on:$${failed:- none}; missing:$${missing:- none}"; \
	if [ -n "$$missing" ] && [ -n "$$CI" ]; then echo "CI must test every claimed version: missing$$missing"; exit 1; fi; \
	[ -z "$$failed" ]

# pytest on CPython 3.X alone, in .venvs/3.X (e.g. make pytest-3.13).
pytest-3.%:
	@v=3.$*; exe=$$($(FIND_PYTHON)); \
	[ -n "$$exe" ] || { echo "No CPython $$v: neither python$$v nor $(PYENV_ROOT)/versions/$$v.N runs"; exit 1; }; \
	$(MAKE) --no-print-directory pytest PYTHON="$$exe" VENV=.venvs/$$v

test: lint typecheck docs-check pytest-all test-stress  # the full-size worker stress test once, on the default Python

# The docs site (mkdocs.yml: Material for MkDocs, API reference by mkdocstrings from src/) into site/.
# docs-check, part of `make test`, builds it with --strict: a broken link or anchor, a page missing
# from the nav or a mkdocstrings warning fails.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs
docs: $(STAMP)
	$(MKDOCS) build --site-dir site

docs-check: $(STAMP)
	$(MKDOCS) build --strict --site-dir site

# Both modes: compiled (benchmarks/results.md), then pure Python (benchmarks/results-pure.md).
bench: $(STAMP)
	$(PIP) install --force-reinstall --no-deps .
	$(PY) benchmarks/run.py $(BENCH_ARGS)
	TOCSIN_NO_EXTENSIONS=1 $(PY) benchmarks/run.py $(BENCH_ARGS)
	$(PY) benchmarks/readme_table.py  # README's speed tables from both runs' results

bench-sqlalchemy: $(STAMP)
	$(PIP) install --force-reinstall --no-deps .
	$(PY) benchmarks/bench_sqlalchemy.py $(BENCH_ARGS)

# tocsin.background beside a plain INSERT and huey's SqliteHuey (docs/background.md, "Speed").
bench-jobs: $(STAMP)
	$(PIP) install --force-reinstall --no-deps .
	$(PY) benchmarks/bench_jobs.py $(BENCH_ARGS)
	$(PY) benchmarks/bench_jobs_celery.py  # Jobs(..., celery=app) on a real redis-server

# tocsin.broadcast on a real redis-server beside encode's broadcaster (docs/broadcast.md, "Speed").
bench-broadcast: $(STAMP)
	$(PIP) install --force-reinstall --no-deps .
	$(PY) benchmarks/bench_broadcast.py $(BENCH_ARGS)

# The worker stress test at full size: 10,000 jobs across 4 worker processes, on SQLite and PostgreSQL
# (pytest-all runs 2,000 on every Python; `make test` runs this once).
test-stress: $(STAMP)
	$(PIP) install --force-reinstall --no-deps .
	TOCSIN_STRESS_JOBS=10000 $(PY) -m pytest tests/test_jobs_workers.py -k four_processes $(PYTEST_ARGS)

# The sdist and the pure-Python py3-none-any wheel (the fallback for platforms without a compiled
# wheel); the compiled wheels come from cibuildwheel ([tool.cibuildwheel] in pyproject.toml).
dist: | $(VENV)/bin/python
	$(PIP) install "build>=1"
	rm -rf dist
	TOCSIN_NO_EXTENSIONS=1 $(PY) -m build --outdir dist .

clean:
	rm -rf $(VENV) .venvs build dist site .pytest_cache .mypy_cache .ruff_cache .hypothesis
	rm -f src/tocsin/_core/*.so src/tocsin/_core/*.pyd  # built in place by editable installs

# The property-based state machine with many more fresh examples than `make test` runs:
# TOCSIN_HYPOTHESIS_DEEP=1 (the default here) runs 1,500, TOCSIN_HYPOTHESIS_DEEP=N runs N.
# A failure is saved in .hypothesis/ and replayed first by the next run (deep or not);
# PYTEST_ARGS=--hypothesis-seed=N makes a run repeatable.
.PHONY: hypothesis-deep
hypothesis-deep: $(STAMP)
	$(PIP) install --force-reinstall --no-deps .
	TOCSIN_HYPOTHESIS_DEEP=$${TOCSIN_HYPOTHESIS_DEEP:-1} $(PY) -m pytest tests/test_signal_hypothesis.py \
		-p no:randomly -o faulthandler_timeout=0 $(PYTEST_ARGS)
