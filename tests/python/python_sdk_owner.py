"""The Python SDK (PyPI `atsdk`, package `at_client`), unchanged, as an atSign's owner.

Usage: python_sdk_owner.py ROOT_HOST ROOT_PORT ATSIGN CRAM_SECRET KEYS_DIR PEER PEER_SECRET
Trust comes from SSL_CERT_FILE (the directory's and the atServer's CAs).

1. Onboards ATSIGN, then PEER, with the SDK's own helpers, as the upstream
   interop script (at_python `test/interop/onboard.py`) chains them: directory
   lookup, CRAM, fresh PKAM and encryption key pairs saved as
   `KEYS_DIR/@x_key.atKeys`, the PKAM public key and the encryption public key
   stored on the atServer, PKAM on that same connection, the CRAM secret
   deleted (and CRAM then refused).
2. `AtClient(...)` as ATSIGN: directory lookup, then PKAM with the keys file.
3. Puts and gets a self key, a public key and a key shared with PEER (the SDK
   makes the shared AES key with PEER's public key, fetched by `plookup`),
   scans them with metadata, deletes them and finds them gone.

Prints one result line per step on stdout; everything the SDK itself prints
(its verbose SENT/RCVD transcript) goes to stderr.
"""
import contextlib
import re
import sys

from at_client import AtClient
from at_client.common import AtSign
from at_client.common.keys import PublicKey, SelfKey, SharedKey
from at_client.connections import Address
from at_client.connections.atrootconnection import AtRootConnection
from at_client.exception.atexception import AtKeyNotFoundException
from at_client.util.keysutil import KeysUtil

from sdk_onboarding import onboard

root_host, root_port, atsign_text, cram_secret, keys_dir, peer_text, peer_secret = sys.argv[1:]
atsign = AtSign(atsign_text)
peer = AtSign(peer_text)
result_out = sys.stdout


def result(line):
    print(line, file=result_out, flush=True)


def commit_id(reply):
    """An update's or delete's reply: the SDK returns the `data:` payload, a commit id."""
    return "commit id" if re.fullmatch(r"-?[0-9]+", reply or "") else f"unexpected {reply!r}"


# The SDK writes to stdout (verbose transcript, "Saving keys to ..."): keep stdout for results.
with contextlib.redirect_stdout(sys.stderr):
    KeysUtil.expected_keys_files_location = keys_dir.rstrip("/") + "/"

    # 1. Onboarding, through the directory, with the SDK's connection and helpers.
    root = AtRootConnection.get_instance(root_host, int(root_port), verbose=True)

    onboard(root, atsign, cram_secret, result)
    onboard(root, peer, peer_secret, result)

    # 2. The client proper: directory lookup (same root connection) and PKAM.
    client = AtClient(atsign, root_address=Address(root_host, int(root_port)), verbose=True)
    result(f"pkam: authenticated={client.is_authenticated()}")

    # 3. A self key: encrypted with the self encryption key, a random ivNonce per put.
    note = SelfKey("note", atsign).set_namespace("myapp")
    result(f"put {note}: {commit_id(client.put(note, 'a secret note, with spaces'))}")
    sent_iv = note.metadata.iv_nonce
    fetched = SelfKey("note", atsign).set_namespace("myapp")
    result(f"get {fetched}: {client.get(fetched)!r}")
    result(f"ivNonce echoed: {fetched.metadata.iv_nonce == sent_iv}")

    # A public key: plain text, signed.
    location = PublicKey("location", atsign).set_namespace("myapp")
    result(f"put {location}: {commit_id(client.put(location, 'public value with spaces'))}")
    fetched = PublicKey("location", atsign).set_namespace("myapp")
    result(f"get {fetched}: {client.get(fetched)!r} cached={fetched.metadata.is_cached}")

    # A key shared with the peer: the first put makes the shared AES key (llookup of
    # shared_key.<peer> -> AT0015, plookup:publickey@<peer>, both encrypted copies stored).
    phone = SharedKey("phone", atsign, peer).set_namespace("myapp")
    result(f"put {phone}: {commit_id(client.put(phone, 'shared with bob, with spaces'))}")
    fetched = SharedKey("phone", atsign, peer).set_namespace("myapp")
    result(f"get {fetched}: {client.get(fetched)!r}")

    # Scan with metadata, as `get_at_keys` does it: `scan:showHidden:true <regex>`, then
    # `llookup:meta:` per key, each name parsed back with `Keys.from_string`.
    for key in client.get_at_keys("myapp", fetch_metadata=True):
        result(f"scan: {type(key).__name__} {key} encrypted={key.metadata.is_encrypted}")

    # Delete all three, then all are gone (AT0015 -> AtKeyNotFoundException).
    for key in (note, location, phone):
        result(f"delete {key}: {commit_id(client.delete(key))}")
    for key in (SelfKey("note", atsign).set_namespace("myapp"),
                PublicKey("location", atsign).set_namespace("myapp"),
                SharedKey("phone", atsign, peer).set_namespace("myapp")):
        try:
            result(f"get {key} after delete: {client.get(key)!r}")
        except AtKeyNotFoundException:
            result(f"get {key} after delete: AtKeyNotFoundException")

    client.secondary_connection.disconnect()
    root.disconnect()
