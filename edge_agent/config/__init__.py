"""The station config: what the station does, as plain data, and the reader of its TOML.

* :mod:`~edge_agent.config.model`: frozen dataclasses (``StationConfig``, ``Device``,
  ``BusConfig``, ...) and the Circular 10 facts they are checked against. No I/O.
* :mod:`~edge_agent.config.reader`: TOML in, the model out; every mistake collected into one
  ``ConfigError``. It reads files (the config, the profiles it names) and nothing else.

Why a room of its own: everything else reads the config, so it must import nothing that does
I/O (no pyserial, no poller thread). Then the pure pipeline can import it, and a test builds
a config from a few lines of Python. Turning a ``BusConfig`` into an open port is
:mod:`edge_agent.poll.build`'s job. import-linter holds this (pyproject.toml, "sans-io").
"""
