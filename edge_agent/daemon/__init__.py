"""The agent process: lifecycle, control socket server, systemd, logging, the ``quantrac`` CLI.

* :mod:`~edge_agent.daemon.agent`: starts the poller, pipeline, store and uplinks; reload,
  shutdown, the status document.
* :mod:`~edge_agent.daemon.cli`: ``quantrac`` (subcommands come from entry points, so this
  package never imports centre or hw_sim); :mod:`~edge_agent.daemon.agent_cli`
  (``run``, ``status``, ``config check``), :mod:`~edge_agent.daemon.outbox_cli`.
* :mod:`~edge_agent.daemon.control` (socket server), :mod:`~edge_agent.daemon.sdnotify`,
  :mod:`~edge_agent.daemon.logs` (logfmt), :mod:`~edge_agent.daemon.clock_sync` (the kernel's
  sync state), :mod:`~edge_agent.daemon.capacity` (will the disk hold 60 days), ``systemd/``.

The top room: it may import every other room, and none imports it.
"""
