//! Checking a `pol`: the connection's client said `from:@bob` and got a challenge; now it says
//! `pol`, claiming to be @bob's server. @bob's server must have left its signature of the
//! challenge at `public:<sessionId>@bob`, verifiable with `public:signing_publickey@bob`
//! (docs/authentication.md#pol, steps 6 and 7).
//!
//! Both keys are read where @bob lives: from the store when @bob is hosted on this cluster,
//! else over a new unauthenticated connection to @bob's server, found through the directory
//! (not the connection the claim came in on, which anyone could have opened). Each step is
//! bounded by the peer timeout.

use at_common::auth;
use at_common::AtSign;
use at_directory::client;

use super::{PeerError, Peers, MAX_REPLY};

/// Whether `claimant`'s server signed `nonce` for the session `session_id`. `Err` when that
/// could not be found out (directory or server unreachable, store failing).
pub async fn verify(
    peers: &Peers,
    claimant: &AtSign,
    session_id: &str,
    nonce: &str,
) -> Result<bool, PeerError> {
    let proof_key = format!("{session_id}{claimant}");
    let (signature, public_key) = if peers.store().get_atsign(claimant).await?.is_some() {
        let store = peers.store();
        let read = |key: String| async move {
            Ok::<_, PeerError>(store.get(claimant, &key).await?.and_then(|r| r.value))
        };
        (
            read(format!("public:{proof_key}")).await?,
            read(crate::reserved::signing_public_key(claimant)).await?,
        )
    } else {
        ask_remote(peers, claimant, &proof_key).await?
    };
    let (Some(signature), Some(public_key)) = (signature, public_key) else {
        tracing::info!(%claimant, "pol: no signature or no signing key to check it with");
        return Ok(false);
    };
    Ok(auth::verify_rsa_sha256_b64(&public_key, nonce, &signature).is_ok())
}

/// The signature and signing public key, as `claimant`'s server answers unauthenticated
/// lookups of them; `None` for each it does not have.
async fn ask_remote(
    peers: &Peers,
    claimant: &AtSign,
    proof_key: &str,
) -> Result<(Option<String>, Option<String>), PeerError> {
    let address = peers.locate(claimant).await?;
    let what = format!("{claimant}'s atServer");
    tracing::debug!(%claimant, %address, "checking a pol with the claimant's atServer");
    let tls = peers.settings().tls.clone();
    let mut conversation = peers
        .bounded(&what, client::connect(&tls, &address, MAX_REPLY))
        .await?;
    let signature = peers
        .bounded(&what, conversation.ask(&format!("lookup:{proof_key}")))
        .await?;
    let public_key = peers
        .bounded(
            &what,
            conversation.ask(&format!("lookup:signing_publickey{claimant}")),
        )
        .await?;
    conversation.close(b"exit\n").await;
    let value = |reply: String| {
        reply
            .strip_prefix("data:")
            .filter(|v| !v.is_empty() && *v != "null")
            .map(str::to_string)
    };
    Ok((value(signature), value(public_key)))
}
