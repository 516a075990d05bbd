"""SDK traffic through a load balancer while the nodes behind it are rolled (tests/tests/rollout.rs).

Usage: rollout_traffic.py SERVICE_PORT HOST ATSIGN CRAM_SECRET KEYS_DIR CLIENTS PACE_MS
                          MAX_WRITES MAX_SECONDS
Trust comes from SSL_CERT_FILE (the cluster CA).

HOST is ATSIGN's SNI name (`<label>.<sni_domain>`); as wildcard DNS would point it at the
Service, this script resolves it to 127.0.0.1, where the balancer listens on SERVICE_PORT.

1. Onboards ATSIGN with the SDK's own helpers: CRAM with the provisioned secret, fresh PKAM
   and encryption key pairs saved as `KEYS_DIR/@x_key.atKeys`, both public keys stored
   (the CRAM secret is kept: the test reads back with CRAM).
2. Starts CLIENTS threads, each an `AtClient` (PKAM with the keys file) that puts public keys
   `public:c<client>w<n>.rollout@x` = `<n>`, n = 0, 1, ..., one every PACE_MS, and
   records every put the server acknowledged (a commit id). When its connection is closed
   (the node it was on drains), it makes a new `AtClient` through the balancer and goes on
   with the next n. Every failure to connect, finish the TLS handshake or authenticate is a
   refused connection.
3. Stops when stdin ends (the test closes it), after MAX_WRITES puts per client, or after
   MAX_SECONDS, whichever comes first.

One event per stdout line, as it happens:
  onboarded
  connected C            client C authenticated (its first connection or a reconnect)
  ack C N COMMIT_ID      the put of N was acknowledged
  lost C N WHY           the connection closed before N was acknowledged (N was not)
  refused C WHY          a new connection failed to connect, handshake or authenticate
  error C N WHY          the server answered N with an error, or did not answer in time
  done C SENT ACKED      client C stopped
  hung C                 client C did not stop within 15 s of being told to

Three things are changed around the SDK (atsdk 0.2.81):
- it has no way to notice a closed connection (its read loop appends the empty reads of a
  closed socket forever): here a read that returns nothing raises `ConnectionClosed`, what a
  reconnecting SDK must do;
- an authenticated connection gets a read timeout (the SDK sets none);
- it parses its RSA private key again for every signature, ~50 ms of CPU each (`cryptography`
  checks the key), so four clients would put a few times a second in all: here that parse is
  memoized (the same key, the same signatures), so that puts follow each other closely and
  one is in flight whenever a node drains.
Everything else is the SDK's code: connect, TLS with SNI, PKAM, the signed `update:` its `put`
builds, the reply parsing.
"""
import contextlib
import functools
import socket
import sys
import threading
import time

from at_client import AtClient
from at_client.common import AtSign
from at_client.common.keys import PublicKey
from at_client.connections import Address
from at_client.connections.atconnection import AtConnection
from at_client.connections.atsecondaryconnection import AtSecondaryConnection
from at_client.util.authutil import AuthUtil
from at_client.util.encryptionutil import EncryptionUtil
from at_client.util.keysutil import KeysUtil
from at_client.util.onboardingutil import OnboardingUtil

(service_port, host, atsign_text, cram_secret, keys_dir, clients, pace_ms, max_writes,
 max_seconds) = sys.argv[1:]
service_port, clients, max_writes = int(service_port), int(clients), int(max_writes)
pace, max_seconds = int(pace_ms) / 1000, float(max_seconds)
atsign = AtSign(atsign_text)
# How long an authenticated connection waits for one reply.
READ_TIMEOUT = 10
# How long a client waits before trying to connect again after a refusal.
RETRY_AFTER = 0.05

# The test's DNS: the atSign's SNI name is the Service's address.
_getaddrinfo = socket.getaddrinfo


def getaddrinfo(name, port, *args, **kwargs):
    return _getaddrinfo("127.0.0.1" if name == host else name, port, *args, **kwargs)


socket.getaddrinfo = getaddrinfo


class ConnectionClosed(ConnectionError):
    """The server closed the connection (a read returned nothing)."""


def read(self):
    """The SDK's `AtConnection.read`, raising on a closed connection instead of spinning."""
    response = b''
    while True:
        chunk = self._secure_root_socket.read()
        if not chunk:
            raise ConnectionClosed("closed by the server")
        response += chunk
        if chunk == b'@' or b'\n' in chunk:
            break
    return response.decode()


AtConnection.read = read
EncryptionUtil.private_key_from_base64 = staticmethod(
    functools.lru_cache(maxsize=8)(EncryptionUtil.private_key_from_base64))

# Events go to stdout; what the SDK itself prints ("Saving keys to ...") goes to stderr.
events = sys.stdout
events_lock = threading.Lock()


def emit(*fields):
    line = " ".join(str(f) for f in fields)
    with events_lock:
        events.write(line + "\n")
        events.flush()


def describe(error):
    """One line: the chain of exceptions (the SDK wraps what failed), and the first cause's
    message (the wrappers' repeat the command, a signature and all)."""
    chain = []
    while error is not None and len(chain) < 6:
        chain.append(error)
        error = error.__cause__ or error.__context__
    names = " <- ".join(type(e).__name__ for e in chain)
    return f"{names}: {chain[-1]}".replace("\n", " ")[:300]


def kind(error):
    """`timeout`, `lost` (the connection failed) or `error` (the server answered an error)."""
    while error is not None:
        if isinstance(error, TimeoutError):
            return "timeout"
        if isinstance(error, OSError):
            return "lost"
        error = error.__cause__ or error.__context__
    return "error"


stop = threading.Event()
deadline = time.monotonic() + max_seconds


def onboard():
    connection = AtSecondaryConnection(Address(host, service_port))
    connection.connect()
    AuthUtil.authenticate_with_cram(connection, atsign, cram_secret)
    keys = {}
    OnboardingUtil.generate_pkam_keypair(keys)
    OnboardingUtil.generate_encryption_keypair(keys)
    OnboardingUtil.generate_self_encryption_key(keys)
    KeysUtil.save_keys(atsign, keys)
    OnboardingUtil.store_pkam_public_key(connection, keys)
    OnboardingUtil.store_public_encryption_key(connection, atsign.without_prefix, keys)
    connection.disconnect()


def run(c, results):
    client = None
    sent = acked = 0
    n = 0
    while not stop.is_set() and n < max_writes and time.monotonic() < deadline:
        if client is None:
            try:
                client = AtClient(atsign, secondary_address=Address(host, service_port))
                client.secondary_connection._secure_root_socket.settimeout(READ_TIMEOUT)
            except Exception as e:
                client = None
                emit("refused", c, describe(e))
                time.sleep(RETRY_AFTER)
                continue
            emit("connected", c)
        key = PublicKey(f"c{c}w{n}", atsign).set_namespace("rollout")
        sent += 1
        try:
            commit_id = client.put(key, str(n))
        except Exception as e:
            what = kind(e)
            if what == "lost":
                emit("lost", c, n, describe(e))
                client.secondary_connection.disconnect()
                client = None
            else:
                emit("error", c, n, f"{what}: {describe(e)}")
                client.secondary_connection.disconnect()
                client = None
        else:
            emit("ack", c, n, commit_id)
            acked += 1
        n += 1
        stop.wait(pace)
    if client is not None:
        client.secondary_connection.disconnect()
    results[c] = (sent, acked)


def main():
    KeysUtil.expected_keys_files_location = keys_dir.rstrip("/") + "/"
    onboard()
    emit("onboarded")
    results = {}
    threads = [threading.Thread(target=run, args=(c, results), daemon=True)
               for c in range(clients)]
    for thread in threads:
        thread.start()
    # The test closes stdin to stop the traffic.
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    while not stop.is_set() and time.monotonic() < deadline:
        if not any(thread.is_alive() for thread in threads):
            break
        stop.wait(0.1)
    stop.set()
    for c, thread in enumerate(threads):
        thread.join(15)
        if thread.is_alive():
            emit("hung", c)
        else:
            sent, acked = results[c]
            emit("done", c, sent, acked)


if __name__ == "__main__":
    with contextlib.redirect_stdout(sys.stderr):
        main()
