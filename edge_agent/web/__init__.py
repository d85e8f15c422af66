"""The station's own web page (``quantrac web``): what the plant's operator looks at.

Circular 10/2021 wants the logger to display its data itself, and an operator would rather
look than read 135-column tables. A room of its own above ``console`` and ``evidence``
(it reads the agent's status through the console's control client and downloads what
``evidence`` exports) and below ``daemon``: ``source`` reads (outbox, control socket, spool),
``render`` turns that into HTML (pure), ``app`` routes, ``cli`` serves. The HTTP rules it
shares with the centre dashboard (login, rate limit, 400s) are ``protocol.web_app``.
"""
