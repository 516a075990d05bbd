//! atSign status checks: "what state is @alice in?" without logging in, as the
//! `at_server_status` library answers it (the states and HTTP codes: [`at_common::status`]).
//!
//! - [`check`]: one check over the network (directory, then atServer), every step bounded.
//! - [`cache`]: answers reused per atSign for `status.cache_ms`, one check at a time per atSign.
//!
//! [`StatusService`] puts them together with a limit on checks in progress; the HTTP API
//! (`crate::http`) and the `status` command use it.

pub mod cache;
pub mod check;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use at_common::status::{AtSignStatus, AtStatus};
use at_common::{Address, AtSign};
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

use crate::config::StatusConfig;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::Error;

pub use cache::{Cache, Source};
pub use check::{Checker, Directory};

/// Checks, cached and bounded; cheap to clone.
#[derive(Clone)]
pub struct StatusService {
    checker: Checker,
    cache: Arc<Cache>,
    permits: Arc<Semaphore>,
    metrics: Option<Metrics>,
    ttl: Duration,
}

impl StatusService {
    /// The service `config` describes. `local` is this directory's store, used when
    /// `status.directory` is empty; `data_dir` is where its generated CA may be.
    pub fn new(
        config: &StatusConfig,
        local: Option<Store>,
        data_dir: &Path,
        metrics: Option<Metrics>,
    ) -> Result<StatusService, Error> {
        let directory = if config.directory.is_empty() {
            Directory::Local(local.ok_or_else(|| {
                Error::Config("status.directory is empty and there is no local store".into())
            })?)
        } else {
            Directory::Remote(
                Address::parse(&config.directory)
                    .map_err(|e| Error::Config(format!("status.directory: {e}")))?,
            )
        };
        let checker = Checker::new(
            directory,
            connector(&config.ca_files, data_dir)?,
            Duration::from_millis(config.timeout_ms),
        );
        let ttl = Duration::from_millis(config.cache_ms);
        Ok(StatusService {
            checker,
            cache: Arc::new(Cache::new(ttl, config.cache_max_entries)),
            ttl,
            permits: Arc::new(Semaphore::new(config.max_concurrent_checks)),
            metrics,
        })
    }

    /// The status of `at_sign`, fresh or from the cache.
    pub async fn status(&self, at_sign: &AtSign) -> AtStatus {
        let (status, source) = self
            .cache
            .get_or_check(at_sign, || async {
                // Never closed, so acquiring only waits.
                let _permit = self.permits.acquire().await;
                let began = Instant::now();
                let status = self.checker.check(at_sign).await;
                if let Some(metrics) = &self.metrics {
                    metrics.status_check(status.status(), began.elapsed());
                }
                status
            })
            .await;
        if let (Some(metrics), Source::Cached) = (&self.metrics, source) {
            metrics.status_cache_hits.inc();
        }
        status
    }

    /// How long answers are reused, for `Cache-Control`.
    pub fn cache_ttl(&self) -> Duration {
        self.ttl
    }
}

/// The exit code of `at-directory status` for each overall status, for scripts: 0 only for
/// activated; 2 and 1 stay the usual usage error and failure.
pub fn exit_code(status: AtSignStatus) -> u8 {
    match status {
        AtSignStatus::Activated => 0,
        AtSignStatus::Teapot => 3,
        AtSignStatus::NotFound => 4,
        AtSignStatus::Unavailable => 5,
        AtSignStatus::Error => 6,
    }
}

/// The TLS client of checks: system roots, the configured CA files, and this directory's own
/// generated CA when there is one (`at-server dev` and single-machine setups use one CA).
fn connector(ca_files: &[std::path::PathBuf], data_dir: &Path) -> Result<TlsConnector, Error> {
    let mut files = ca_files.to_vec();
    let own = data_dir.join("tls").join("ca.pem");
    if own.exists() && !files.contains(&own) {
        files.push(own);
    }
    let config = at_common::tls::client_config(&files)?;
    Ok(TlsConnector::from(Arc::new(config)))
}
