# embedkit: `make demo` runs the main job end to end; `make test` installs everything and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?= cpu,text,vision,dev,ray,arrow,hf
# pytest-xdist workers for `make test` (CI and this machine have 2 cores); 0 runs in one process.
# worksteal hands each worker a contiguous half of the tests, so module fixtures are built once.
TEST_JOBS ?= 2
# The stamp changes when the dependency files change, so `make` reinstalls only then.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)

.PHONY: install data demo test lint check bench clean

install: $(STAMP)

# uv installs what pip would in seconds (pip: about a minute) and compiles no bytecode up
# front (the tests compile what they import, once); pip is the fallback. uv does not read
# pip's configuration, so it is given pip's find-links (where the CPU torch wheel is).
# The venv is made without pip (seeding pip costs ~4 s of CPU); uv (the one on PATH, else
# one pip puts in $(VENV)/uv) installs pip into it with the rest.
FIND_LINKS ?= $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv --without-pip $(VENV)
	# constraints.txt pins torch to the local CPU build (torch==2.13.0)
	( uv=$$(command -v uv || { $(PYTHON) -m pip install -q --target $(VENV)/uv uv >&2 && \
	    echo $(VENV)/uv/bin/uv; }) && $$uv pip install -q --python $(PY) \
	    $(foreach link,$(FIND_LINKS),--find-links $(link)) -c constraints.txt pip -e '.[$(EXTRAS)]' ) \
	  || { { $(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip -q; } && \
	    $(PY) -m pip install -q -c constraints.txt -e '.[$(EXTRAS)]'; }
	rm -f $(VENV)/.installed-*
	touch $@

data:
	bash scripts/fetch_data.sh

demo: install data
	$(PY) scripts/demo.py

# Bytecode is written as the tests import (PYTHONDONTWRITEBYTECODE would make every test
# process compile torch, sklearn and embedkit again).
test: install data
	env -u PYTHONDONTWRITEBYTECODE $(PY) -m pytest -q -p no:cacheprovider -n $(TEST_JOBS) --dist worksteal

lint: install
	$(VENV)/bin/ruff check embedkit tests scripts benchmarks
	$(VENV)/bin/ruff format --check embedkit tests scripts benchmarks
	$(VENV)/bin/lint-imports

check: lint test

bench: install data
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
