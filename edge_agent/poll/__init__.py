"""Polling the analysers: one thread per bus moves the bytes; the config becomes transports here.

* :mod:`~edge_agent.poll.poller`: the bus workers, back-off, probing, plausibility guard.
* :mod:`~edge_agent.poll.build`: ``BusConfig`` -> an open RTU or TCP transport, and the buses
  with their devices. The only place a config opens a port.
"""
