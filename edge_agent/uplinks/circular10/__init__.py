"""The legacy uplink of Circular 10/2021/TT-BTNMT: one text file per window, pushed by FTP/FTPS.

* :mod:`~edge_agent.uplinks.circular10.render`: records -> file name and bytes (sans-IO).
* :mod:`~edge_agent.uplinks.circular10.ftp`: the spool on disk and the FTP/FTPS sender.

One name in code, Circular 10: config key ``[uplink.circular10]``, status key
``uplink_circular10``, logger ``quantrac.edge_agent.circular10``, logs ``circular10_*``.
"""
