//! `ServerConfig`: every option of the atServer, with its default.
//!
//! Loaded like the directory's (see [`at_common::config::load_layered`]): defaults, the TOML
//! file of `--config`, environment variables `AT_SERVER__<FIELD>`, then flags. Validated once.
//! Names follow the spec's configuration table where it has one (`inbound_max_limit`,
//! `inbound_idle_time_millis`, `bufferLimit` as `buffer_limit`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use at_common::config::{LogConfig, StoreConfig, TlsConfig};
use serde::Deserialize;

use crate::connection::throttle::ThrottleLimits;
use crate::maintenance::Settings;
use crate::peer::PeerSettings;

/// The longest `maintenance_interval_secs` (and `cache_refresh_interval_secs`): expired keys,
/// old commit entries and stale cached copies should not wait longer than a day.
const MAX_MAINTENANCE_INTERVAL_SECS: u64 = 24 * 3600;

/// Whether another atServer must identify itself with a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCertificate {
    /// `from:@bob` without a certificate naming @bob's host is AT0401.
    Required,
    /// Any client may claim to be @bob; `pol` alone decides.
    Optional,
}

/// The whole configuration of one atServer node.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The TLS port every hosted atSign shares; connections are routed by SNI.
    pub listen: SocketAddr,
    /// The host name clients reach this node by (the directory hands out
    /// `<label>.<sni_domain>:<port>`, or `<public_host>:<port>` for per-atSign ports).
    pub public_host: String,
    /// The port clients reach the shared listener on, as the directory hands it out (behind a
    /// load balancer it differs from `listen`'s); 0 means `listen`'s port.
    pub public_port: u16,
    /// Domain under which each atSign gets its own name `<label>.<sni_domain>`; empty turns
    /// SNI routing off (then only `port_range` routes).
    pub sni_domain: String,
    /// First port of the optional per-atSign port range, for clients without SNI or wildcard
    /// DNS (local use); 0 disables it.
    pub port_range_start: u16,
    /// How many ports the range holds, one per hosted atSign.
    pub port_range_len: u16,
    /// The atDirectory to register hosted atSigns in, `host:port`.
    pub directory: String,
    /// CA file to trust for the directory's certificate; unset uses the system roots.
    pub directory_ca_file: Option<PathBuf>,
    /// The directory's store, where `provision` registers atSigns: the same settings as the
    /// directory's own `store` section (a shared Redis, or its embedded store on this machine).
    pub directory_store: StoreConfig,
    /// The directory's data dir, for an embedded `directory_store`.
    pub directory_data_dir: PathBuf,
    /// Store and generated TLS files.
    pub data_dir: PathBuf,
    /// Longest request line in bytes (the spec's bufferLimit); longer is AT0005 and closes.
    pub buffer_limit: usize,
    /// Bytes of unfinished requests all connections together may hold beyond the first 64 KiB
    /// each: a line that does not fit is AT0005 ("request buffers are full") and closes. Keeps
    /// many clients each sending most of a `buffer_limit` line from exhausting the node's
    /// memory; ordinary commands never touch it. Must leave room for one `buffer_limit` line.
    pub buffer_budget: usize,
    /// Authenticated owner connections per hosted atSign (the spec's inbound_max_limit); a
    /// full pool gives way to a newcomer only from a connection idle 5 s or more, else AT0012.
    pub inbound_max_limit: usize,
    /// Network connections on the node at once; 0 derives it from the file-descriptor limit
    /// (raised to its hard value at start), less 512 kept back for files and peer links.
    pub max_connections: usize,
    /// Connections not yet authenticated, node-wide; when full, a newcomer takes the place of
    /// the oldest.
    pub unauthenticated_max_limit: usize,
    /// Of those, from one source address (IPv4, IPv6 /64); one more gets AT0012.
    pub unauthenticated_per_source_limit: usize,
    /// Other atServers' pol connections per hosted atSign.
    pub peer_max_limit: usize,
    /// Notifications an atSign keeps received (others fill this log); past it the oldest go.
    pub received_notifications_max: usize,
    /// Bytes of received notifications an atSign keeps; past it the oldest go.
    pub received_notification_bytes_max: usize,
    /// Cached keys an atSign holds past which other atSigns' notifications create no new one.
    pub cached_keys_max: usize,
    /// Of those, from one other atSign.
    pub peer_per_atsign_limit: usize,
    /// Notifications per second one other atSign may make this node's atSigns receive,
    /// sustained (0: unbounded); past it its `notify` answers come later, never refused.
    pub peer_notifications_per_second: u32,
    /// How many it may send at once before that pace applies.
    pub peer_notifications_burst: u32,
    /// Idle time before an unauthenticated connection is closed (inbound_idle_time_millis;
    /// the reference's 600 000 applies to every connection, this one only until a proof).
    pub inbound_idle_time_millis: u64,
    /// Idle time before an authenticated connection is closed.
    pub authenticated_idle_time_millis: u64,
    /// Seconds a hosted atSign's key store stays in memory after its last use, once none of
    /// this node's connections to the atSign is open.
    pub keystore_idle_secs: u64,
    /// Failed cram/pkam proofs in a row on one connection answered at once, as the reference
    /// answers every one.
    pub auth_failures_before_delay: u32,
    /// Delay before answering the next failed proof on that connection; it doubles with each
    /// further failure.
    pub auth_failure_delay_millis: u64,
    /// The longest such delay.
    pub auth_failure_max_delay_millis: u64,
    /// The failed proof on one connection after which it is closed; 0 never closes.
    pub auth_failures_before_close: u32,
    /// Failed proofs per hosted atSign per source address (IPv4 address, IPv6 /64) per minute
    /// on this node, over all its connections; once spent, proofs from that address are
    /// refused unchecked with AT0028 until the minute has passed (other addresses are not
    /// affected). 0 is unbounded.
    pub auth_failures_per_atsign_per_minute: u32,
    /// Seconds between rounds of background maintenance, which removes expired keys and
    /// compacts commit logs, a bounded share of the atSigns per round.
    pub maintenance_interval_secs: u64,
    /// Seconds between rounds of the cache refresh job, which asks other atServers again for
    /// the keys whose cached copies reached their `refreshAt` (the reference's daily job).
    pub cache_refresh_interval_secs: u64,
    /// Days a commit entry is kept (the reference's `expiryInDays`); a client that has not
    /// synced for longer gets only what changed since.
    pub commit_log_keep_days: u32,
    /// The most commit entries kept per atSign; the oldest beyond it are dropped.
    pub commit_log_max_entries: usize,
    /// CA files trusted (beside the system roots and `directory_ca_file`) for other atServers'
    /// certificates: when this node's atSigns look up keys on them or notify them, and for the
    /// client certificates they present here.
    pub peer_ca_files: Vec<PathBuf>,
    /// Whether `from:@other` needs a TLS client certificate naming @other's server host (the
    /// reference's clientCertificateRequired): `required` (the default) or `optional`.
    pub peer_client_certificate: ClientCertificate,
    /// The certificate (PEM chain) and key this node presents to other atServers, instead of
    /// the one it serves: for a serving certificate from a public CA that no longer grants the
    /// clientAuth usage. It must name this node's host as the directory gives it. Both or
    /// neither; read again when the files change.
    pub peer_client_cert_file: Option<PathBuf>,
    pub peer_client_key_file: Option<PathBuf>,
    /// Idle time after which a connection to another atServer is closed
    /// (the reference's outbound_idle_time_millis).
    pub outbound_idle_time_millis: u64,
    /// Connections to other atServers open at once on this node; beyond it the least recently
    /// used is closed (the reference's outbound_max_limit).
    pub outbound_max_limit: usize,
    /// The longest wait for one step of a conversation with another atServer or the directory
    /// (connect, handshake, one reply).
    pub peer_timeout_millis: u64,
    /// Whether this node's pol links pipeline to another atServer that announces it can
    /// (`"features":["pipelining"]` in its `info`): several requests in flight, replies in
    /// order. `false`: one request at a time to every server, as to the reference's.
    pub peer_pipelining: bool,
    /// The longest wait between two attempts to deliver a notification to another atServer
    /// (the wait doubles from 0.5 s up to this).
    pub notification_retry_max_millis: u64,
    /// The first wait before a wrong enrollment passcode is refused; later ones grow as
    /// Fibonacci up to 55 times this (the reference's 1 s to 55 s).
    pub enroll_passcode_wait_millis: u64,
    /// HTTP address of `/healthz`, `/readyz` and `/metrics` (port `0` picks one, printed as
    /// `metrics on <addr>`); empty turns it off.
    pub metrics_listen: String,
    /// How long the store may fail before `/readyz` says 503 (a Redis restart should not take
    /// every node out of its Service at once).
    pub readiness_grace_millis: u64,
    /// On SIGTERM: how long the node keeps accepting connections, `/readyz` answering 503,
    /// before it stops accepting and drains; the time a load balancer needs to stop sending
    /// it new clients (Kubernetes removes an endpoint a few seconds after the pod is told to
    /// stop). 0 stops accepting at once; SIGINT (Ctrl-C) never pauses.
    pub shutdown_pause_millis: u64,
    /// Then: how long connections get to finish the command in flight and close before the
    /// node exits anyway (pause + grace below Kubernetes' terminationGracePeriodSeconds).
    pub shutdown_grace_millis: u64,
    /// Log level and format (`AT_SERVER_LOG` overrides the level).
    pub log: LogConfig,
    /// TLS of the listener.
    pub tls: TlsConfig,
    /// Where the atSigns' data lives.
    pub store: StoreConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 6464)),
            public_host: "localhost".into(),
            public_port: 0,
            sni_domain: String::new(),
            port_range_start: 0,
            port_range_len: 0,
            directory: "localhost:64".into(),
            directory_ca_file: None,
            directory_store: StoreConfig::default(),
            directory_data_dir: PathBuf::from("data/directory"),
            data_dir: PathBuf::from("data/server"),
            buffer_limit: 10_240_000,
            buffer_budget: 256 * 1024 * 1024,
            inbound_max_limit: 200,
            max_connections: 0,
            unauthenticated_max_limit: 1000,
            unauthenticated_per_source_limit: 256,
            peer_max_limit: 200,
            received_notifications_max: 10_000,
            received_notification_bytes_max: 64 * 1024 * 1024,
            cached_keys_max: 10_000,
            peer_per_atsign_limit: 8,
            peer_notifications_per_second: 100,
            peer_notifications_burst: 1_000,
            inbound_idle_time_millis: 30_000,
            authenticated_idle_time_millis: 2_592_000_000,
            keystore_idle_secs: 300,
            auth_failures_before_delay: 3,
            auth_failure_delay_millis: 1000,
            auth_failure_max_delay_millis: 16_000,
            auth_failures_before_close: 10,
            auth_failures_per_atsign_per_minute: 60,
            maintenance_interval_secs: 60,
            cache_refresh_interval_secs: 3600,
            commit_log_keep_days: 15,
            commit_log_max_entries: 100_000,
            peer_ca_files: Vec::new(),
            peer_client_cert_file: None,
            peer_client_key_file: None,
            peer_client_certificate: ClientCertificate::Required,
            outbound_idle_time_millis: 600_000,
            outbound_max_limit: 200,
            peer_timeout_millis: 5_000,
            peer_pipelining: true,
            notification_retry_max_millis: 30_000,
            enroll_passcode_wait_millis: 1_000,
            metrics_listen: String::new(),
            readiness_grace_millis: 15_000,
            shutdown_pause_millis: 0,
            shutdown_grace_millis: 20_000,
            log: LogConfig::default(),
            tls: TlsConfig::default(),
            store: StoreConfig::default(),
        }
    }
}

impl ServerConfig {
    /// Loads defaults, `file`, the environment and `overrides` (dotted keys), then validates.
    pub fn load(file: Option<&Path>, overrides: &[(&str, String)]) -> Result<ServerConfig, String> {
        let config = ServerConfig::load_unchecked(file, overrides)?;
        config.validate()?;
        Ok(config)
    }

    /// [`ServerConfig::load`] without [`ServerConfig::validate`], for a caller that sets some
    /// options itself and validates after (`dev`).
    pub fn load_unchecked(
        file: Option<&Path>,
        overrides: &[(&str, String)],
    ) -> Result<ServerConfig, String> {
        at_common::config::load_layered("AT_SERVER", file, overrides)
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), String> {
        self.tls.validate()?;
        self.store.validate()?;
        self.directory_store.validate()?;
        if self.outbound_max_limit == 0 || self.peer_timeout_millis == 0 {
            return Err("outbound_max_limit and peer_timeout_millis must be at least 1".into());
        }
        if self.buffer_limit == 0 || self.inbound_max_limit == 0 {
            return Err("buffer_limit and inbound_max_limit must be at least 1".into());
        }
        if self.peer_client_cert_file.is_some() != self.peer_client_key_file.is_some() {
            return Err("peer_client_cert_file and peer_client_key_file go together".into());
        }
        if self
            .buffer_budget
            .saturating_add(at_common::codec::UNCHARGED)
            < self.buffer_limit
        {
            return Err(format!(
                "buffer_budget ({}) leaves no room for one line of buffer_limit ({})",
                self.buffer_budget, self.buffer_limit
            ));
        }
        for (option, value) in [
            ("unauthenticated_max_limit", self.unauthenticated_max_limit),
            (
                "unauthenticated_per_source_limit",
                self.unauthenticated_per_source_limit,
            ),
            ("peer_max_limit", self.peer_max_limit),
            (
                "received_notifications_max",
                self.received_notifications_max,
            ),
            (
                "received_notification_bytes_max",
                self.received_notification_bytes_max,
            ),
            ("peer_per_atsign_limit", self.peer_per_atsign_limit),
        ] {
            if value == 0 {
                return Err(format!("{option} must be at least 1"));
            }
        }
        if self.auth_failure_delay_millis > self.auth_failure_max_delay_millis {
            return Err("auth_failure_delay_millis exceeds auth_failure_max_delay_millis".into());
        }
        for (option, secs) in [
            ("maintenance_interval_secs", self.maintenance_interval_secs),
            (
                "cache_refresh_interval_secs",
                self.cache_refresh_interval_secs,
            ),
        ] {
            if !(1..=MAX_MAINTENANCE_INTERVAL_SECS).contains(&secs) {
                return Err(format!(
                    "{option} must be 1 to {MAX_MAINTENANCE_INTERVAL_SECS} (a day)"
                ));
            }
        }
        if self.commit_log_keep_days == 0 || self.commit_log_max_entries == 0 {
            return Err(
                "commit_log_keep_days and commit_log_max_entries must be at least 1: \
                 otherwise clients could never sync"
                    .into(),
            );
        }
        if self.sni_domain.is_empty() && self.port_range_start == 0 {
            return Err(
                "set sni_domain, port_range_start, or both: otherwise no atSign can be reached"
                    .into(),
            );
        }
        if self.port_range_start != 0
            && u32::from(self.port_range_start) + u32::from(self.port_range_len) > 65_536
        {
            return Err("port_range_start + port_range_len runs past port 65535".into());
        }
        at_common::Address::parse(&self.directory).map_err(|e| format!("directory: {e}"))?;
        if !self.metrics_listen.is_empty() {
            self.metrics_listen
                .parse::<SocketAddr>()
                .map_err(|e| format!("metrics_listen {:?}: {e}", self.metrics_listen))?;
        }
        // The names the directory will hand out must be valid `host:port` addresses.
        at_common::Address::parse(&format!("{}:1", self.public_host))
            .map_err(|e| format!("public_host: {e}"))?;
        if !self.sni_domain.is_empty() {
            at_common::Address::parse(&format!("label.{}:1", self.sni_domain))
                .map_err(|e| format!("sni_domain: {e}"))?;
            if self.shared_port() == 0 {
                return Err("listen has port 0: set public_port, the port clients use".into());
            }
        }
        Ok(())
    }

    /// The port of the shared listener as clients see it.
    pub fn shared_port(&self) -> u16 {
        match self.public_port {
            0 => self.listen.port(),
            port => port,
        }
    }

    /// The limits on failed authentication proofs.
    pub fn throttle_limits(&self) -> ThrottleLimits {
        ThrottleLimits {
            free: self.auth_failures_before_delay,
            first_delay: Duration::from_millis(self.auth_failure_delay_millis),
            max_delay: Duration::from_millis(self.auth_failure_max_delay_millis),
            close_after: self.auth_failures_before_close,
            per_minute: self.auth_failures_per_atsign_per_minute,
        }
    }

    /// What background maintenance does and how often.
    pub fn maintenance(&self) -> Settings {
        Settings {
            interval: Duration::from_secs(self.maintenance_interval_secs),
            keep_commits_ms: i64::from(self.commit_log_keep_days) * 24 * 3600 * 1000,
            max_commits: self.commit_log_max_entries,
            quota: self.notification_quota(),
        }
    }

    /// How fast other atSigns can make this node receive notifications.
    pub fn notify_pace(&self) -> crate::pace::PaceLimits {
        crate::pace::PaceLimits {
            per_second: self.peer_notifications_per_second,
            burst: self.peer_notifications_burst,
        }
    }

    /// How much of what others send an atSign is kept.
    pub fn notification_quota(&self) -> crate::notifications::Quota {
        crate::notifications::Quota {
            count: self.received_notifications_max,
            bytes: self.received_notification_bytes_max,
            cached_keys: self.cached_keys_max,
        }
    }

    /// The connection limits, with the node's derived from the file-descriptor limit when
    /// `max_connections` is 0 (raising it: call once, at start).
    pub fn admission_limits(&self) -> crate::connection::admission::AdmissionLimits {
        let max_connections = match self.max_connections {
            0 => {
                let (max, how) = crate::connection::admission::derived_max_connections();
                tracing::info!("{how}");
                max
            }
            max => max,
        };
        crate::connection::admission::AdmissionLimits {
            max_connections,
            unauthenticated: self.unauthenticated_max_limit,
            unauthenticated_per_source: self.unauthenticated_per_source_limit,
            per_atsign: self.inbound_max_limit,
            idle_unauthenticated: self.idle_limit(false),
            idle_authenticated: self.idle_limit(true),
            peers_per_atsign: self.peer_max_limit,
            per_peer: self.peer_per_atsign_limit,
        }
    }

    /// What the links to other atServers need; `tls` is the listener's, whose certificate this
    /// node presents to other servers (generated already, the listener being set up first).
    pub fn peer_settings(
        &self,
        tls: &at_common::config::TlsConfig,
    ) -> Result<PeerSettings, at_common::tls::TlsError> {
        let mut ca_files = self.peer_ca_files.clone();
        ca_files.extend(self.directory_ca_file.iter().cloned());
        let identity = match (&self.peer_client_cert_file, &self.peer_client_key_file) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            _ => at_common::tls::identity_files(tls, &self.data_dir),
        };
        let client = match identity {
            Some((cert, key)) => {
                at_common::tls::client_config_with_identity(&ca_files, &cert, &key)?
            }
            None => at_common::tls::client_config(&ca_files)?,
        };
        Ok(PeerSettings {
            // Validated with the rest of the configuration.
            directory: at_common::Address::parse(&self.directory).unwrap_or_else(|_| {
                at_common::Address::parse("localhost:64").expect("a valid address")
            }),
            tls: tokio_rustls::TlsConnector::from(std::sync::Arc::new(client)),
            timeout: Duration::from_millis(self.peer_timeout_millis),
            idle: Duration::from_millis(self.outbound_idle_time_millis),
            max_links: self.outbound_max_limit,
            pipelining: self.peer_pipelining,
        })
    }

    /// Idle limit for a connection in the given state.
    pub fn idle_limit(&self, authenticated: bool) -> Duration {
        Duration::from_millis(if authenticated {
            self.authenticated_idle_time_millis
        } else {
            self.inbound_idle_time_millis
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sni() -> Vec<(&'static str, String)> {
        vec![("sni_domain", "atsign.example".to_string())]
    }

    #[test]
    fn defaults_are_the_reference_limits_with_a_short_wait_for_a_proof() {
        let config = ServerConfig::load(None, &sni()).unwrap();
        assert_eq!(config.buffer_limit, 10_240_000);
        assert_eq!(config.inbound_max_limit, 200);
        // The reference's 600 s applies to every connection; here only until a proof.
        assert_eq!(config.idle_limit(false), Duration::from_secs(30));
        assert_eq!(config.idle_limit(true), Duration::from_secs(30 * 24 * 3600));
        assert_eq!(
            (config.max_connections, config.unauthenticated_max_limit),
            (0, 1000)
        );
    }

    #[test]
    fn auth_throttle_defaults_keep_the_reference_answers_for_the_first_failures() {
        let limits = ServerConfig::load(None, &sni()).unwrap().throttle_limits();
        assert_eq!(
            limits,
            ThrottleLimits {
                free: 3,
                first_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(16),
                close_after: 10,
                per_minute: 60,
            }
        );
        let mut overrides = sni();
        overrides.push(("auth_failure_delay_millis", "20000".to_string()));
        assert!(ServerConfig::load(None, &overrides)
            .unwrap_err()
            .contains("auth_failure_delay_millis"));
    }

    #[test]
    fn maintenance_defaults_keep_the_reference_commit_log_and_are_checked() {
        let settings = ServerConfig::load(None, &sni()).unwrap().maintenance();
        assert_eq!(
            settings,
            Settings {
                interval: Duration::from_secs(60),
                keep_commits_ms: 15 * 24 * 3600 * 1000,
                max_commits: 100_000,
                quota: crate::notifications::Quota {
                    count: 10_000,
                    bytes: 64 * 1024 * 1024,
                    cached_keys: 10_000,
                },
            }
        );
        for (option, value) in [
            ("maintenance_interval_secs", "0"),
            ("maintenance_interval_secs", "86401"),
            ("cache_refresh_interval_secs", "0"),
            ("cache_refresh_interval_secs", "86401"),
            ("commit_log_keep_days", "0"),
            ("commit_log_max_entries", "0"),
        ] {
            let mut overrides = sni();
            overrides.push((option, value.to_string()));
            let err = ServerConfig::load(None, &overrides).unwrap_err();
            assert!(err.contains(option), "{option} = {value}: {err}");
        }
        let mut overrides = sni();
        overrides.push(("maintenance_interval_secs", "1".to_string()));
        assert_eq!(
            ServerConfig::load(None, &overrides)
                .unwrap()
                .maintenance()
                .interval,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn a_node_must_be_reachable_by_sni_or_by_port() {
        let err = ServerConfig::load(None, &[]).unwrap_err();
        assert!(err.contains("sni_domain"), "{err}");
        let ports = [
            ("port_range_start", "25000".to_string()),
            ("port_range_len", "100".to_string()),
        ];
        assert!(ServerConfig::load(None, &ports).is_ok());
        let past_end = [
            ("port_range_start", "65500".to_string()),
            ("port_range_len", "100".to_string()),
        ];
        assert!(ServerConfig::load(None, &past_end).is_err());
    }

    #[test]
    fn host_names_handed_to_the_directory_are_checked() {
        let mut overrides = sni();
        overrides.push(("public_host", "not a host".to_string()));
        assert!(ServerConfig::load(None, &overrides)
            .unwrap_err()
            .contains("public_host"));
        let bad_domain = [("sni_domain", "bad domain".to_string())];
        assert!(ServerConfig::load(None, &bad_domain)
            .unwrap_err()
            .contains("sni_domain"));
    }

    #[test]
    fn sni_names_need_a_known_public_port() {
        let mut overrides = sni();
        overrides.push(("listen", "127.0.0.1:0".to_string()));
        assert!(ServerConfig::load(None, &overrides)
            .unwrap_err()
            .contains("public_port"));
        overrides.push(("public_port", "6464".to_string()));
        assert_eq!(
            ServerConfig::load(None, &overrides).unwrap().shared_port(),
            6464
        );
    }

    #[test]
    fn the_directory_address_is_checked() {
        let mut overrides = sni();
        overrides.push(("directory", "no-port".to_string()));
        assert!(ServerConfig::load(None, &overrides)
            .unwrap_err()
            .contains("directory"));
    }
}
