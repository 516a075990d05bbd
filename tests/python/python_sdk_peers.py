"""The Python SDK (PyPI `atsdk`, package `at_client`), unchanged, with two atSigns on two atServers.

Usage: python_sdk_peers.py ROOT_HOST ROOT_PORT KEYS_DIR ATSIGN CRAM_SECRET PEER PEER_SECRET
Trust comes from SSL_CERT_FILE (the directory's and the cluster's CAs).

ATSIGN (@alice) lives on one atServer, PEER (@bob) on another; everything between
them goes server to server.

1. Onboards ATSIGN, then PEER, exactly as `python_sdk_owner.py` does: directory
   lookup, CRAM, fresh key pairs in `KEYS_DIR/@x_key.atKeys`, both public keys
   stored, PKAM on that connection, the CRAM secret deleted (CRAM then refused).
2. `AtClient(...)` for each, through the directory; PEER's client starts its
   monitor (`monitor:0 .*`) in a thread, feeding a queue.
3. ATSIGN puts a key shared with PEER: the SDK makes the shared AES key with
   PEER's public key, fetched by `plookup:publickey@bob` (ATSIGN's server asks
   PEER's).
4. PEER gets it on its own server: `lookup:shared_key@alice` and
   `lookup:all:phone.myapp@alice`, which PEER's server fetches from ATSIGN's
   over a pol-authenticated link; the SDK decrypts it.
5. ATSIGN notifies PEER with the SDK's `notify`; PEER's monitor receives it and
   `handle_event` decrypts it. The monitor also gets what ATSIGN's puts told PEER
   (autoNotify, value included, as the Dart server does): the shared key, which
   `handle_event` decrypts with PEER's private key, and the shared value, which it
   decrypts with that key.

Prints one result line per step on stdout; everything the SDK itself prints
(its verbose SENT/RCVD transcript) goes to stderr.
"""
import contextlib
import queue
import re
import sys
import threading
import time

from at_client import AtClient
from at_client.common import AtSign
from at_client.common.keys import SharedKey
from at_client.connections import Address
from at_client.connections.atrootconnection import AtRootConnection
from at_client.connections.notification.atevents import AtEventType
from at_client.util.keysutil import KeysUtil

from sdk_onboarding import onboard

root_host, root_port, keys_dir, atsign_text, cram_secret, peer_text, peer_secret = sys.argv[1:]
atsign = AtSign(atsign_text)
peer = AtSign(peer_text)
result_out = sys.stdout

# How long the monitor gets to deliver the three notifications, well inside the test's timeout.
MONITOR_DEADLINE_SECONDS = 30
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def result(line):
    print(line, file=result_out, flush=True)


def commit_id(reply):
    """An update's reply: the SDK returns the `data:` payload, a commit id."""
    return "commit id" if re.fullmatch(r"-?[0-9]+", reply or "") else f"unexpected {reply!r}"


# The SDK writes to stdout (verbose transcript, "Saving keys to ..."): keep stdout for results.
with contextlib.redirect_stdout(sys.stderr):
    KeysUtil.expected_keys_files_location = keys_dir.rstrip("/") + "/"

    # 1. Onboarding, each atSign on its own atServer, both found through one directory.
    root = AtRootConnection.get_instance(root_host, int(root_port), verbose=True)
    onboard(root, atsign, cram_secret, result)
    onboard(root, peer, peer_secret, result)

    # 2. Both clients; the peer's monitor runs in a thread (start_monitor blocks) and only
    # queues events: this thread handles them, so the peer's main connection has one user.
    alice = AtClient(atsign, root_address=Address(root_host, int(root_port)), verbose=True)
    result(f"{atsign} pkam: authenticated={alice.is_authenticated()}")
    events = queue.Queue()
    bob = AtClient(peer, root_address=Address(root_host, int(root_port)), queue=events,
                   verbose=True)
    result(f"{peer} pkam: authenticated={bob.is_authenticated()}")
    threading.Thread(target=bob.start_monitor, daemon=True).start()

    # 3. The owner shares a value: llookup:shared_key.bob@alice -> AT0015, so
    # plookup:publickey@bob (answered by the peer's server), both encrypted copies of the new
    # AES key stored, then the encrypted value.
    phone = SharedKey("phone", atsign, peer).set_namespace("myapp")
    result(f"put {phone}: {commit_id(alice.put(phone, 'shared with bob, with spaces'))}")

    # 4. The peer reads it on its own server, which fetches both from the owner's.
    fetched = SharedKey("phone", atsign, peer).set_namespace("myapp")
    result(f"{peer} get {fetched}: {bob.get(fetched)!r}")
    shared_key_name = fetched.get_shared_shared_key_name()
    looked_up_shared_key = bob.keys[shared_key_name]

    # 5. A notification with the same shared key; the SDK returns the id it generated.
    message = SharedKey("message", atsign, peer).set_namespace("myapp")
    notification_id = alice.notify(message, "hello bob, from alice")
    result(f"notify {message}: id is a uuid={UUID.fullmatch(notification_id) is not None}")

    # Drain the monitor's queue until all three notifications are in and both values decrypted,
    # handling each event as an application would: handle_event decrypts a shared key into
    # bob.keys, and a value into a DECRYPTED_UPDATE_NOTIFICATION it queues.
    shared_key_note = f"{peer}:shared_key{atsign}"
    valued = (f"{peer}:phone.myapp{atsign}", f"{peer}:message.myapp{atsign}")
    seen = {}
    decrypted = {}
    shared_key_from_notification = None
    deadline = time.monotonic() + MONITOR_DEADLINE_SECONDS
    while time.monotonic() < deadline and not (
            all(key in seen for key in (shared_key_note, *valued))
            and all(key in decrypted for key in valued)):
        try:
            event = events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        data = event.event_data
        # Heartbeat acks and stats notifications (id -1, which the Dart server sends) are noise.
        if event.event_type in (AtEventType.MONITOR_HEARTBEAT_ACK,
                                AtEventType.STATS_NOTIFICATION):
            continue
        if event.event_type == AtEventType.DECRYPTED_UPDATE_NOTIFICATION:
            decrypted.setdefault(data["key"], data)
            continue
        if event.event_type in (AtEventType.SHARED_KEY_NOTIFICATION,
                                AtEventType.UPDATE_NOTIFICATION):
            # Delivery is at least once (monitor:0's replay and live delivery may overlap):
            # the first of each key counts.
            if data["key"] in seen:
                continue
            seen[data["key"]] = (event.event_type, data)
            if event.event_type == AtEventType.SHARED_KEY_NOTIFICATION:
                # Forget the copy the get looked up, so what remains is the notification's.
                bob.keys.pop(shared_key_name, None)
                bob.handle_event(events, event)
                shared_key_from_notification = bob.keys.get(shared_key_name)
            else:
                bob.handle_event(events, event)
            continue
        # Anything else (a malformed line, an error, a closed connection) is a failure.
        result(f"monitor: unexpected {event.event_type} {data!r}")
        if event.event_type == AtEventType.NONE:
            break

    for key in (shared_key_note, *valued):
        if key not in seen:
            result(f"monitor: no notification for {key}")
            continue
        event_type, data = seen[key]
        value = "null" if data["value"] is None else "value"
        result(f"monitor: {event_type} {key} from {data.get('from')} to {data.get('to')} "
               f"operation={data['operation']} {value}")
    result("shared key from the notification = looked up: "
           f"{shared_key_from_notification == looked_up_shared_key}")
    for key in valued:
        if key not in decrypted:
            result(f"monitor: {key} not decrypted")
            continue
        data = decrypted[key]
        result(f"decrypted {key}: {data['decryptedValue']!r} "
               f"id is the notify's: {data['id'] == notification_id}")

    if bob.monitor_connection is not None:
        bob.monitor_connection.stop_heart_beat()
        bob.monitor_connection.stop_monitor()
    bob.secondary_connection.disconnect()
    alice.secondary_connection.disconnect()
    root.disconnect()
