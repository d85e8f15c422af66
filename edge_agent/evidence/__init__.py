"""Evidence for an inspector: ``quantrac export`` and ``quantrac verify``.

* :mod:`~edge_agent.evidence.manifest`: the signed export's files and formats (pure).
* :mod:`~edge_agent.evidence.export`: a period of the outbox as those files (reads the store).
* :mod:`~edge_agent.evidence.verify`: files in, findings out (pure: runs anywhere).
* :mod:`~edge_agent.evidence.cli`: the two commands.

Why a room of its own, beside the console: it reads the outbox and renders with the Circular
10 uplink's renderer (so it sits above the uplinks), and nothing below imports it.
"""
