"""What runs the station's work on threads: one runner for every thread the agent starts.

* :mod:`~edge_agent.runtime.thread`: :class:`~edge_agent.runtime.thread.StepThread`, which
  calls a ``step`` on a thread of its own until stopped and never lets an exception end it.

Why a room of its own: the bus workers (``poll/``) and the uplinks (``uplinks/``) both run on
threads, and they are siblings that never import each other, so the one runner they share must
sit below both. It cannot sit in ``core/`` or ``config/``: those are sans-IO and may not start
a thread. This room may (it is not on the ``sans-io`` list) and imports nothing of ours.
"""
