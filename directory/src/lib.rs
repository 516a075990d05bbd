//! # at-directory: the atDirectory (root server)
//!
//! Answers one question over TLS: where does an atSign's atServer live?
//!
//! - [`client`]: talking to directories and atServers as a client: locate, converse, `pol`.
//! - [`config`]: `DirectoryConfig`, every option with its default; file, environment, flags.
//! - [`lookup`]: the one request (`alice`, `@alice`, `@exit`) and the exact answers.
//! - [`session`]: the actor for one client connection: ordering, throttling, idle timeout.
//! - [`listener`]: accepting connections, TLS, the connection limit, spreading work over threads.
//! - [`store`]: registrations behind one trait; embedded (local disk) and Redis backends.
//! - [`metrics`]: Prometheus metrics.
//! - [`status`]: atSign status checks (notFound → teapot → activated), cached and bounded.
//! - [`http`]: the HTTP listener: `/metrics` and the status API `/api/status/<atSign>`.
//!
//! `main.rs` only parses the command line and calls [`serve`] or one of the admin functions.

pub mod client;
pub mod config;
pub mod http;
pub mod listener;
pub mod lookup;
pub mod metrics;
pub mod session;
pub mod shutdown;
pub mod status;
pub mod store;

use at_common::{Address, AtSign};

pub use config::{DirectoryConfig, Overrides};

/// Anything that stops the directory from starting or an admin command from finishing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Tls(#[from] at_common::tls::TlsError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
}

/// Runs the directory until SIGINT or SIGTERM. Must be called inside an actix system.
pub async fn serve(config: DirectoryConfig) -> Result<(), Error> {
    let store = store::open_when_reachable(&config.store, &config.data_dir).await?;
    listener::run(config, store).await
}

/// `register`: maps `atsign` to `address`, replacing any earlier address.
pub async fn register(
    config: &DirectoryConfig,
    atsign: &str,
    address: &str,
) -> Result<String, Error> {
    let atsign = AtSign::parse(atsign).map_err(|e| Error::Usage(format!("{atsign:?}: {e}")))?;
    let address = Address::parse(address).map_err(|e| Error::Usage(e.to_string()))?;
    let store = store::open(&config.store, &config.data_dir).await?;
    store.put(&atsign, &address).await?;
    Ok(format!("registered {atsign} at {address}"))
}

/// `unregister`: forgets `atsign`; an error if it was not registered.
pub async fn unregister(config: &DirectoryConfig, atsign: &str) -> Result<String, Error> {
    let atsign = AtSign::parse(atsign).map_err(|e| Error::Usage(format!("{atsign:?}: {e}")))?;
    let store = store::open(&config.store, &config.data_dir).await?;
    if store.remove(&atsign).await? {
        Ok(format!("unregistered {atsign}"))
    } else {
        Err(Error::Usage(format!("{atsign} is not registered")))
    }
}

/// `list`: one `@atsign host:port` line per registration, sorted.
pub async fn list(config: &DirectoryConfig) -> Result<String, Error> {
    let store = store::open(&config.store, &config.data_dir).await?;
    Ok(store
        .list()
        .await?
        .iter()
        .map(|(atsign, address)| format!("{atsign} {address}\n"))
        .collect())
}

/// `status`: checks `atsign` as a client sees it, with `config.status` (its `directory`, or
/// this directory's own store when that is empty).
pub async fn status(
    config: &DirectoryConfig,
    atsign: &str,
) -> Result<at_common::status::AtStatus, Error> {
    let atsign = AtSign::parse(atsign).map_err(|e| Error::Usage(format!("{atsign:?}: {e}")))?;
    let local = match config.status.directory.is_empty() {
        true => Some(store::open(&config.store, &config.data_dir).await?),
        false => None,
    };
    let service = status::StatusService::new(&config.status, local, &config.data_dir, None)?;
    Ok(service.status(&atsign).await)
}
