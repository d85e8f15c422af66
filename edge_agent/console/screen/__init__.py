"""``quantrac console``: the technician's full-screen program on the serial console.

One job per module, the pure ones testable without a terminal:

* :mod:`.view` the data a screen shows (gathered by the source, rendered by the pages);
* :mod:`.pages` one pure "view -> lines" renderer per page, every line cut to the width;
* :mod:`.diagnose` the verdicts a technician needs (silent, mis-addressed, word order);
* :mod:`.text` fitting, wrapping and the ASCII sparkline;
* :mod:`.keys` the key/page state machine (pure);
* :mod:`.events` the agent's log lines, parsed and filtered (pure) and where they are read from;
* :mod:`.network` the broker / FTP / DNS / NTP reachability tests (I/O);
* :mod:`.source` where the data comes from: the agent's control socket when it runs, the
  ports themselves when it does not (I/O, on a background thread);
* :mod:`.app` the thin curses driver; :mod:`.cli` the ``quantrac console`` command.
"""
