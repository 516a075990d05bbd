#!/bin/sh
# Regenerates the auth test vectors with the openssl CLI (independent of our code).
# Run from this directory. Test-only keys: never use them for anything else.
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

printf '%s' '_ee2fb8a3-37bc-416a-9609-abca7d4ecc23@alice:c341101f-9df3-4a6d-b9d3-5c4200535212' > challenge.txt

# RSA-2048 PKAM key and a second, unrelated one.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/rsa.pem" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/rsa_other.pem" 2>/dev/null
openssl pkey -in "$tmp/rsa.pem" -pubout -outform DER | base64 -w0 > rsa_public_spki.b64
openssl pkcs8 -topk8 -nocrypt -in "$tmp/rsa.pem" -outform DER | base64 -w0 > rsa_private_pkcs8.b64
openssl pkey -in "$tmp/rsa_other.pem" -pubout -outform DER | base64 -w0 > rsa_other_public_spki.b64
openssl dgst -sha256 -sign "$tmp/rsa.pem" challenge.txt | base64 -w0 > rsa_sha256.sig.b64
openssl dgst -sha512 -sign "$tmp/rsa.pem" challenge.txt | base64 -w0 > rsa_sha512.sig.b64

# EC P-256 (ecc_secp256r1) key.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/ec.pem" 2>/dev/null
openssl pkey -in "$tmp/ec.pem" -pubout -outform DER | base64 -w0 > ec_public_spki.b64
# The uncompressed point 04||x||y is the last 65 bytes of the P-256 SPKI DER.
openssl pkey -in "$tmp/ec.pem" -pubout -outform DER | tail -c 65 | od -An -v -tx1 | tr -d ' \n' > ec_public.hex
openssl dgst -sha256 -sign "$tmp/ec.pem" challenge.txt > "$tmp/ec.sig.der"
# DER ECDSA-Sig-Value -> base64(ascii(hex(r) padded to 64 || hex(s) padded to 64)), as at_client does.
python3 - "$tmp/ec.sig.der" > ec_sha256.sig.b64 <<'PY'
import base64, sys
der = open(sys.argv[1], 'rb').read()
assert der[0] == 0x30
i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7f)
ints = []
for _ in range(2):
    assert der[i] == 0x02
    n = der[i + 1]
    ints.append(int.from_bytes(der[i + 2:i + 2 + n], 'big'))
    i += 2 + n
text = '%064x%064x' % tuple(ints)
sys.stdout.write(base64.b64encode(text.encode()).decode())
PY

# CRAM vector: lowercase hex SHA-512 of secret + challenge.
printf '%s' 'b26455a907582760ebf35bc4847de549bc41c24b25c8b1c58d5964f7b4f8a43bc55b0e9a601c9a9657d49ed55be3ef4a2b4b4bb5d4e5eb1c7b6b9d6c3c5ef364' > cram_secret.txt
printf '%s%s' "$(cat cram_secret.txt)" "$(cat challenge.txt)" | sha512sum | cut -d' ' -f1 | tr -d '\n' > cram_digest.hex
