//! Each hosted atSign's signing key pair, with which its server proves itself to other
//! atServers (`pol`, docs/authentication.md#signing-keys).
//!
//! RSA-2048, made by the server once per atSign, never by a client: the private key at
//! `@<me>:signing_privatekey@<me>` (base64 PKCS#8 DER), the public key at
//! `public:signing_publickey@<me>` (base64 DER SubjectPublicKeyInfo, what peers verify with),
//! then the marker `privatekey:signing_keypair_generated` = `true`, in that order. The
//! reference makes the pair when the atSign's server first starts; here it is made when the
//! atSign's owner first authenticates ([`ensure`], before the `cram`/`pkam` answer), or
//! before, the first time the atSign talks to another atServer. So the keys exist before any
//! client or peer of a live atSign can look for them, while provisioning thousands of atSigns
//! that nobody has logged into yet costs no key generation (RSA-2048 takes 0.1–0.6 s here).
//!
//! None of the three is committed (the reference's `skipCommit`): made by the server, they are
//! not the owner's changes, and keep the owner's commit ids as the owner's writes made them.
//!
//! The private key is written only if absent, in one atomic step: two nodes (or two links of
//! one node) making a pair at once keep one pair, and both sign with it. A missing marker means
//! an earlier attempt stopped after the private key; the public key is then derived again.

use at_common::auth::base64;
use at_common::error::{AtError, ErrorCode};
use at_common::metadata::{now_ms, Metadata, MetadataUpdate};
use at_common::AtSign;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rsa::RsaPrivateKey;

use crate::reserved::{self, SIGNING_KEYPAIR_GENERATED};
use crate::store::{Mutation, Record, Store};

/// The key size of the reference's signing keys.
const BITS: usize = 2048;
/// Makes `me`'s signing key pair if it has none yet; one read when it has.
pub async fn ensure(store: &Store, me: &AtSign) -> Result<(), AtError> {
    if store.get(me, SIGNING_KEYPAIR_GENERATED).await?.is_some() {
        return Ok(());
    }
    private_key(store, me).await.map(|_| ())
}

/// `me`'s signing private key as PKCS#8 DER, made and stored first if `me` has none yet.
pub async fn private_key(store: &Store, me: &AtSign) -> Result<Vec<u8>, AtError> {
    let name = reserved::signing_private_key(me);
    let marked = store.get(me, SIGNING_KEYPAIR_GENERATED).await?.is_some();
    if let (true, Some(stored)) = (marked, stored_value(store, me, &name).await?) {
        return decode(&stored);
    }
    if stored_value(store, me, &name).await?.is_none() {
        let fresh = tokio::task::spawn_blocking(generate)
            .await
            .map_err(|_| AtError::from(ErrorCode::InternalServerException))??;
        put_if_absent(store, me, &name, fresh).await?;
    }
    // Whichever pair won the race is the one kept; its public half is derived from it.
    let stored = stored_value(store, me, &name)
        .await?
        .ok_or_else(|| AtError::from(ErrorCode::InternalServerException))?;
    let der = decode(&stored)?;
    let public = public_of(&der)?;
    put(store, me, &reserved::signing_public_key(me), public).await?;
    put(store, me, SIGNING_KEYPAIR_GENERATED, "true".into()).await?;
    tracing::info!(%me, "made the atSign's signing key pair");
    Ok(der)
}

async fn stored_value(store: &Store, me: &AtSign, key: &str) -> Result<Option<String>, AtError> {
    Ok(store.get(me, key).await?.and_then(|record| record.value))
}

/// A new RSA-2048 private key, base64 PKCS#8 DER. Blocking: tens to hundreds of ms.
fn generate() -> Result<String, AtError> {
    let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, BITS).map_err(internal)?;
    let der = key.to_pkcs8_der().map_err(internal)?;
    Ok(base64::encode(der.as_bytes()))
}

/// The base64 SubjectPublicKeyInfo of a PKCS#8 RSA private key.
fn public_of(pkcs8_der: &[u8]) -> Result<String, AtError> {
    let key = RsaPrivateKey::from_pkcs8_der(pkcs8_der).map_err(internal)?;
    let spki = key.to_public_key().to_public_key_der().map_err(internal)?;
    Ok(base64::encode(spki.as_bytes()))
}

fn decode(stored: &str) -> Result<Vec<u8>, AtError> {
    base64::decode(stored.trim()).map_err(|_| {
        tracing::error!("the stored signing private key is not base64");
        AtError::from(ErrorCode::InternalServerException)
    })
}

fn internal(error: impl std::fmt::Display) -> AtError {
    tracing::error!(%error, "signing key pair");
    AtError::from(ErrorCode::InternalServerException)
}

/// Stores `value` under `key` unless the key holds a value already.
async fn put_if_absent(
    store: &Store,
    me: &AtSign,
    key: &str,
    value: String,
) -> Result<(), AtError> {
    let me_ = me.clone();
    store
        .modify(me, key, move |existing| {
            if existing.is_some_and(|r| r.value.is_some()) {
                return Ok(Mutation::Keep);
            }
            let record = Record {
                value: Some(value.clone()),
                metadata: Metadata::updated(None, &MetadataUpdate::default(), &me_, now_ms())?,
            };
            Ok(Mutation::Put { record, op: None })
        })
        .await?;
    Ok(())
}

/// Stores `value` under `key`, without a commit entry.
async fn put(store: &Store, me: &AtSign, key: &str, value: String) -> Result<(), AtError> {
    let me_ = me.clone();
    store
        .modify(me, key, move |existing| {
            let metadata = Metadata::updated(
                existing.map(|r| r.metadata.clone()),
                &MetadataUpdate::default(),
                &me_,
                now_ms(),
            )?;
            let record = Record {
                value: Some(value.clone()),
                metadata,
            };
            Ok(Mutation::Put { record, op: None })
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use at_common::auth::{sign_rsa_sha256_b64, verify_rsa_sha256_b64};

    use super::*;
    use crate::verbs::testing::fixture;

    #[tokio::test]
    async fn made_once_stored_as_the_reference_names_them_and_signatures_verify() {
        let f = fixture().await;
        let first = private_key(&f.store, &f.me).await.unwrap();
        let again = private_key(&f.store, &f.me).await.unwrap();
        assert_eq!(first, again, "the pair is made once");

        let stored = |key: String| {
            let store = f.store.clone();
            let me = f.me.clone();
            async move { store.get(&me, &key).await.unwrap().unwrap() }
        };
        let private = stored("@alice:signing_privatekey@alice".into()).await;
        assert_eq!(
            base64::decode(private.value.as_deref().unwrap()).unwrap(),
            first
        );
        let public = stored("public:signing_publickey@alice".into()).await;
        let marker = stored(SIGNING_KEYPAIR_GENERATED.into()).await;
        assert_eq!(marker.value.as_deref(), Some("true"));
        assert_eq!(public.metadata.created_by.as_ref(), Some(&f.me));

        let signature = sign_rsa_sha256_b64(&first, "a-challenge").unwrap();
        let key = public.value.unwrap();
        verify_rsa_sha256_b64(&key, "a-challenge", &signature).unwrap();
        assert!(verify_rsa_sha256_b64(&key, "another", &signature).is_err());
    }

    #[tokio::test]
    async fn a_pair_interrupted_before_its_public_half_is_completed_with_the_same_key() {
        let f = fixture().await;
        let der = private_key(&f.store, &f.me).await.unwrap();
        let public = f
            .store
            .get(&f.me, &reserved::signing_public_key(&f.me))
            .await
            .unwrap();
        // As if the first attempt had stopped right after storing the private key.
        for key in [
            reserved::signing_public_key(&f.me),
            SIGNING_KEYPAIR_GENERATED.to_string(),
        ] {
            f.store
                .modify(&f.me, &key, |_| Ok(Mutation::Remove { commit: false }))
                .await
                .unwrap();
        }
        assert_eq!(private_key(&f.store, &f.me).await.unwrap(), der);
        let again = f
            .store
            .get(&f.me, &reserved::signing_public_key(&f.me))
            .await
            .unwrap();
        assert_eq!(again.unwrap().value, public.unwrap().value);
    }
}
