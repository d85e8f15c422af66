"""The Circular 10/2021/TT-BTNMT uplink: one text file per window, pushed to the province.

* :mod:`~edge_agent.uplinks.circular10.render`: records -> folder, file name and bytes for a
  receiver profile (sans-IO; ``quantrac export`` renders with it too).
* :mod:`~edge_agent.uplinks.circular10.uplink`: the spool on disk and the sending policy
  (order, dated folders, rename or direct, pacing, back-off, permanent refusals).
* :mod:`~edge_agent.uplinks.circular10.transport`: the interface of a session and its errors;
  :mod:`~edge_agent.uplinks.circular10.ftp_transport` (FTP, FTPS) and
  :mod:`~edge_agent.uplinks.circular10.sftp` implement it;
  :mod:`~edge_agent.uplinks.circular10.connect` picks one by ``receiver.transport``.
* :mod:`~edge_agent.uplinks.circular10.settings`: what the uplink is told.

One name in code, Circular 10: config key ``[uplink.circular10]``, status key
``uplink_circular10``, logger ``quantrac.edge_agent.circular10``, logs ``circular10_*``.
The format and every receiver option: docs/circular10.md.
"""
