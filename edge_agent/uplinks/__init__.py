"""Sending finished records to the centre: one sub-package per way of sending.

* :mod:`~edge_agent.uplinks.mqtt`: the signed, sealed MQTT uplink (DESIGN's main path).
* :mod:`~edge_agent.uplinks.circular10`: the Circular 10 text files over FTP/FTPS (the
  regulator's legacy path).

Both read the outbox (``buffer``) and never the pipeline: an uplink can be down for days and
the station keeps measuring. A new uplink is a new sub-package here; the daemon starts it.
* :mod:`~edge_agent.uplinks.thread`: the one ``Uplink`` protocol (``step``, ``stop``,
  ``status``) both implement, and ``UplinkThread``, which runs one on the shared
  :class:`~edge_agent.runtime.thread.StepThread`; the daemon starts and reports them alike.
"""
