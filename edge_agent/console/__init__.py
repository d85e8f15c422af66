"""The technician's tools: diagnostics on a bus, the status view, the control socket client.

* :mod:`~edge_agent.console.diag`, :mod:`~edge_agent.console.diag_cli`: ``quantrac diag``
  (scan, read, watch) on an 80x24 serial console.
* :mod:`~edge_agent.console.status_view`: ``quantrac status`` as text (pure).
* :mod:`~edge_agent.console.control_client`: how a tool asks the running agent (and the wire
  rules the daemon's server shares).

Why below the daemon: a tool talks to the running agent over its socket, never by importing
it, so ``quantrac diag`` works on a station whose agent does not start.
"""
