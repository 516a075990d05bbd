"""Two atSigns of `at-server dev` share a value, with the Python SDK (`pip install atsdk==0.2.81`).

    cargo run --release -p at-server -- dev --atsign @alice --atsign @bob
    SSL_CERT_FILE=data/dev/tls/ca.pem python docs/examples/share.py @alice <secret> @bob <secret>

The secrets are the CRAM secrets dev printed. Each atSign is onboarded once: key pairs made and
saved under ~/.atsign/keys, its public keys stored, its CRAM secret deleted (run again, the
script skips onboarding an atSign whose keys file exists). Then @alice puts `phone.demo`, shared
with @bob, and @bob reads it from his own atServer, which asks @alice's for it. The directory is
dev's, 127.0.0.1:6464, unless AT_ROOT says another host:port.
"""
import contextlib
import os
import sys

from at_client import AtClient
from at_client.common import AtSign
from at_client.common.keys import SharedKey
from at_client.connections import Address
from at_client.connections.atrootconnection import AtRootConnection
from at_client.connections.atsecondaryconnection import AtSecondaryConnection
from at_client.util.authutil import AuthUtil
from at_client.util.keysutil import KeysUtil
from at_client.util.onboardingutil import OnboardingUtil

host, port = os.environ.get("AT_ROOT", "127.0.0.1:6464").rsplit(":", 1)
root = Address(host, int(port))


def onboard(atsign, cram_secret):
    """CRAM with the provisioned secret, fresh keys saved, both public keys stored, then PKAM
    and the CRAM secret deleted: the SDK's own onboarding steps."""
    address = AtRootConnection.get_instance(root.host, root.port).find_secondary(atsign)
    connection = AtSecondaryConnection(address)
    connection.connect()
    AuthUtil.authenticate_with_cram(connection, atsign, cram_secret)
    keys = {}
    OnboardingUtil.generate_pkam_keypair(keys)
    OnboardingUtil.generate_encryption_keypair(keys)
    OnboardingUtil.generate_self_encryption_key(keys)
    KeysUtil.save_keys(atsign, keys)
    OnboardingUtil.store_pkam_public_key(connection, keys)
    OnboardingUtil.store_public_encryption_key(connection, atsign.without_prefix, keys)
    AuthUtil.authenticate_with_pkam(connection, atsign, keys)
    OnboardingUtil.delete_cram_key(connection)
    connection.disconnect()


def main(alice_text, alice_secret, bob_text, bob_secret):
    alice, bob = AtSign(alice_text), AtSign(bob_text)
    # The SDK prints as it goes; this script's own lines are what it says on stdout.
    with contextlib.redirect_stdout(sys.stderr):
        for atsign, secret in ((alice, alice_secret), (bob, bob_secret)):
            keys_file = KeysUtil.get_keys_file(atsign, KeysUtil.expected_keys_files_location)
            if not os.path.exists(keys_file):
                onboard(atsign, secret)
            print(f"{atsign} onboarded", file=sys.__stdout__, flush=True)
        alice_client = AtClient(alice, root_address=root)
        phone = SharedKey("phone", alice, bob).set_namespace("demo")
        alice_client.put(phone, "+1 555 0100")
        print(f"{alice} shared {phone} with {bob}", file=sys.__stdout__, flush=True)
        bob_client = AtClient(bob, root_address=root)
        value = bob_client.get(SharedKey("phone", alice, bob).set_namespace("demo"))
        print(f"{bob} reads {value}", file=sys.__stdout__, flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
