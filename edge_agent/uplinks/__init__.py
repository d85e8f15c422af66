"""Sending finished records to the centre: one sub-package per way of sending.

* :mod:`~edge_agent.uplinks.mqtt`: the signed, sealed MQTT uplink (DESIGN's main path).
* :mod:`~edge_agent.uplinks.circular10`: the legacy Circular 10 text files over FTP/FTPS.

Both read the outbox (``buffer``) and never the pipeline: an uplink can be down for days and
the station keeps measuring. A new uplink is a new sub-package here; the daemon starts it.
This room is where the one ``Uplink`` protocol and the one thread runner both uplinks share
will go (today ``UplinkRunner`` in :mod:`edge_agent.daemon.agent` and ``Circular10Runner``).
"""
