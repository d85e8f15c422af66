"""Which transport carries the files: one factory keyed by ``receiver.transport``.

The uplink asks for a :data:`~edge_agent.uplinks.circular10.transport.Connect` and never
learns which protocol is behind it. SFTP is imported only when configured: the FTP stations
(most of them) never load the SSH library.
"""

from __future__ import annotations

import importlib

from edge_agent.uplinks.circular10.ftp_transport import FtpFiles
from edge_agent.uplinks.circular10.settings import Circular10Settings
from edge_agent.uplinks.circular10.transport import Connect, PermanentRefusal, RemoteFiles


def connector(s: Circular10Settings) -> Connect:
    """A function that opens one session to the province's server as ``s`` says."""
    if s.transport in ("ftp", "ftps"):
        def ftp() -> RemoteFiles:
            return FtpFiles.connect(host=s.host, port=s.port, user=s.user, password=s.password,
                                    tls=s.transport == "ftps", ca_file=s.ca_file,
                                    passive=s.receiver.passive, timeout_s=s.timeout_s)
        return ftp

    def sftp() -> RemoteFiles:
        try:
            module = importlib.import_module("edge_agent.uplinks.circular10.sftp")
        except ImportError as exc:
            raise PermanentRefusal(f"SFTP support cannot be loaded: {exc}",
                                   "install the package's SFTP dependency (paramiko)") from exc
        files: RemoteFiles = module.SftpFiles.connect(
            host=s.host, port=s.port, user=s.user, password=s.password or None,
            key_file=s.key_file, host_key=s.host_key, known_hosts=s.known_hosts,
            timeout_s=s.timeout_s)
        return files
    return sftp
