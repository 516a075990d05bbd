//! Provisioning: creating an atSign on this node and registering it in the directory, and the
//! reverse. What `at-server provision|deprovision|list` run.
//!
//! A provisioned atSign is in the status lifecycle's *teapot* state: its server runs but its
//! owner has not onboarded. It gets a random CRAM secret (128 hex digits, as the reference's
//! are) for that onboarding, a uuid label for its TLS server name `<label>.<sni_domain>` (an
//! atSign may hold characters a DNS label cannot), and, when the node has a port range, a port
//! of its own. The directory entry points at whichever of the two clients will use: the SNI
//! name when `sni_domain` is set, otherwise `<public_host>:<port>`.

use std::collections::BTreeSet;

use at_common::metadata::now_ms;
use at_common::{Address, AtSign};
use ring::rand::{SecureRandom, SystemRandom};

use crate::config::ServerConfig;
use crate::store::{AtSignInfo, AtSignStatus, Store, StoreError};

/// Why provisioning could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{0} is already provisioned on this node")]
    Exists(AtSign),
    #[error("{0} is not provisioned on this node")]
    Missing(AtSign),
    #[error("every port of the range is taken ({0} atSigns)")]
    PortsExhausted(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("directory: {0}")]
    Directory(#[from] at_directory::store::StoreError),
    #[error("no randomness available")]
    Random,
}

/// What `provision` made, to hand to the atSign's owner.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub atsign: AtSign,
    pub cram_secret: String,
    pub address: Address,
    /// Its own port, when the node has a port range.
    pub port: Option<u16>,
}

/// Creates `atsign` on this node (teapot) and registers it in the directory.
pub async fn provision(
    config: &ServerConfig,
    store: &Store,
    directory: &at_directory::store::Store,
    atsign: &AtSign,
) -> Result<Provisioned, ProvisionError> {
    if store.get_atsign(atsign).await?.is_some() {
        return Err(ProvisionError::Exists(atsign.clone()));
    }
    let port = match config.port_range_start {
        0 => None,
        start => Some(free_port(store, start, config.port_range_len).await?),
    };
    let info = AtSignInfo {
        status: AtSignStatus::New,
        created_ms: now_ms(),
        sni_label: uuid::Uuid::new_v4().to_string(),
        cram_secret: Some(cram_secret()?),
        port,
        suspended: false,
    };
    let address = address_of(config, &info);
    store.create_atsign(atsign, &info).await?;
    directory.put(atsign, &address).await?;
    Ok(Provisioned {
        atsign: atsign.clone(),
        cram_secret: info.cram_secret.unwrap_or_default(),
        address,
        port,
    })
}

/// Removes `atsign` and all its data from this node, and from the directory.
pub async fn deprovision(
    store: &Store,
    directory: &at_directory::store::Store,
    atsign: &AtSign,
) -> Result<(), ProvisionError> {
    if !store.remove_atsign(atsign).await? {
        return Err(ProvisionError::Missing(atsign.clone()));
    }
    directory.remove(atsign).await?;
    Ok(())
}

/// Suspends `atsign` (its data kept, nothing served: see [`crate::suspension`]) or resumes
/// it. Whether it was already so is not an error: the command says what holds now.
pub async fn set_suspended(
    store: &Store,
    atsign: &AtSign,
    suspended: bool,
) -> Result<(), ProvisionError> {
    let Some(mut info) = store.get_atsign(atsign).await? else {
        return Err(ProvisionError::Missing(atsign.clone()));
    };
    if info.suspended != suspended {
        info.suspended = suspended;
        store.set_atsign_info(atsign, &info).await?;
    }
    Ok(())
}

/// What one atSign holds in the store (`at-server list --usage`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub keys: usize,
    /// Its keys' names and values, in bytes.
    pub bytes: u64,
    /// Notifications kept for it (received, not yet expired or deleted).
    pub notifications_received: usize,
    /// Notifications it sent that are kept (with their delivery status).
    pub notifications_sent: usize,
}

/// Reads `atsign`'s usage: every key and both notification logs, one read after another (an
/// operator's command, not for a hot path).
pub async fn usage(store: &Store, atsign: &AtSign) -> Result<Usage, StoreError> {
    use crate::store::NotificationLog;
    let mut usage = Usage::default();
    for key in store.keys(atsign, "").await? {
        usage.keys += 1;
        usage.bytes += key.len() as u64;
        if let Some(record) = store.get(atsign, &key).await? {
            usage.bytes += record.value.map_or(0, |v| v.len()) as u64;
        }
    }
    usage.notifications_received = store
        .notifications(atsign, NotificationLog::Received, None, usize::MAX)
        .await?
        .len();
    usage.notifications_sent = store
        .notifications(atsign, NotificationLog::Sent, None, usize::MAX)
        .await?
        .len();
    Ok(usage)
}

/// Where clients reach `info`'s atSign: its SNI name on the shared port, or its own port.
pub fn address_of(config: &ServerConfig, info: &AtSignInfo) -> Address {
    let text = match info.port {
        Some(port) if config.sni_domain.is_empty() => format!("{}:{port}", config.public_host),
        _ => format!(
            "{}.{}:{}",
            info.sni_label,
            config.sni_domain,
            config.shared_port()
        ),
    };
    // `ServerConfig::validate` checked public_host and sni_domain; a label is a uuid.
    Address::parse(&text).unwrap_or_else(|e| panic!("provisioned address {text:?}: {e}"))
}

/// The lowest port of the range no hosted atSign holds.
async fn free_port(store: &Store, start: u16, len: u16) -> Result<u16, ProvisionError> {
    let mut taken = BTreeSet::new();
    let hosted = store.list_atsigns().await?;
    for atsign in &hosted {
        if let Some(port) = store.get_atsign(atsign).await?.and_then(|i| i.port) {
            taken.insert(port);
        }
    }
    (0..len)
        .map(|i| start + i)
        .find(|port| !taken.contains(port))
        .ok_or(ProvisionError::PortsExhausted(hosted.len()))
}

/// 64 random bytes as 128 lowercase hex digits.
fn cram_secret() -> Result<String, ProvisionError> {
    let mut bytes = [0u8; 64];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ProvisionError::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
