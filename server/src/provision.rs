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
use futures_util::StreamExt;
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
    /// A store or directory failure shared by every atSign of a batch, as text.
    #[error("{0}")]
    Failed(String),
    #[error("no randomness available")]
    Random,
}

impl ProvisionError {
    /// The same failure, for each atSign of a batch it stopped (store and directory errors
    /// are not `Clone`; their text is what each result reports).
    fn again(&self) -> ProvisionError {
        match self {
            ProvisionError::Exists(a) => ProvisionError::Exists(a.clone()),
            ProvisionError::Missing(a) => ProvisionError::Missing(a.clone()),
            ProvisionError::PortsExhausted(n) => ProvisionError::PortsExhausted(*n),
            ProvisionError::Random => ProvisionError::Random,
            other => ProvisionError::Failed(other.to_string()),
        }
    }
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

/// The most atSigns one request provisions: a batch's results are held in memory and sent
/// back in one answer (about 250 bytes each). `--from-file` sends a longer list in batches.
pub const BATCH_MAX: usize = 1000;

/// How many of a batch's creates are in flight at once: enough for the embedded store's writer
/// to make them durable in a few group commits (one fsync each), or to fill a Redis pipeline.
const IN_FLIGHT: usize = 256;

/// Creates `atsign` on this node (teapot) and registers it in the directory.
pub async fn provision(
    config: &ServerConfig,
    store: &Store,
    directory: &at_directory::store::Store,
    atsign: &AtSign,
) -> Result<Provisioned, ProvisionError> {
    let done = provision_many(config, store, directory, std::slice::from_ref(atsign)).await;
    done.into_iter().next().expect("one result per atSign")
}

/// Provisions each of `atsigns` (at most [`BATCH_MAX`] are expected) as [`provision`] does,
/// with one result each, in order: one failing does not stop the others. The costs are paid
/// once per batch: the port range's free ports found in one pass, the creates written
/// concurrently (sharing fsyncs), the directory entries registered in one write. An atSign
/// created whose directory entry then cannot be written is removed again, so provisioning it
/// can simply be retried.
pub async fn provision_many(
    config: &ServerConfig,
    store: &Store,
    directory: &at_directory::store::Store,
    atsigns: &[AtSign],
) -> Vec<Result<Provisioned, ProvisionError>> {
    let mut ports = match FreePorts::of(config, store).await {
        Ok(ports) => ports,
        Err(e) => return atsigns.iter().map(|_| Err(e.again())).collect(),
    };
    // Whether each is here already, asked before its port is taken (concurrently: one Redis
    // round trip is the cost of the whole batch's reads).
    let hosted: Vec<Result<bool, StoreError>> = futures_util::stream::iter(atsigns)
        .map(|atsign| async move { Ok(store.get_atsign(atsign).await?.is_some()) })
        .buffered(IN_FLIGHT)
        .collect()
        .await;
    let mut seen = std::collections::HashSet::new();
    let made: Vec<Result<AtSignInfo, ProvisionError>> = atsigns
        .iter()
        .zip(hosted)
        .map(|(atsign, hosted)| {
            // Named twice in the batch: the second is the one already provisioned.
            if hosted? || !seen.insert(atsign) {
                return Err(ProvisionError::Exists(atsign.clone()));
            }
            Ok(AtSignInfo {
                status: AtSignStatus::New,
                created_ms: now_ms(),
                sni_label: uuid::Uuid::new_v4().to_string(),
                cram_secret: Some(cram_secret()?),
                port: ports.take()?,
                suspended: false,
            })
        })
        .collect();
    let mut results: Vec<Result<Provisioned, ProvisionError>> =
        futures_util::stream::iter(atsigns.iter().zip(made))
            .map(|(atsign, info)| async move {
                let info = info?;
                store
                    .create_atsign(atsign, &info)
                    .await
                    .map_err(|e| match e {
                        StoreError::AtSignExists(a) => ProvisionError::Exists(a),
                        e => e.into(),
                    })?;
                Ok(Provisioned {
                    atsign: atsign.clone(),
                    address: address_of(config, &info),
                    port: info.port,
                    cram_secret: info.cram_secret.unwrap_or_default(),
                })
            })
            .buffered(IN_FLIGHT)
            .collect()
            .await;
    let entries: Vec<(AtSign, Address)> = results
        .iter()
        .flatten()
        .map(|done| (done.atsign.clone(), done.address.clone()))
        .collect();
    if let Err(e) = directory.put_many(&entries).await {
        let error = ProvisionError::Directory(e);
        for result in results.iter_mut().filter(|r| r.is_ok()) {
            if let Ok(done) = result {
                if let Err(undo) = store.remove_atsign(&done.atsign).await {
                    tracing::error!(atsign = %done.atsign, %undo, "provisioned but not registered in the directory, and could not be removed");
                }
            }
            *result = Err(error.again());
        }
    }
    results
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

/// The ports of the node's range that no hosted atSign holds, handed out lowest first; none
/// at all when the node has no range (atSigns reached by SNI name only).
struct FreePorts {
    free: std::collections::btree_set::IntoIter<u16>,
    hosted: usize,
    range: bool,
}

impl FreePorts {
    /// Reads every hosted atSign's port once (only when the node has a port range).
    async fn of(config: &ServerConfig, store: &Store) -> Result<FreePorts, ProvisionError> {
        let (start, len) = (config.port_range_start, config.port_range_len);
        if start == 0 {
            return Ok(FreePorts {
                free: BTreeSet::new().into_iter(),
                hosted: 0,
                range: false,
            });
        }
        let mut free: BTreeSet<u16> = (0..len).filter_map(|i| start.checked_add(i)).collect();
        let hosted = store.list_atsigns().await?;
        for atsign in &hosted {
            if let Some(port) = store.get_atsign(atsign).await?.and_then(|i| i.port) {
                free.remove(&port);
            }
        }
        Ok(FreePorts {
            free: free.into_iter(),
            hosted: hosted.len(),
            range: true,
        })
    }

    /// The next free port, `None` without a range.
    fn take(&mut self) -> Result<Option<u16>, ProvisionError> {
        match self.range {
            false => Ok(None),
            true => match self.free.next() {
                Some(port) => Ok(Some(port)),
                None => Err(ProvisionError::PortsExhausted(self.hosted)),
            },
        }
    }
}

/// 64 random bytes as 128 lowercase hex digits.
fn cram_secret() -> Result<String, ProvisionError> {
    let mut bytes = [0u8; 64];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ProvisionError::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
