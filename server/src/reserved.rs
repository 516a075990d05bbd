//! Key names with a meaning to the server: the keys it writes itself, the ones it protects from
//! deletion, and the ones clients rely on finding (docs/storage.md). Every such name is spelled
//! here and nowhere else.

use at_common::key::KeyKind;
use at_common::metadata::EpochMillis;
use at_common::AtSign;

/// The CRAM secret's key; deleting it disables CRAM.
pub const AT_SECRET: &str = "privatekey:at_secret";
/// Written when [`AT_SECRET`] is deleted (the reference's marker).
pub const AT_SECRET_DELETED: &str = "privatekey:at_secret_deleted";
/// The legacy PKAM public key (an enrollment's key is in its record instead).
pub const PKAM_PUBLIC_KEY: &str = "privatekey:at_pkam_publickey";
/// Set once both halves of the signing key pair are stored.
pub const SIGNING_KEYPAIR_GENERATED: &str = "privatekey:signing_keypair_generated";
/// The namespace of the server's enrollment bookkeeping.
pub const MANAGE_NAMESPACE: &str = "__manage";
/// The namespace of the events the server records for its owner (key changes of others).
pub const SERVER_NAMESPACE: &str = "__atserver";

/// `private:blocklist@me`: the atSigns `me` blocks.
pub fn blocklist(me: &AtSign) -> String {
    format!("private:blocklist{me}")
}

/// `@me:signing_privatekey@me`.
pub fn signing_private_key(me: &AtSign) -> String {
    format!("{me}:signing_privatekey{me}")
}

/// `public:signing_publickey@me`: what `pol` checks a peer's signature with.
pub fn signing_public_key(me: &AtSign) -> String {
    format!("public:signing_publickey{me}")
}

/// `public:publickey@me`: the encryption public key; its presence means "activated".
pub fn encryption_public_key(me: &AtSign) -> String {
    format!("public:publickey{me}")
}

/// The prefix of another atSign's cached encryption public key, `cached:public:publickey@other`.
pub const CACHED_ENCRYPTION_PUBLIC_KEY: &str = "cached:public:publickey";

/// `cached:public:publickey@other`.
pub fn cached_encryption_public_key(other: &AtSign) -> String {
    format!("{CACHED_ENCRYPTION_PUBLIC_KEY}{other}")
}

/// The key of enrollment `id`'s record; with an empty `id`, the suffix every record shares.
pub fn enrollment(id: &str, me: &AtSign) -> String {
    format!("{id}.new.enrollments.{MANAGE_NAMESPACE}{me}")
}

/// The encrypted default encryption private key an approver leaves an enrollment
/// ([`enrollment_secret`]).
pub const DEFAULT_ENC_PRIVATE_KEY: &str = "default_enc_private_key";
/// The encrypted default self-encryption key an approver leaves an enrollment.
pub const DEFAULT_SELF_ENC_KEY: &str = "default_self_enc_key";
/// Where the legacy pkam key waits while the enrollment whose key it is stays revoked.
pub const LEGACY_PKAM_KEY_ASIDE: &str = "legacy_pkam_publickey";
/// Every key kept beside an enrollment's record, under [`enrollment_secret`].
pub const ENROLLMENT_SECRETS: [&str; 3] = [
    DEFAULT_ENC_PRIVATE_KEY,
    DEFAULT_SELF_ENC_KEY,
    LEGACY_PKAM_KEY_ASIDE,
];

/// One of the keys kept beside enrollment `id`'s record (`name`: [`ENROLLMENT_SECRETS`]).
pub fn enrollment_secret(id: &str, name: &str, me: &AtSign) -> String {
    format!("{id}.{name}.{MANAGE_NAMESPACE}{me}")
}

/// The event recorded at `micros` (since the epoch) when another atSign's key changed.
pub fn key_change_event(micros: i64, me: &AtSign) -> String {
    format!("{micros}.events.{SERVER_NAMESPACE}{me}")
}

/// `shared_key.<other>@me`: the key `me` shares with `other` (`other_name` without its `@`).
pub fn shared_key(other_name: &str, me: &AtSign) -> String {
    format!("shared_key.{other_name}{me}")
}

/// What [`shared_key`] becomes when `other`'s encryption key changes at `now`.
pub fn retired_shared_key(other_name: &str, now: EpochMillis, me: &AtSign) -> String {
    format!("shared_key.{other_name}.until.{now}{me}")
}

/// The reference's protected keys: `public:signing_publickey@me`, `@me:signing_privatekey@me`,
/// `public:publickey@me` and `at_pkam_publickey` (as `privatekey:…` or as a key of `me`).
pub fn is_protected(kind: &KeyKind, name: &str, me: &AtSign) -> bool {
    match kind {
        KeyKind::PrivateKey => name == "at_pkam_publickey",
        KeyKind::Public | KeyKind::SelfKey => {
            matches!(
                name,
                "signing_publickey" | "publickey" | "signing_privatekey" | "at_pkam_publickey"
            )
        }
        KeyKind::Shared(with) => with == me && name == "signing_privatekey",
        KeyKind::Private | KeyKind::Local => false,
    }
}

/// Keys `sync` sends whatever its regex: shared keys, the encryption public key and public
/// keys outside any namespace (what a client needs to decrypt anything).
pub fn always_synced(key: &str) -> bool {
    key.starts_with("shared_key")
        || key.contains(":shared_key")
        || key.starts_with("public:publickey")
        || key
            .strip_prefix("public:")
            .is_some_and(|rest| !rest.split('@').next().unwrap_or(rest).contains('.'))
}

/// The reference's reserved keys (at_commons `KeyType.reservedKey`), which every authenticated
/// connection may use whatever its enrollment's namespaces: `privatekey:` keys of the server
/// (`at_pkam_publickey`, `at_secret`, …), `configkey`, internal `_` keys, and of an atSign
/// `private:blocklist`, `public:signing_publickey`, `@x:signing_privatekey`, `@x:shared_key`,
/// `public:publickey` and `shared_key.<other>`. `key` is the wire form, lower-cased.
pub fn is_reserved(key: &str) -> bool {
    const SERVER_PRIVATE: [&str; 10] = [
        "at_pkam_publickey",
        "at_pkam_privatekey",
        "privatekey",
        "self_encryption_key",
        "at_secret",
        "at_secret_deleted",
        "signing_keypair_generated",
        "commitlogcompactionstats",
        "accesslogcompactionstats",
        "notificationcompactionstats",
    ];
    if let Some(name) = key.strip_prefix("privatekey:") {
        return SERVER_PRIVATE.contains(&name);
    }
    if key == "configkey" || (key.starts_with('_') && !key.contains('@')) {
        return true;
    }
    let Some((before, _owner)) = key.rsplit_once('@') else {
        return false;
    };
    match before.split_once(':') {
        Some(("private", name)) => name == "blocklist",
        Some(("public", name)) => name == "signing_publickey" || name == "publickey",
        Some((with, name)) if with.starts_with('@') => {
            name == "signing_privatekey" || name == "shared_key"
        }
        Some(_) => false,
        None => before
            .strip_prefix("shared_key.")
            .is_some_and(|other| !other.is_empty() && !other.contains('.')),
    }
}

/// The `name` of the semi-permanent passcode among [`otp`] keys.
pub const SPP: &str = "spp";

/// `private:<name>.__otp@me`: an OTP (its lower-cased text as `name`) or, as [`SPP`], the
/// semi-permanent passcode.
pub fn otp(name: &str, me: &AtSign) -> String {
    format!("private:{name}.__otp{me}")
}

/// The reference's older form of an [`otp`] key, `private:<name>@me`, still read.
pub fn legacy_otp(name: &str, me: &AtSign) -> String {
    format!("private:{name}{me}")
}

/// The reserved keys that make up the atSign's identity rather than what it shares: the
/// server's `privatekey:` keys (the pkam key, the CRAM secret), the encryption and signing
/// keys, and the block list. [`is_reserved`] keys other than these are the shared keys.
pub fn is_identity(key: &str) -> bool {
    is_reserved(key)
        && (key.starts_with("privatekey:")
            || key.starts_with("public:publickey@")
            || key.starts_with("public:signing_publickey@")
            || key.starts_with("private:blocklist@")
            || key.contains(":signing_privatekey@"))
}
