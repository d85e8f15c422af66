# quantrac-edge: the commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# Every outside program the tests, benchmarks and the demo run, as program=Debian package; `deb`
# installs the package of each one not on PATH. tests/test_outside_programs.py reads this list
# and fails when a test or benchmark starts a program missing from it.
#   mosquitto: the broker of every uplink/centre test and the demo; mosquitto_pub: a client no
#   one here wrote, against the generated broker config; socat: RS-485 lines as pty pairs;
#   mbpoll: a libmodbus master, the peer judge; openssl: checks the centre's certificates and
#   CRLs; mount/umount: small real tmpfs filesystems for the full-disk tests; sqlite3: the
#   SQLite shell, to look into an outbox or centre store as an inspector would; sshd: OpenSSH's
#   server, the province's SFTP server of the Circular 10 tests; ssh-keygen: its host and user keys;
#   useradd/chpasswd/userdel: its throw-away login account with a real password (tests as root).
#   initdb/pg_ctl: a throw-away PostgreSQL server for the centre's PostgreSQL store tests
#   (Debian keeps them in /usr/lib/postgresql/<ver>/bin, off PATH: `deb` looks there too);
#   runuser: to run them as the `postgres` user when the tests run as root (postgres refuses root).
#   tmux: an 80x24 terminal the console tests type into and read; picocom: a serial terminal
#   client on a socat pty pair, as a technician's laptop is.
#   systemd-analyze: checks the technician's serial-getty drop-in as systemd reads it.
DEB_PROGRAMS := mosquitto=mosquitto mosquitto_pub=mosquitto-clients socat=socat mbpoll=mbpoll \
	openssl=openssl mount=mount umount=mount sqlite3=sqlite3 sshd=openssh-server \
	ssh-keygen=openssh-client useradd=passwd chpasswd=passwd userdel=passwd \
	initdb=postgresql pg_ctl=postgresql runuser=util-linux tmux=tmux picocom=picocom \
	chromium=chromium systemd-analyze=systemd

.PHONY: setup deb test lint bench demo clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: deb $(VENV)/.installed

# Debian packages the tests, benchmarks and demo run for real (broker, pty pairs, peer tools):
# every program in DEB_PROGRAMS must be on PATH; the packages of the missing ones are installed.
deb:
	@missing=$$(for pair in $(DEB_PROGRAMS); do \
	  command -v "$${pair%%=*}" >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/$${pair%%=*}" \
	  >/dev/null || echo "$${pair#*=}"; done | sort -u | tr '\n' ' '); \
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
