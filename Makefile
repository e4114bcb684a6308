# The two commands that matter on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test stress lint bench docs constraints clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml constraints.txt scripts/install-test-servers.sh
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e ".[test]"
	bash scripts/install-test-servers.sh
	touch $(VENV)/.installed $@

$(VENV)/.docs-installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e ".[docs]"
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(PY) examples/quickstart.py
	@echo "--- a parameter sweep as a session, run twice: the second run is all cache hits ---"
	$(PY) examples/sweep.py
	$(PY) examples/sweep.py

test: $(VENV)/.test-installed
	$(VENV)/bin/ruff check scalable tests bench examples docs/conf.py docs/_ext
	SCALABLE_DIGEST_CACHE=off $(PY) -m pytest

# The reliability suite at the issue's counts (long: see tests/reliability/); prints the table of figures.
stress: $(VENV)/.test-installed
	SCALABLE_STRESS=1 SCALABLE_DIGEST_CACHE=off $(PY) -m pytest tests/reliability -q -p no:randomly --timeout=0

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check scalable tests bench examples docs/conf.py docs/_ext
	$(VENV)/bin/ruff format --check scalable tests bench examples docs/conf.py docs/_ext

bench: $(VENV)/.test-installed
	$(PIP) -e ".[test,bench]"
	$(PY) bench/bench_local.py
	$(PY) bench/bench_put_modes.py
	$(PY) bench/bench_objects.py
	$(PY) bench/bench_mirror.py
	$(PY) bench/bench_object_stores.py
	$(PY) bench/bench_sync.py
	$(PY) bench/bench_cache.py
	$(PY) bench/bench_telemetry.py
	$(PY) bench/bench_catalog.py
	$(PY) bench/bench_startup.py

# The Sphinx site in docs/_build/html; any warning fails. The CLI, manifest and event references are generated
# from the code at build time; tests/test_docs.py builds it too and runs every example in it.
docs: $(VENV)/.docs-installed
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

# Re-pin constraints.txt: resolve every extra afresh (no constraints) in a scratch venv and freeze it.
constraints:
	rm -rf .venv-pin && $(PYTHON) -m venv .venv-pin
	.venv-pin/bin/python -m pip install --disable-pip-version-check -q -e ".[test,docs,bench]"
	{ sed -n '1,3p' constraints.txt; .venv-pin/bin/python -m pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf .venv-pin

clean:
	rm -rf $(VENV) artifacts .scalable .pytest_cache .ruff_cache docs/_build
