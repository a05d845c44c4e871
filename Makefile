# Every target installs what it needs into .venv first, so each works on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: lab test bench install chromium clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch first, pinned to the CPU wheel this machine carries: a bare "torch" would pull a CUDA build.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[torch,lab,sign,test]"
	touch $@

install: $(VENV)/.installed

# ipykernel 6.29 beside the venv's 7.x, for the kernel tests of both (tests/test_kernel.py, R6)
$(VENV)/ipykernel6/ipykernel: | $(PY)
	$(PY) -m pip install -q --no-deps --target $(VENV)/ipykernel6 ipykernel==6.29.5 nest_asyncio==1.6.0

# Browser tests drive Debian's chromium (never a downloaded browser); as root, install it if missing.
chromium:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi
	@[ -x /usr/bin/chromium ] || echo "note: /usr/bin/chromium missing, browser tests will be skipped"

test: install chromium $(VENV)/ipykernel6/ipykernel
	$(PY) -m pytest -q

lab: install
	$(VENV)/bin/jupyter lab --notebook-dir=example-notebooks $(ROOT_FLAG)

bench: install
	$(PY) -m pip install -q -r bench/requirements.txt
	$(PY) -m pip install -q --no-deps torchattacks==3.5.1  # see bench/requirements.txt: its pins pull CUDA torch
	$(PY) bench/overhead.py
	$(PY) bench/poisoning.py
	$(PY) bench/privacy_accounting.py
	$(PY) bench/privacy_membership.py
	$(PY) bench/robustness.py
	$(PY) bench/supply.py
	$(PY) bench/scale.py
	$(PY) bench/load.py

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
