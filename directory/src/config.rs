//! `DirectoryConfig`: every option of the atDirectory, with its default.
//!
//! Layered, later wins: built-in defaults, then the TOML file given with `--config`, then
//! environment variables `AT_DIRECTORY__<FIELD>` (nested with `__`, e.g.
//! `AT_DIRECTORY__STORE__REDIS_URL`), then command-line flags. Loaded once and validated once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use at_common::config::{LogConfig, StoreConfig, TlsConfig};
use serde::{Deserialize, Deserializer};

/// The whole configuration of one atDirectory process.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryConfig {
    /// Address of the lookup listener. Port 64 is the one clients use by default.
    pub listen: SocketAddr,
    /// Address of the Prometheus `/metrics` HTTP listener; empty to disable.
    #[serde(deserialize_with = "optional_addr")]
    pub metrics_listen: Option<SocketAddr>,
    /// Directory for the embedded store and the generated TLS certificate.
    pub data_dir: PathBuf,
    /// Connections served at once; one more is told `AT0012` and closed.
    pub max_connections: usize,
    /// Milliseconds a connection may stay silent before it is closed; 0 keeps it open for
    /// ever (the spec's `inbound_idle_time_millis`).
    pub idle_timeout_ms: u64,
    /// Longest request line in bytes; a longer one closes the connection (the reference's 255).
    pub buffer_limit: usize,
    /// Delay before answering the second and later misses on one connection, in milliseconds.
    pub miss_delay_ms: u64,
    /// The miss that closes the connection (after the delay, without an answer).
    pub max_misses: u32,
    /// Worker threads serving connections; 0 means one per CPU.
    pub workers: usize,
    /// Seconds a client has to finish the TLS handshake.
    pub handshake_timeout_secs: u64,
    /// How long the store may fail before `/readyz` says 503 (a Redis restart should not take
    /// every replica out of its Service at once).
    pub readiness_grace_millis: u64,
    /// On SIGTERM: how long the directory keeps accepting lookups, `/readyz` answering 503,
    /// before it stops: the time a load balancer needs to stop sending it clients. 0 stops at
    /// once; SIGINT (Ctrl-C) never pauses.
    pub shutdown_pause_millis: u64,
    /// Then: how long connections get to have their lookup in flight answered and close
    /// before the directory exits anyway.
    pub shutdown_grace_millis: u64,
    /// TLS of the lookup listener.
    pub tls: TlsConfig,
    /// Log level and format (`AT_DIRECTORY_LOG` overrides the level).
    pub log: LogConfig,
    /// Where registrations are kept.
    pub store: StoreConfig,
    /// The status API (`/api/status/@alice` on the metrics listener) and `status` command.
    pub status: StatusConfig,
}

/// How atSign status checks are made and served (see [`crate::status`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    /// Serve `GET /api/status/<atSign>` on the metrics listener.
    pub enabled: bool,
    /// The directory a check asks, `host:port`; empty: this directory's own store.
    pub directory: String,
    /// PEM CA files trusted for the directory and the atServers, besides the system roots and
    /// this directory's own generated CA (`<data_dir>/tls/ca.pem`, when there is one).
    pub ca_files: Vec<PathBuf>,
    /// Bound of each step of a check (the directory lookup, then the atServer), milliseconds.
    pub timeout_ms: u64,
    /// How long an answer is reused for the same atSign, milliseconds; 0 checks every time.
    pub cache_ms: u64,
    /// Most atSigns whose answers are cached at once.
    pub cache_max_entries: usize,
    /// Most checks in progress at once; further requests wait for one to finish.
    pub max_concurrent_checks: usize,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            enabled: true,
            directory: String::new(),
            ca_files: Vec::new(),
            timeout_ms: 5000,
            cache_ms: 5000,
            cache_max_entries: 100_000,
            max_concurrent_checks: 256,
        }
    }
}

impl StatusConfig {
    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), String> {
        if !self.directory.is_empty() {
            at_common::Address::parse(&self.directory)
                .map_err(|e| format!("status.directory: {e}"))?;
        }
        if self.timeout_ms == 0 {
            return Err("status.timeout_ms must be at least 1".into());
        }
        if self.max_concurrent_checks == 0 {
            return Err("status.max_concurrent_checks must be at least 1".into());
        }
        Ok(())
    }
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 64)),
            metrics_listen: Some(SocketAddr::from(([0, 0, 0, 0], 9464))),
            data_dir: PathBuf::from("data/directory"),
            max_connections: 10_000,
            idle_timeout_ms: 600_000,
            buffer_limit: 255,
            miss_delay_ms: 3000,
            max_misses: 3,
            workers: 0,
            handshake_timeout_secs: 10,
            readiness_grace_millis: 15_000,
            shutdown_pause_millis: 0,
            shutdown_grace_millis: 5_000,
            tls: TlsConfig::default(),
            log: LogConfig::default(),
            store: StoreConfig::default(),
            status: StatusConfig::default(),
        }
    }
}

/// Values given on the command line; each one that is set wins over file and environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub metrics_listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub redis_url: Option<String>,
    pub plain: bool,
}

impl Overrides {
    /// The flags that were given, as dotted configuration keys.
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(listen) = &self.listen {
            pairs.push(("listen", listen.clone()));
        }
        if let Some(metrics) = &self.metrics_listen {
            pairs.push(("metrics_listen", metrics.clone()));
        }
        if let Some(dir) = &self.data_dir {
            pairs.push(("data_dir", dir.display().to_string()));
        }
        if let Some(url) = &self.redis_url {
            pairs.push(("store.backend", "redis".to_string()));
            pairs.push(("store.redis_url", url.clone()));
        }
        if self.plain {
            pairs.push(("tls.plain", "true".to_string()));
        }
        pairs
    }
}

impl DirectoryConfig {
    /// Loads defaults, `file`, the environment and `overrides`, in that order, then validates.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<DirectoryConfig, String> {
        let config: DirectoryConfig =
            at_common::config::load_layered("AT_DIRECTORY", file, &overrides.pairs())?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), String> {
        self.tls.validate()?;
        self.store.validate()?;
        self.status.validate()?;
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if self.buffer_limit == 0 {
            return Err("buffer_limit must be at least 1".into());
        }
        if self.max_misses == 0 {
            return Err("max_misses must be at least 1".into());
        }
        Ok(())
    }

    /// The idle timeout, `None` when connections may idle for ever.
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_ms > 0).then(|| Duration::from_millis(self.idle_timeout_ms))
    }

    /// The number of worker threads to start.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// `""` (or an absent field) means "no listener".
fn optional_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.trim()
        .parse()
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use at_common::config::Backend;

    #[test]
    fn defaults_match_the_reference_root() {
        let config = DirectoryConfig::load(None, &Overrides::default()).unwrap();
        assert_eq!(config.listen.port(), 64);
        assert_eq!(config.buffer_limit, 255);
        assert_eq!(config.max_misses, 3);
        assert_eq!(config.miss_delay_ms, 3000);
        assert_eq!(config.store.backend, Backend::Embedded);
        assert!(!config.tls.plain);
    }

    #[test]
    fn the_shipped_example_file_loads_and_equals_the_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/directory.toml");
        let loaded = DirectoryConfig::load(Some(&example), &Overrides::default()).unwrap();
        assert_eq!(loaded, DirectoryConfig::default());
    }

    #[test]
    fn file_then_flags_in_that_order() {
        let dir = std::env::temp_dir().join(format!("at-dir-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("directory.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:7000\"\nmetrics_listen = \"\"\nmax_misses = 5\n[store]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:1\"\n",
        )
        .unwrap();
        let overrides = Overrides {
            listen: Some("127.0.0.1:7001".into()),
            ..Overrides::default()
        };
        let config = DirectoryConfig::load(Some(&file), &overrides).unwrap();
        assert_eq!(config.listen, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(config.metrics_listen, None);
        assert_eq!(config.max_misses, 5);
        assert_eq!(config.store.backend, Backend::Redis);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_fields_and_bad_combinations_are_refused() {
        let dir = std::env::temp_dir().join(format!("at-dir-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let unknown = dir.join("unknown.toml");
        std::fs::write(&unknown, "listen_port = 64\n").unwrap();
        assert!(DirectoryConfig::load(Some(&unknown), &Overrides::default()).is_err());
        let no_url = dir.join("no_url.toml");
        std::fs::write(&no_url, "[store]\nbackend = \"redis\"\n").unwrap();
        let err = DirectoryConfig::load(Some(&no_url), &Overrides::default()).unwrap_err();
        assert!(err.contains("redis_url"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
