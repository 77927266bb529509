# Two entry points on a fresh machine:
#   make run [PHOTOS=~/Pictures] [WEIGHTS=random]   set up, index the photos, open the search page
#   make check                                      set up and run every test (what CI runs)
#   make test                                       the same without the Ray cluster tests
PYTHON ?= python3
VENV ?= .venv
PHOTOS ?= data
QUERY ?= a photo of a cat
PY := $(VENV)/bin/python
WEIGHTS_FLAG := $(if $(WEIGHTS),--weights $(WEIGHTS),)

.PHONY: run search check test test-ray setup lint clean bytecode

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,ray]'
	touch $@

setup: $(VENV)/.installed

run: setup
	$(VENV)/bin/searchapp $(WEIGHTS_FLAG) index $(PHOTOS)
	$(VENV)/bin/searchapp $(WEIGHTS_FLAG) ui --open

# The same library from the command line: make search QUERY="red kayak"
search: setup
	$(VENV)/bin/searchapp $(WEIGHTS_FLAG) search "$(QUERY)" -k 5

# Byte-compile the sources once: with PYTHONDONTWRITEBYTECODE set (as on these machines)
# every one of the suite's ~150 subprocesses compiled them again, ~0.35 s of CPU each.
bytecode: setup
	$(PY) -m compileall -q -j 0 cli indexer searchapp ui tests

# One worker more than cores: the tests wait on servers, browsers and subprocesses about a
# quarter of their time, and a third worker fills it (2 cores: 242 -> 218 s, docs/PERFORMANCE.md)
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))

test: setup bytecode
	$(VENV)/bin/ruff check .
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not ray"

check: test test-ray

# Ray clusters on loopback (searchapp index --ray): minutes of start-ups, run on their own
test-ray: setup bytecode
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m ray

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info
