"""The MQTT uplink: outbox -> sealed packets -> broker; acknowledgements and commands back.

* :mod:`~edge_agent.uplinks.mqtt.uplink`: the client loop (``MqttUplink``).
* :mod:`~edge_agent.uplinks.mqtt.inflight`: the window of packets awaiting acknowledgement.
* :mod:`~edge_agent.uplinks.mqtt.command_gate`: which signed commands from the centre to obey.
* :mod:`~edge_agent.uplinks.mqtt.run`: the uplink as a process of its own
  (``python -m edge_agent.uplinks.mqtt.run``: drills, backfill, crash tests).
"""
