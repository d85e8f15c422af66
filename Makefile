# quantrac-edge: the commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DEB_PACKAGES := mosquitto socat mbpoll openssl

.PHONY: setup deb test lint bench demo clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: deb $(VENV)/.installed

# Debian packages the tests and the demo run for real (broker, pty pairs, a peer Modbus master).
deb:
	@missing=""; for p in mosquitto socat mbpoll openssl; do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PACKAGES); \
	else \
	  echo "missing:$$missing -- run: sudo apt-get install -y $(DEB_PACKAGES)"; exit 1; \
	fi

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: setup
	@set -e; for b in bench/*.py; do echo "== $$b"; $(PY) $$b; done

demo: setup
	$(PY) -m edge_agent.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
