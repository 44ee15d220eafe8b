# maskingnet: `make demo` then `make test` on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
EXTRAS ?= dev,onnx,serve

.PHONY: install browser demo test bench lint clean

install: $(STAMP)

# torch==2.13.0 first: it is the CPU build on this disk; an unpinned torch would pull a CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

# The real Carvana sample beside the checkout, when there is one, is what the bundled model cuts out first.
SAMPLE ?= ../shared/data/carvana-sample/train

demo: $(STAMP)
	$(PY) -m maskingnet demo --out runs/demo $(if $(wildcard $(SAMPLE)),--photos $(SAMPLE))

# tests/test_web.py drives the served page in headless Chromium: Debian's package, installed when missing.
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends chromium; }

test: $(STAMP) browser
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m maskingnet bench --out runs/bench --data ../shared/data/carvana-sample

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf runs .pytest_cache build *.egg-info src/*.egg-info
