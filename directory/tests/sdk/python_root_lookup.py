"""Looks atSigns up through the Python SDK's own root-connection code (PyPI `atsdk`).

Usage: python_root_lookup.py HOST PORT ATSIGN...  (trust comes from SSL_CERT_FILE)
Prints one line per atSign: `@x host:port` or `@x not-found`, all on ONE reused connection,
exactly as AtClient does.
"""
import sys

from at_client.common import AtSign
from at_client.connections.atrootconnection import AtRootConnection
from at_client.exception.atexception import AtSecondaryNotFoundException

host, port, *atsigns = sys.argv[1:]
root = AtRootConnection.get_instance(host, int(port))
for name in atsigns:
    try:
        address = root.find_secondary(AtSign(name))
        print(f"{AtSign(name)} {address}", flush=True)
    except AtSecondaryNotFoundException:
        print(f"{AtSign(name)} not-found", flush=True)
root.disconnect()
