# quantrac-edge: the commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# Debian packages: one list of "program package" lines, checked program by program.
DEB_LIST := .ci/debian-packages

.PHONY: setup deb test lint bench demo clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: deb $(VENV)/.installed

# Debian packages the tests, benchmarks and demo run for real (broker, pty pairs, peer tools):
# every program in $(DEB_LIST) must be on PATH; the packages of the missing ones are installed.
deb:
	@missing=$$(grep -v '^[[:space:]]*\(#\|$$\)' $(DEB_LIST) | while read -r prog pkg _; do \
	  command -v "$$prog" >/dev/null || echo "$$pkg"; done | sort -u | tr '\n' ' '); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
	  echo "missing programs; run: sudo apt-get install -y $$missing"; exit 1; \
	fi

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy examples/demo.py  # not a package (not installed), checked the same way
	$(VENV)/bin/lint-imports  # the arrows of docs/architecture.md ([tool.importlinter])
	$(VENV)/bin/quantrac firmware lint  # firmware/: mypy per port on MicroPython stubs, mpy-cross

bench: setup
	@set -e; for b in bench/*.py; do echo "== $$b"; $(PY) $$b; done

demo: setup
	$(PY) examples/demo.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
