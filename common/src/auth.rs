//! Authentication cryptography: the `cram` digest, `pkam` signature checks and the RSA
//! signatures of `pol`, as pure functions over `ring`.
//!
//! This module owns the exact algorithms of docs/authentication.md#cram,
//! docs/authentication.md#pkam and docs/authentication.md#pol, and nothing else: where the
//! secret, the challenge or the public key come from (the keystore, the connection's `from`) and
//! which error reply a failure becomes is the server's business.
//!
//! Every message here is the challenge exactly as the caller passes it: for `cram` and `pkam` the
//! `from` response without `data:` (`<sessionId><@atsign>:<uuid>`); for `pol` the caller trims
//! the challenge first, as the reference does.
//!
//! Secrets, digests and signatures never appear in an [`AuthError`] or in any log line.
//!
//! # Encodings
//! - RSA public keys: base64 of the DER SubjectPublicKeyInfo (crypton `RSAPublicKey.fromString`).
//! - RSA signatures: base64 of RSASSA-PKCS1-v1_5 over SHA-256 (default) or SHA-512.
//! - ECC (secp256r1) public keys: hex of the uncompressed point `04‖x‖y`; base64 DER
//!   SubjectPublicKeyInfo is accepted too.
//! - ECC signatures: base64 of the ASCII text `hex(r)` ‖ `hex(s)`, each left-padded to 64 digits;
//!   the digest is always SHA-256, whatever `hashingAlgo` says.
//! - base64 is the standard alphabet with padding ([`base64`]).

use ring::digest::{digest, SHA512};
use ring::rand::SystemRandom;
use ring::signature::{self, RsaKeyPair, UnparsedPublicKey, VerificationAlgorithm};

use crate::verb::{HashingAlgo, Pkam, SigningAlgo};

/// Why a signature could not be checked or made.
///
/// The messages name what was wrong, never the secret, key material or signature involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A base64 field (named by `what`) is not standard padded base64.
    #[error("{what} is not valid base64")]
    InvalidBase64 { what: &'static str },
    /// The stored public key cannot be read as a key of this algorithm.
    #[error("public key is not a valid {algo} public key")]
    InvalidPublicKey { algo: SigningAlgo },
    /// The signature decodes as base64 but not to the shape the algorithm needs.
    #[error("signature is not in the {algo} signature format")]
    MalformedSignature { algo: SigningAlgo },
    /// The signature is well formed but does not verify under the key.
    #[error("signature does not verify")]
    SignatureMismatch,
    /// The private key is not an RSA key in PKCS#8 DER.
    #[error("private key is not a valid RSA PKCS#8 key")]
    InvalidPrivateKey,
    /// `ring` refused to sign.
    #[error("signing failed")]
    SigningFailed,
}

/// The signature scheme a `pkam` without `signingAlgo:` uses.
pub const DEFAULT_SIGNING_ALGO: SigningAlgo = SigningAlgo::Rsa2048;
/// The digest a `pkam` without `hashingAlgo:` uses.
pub const DEFAULT_HASHING_ALGO: HashingAlgo = HashingAlgo::Sha256;

/// The `cram` digest: lowercase hex SHA-512 of the UTF-8 text `secret + challenge`.
///
/// `challenge` is the `from` response without `data:`, i.e. `<sessionId><@atsign>:<uuid>`.
pub fn cram_digest(secret: &str, challenge: &str) -> String {
    let mut input = String::with_capacity(secret.len() + challenge.len());
    input.push_str(secret);
    input.push_str(challenge);
    hex_encode(digest(&SHA512, input.as_bytes()).as_ref())
}

/// Whether `digest_from_client` is the `cram` digest of `secret` and `challenge`.
///
/// The comparison is exact (the reference compares strings, and clients send lowercase hex), so
/// an uppercase digest is refused, and it takes the same time wherever the first difference is.
pub fn verify_cram(secret: &str, challenge: &str, digest_from_client: &str) -> bool {
    let expected = cram_digest(secret, challenge);
    constant_time_eq(expected.as_bytes(), digest_from_client.as_bytes())
}

/// Checks the signature of a `pkam` command, applying the defaults for absent prefixes.
///
/// `public_key` is the key the server holds for the signer (`privatekey:at_pkam_publickey`, or
/// the enrollment's `apkamPublicKey`).
pub fn verify_pkam_command(
    public_key: &str,
    pkam: &Pkam,
    challenge: &str,
) -> Result<(), AuthError> {
    verify_pkam(
        public_key,
        pkam.signing_algo.unwrap_or(DEFAULT_SIGNING_ALGO),
        pkam.hashing_algo.unwrap_or(DEFAULT_HASHING_ALGO),
        challenge,
        &pkam.signature,
    )
}

/// Checks a `pkam` signature of `challenge` under `public_key` (docs/authentication.md#pkam).
///
/// # Errors
/// [`AuthError::InvalidPublicKey`] when the key is not of `algo`; [`AuthError::InvalidBase64`] or
/// [`AuthError::MalformedSignature`] when the signature cannot be decoded;
/// [`AuthError::SignatureMismatch`] when it is well formed but wrong.
pub fn verify_pkam(
    public_key: &str,
    algo: SigningAlgo,
    hash: HashingAlgo,
    challenge: &str,
    signature_b64: &str,
) -> Result<(), AuthError> {
    match algo {
        SigningAlgo::Rsa2048 => verify_rsa(public_key, hash, challenge, signature_b64),
        SigningAlgo::EccSecp256r1 => verify_ecc(public_key, challenge, signature_b64),
    }
}

/// Checks a base64 RSASSA-PKCS1-v1_5 SHA-256 signature of `message` under a base64 DER
/// SubjectPublicKeyInfo: the `pol` check (docs/authentication.md#pol, step 7).
pub fn verify_rsa_sha256_b64(
    public_key_spki_b64: &str,
    message: &str,
    signature_b64: &str,
) -> Result<(), AuthError> {
    verify_rsa(
        public_key_spki_b64,
        HashingAlgo::Sha256,
        message,
        signature_b64,
    )
}

/// Signs `message` with RSASSA-PKCS1-v1_5 SHA-256 and returns the signature in base64: how a
/// server answers a `pol` challenge with its signing key (docs/authentication.md#pol, step 4).
///
/// `pkcs8_der` is the private key as PKCS#8 DER (the base64-decoded `.atKeys` / keystore form).
/// PKCS#1 v1.5 signatures are deterministic, so the output equals any other implementation's.
pub fn sign_rsa_sha256_b64(pkcs8_der: &[u8], message: &str) -> Result<String, AuthError> {
    let key_pair = RsaKeyPair::from_pkcs8(pkcs8_der).map_err(|_| AuthError::InvalidPrivateKey)?;
    let mut signature = vec![0; key_pair.public().modulus_len()];
    key_pair
        .sign(
            &signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            message.as_bytes(),
            &mut signature,
        )
        .map_err(|_| AuthError::SigningFailed)?;
    Ok(base64::encode(&signature))
}

fn verify_rsa(
    public_key_spki_b64: &str,
    hash: HashingAlgo,
    message: &str,
    signature_b64: &str,
) -> Result<(), AuthError> {
    let bad_key = AuthError::InvalidPublicKey {
        algo: SigningAlgo::Rsa2048,
    };
    let spki = base64::decode(public_key_spki_b64).map_err(|_| bad_key.clone())?;
    let pkcs1 = der::spki_key(&spki, |alg_id| {
        der::expect(alg_id, der::OID).is_some_and(|(oid, _)| oid == der::OID_RSA_ENCRYPTION)
    })
    .ok_or(bad_key)?;
    let signature = decode_signature(signature_b64)?;
    let algorithm: &dyn VerificationAlgorithm = match hash {
        HashingAlgo::Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        HashingAlgo::Sha512 => &signature::RSA_PKCS1_2048_8192_SHA512,
    };
    // ring reports a malformed key and a wrong signature alike; both mean "not this signer".
    UnparsedPublicKey::new(algorithm, pkcs1)
        .verify(message.as_bytes(), &signature)
        .map_err(|_| AuthError::SignatureMismatch)
}

fn verify_ecc(public_key: &str, message: &str, signature_b64: &str) -> Result<(), AuthError> {
    const ALGO: SigningAlgo = SigningAlgo::EccSecp256r1;
    let point = ecc_public_point(public_key).ok_or(AuthError::InvalidPublicKey { algo: ALGO })?;
    let text = decode_signature(signature_b64)?;
    // base64 of the ASCII hex of r‖s, each padded to 64 digits: 128 hex digits, 64 bytes.
    let r_s = std::str::from_utf8(&text)
        .ok()
        .filter(|hex| hex.len() == 128)
        .and_then(hex_decode)
        .ok_or(AuthError::MalformedSignature { algo: ALGO })?;
    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
        .verify(message.as_bytes(), &r_s)
        .map_err(|_| AuthError::SignatureMismatch)
}

/// The uncompressed P-256 point of an ECC public key given as hex, or as base64 DER SPKI.
fn ecc_public_point(public_key: &str) -> Option<Vec<u8>> {
    let text = public_key.trim();
    let point = if text.len() == 130 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex_decode(text)?
    } else {
        let spki = base64::decode(text).ok()?;
        der::spki_key(&spki, |alg_id| {
            let Some((oid, rest)) = der::expect(alg_id, der::OID) else {
                return false;
            };
            oid == der::OID_EC_PUBLIC_KEY
                && der::expect(rest, der::OID)
                    .is_some_and(|(curve, _)| curve == der::OID_PRIME256V1)
        })?
        .to_vec()
    };
    (point.len() == 65 && point[0] == 0x04).then_some(point)
}

fn decode_signature(signature_b64: &str) -> Result<Vec<u8>, AuthError> {
    base64::decode(signature_b64).map_err(|_| AuthError::InvalidBase64 { what: "signature" })
}

/// Compares two byte strings in time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Decodes hex in either case; `None` on an odd length or a non-hex digit.
fn hex_decode(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        char::from(c).to_digit(16).map(|d| d as u8)
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

/// Just enough DER to find the key inside a SubjectPublicKeyInfo.
mod der {
    pub(super) const SEQUENCE: u8 = 0x30;
    pub(super) const BIT_STRING: u8 = 0x03;
    pub(super) const OID: u8 = 0x06;
    /// 1.2.840.113549.1.1.1
    pub(super) const OID_RSA_ENCRYPTION: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// 1.2.840.10045.2.1
    pub(super) const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// 1.2.840.10045.3.1.7 (secp256r1)
    pub(super) const OID_PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

    /// Reads one TLV with the expected single-byte tag: `(contents, rest)`. Definite lengths only.
    pub(super) fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&found, input) = input.split_first()?;
        if found != tag {
            return None;
        }
        let (&first, mut input) = input.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || input.len() < count {
                return None;
            }
            let (len_bytes, rest) = input.split_at(count);
            input = rest;
            len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        (input.len() >= len).then(|| input.split_at(len))
    }

    /// `SEQUENCE { algorithm SEQUENCE, subjectPublicKey BIT STRING }`: the key bytes, if
    /// `algorithm_ok` accepts the contents of the algorithm identifier and nothing trails.
    pub(super) fn spki_key(spki: &[u8], algorithm_ok: impl Fn(&[u8]) -> bool) -> Option<&[u8]> {
        let (body, trailing) = expect(spki, SEQUENCE)?;
        let (alg_id, rest) = expect(body, SEQUENCE)?;
        let (bits, rest) = expect(rest, BIT_STRING)?;
        if !trailing.is_empty() || !rest.is_empty() || !algorithm_ok(alg_id) {
            return None;
        }
        // The first content byte counts the unused bits of the last byte: a key has none.
        match bits.split_first()? {
            (0, key) if !key.is_empty() => Some(key),
            _ => None,
        }
    }
}

/// Standard base64 (RFC 4648 §4): the `+/` alphabet with `=` padding.
///
/// Decoding trims surrounding ASCII whitespace and is otherwise strict: the length must be a
/// multiple of four, padding is required, and the unused bits before the padding must be zero,
/// so each byte string has exactly one accepted text. Every SDK encoder emits this form.
pub mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    /// The text is not standard padded base64.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
    #[error("invalid base64")]
    pub struct InvalidBase64;

    /// Encodes `bytes` as padded standard base64.
    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 0x3f) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// Decodes padded standard base64, ignoring surrounding whitespace.
    pub fn decode(text: &str) -> Result<Vec<u8>, InvalidBase64> {
        let text = text.trim_ascii().as_bytes();
        if !text.len().is_multiple_of(4) {
            return Err(InvalidBase64);
        }
        let padding = text.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 {
            return Err(InvalidBase64);
        }
        let mut out = Vec::with_capacity(text.len() / 4 * 3);
        let quads = text.len() / 4;
        for (index, quad) in text.chunks_exact(4).enumerate() {
            let pad = if index + 1 == quads { padding } else { 0 };
            let mut n = 0u32;
            for &c in &quad[..4 - pad] {
                n = n << 6 | u32::from(value(c).ok_or(InvalidBase64)?);
            }
            n <<= 6 * pad;
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            let keep = 3 - pad;
            if bytes[keep..].iter().any(|&b| b != 0) {
                return Err(InvalidBase64);
            }
            out.extend_from_slice(&bytes[..keep]);
        }
        Ok(out)
    }

    fn value(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHALLENGE: &str = include_str!("../testdata/auth/challenge.txt");
    const CRAM_SECRET: &str = include_str!("../testdata/auth/cram_secret.txt");
    const CRAM_DIGEST: &str = include_str!("../testdata/auth/cram_digest.hex");
    const RSA_PUBLIC: &str = include_str!("../testdata/auth/rsa_public_spki.b64");
    const RSA_OTHER_PUBLIC: &str = include_str!("../testdata/auth/rsa_other_public_spki.b64");
    const RSA_PRIVATE_PKCS8: &str = include_str!("../testdata/auth/rsa_private_pkcs8.b64");
    const RSA_SHA256_SIG: &str = include_str!("../testdata/auth/rsa_sha256.sig.b64");
    const RSA_SHA512_SIG: &str = include_str!("../testdata/auth/rsa_sha512.sig.b64");
    const EC_PUBLIC_HEX: &str = include_str!("../testdata/auth/ec_public.hex");
    const EC_PUBLIC_SPKI: &str = include_str!("../testdata/auth/ec_public_spki.b64");
    const EC_SHA256_SIG: &str = include_str!("../testdata/auth/ec_sha256.sig.b64");

    const RSA: SigningAlgo = SigningAlgo::Rsa2048;
    const ECC: SigningAlgo = SigningAlgo::EccSecp256r1;
    const SHA256: HashingAlgo = HashingAlgo::Sha256;
    const SHA512: HashingAlgo = HashingAlgo::Sha512;

    /// Flips one base64 digit in the middle, keeping the text valid base64.
    fn tamper(b64: &str) -> String {
        let mut bytes = b64.trim().as_bytes().to_vec();
        let mid = bytes.len() / 2;
        bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    }

    /// Whether `text` is a lowercase UUID (`8-4-4-4-12` hex digits), as the server's session
    /// ids and nonces are.
    fn is_uuid(text: &str) -> bool {
        let groups: Vec<&str> = text.split('-').collect();
        groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
            && groups.iter().all(|g| {
                g.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The vectors `generate.sh` made agree with each other and with the protocol, so a
    /// regenerated or hand-edited file that breaks one is caught here rather than as a
    /// puzzling verification failure elsewhere.
    #[test]
    fn test_vectors_are_consistent_with_each_other_and_the_protocol() {
        // The challenge is a `from` response without `data:`: `_<uuid>@alice:<uuid>`, no newline.
        let (session, nonce) = CHALLENGE
            .split_once("@alice:")
            .expect("<session>@alice:<nonce>");
        let session = session
            .strip_prefix('_')
            .expect("the session id starts with _");
        assert!(
            is_uuid(session) && is_uuid(nonce),
            "{CHALLENGE:?}: session and nonce are UUIDs"
        );

        // The CRAM digest: 128 lowercase hex digits (SHA-512).
        assert_eq!(CRAM_DIGEST.len(), 128);
        assert!(CRAM_DIGEST
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));

        // The EC hex key is the uncompressed point `04‖x‖y` that ends the SPKI.
        let spki = base64::decode(EC_PUBLIC_SPKI).expect("EC SPKI base64");
        let point = &spki[spki.len() - 65..];
        assert_eq!(point[0], 0x04, "uncompressed point");
        assert_eq!(EC_PUBLIC_HEX.trim(), hex(point));

        // The RSA private key is the public key's pair, 2048 bits; the other key is another.
        let pkcs8 = base64::decode(RSA_PRIVATE_PKCS8).expect("PKCS#8 base64");
        let pair = RsaKeyPair::from_pkcs8(&pkcs8).expect("an RSA key pair");
        assert_eq!(pair.public().modulus_len(), 256, "RSA-2048");
        let public = base64::decode(RSA_PUBLIC).expect("SPKI base64");
        assert!(
            public.ends_with(pair.public().as_ref()),
            "the SPKI holds the private key's public half"
        );
        let other = base64::decode(RSA_OTHER_PUBLIC).expect("SPKI base64");
        assert_ne!(other, public);
        assert!(!other.ends_with(pair.public().as_ref()));

        // Signatures are RSA-2048 sized (256 bytes), the EC one is ASCII hex r‖s (128 digits).
        for sig in [RSA_SHA256_SIG, RSA_SHA512_SIG] {
            assert_eq!(base64::decode(sig).expect("signature base64").len(), 256);
        }
        let ec_sig = base64::decode(EC_SHA256_SIG).expect("EC signature base64");
        assert_eq!(ec_sig.len(), 128);
        assert!(ec_sig.iter().all(u8::is_ascii_hexdigit));
    }

    #[test]
    fn cram_digest_matches_sha512sum_of_secret_then_challenge() {
        assert_eq!(cram_digest(CRAM_SECRET, CHALLENGE), CRAM_DIGEST);
    }

    #[test]
    fn cram_digest_of_empty_input_is_sha512_of_nothing() {
        assert_eq!(
            cram_digest("", ""),
            "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce\
             47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
        );
    }

    #[test]
    fn verify_cram_accepts_the_lowercase_digest() {
        assert!(verify_cram(CRAM_SECRET, CHALLENGE, CRAM_DIGEST));
    }

    #[test]
    fn verify_cram_refuses_wrong_secret_challenge_case_or_length() {
        assert!(!verify_cram("not-the-secret", CHALLENGE, CRAM_DIGEST));
        assert!(!verify_cram(
            CRAM_SECRET,
            "_other@alice:challenge",
            CRAM_DIGEST
        ));
        assert!(!verify_cram(
            CRAM_SECRET,
            CHALLENGE,
            &CRAM_DIGEST.to_uppercase()
        ));
        assert!(!verify_cram(CRAM_SECRET, CHALLENGE, &CRAM_DIGEST[..127]));
        assert!(!verify_cram(CRAM_SECRET, CHALLENGE, ""));
    }

    #[test]
    fn constant_time_eq_compares_whole_slices() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn pkam_accepts_openssl_rsa_sha256_signature() {
        assert_eq!(
            verify_pkam(RSA_PUBLIC, RSA, SHA256, CHALLENGE, RSA_SHA256_SIG),
            Ok(())
        );
    }

    #[test]
    fn pkam_accepts_openssl_rsa_sha512_signature() {
        assert_eq!(
            verify_pkam(RSA_PUBLIC, RSA, SHA512, CHALLENGE, RSA_SHA512_SIG),
            Ok(())
        );
    }

    #[test]
    fn pkam_refuses_rsa_signature_checked_with_the_other_hash() {
        assert_eq!(
            verify_pkam(RSA_PUBLIC, RSA, SHA512, CHALLENGE, RSA_SHA256_SIG),
            Err(AuthError::SignatureMismatch)
        );
        assert_eq!(
            verify_pkam(RSA_PUBLIC, RSA, SHA256, CHALLENGE, RSA_SHA512_SIG),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn pkam_refuses_rsa_signature_of_a_tampered_challenge() {
        let tampered = CHALLENGE.replace("@alice:", "@alicf:");
        assert_eq!(
            verify_pkam(RSA_PUBLIC, RSA, SHA256, &tampered, RSA_SHA256_SIG),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn pkam_refuses_tampered_rsa_signature() {
        assert_eq!(
            verify_pkam(RSA_PUBLIC, RSA, SHA256, CHALLENGE, &tamper(RSA_SHA256_SIG)),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn pkam_refuses_rsa_signature_under_another_key() {
        assert_eq!(
            verify_pkam(RSA_OTHER_PUBLIC, RSA, SHA256, CHALLENGE, RSA_SHA256_SIG),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn pkam_refuses_garbage_base64_signature() {
        for garbage in ["not base64!", "abc", "ab=c", "A===", ""] {
            let got = verify_pkam(RSA_PUBLIC, RSA, SHA256, CHALLENGE, garbage);
            assert!(got.is_err(), "{garbage:?}");
        }
        assert_eq!(
            verify_pkam(RSA_PUBLIC, RSA, SHA256, CHALLENGE, "***"),
            Err(AuthError::InvalidBase64 { what: "signature" })
        );
        assert_eq!(
            verify_pkam(EC_PUBLIC_HEX, ECC, SHA256, CHALLENGE, "***"),
            Err(AuthError::InvalidBase64 { what: "signature" })
        );
    }

    #[test]
    fn pkam_refuses_a_public_key_that_is_not_rsa_spki() {
        let bad = AuthError::InvalidPublicKey { algo: RSA };
        for key in [
            "",
            "not a key",
            EC_PUBLIC_SPKI,
            EC_PUBLIC_HEX,
            &base64::encode(b"0\x03\x02\x01\x00"),
        ] {
            assert_eq!(
                verify_pkam(key, RSA, SHA256, CHALLENGE, RSA_SHA256_SIG),
                Err(bad.clone()),
                "{key:?}"
            );
        }
    }

    #[test]
    fn pkam_accepts_openssl_ecc_signature_with_hex_key() {
        assert_eq!(
            verify_pkam(EC_PUBLIC_HEX, ECC, SHA256, CHALLENGE, EC_SHA256_SIG),
            Ok(())
        );
    }

    #[test]
    fn pkam_ecc_ignores_hashing_algo_as_the_reference_does() {
        assert_eq!(
            verify_pkam(EC_PUBLIC_HEX, ECC, SHA512, CHALLENGE, EC_SHA256_SIG),
            Ok(())
        );
    }

    #[test]
    fn pkam_accepts_ecc_signature_with_spki_or_uppercase_hex_key() {
        assert_eq!(
            verify_pkam(EC_PUBLIC_SPKI, ECC, SHA256, CHALLENGE, EC_SHA256_SIG),
            Ok(())
        );
        let upper = EC_PUBLIC_HEX.to_uppercase();
        assert_eq!(
            verify_pkam(&upper, ECC, SHA256, CHALLENGE, EC_SHA256_SIG),
            Ok(())
        );
    }

    #[test]
    fn pkam_refuses_ecc_signature_of_a_tampered_challenge() {
        let tampered = CHALLENGE.replace("@alice:", "@alicf:");
        assert_eq!(
            verify_pkam(EC_PUBLIC_HEX, ECC, SHA256, &tampered, EC_SHA256_SIG),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn pkam_refuses_tampered_ecc_signature() {
        // Change one hex digit of r‖s and re-encode, so the shape stays right.
        let text = base64::decode(EC_SHA256_SIG).unwrap();
        let mut hex = String::from_utf8(text).unwrap();
        let flipped = if hex.as_bytes()[10] == b'0' { "1" } else { "0" };
        hex.replace_range(10..11, flipped);
        let tampered = base64::encode(hex.as_bytes());
        assert_eq!(
            verify_pkam(EC_PUBLIC_HEX, ECC, SHA256, CHALLENGE, &tampered),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn pkam_refuses_ecc_signature_not_in_hex_text_form() {
        let malformed = AuthError::MalformedSignature { algo: ECC };
        let raw_r_s =
            hex_decode(std::str::from_utf8(&base64::decode(EC_SHA256_SIG).unwrap()).unwrap())
                .unwrap();
        for sig in [
            base64::encode(&raw_r_s),
            base64::encode(&[b'z'; 128]),
            base64::encode(&[b'0'; 126]),
            RSA_SHA256_SIG.to_string(),
        ] {
            assert_eq!(
                verify_pkam(EC_PUBLIC_HEX, ECC, SHA256, CHALLENGE, &sig),
                Err(malformed.clone())
            );
        }
    }

    #[test]
    fn pkam_refuses_ecc_with_an_rsa_or_malformed_key() {
        let bad = AuthError::InvalidPublicKey { algo: ECC };
        let compressed = format!("02{}", &EC_PUBLIC_HEX[2..66]);
        let not_a_point = format!("05{}", &EC_PUBLIC_HEX[2..]);
        for key in [
            RSA_PUBLIC,
            "",
            "04",
            compressed.as_str(),
            not_a_point.as_str(),
        ] {
            assert_eq!(
                verify_pkam(key, ECC, SHA256, CHALLENGE, EC_SHA256_SIG),
                Err(bad.clone()),
                "{key:?}"
            );
        }
    }

    #[test]
    fn pkam_refuses_signature_made_for_the_other_algorithm() {
        assert!(verify_pkam(RSA_PUBLIC, ECC, SHA256, CHALLENGE, RSA_SHA256_SIG).is_err());
        assert!(verify_pkam(EC_PUBLIC_HEX, RSA, SHA256, CHALLENGE, EC_SHA256_SIG).is_err());
        assert!(verify_pkam(EC_PUBLIC_SPKI, RSA, SHA256, CHALLENGE, EC_SHA256_SIG).is_err());
    }

    #[test]
    fn pkam_command_defaults_to_rsa_sha256() {
        let pkam = Pkam::parse(RSA_SHA256_SIG).unwrap();
        assert_eq!(verify_pkam_command(RSA_PUBLIC, &pkam, CHALLENGE), Ok(()));
        let pkam = Pkam::parse(&format!(
            "signingAlgo:rsa2048:hashingAlgo:sha512:{RSA_SHA512_SIG}"
        ))
        .unwrap();
        assert_eq!(verify_pkam_command(RSA_PUBLIC, &pkam, CHALLENGE), Ok(()));
        let pkam = Pkam::parse(&format!(
            "signingAlgo:ecc_secp256r1:hashingAlgo:sha256:enrollmentId:abc-123:{EC_SHA256_SIG}"
        ))
        .unwrap();
        assert_eq!(verify_pkam_command(EC_PUBLIC_HEX, &pkam, CHALLENGE), Ok(()));
    }

    #[test]
    fn pol_check_accepts_openssl_signature_and_refuses_others() {
        assert_eq!(
            verify_rsa_sha256_b64(RSA_PUBLIC, CHALLENGE, RSA_SHA256_SIG),
            Ok(())
        );
        assert_eq!(
            verify_rsa_sha256_b64(RSA_OTHER_PUBLIC, CHALLENGE, RSA_SHA256_SIG),
            Err(AuthError::SignatureMismatch)
        );
        assert_eq!(
            verify_rsa_sha256_b64(RSA_PUBLIC, CHALLENGE, RSA_SHA512_SIG),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn sign_rsa_sha256_equals_openssl_signature() {
        let pkcs8 = base64::decode(RSA_PRIVATE_PKCS8).unwrap();
        let signature = sign_rsa_sha256_b64(&pkcs8, CHALLENGE).unwrap();
        assert_eq!(signature, RSA_SHA256_SIG.trim());
        assert_eq!(
            verify_rsa_sha256_b64(RSA_PUBLIC, CHALLENGE, &signature),
            Ok(())
        );
    }

    #[test]
    fn sign_rsa_sha256_refuses_a_key_that_is_not_pkcs8() {
        assert_eq!(
            sign_rsa_sha256_b64(b"not a key", CHALLENGE),
            Err(AuthError::InvalidPrivateKey)
        );
        let spki = base64::decode(RSA_PUBLIC).unwrap();
        assert_eq!(
            sign_rsa_sha256_b64(&spki, CHALLENGE),
            Err(AuthError::InvalidPrivateKey)
        );
    }

    #[test]
    fn auth_errors_never_show_the_signature_or_key() {
        let errors = [
            verify_pkam(RSA_PUBLIC, RSA, SHA256, CHALLENGE, &tamper(RSA_SHA256_SIG)),
            verify_pkam(RSA_PUBLIC, RSA, SHA256, CHALLENGE, "%%%%"),
            verify_pkam("Zm9v", RSA, SHA256, CHALLENGE, RSA_SHA256_SIG),
            verify_pkam(EC_PUBLIC_HEX, ECC, SHA256, CHALLENGE, RSA_SHA256_SIG),
        ];
        for error in errors {
            let error = error.unwrap_err();
            for shown in [error.to_string(), format!("{error:?}")] {
                assert!(
                    !shown.contains("Zm9v") && !shown.contains("%%%%"),
                    "{shown}"
                );
                assert!(!shown.contains(&RSA_SHA256_SIG[..16]), "{shown}");
                assert!(!shown.contains(&RSA_PUBLIC[40..56]), "{shown}");
            }
        }
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let vectors: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64::encode(plain), encoded);
            assert_eq!(base64::decode(encoded).as_deref(), Ok(plain));
        }
    }

    #[test]
    fn base64_round_trips_every_byte_and_length() {
        let all: Vec<u8> = (0..=255).collect();
        for len in 0..all.len() {
            let encoded = base64::encode(&all[..len]);
            assert_eq!(base64::decode(&encoded).unwrap(), &all[..len]);
        }
        assert_eq!(base64::encode(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    #[test]
    fn base64_decode_trims_surrounding_whitespace_only() {
        assert_eq!(base64::decode(" Zm9v\r\n").unwrap(), b"foo");
        assert_eq!(base64::decode("Zm9v\n"), Ok(b"foo".to_vec()));
        assert_eq!(base64::decode("Zm 9v"), Err(base64::InvalidBase64));
        assert_eq!(base64::decode("Zm9v\nYmFy"), Err(base64::InvalidBase64));
    }

    #[test]
    fn base64_decode_is_strict() {
        for bad in [
            "Zg",
            "Zg=",
            "Zm8",
            "Z===",
            "====",
            "Zg==Zm9v",
            "Zm=v",
            "Zm9v-_==",
            "Zh==",
            "Zm9=",
            "Zm9vé===",
        ] {
            assert_eq!(base64::decode(bad), Err(base64::InvalidBase64), "{bad:?}");
        }
    }

    #[test]
    fn hex_helpers_round_trip() {
        assert_eq!(hex_encode(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex_decode("000fA0fF"), Some(vec![0x00, 0x0f, 0xa0, 0xff]));
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
    }
}
