"""Onboarding an atSign with the Python SDK's own helpers, as the upstream interop script chains
them: shared by the SDK test scripts next to this file.

`result` is the script's function printing one result line.
"""

from at_client.connections.atsecondaryconnection import AtSecondaryConnection
from at_client.exception.atexception import AtUnauthenticatedException
from at_client.util.authutil import AuthUtil
from at_client.util.keysutil import KeysUtil
from at_client.util.onboardingutil import OnboardingUtil


def onboard(root, atsign, cram_secret, result):
    """Directory lookup, CRAM with the provisioned secret, PKAM and encryption key pairs saved
    to the keys file, both public keys stored, PKAM on that connection, the CRAM secret deleted;
    then a new connection finds CRAM refused."""
    address = root.find_secondary(atsign)
    result(f"directory: {atsign} at {address}")
    connection = AtSecondaryConnection(address, verbose=True)
    connection.connect()
    AuthUtil.authenticate_with_cram(connection, atsign, cram_secret)
    result("cram: success")
    keys = {}
    OnboardingUtil.generate_pkam_keypair(keys)
    OnboardingUtil.generate_encryption_keypair(keys)
    OnboardingUtil.generate_self_encryption_key(keys)
    KeysUtil.save_keys(atsign, keys)
    OnboardingUtil.store_pkam_public_key(connection, keys)
    result("stored pkam public key")
    OnboardingUtil.store_public_encryption_key(connection, atsign.without_prefix, keys)
    result("stored encryption public key")
    # Upstream's onboarding then switches the same connection to PKAM and deletes the
    # CRAM secret.
    AuthUtil.authenticate_with_pkam(connection, atsign, keys)
    result("pkam on the onboarding connection: success")
    OnboardingUtil.delete_cram_key(connection)
    result("deleted cram secret")
    connection.disconnect()

    # With the secret gone, CRAM is refused (AT0401 -> AtUnauthenticatedException).
    connection = AtSecondaryConnection(address, verbose=True)
    connection.connect()
    try:
        AuthUtil.authenticate_with_cram(connection, atsign, cram_secret)
        result("cram after delete: success")
    except AtUnauthenticatedException:
        result("cram after delete: AtUnauthenticatedException")
    connection.disconnect()
