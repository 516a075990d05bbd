//! Configuration pieces shared by the binaries: TLS and the choice of storage backend.
//!
//! Each binary owns its whole configuration (`server/src/config.rs`, `directory/src/config.rs`)
//! and embeds these. All are read through the `config` crate from a TOML file and the
//! environment, so every field has a default and unknown fields are refused.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::redis_client::{RedisClient, WaitReplicas};

/// Loads a binary's whole configuration in layers, later winning: the type's defaults (its
/// `#[serde(default)]`), the TOML `file`, environment variables `<env_prefix>__<FIELD>`
/// (nested fields joined with `__`, e.g. `AT_DIRECTORY__STORE__REDIS_URL`; the lists of
/// [`LIST_VARIABLES`] comma-separated), then `overrides` (dotted keys from command-line
/// flags, e.g. `("store.backend", "redis")`; those of [`LIST_VARIABLES`] comma-separated too).
/// Validation is the caller's, once, on the result.
pub fn load_layered<T: DeserializeOwned>(
    env_prefix: &str,
    file: Option<&Path>,
    overrides: &[(&str, String)],
) -> Result<T, String> {
    load_with_environment(env_prefix, None, file, overrides)
}

/// The options that environment variables give as comma-separated lists
/// (`AT_SERVER__STORE__REDIS_CLUSTER=redis://h1:6379,redis://h2:6379`): a [`StoreConfig`]'s
/// `redis_cluster`, wherever a binary embeds one (`store`, and the atServer's
/// `directory_store`). Named one by one: a separator for every variable would split values
/// that hold commas (`log.level = "warn,at_server=debug"`).
pub const LIST_VARIABLES: &[&str] = &["store.redis_cluster", "directory_store.redis_cluster"];

/// [`load_layered`] with the environment `environment` instead of the process's, if given.
fn load_with_environment<T: DeserializeOwned>(
    env_prefix: &str,
    environment: Option<config::Map<String, String>>,
    file: Option<&Path>,
    overrides: &[(&str, String)],
) -> Result<T, String> {
    let mut builder = config::Config::builder();
    if let Some(file) = file {
        builder = builder.add_source(config::File::from(file).required(true));
    }
    let mut variables = config::Environment::with_prefix(env_prefix)
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .source(environment);
    for key in LIST_VARIABLES {
        variables = variables.with_list_parse_key(key);
    }
    builder = builder.add_source(variables);
    for (key, value) in overrides {
        builder = match LIST_VARIABLES.contains(key) {
            true => builder.set_override(*key, value.split(',').collect::<Vec<_>>()),
            false => builder.set_override(*key, value.clone()),
        }
        .map_err(|e| e.to_string())?;
    }
    builder
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| e.to_string())
}

/// How a listener speaks TLS.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Serve plain TCP instead of TLS. Off by default; only for development or behind a
    /// TLS-terminating proxy. Real clients (Dart and Python SDKs) always speak TLS.
    pub plain: bool,
    /// PEM certificate chain, leaf first. With `key_file`, used as is.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Host names and IP addresses the generated certificate is valid for, when no
    /// `cert_file` is configured.
    pub self_signed_names: Vec<String>,
    /// A cluster CA (PEM certificate, with `ca_key_file`): without `cert_file`, the node's
    /// certificate is issued by it at each start, for `self_signed_names`, so every node of a
    /// cluster (and every peer trusting the CA) accepts every other. `at-server ca create`
    /// makes one.
    pub ca_file: Option<PathBuf>,
    /// The cluster CA's private key (PEM).
    pub ca_key_file: Option<PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            plain: false,
            cert_file: None,
            key_file: None,
            self_signed_names: vec!["localhost".into(), "127.0.0.1".into()],
            ca_file: None,
            ca_key_file: None,
        }
    }
}

impl TlsConfig {
    /// Checks the combination of fields once, after loading.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => return Err("tls.cert_file is set but tls.key_file is not".into()),
            (None, Some(_)) => return Err("tls.key_file is set but tls.cert_file is not".into()),
            _ => {}
        }
        match (&self.ca_file, &self.ca_key_file) {
            (Some(_), None) => Err("tls.ca_file is set but tls.ca_key_file is not".into()),
            (None, Some(_)) => Err("tls.ca_key_file is set but tls.ca_file is not".into()),
            (Some(_), Some(_)) if self.cert_file.is_some() => {
                Err("set tls.cert_file or tls.ca_file, not both".into())
            }
            _ => Ok(()),
        }
    }
}

/// Which storage backend holds the data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// On local disk under the data directory; one node. The default.
    #[default]
    Embedded,
    /// A Redis server shared by every node.
    Redis,
}

/// How a binary logs, to stderr.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter directives (`info`, `warn,at_server=debug`); empty is the binary's
    /// default. The binary's `AT_*_LOG` environment variable, when set, wins.
    pub level: String,
    /// `text` (the default) or `json`: one JSON object per line, for log collectors.
    pub format: LogFormat,
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogConfig {
    /// Installs the process's logger: the filter from `env_var` if set, else `level`, else
    /// `default_level`. Call once, before anything logs. Values and secrets are never logged
    /// by this code base (keys' values, CRAM secrets and Redis URLs stay out of log fields).
    pub fn init(&self, env_var: &str, default_level: &str) {
        use tracing_subscriber::EnvFilter;
        let filter = EnvFilter::try_from_env(env_var).unwrap_or_else(|_| {
            let level = if self.level.is_empty() {
                default_level
            } else {
                &self.level
            };
            EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new(default_level))
        });
        let logger = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter);
        let _ = match self.format {
            LogFormat::Text => logger.try_init(),
            LogFormat::Json => logger.json().try_init(),
        };
        log_panics();
    }
}

/// Creates `dir` (and its parents) if needed and makes it private to this user (mode 0700 on
/// Unix): a data directory holds CRAM secrets, signing keys, TLS keys and the admin socket,
/// so whatever mode a file inside gets (the store's own, the socket's before `chmod`), nobody
/// else can reach it.
///
/// A directory this user may not change the mode of (a volume mounted by someone else) is
/// used as it is, with a warning: its owner decides who else may read it.
pub fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let private = std::fs::Permissions::from_mode(0o700);
        if let Err(error) = std::fs::set_permissions(dir, private) {
            tracing::warn!(dir = %dir.display(), %error, "could not make the data directory private");
        }
    }
    Ok(())
}

/// What a panic carried, as text (a `&str` or `String` payload; anything else unnamed).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Makes every panic one log line (where, which thread, what), in the configured format,
/// instead of the default hook's text (and backtrace) on stderr: a panic is never silent,
/// and a hostile request that makes one cannot flood the log.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map_or_else(String::new, |l| format!("{}:{}", l.file(), l.line()));
        let message = panic_message(info.payload());
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        tracing::error!(%location, thread, %message, "panic");
    }));
}

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `embedded` (default) or `redis`.
    pub backend: Backend,
    /// Redis URL, `redis://[:password@]host:port[/db]`; with `backend = "redis"`, this or
    /// `redis_cluster`.
    pub redis_url: Option<Secret>,
    /// A Redis Cluster instead of one Redis: the URLs of some of its nodes
    /// (`["redis://h1:6379", "redis://h2:6379"]`, all `redis://` or all `rediss://`, one
    /// password), from which the rest of the cluster is learnt. Not with `redis_url`.
    pub redis_cluster: Vec<Secret>,
    /// Prefix put before every Redis key, so one Redis can hold several deployments.
    pub key_prefix: String,
    /// For a `rediss://` URL (Redis over TLS): the CA certificates (PEM) the Redis server's
    /// certificate must chain to; unset, the system's roots (a managed Redis with a public
    /// certificate).
    pub redis_ca_file: Option<PathBuf>,
    /// For a Redis that asks for client certificates: ours (PEM chain) and its key (PEM).
    pub redis_client_cert_file: Option<PathBuf>,
    pub redis_client_key_file: Option<PathBuf>,
    /// A file holding the Redis password (one trailing newline ignored), used instead of a
    /// password in `redis_url`: a mounted Secret keeps it out of the URL, the environment and
    /// the process's arguments. Read at start; a new password needs a restart.
    pub redis_password_file: Option<PathBuf>,
    /// How many replicas must hold an acknowledged write (Redis `WAIT`): 0 (default)
    /// acknowledges a write once its master has it, as Redis replicates asynchronously; a
    /// master that fails before passing it on loses it. At most [`MAX_WAIT_REPLICAS`].
    pub redis_wait_replicas: u32,
    /// How long a write waits for those replicas, in milliseconds (1 to
    /// [`MAX_WAIT_TIMEOUT_MS`]); past it the write fails (AT0002), though its master has it.
    pub redis_wait_timeout_ms: u64,
}

/// Bounds of `store.redis_wait_replicas` and `store.redis_wait_timeout_ms`: a write must
/// fail within the Redis response timeout (5 s), never wait it out.
pub const MAX_WAIT_REPLICAS: u32 = 16;
pub const MAX_WAIT_TIMEOUT_MS: u64 = 4_000;
/// `store.redis_wait_timeout_ms` when unset: replication on a working network takes well
/// under a millisecond; a second is a replica in trouble.
pub const DEFAULT_WAIT_TIMEOUT_MS: u64 = 1_000;

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            backend: Backend::default(),
            redis_url: None,
            redis_cluster: Vec::new(),
            key_prefix: String::new(),
            redis_ca_file: None,
            redis_client_cert_file: None,
            redis_client_key_file: None,
            redis_password_file: None,
            redis_wait_replicas: 0,
            redis_wait_timeout_ms: DEFAULT_WAIT_TIMEOUT_MS,
        }
    }
}

impl StoreConfig {
    /// Checks the combination of fields once, after loading.
    pub fn validate(&self) -> Result<(), String> {
        let urls = self.redis_urls();
        if self.redis_url.is_some() && !self.redis_cluster.is_empty() {
            return Err("set store.redis_url or store.redis_cluster, not both".into());
        }
        if self.backend == Backend::Redis && urls.is_empty() {
            return Err(
                "store.backend is redis but neither store.redis_url nor store.redis_cluster is set"
                    .into(),
            );
        }
        if urls.iter().any(|url| is_tls_url(url)) && !urls.iter().all(|url| is_tls_url(url)) {
            return Err("store.redis_cluster mixes rediss:// and redis:// URLs".into());
        }
        let tls_files = self.redis_ca_file.is_some()
            || self.redis_client_cert_file.is_some()
            || self.redis_client_key_file.is_some();
        if tls_files && !urls.first().is_some_and(|url| is_tls_url(url)) {
            return Err(
                "store.redis_ca_file and store.redis_client_*_file need rediss:// URLs \
                 (store.redis_url or store.redis_cluster)"
                    .into(),
            );
        }
        if self.redis_client_cert_file.is_some() != self.redis_client_key_file.is_some() {
            return Err(
                "store.redis_client_cert_file and store.redis_client_key_file go together".into(),
            );
        }
        if self.redis_password_file.is_some() && urls.is_empty() {
            return Err(
                "store.redis_password_file needs a store.redis_url or store.redis_cluster".into(),
            );
        }
        if self.redis_wait_replicas > 0 && urls.is_empty() {
            return Err(
                "store.redis_wait_replicas needs a store.redis_url or store.redis_cluster".into(),
            );
        }
        if self.redis_wait_replicas > MAX_WAIT_REPLICAS {
            return Err(format!(
                "store.redis_wait_replicas is at most {MAX_WAIT_REPLICAS}"
            ));
        }
        if !(1..=MAX_WAIT_TIMEOUT_MS).contains(&self.redis_wait_timeout_ms) {
            return Err(format!(
                "store.redis_wait_timeout_ms is 1 to {MAX_WAIT_TIMEOUT_MS}"
            ));
        }
        Ok(())
    }

    /// What an acknowledged write waits for (`redis_wait_replicas`), if anything.
    pub fn redis_wait(&self) -> Option<WaitReplicas> {
        (self.redis_wait_replicas > 0).then(|| WaitReplicas {
            replicas: self.redis_wait_replicas,
            timeout: std::time::Duration::from_millis(self.redis_wait_timeout_ms),
        })
    }

    /// The configured Redis URLs: `redis_url`, or the seeds of `redis_cluster`.
    fn redis_urls(&self) -> Vec<&str> {
        self.redis_url
            .iter()
            .chain(&self.redis_cluster)
            .map(Secret::expose)
            .collect()
    }

    /// The client of `redis_url` or `redis_cluster`: over TLS for `rediss://`, with the
    /// password, CA and client certificate files read now (so a missing file fails at start,
    /// not at the first reconnect). Nothing is connected yet.
    pub fn redis_client(&self) -> redis::RedisResult<RedisClient> {
        use redis::IntoConnectionInfo;
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| {
                std::io::Error::new(e.kind(), format!("reading {}: {e}", path.display()))
            })
        };
        let password = match &self.redis_password_file {
            Some(path) => {
                let password = String::from_utf8(read(path)?).map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: the password is not UTF-8", path.display()),
                    )
                })?;
                let password = password.strip_suffix('\n').unwrap_or(&password);
                Some(password.strip_suffix('\r').unwrap_or(password).to_string())
            }
            None => None,
        };
        let with_password = |url: &str| -> redis::RedisResult<redis::ConnectionInfo> {
            let info = url.into_connection_info()?;
            Ok(match &password {
                Some(password) => {
                    let settings = info.redis_settings().clone().set_password(password);
                    info.set_redis_settings(settings)
                }
                None => info,
            })
        };
        let urls = self.redis_urls();
        let tls = match urls.first() {
            Some(url) if is_tls_url(url) => Some(redis::TlsCertificates {
                client_tls: match (&self.redis_client_cert_file, &self.redis_client_key_file) {
                    (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                        client_cert: read(cert)?,
                        client_key: read(key)?,
                    }),
                    _ => None,
                },
                root_cert: self.redis_ca_file.as_ref().map(read).transpose()?,
            }),
            _ => None,
        };
        if self.redis_cluster.is_empty() {
            let info = with_password(urls.first().copied().unwrap_or(""))?;
            return Ok(RedisClient::Single(match tls {
                Some(certificates) => redis::Client::build_with_tls(info, certificates)?,
                None => redis::Client::open(info)?,
            }));
        }
        let seeds = urls
            .iter()
            .map(|url| with_password(url))
            .collect::<redis::RedisResult<Vec<_>>>()?;
        let cluster = |protocol: redis::ProtocolVersion| {
            let mut builder = redis::cluster::ClusterClientBuilder::new(seeds.clone())
                .use_protocol(protocol)
                .overall_response_timeout(Some(crate::redis_client::CLUSTER_REQUEST_TIMEOUT));
            if let Some(certificates) = tls.clone() {
                builder = builder.certs(certificates);
            }
            builder.build()
        };
        Ok(RedisClient::Cluster {
            commands: cluster(redis::ProtocolVersion::RESP2)?,
            pushes: cluster(redis::ProtocolVersion::RESP3)?,
        })
    }
}

/// Whether a Redis URL asks for TLS (`rediss://`, as the `redis` crate reads it).
fn is_tls_url(url: &str) -> bool {
    url.get(..9)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"))
}

/// A configuration value that must not reach a log: `Debug` prints `MASKED`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MASKED")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_masked_in_debug_output() {
        let store = StoreConfig {
            backend: Backend::Redis,
            redis_url: Some(Secret::new("redis://:hunter2@db:6379")),
            ..StoreConfig::default()
        };
        let shown = format!("{store:?}");
        assert!(shown.contains("MASKED"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn redis_backend_needs_a_url() {
        let store = StoreConfig {
            backend: Backend::Redis,
            ..StoreConfig::default()
        };
        assert!(store.validate().is_err());
        assert!(StoreConfig::default().validate().is_ok());
        // TLS files only with a rediss:// URL; a client certificate only with its key.
        let tls = StoreConfig {
            backend: Backend::Redis,
            redis_url: Some(Secret::new("rediss://:pw@db:6380")),
            redis_ca_file: Some("ca.pem".into()),
            ..StoreConfig::default()
        };
        assert!(tls.validate().is_ok());
        let plain = StoreConfig {
            redis_url: Some(Secret::new("redis://db:6379")),
            ..tls.clone()
        };
        assert!(plain.validate().unwrap_err().contains("rediss://"));
        let half = StoreConfig {
            redis_client_cert_file: Some("client.pem".into()),
            ..tls
        };
        assert!(half.validate().unwrap_err().contains("go together"));
    }

    #[test]
    fn a_redis_cluster_is_named_by_its_seeds_instead_of_a_url() {
        let seeds = |urls: &[&str]| urls.iter().map(|u| Secret::new(*u)).collect::<Vec<_>>();
        let cluster = StoreConfig {
            backend: Backend::Redis,
            redis_cluster: seeds(&["redis://h1:6379", "redis://h2:6379"]),
            ..StoreConfig::default()
        };
        assert!(cluster.validate().is_ok());
        assert!(cluster.redis_client().unwrap().is_cluster());
        let both = StoreConfig {
            redis_url: Some(Secret::new("redis://h1:6379")),
            ..cluster.clone()
        };
        assert!(both.validate().unwrap_err().contains("not both"));
        let mixed = StoreConfig {
            redis_cluster: seeds(&["rediss://h1:6379", "redis://h2:6379"]),
            ..cluster.clone()
        };
        assert!(mixed.validate().unwrap_err().contains("mixes"));
        // TLS files and a password file apply to a cluster's seeds as to one URL.
        let tls = StoreConfig {
            redis_cluster: seeds(&["rediss://h1:6379", "rediss://h2:6379"]),
            redis_ca_file: Some("ca.pem".into()),
            redis_password_file: Some("password".into()),
            ..cluster.clone()
        };
        assert!(tls.validate().is_ok());
        let plain_with_ca = StoreConfig {
            redis_ca_file: Some("ca.pem".into()),
            ..cluster
        };
        assert!(plain_with_ca.validate().unwrap_err().contains("rediss://"));
        let nothing = StoreConfig {
            backend: Backend::Redis,
            ..StoreConfig::default()
        };
        assert!(nothing.validate().unwrap_err().contains("redis_cluster"));
    }

    #[test]
    fn cluster_seeds_come_from_one_comma_separated_variable() {
        #[derive(Debug, Default, Deserialize)]
        #[serde(default)]
        struct Binary {
            store: StoreConfig,
            log: LogConfig,
        }
        let environment = [
            ("AT_TEST__STORE__BACKEND", "redis"),
            (
                "AT_TEST__STORE__REDIS_CLUSTER",
                "redis://h1:6379,redis://h2:6379",
            ),
            // Other values keep their commas.
            ("AT_TEST__LOG__LEVEL", "warn,at_server=debug"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let loaded: Binary =
            load_with_environment("AT_TEST", Some(environment), None, &[]).unwrap();
        let seeds: Vec<&str> = loaded
            .store
            .redis_cluster
            .iter()
            .map(Secret::expose)
            .collect();
        assert_eq!(seeds, ["redis://h1:6379", "redis://h2:6379"]);
        assert_eq!(loaded.log.level, "warn,at_server=debug");
        assert!(loaded.store.validate().is_ok());

        // A command-line flag's value is split the same way, and wins over the environment.
        let environment = [(
            "AT_TEST__STORE__REDIS_CLUSTER".to_string(),
            "redis://h1:6379".to_string(),
        )]
        .into_iter()
        .collect();
        let overrides = [
            (
                "store.redis_cluster",
                "redis://h3:6379,redis://h4:6379".into(),
            ),
            ("log.level", "warn,at_server=debug".into()),
        ];
        let loaded: Binary =
            load_with_environment("AT_TEST", Some(environment), None, &overrides).unwrap();
        let seeds: Vec<&str> = loaded
            .store
            .redis_cluster
            .iter()
            .map(Secret::expose)
            .collect();
        assert_eq!(seeds, ["redis://h3:6379", "redis://h4:6379"]);
        assert_eq!(loaded.log.level, "warn,at_server=debug");
    }

    #[test]
    fn waiting_for_replicas_is_bounded_and_needs_redis() {
        let on_redis = |replicas, timeout_ms| StoreConfig {
            backend: Backend::Redis,
            redis_url: Some(Secret::new("redis://db:6379")),
            redis_wait_replicas: replicas,
            redis_wait_timeout_ms: timeout_ms,
            ..StoreConfig::default()
        };
        assert_eq!(on_redis(0, DEFAULT_WAIT_TIMEOUT_MS).redis_wait(), None);
        let one = on_redis(1, 250);
        assert!(one.validate().is_ok());
        assert_eq!(
            one.redis_wait(),
            Some(WaitReplicas {
                replicas: 1,
                timeout: std::time::Duration::from_millis(250)
            })
        );
        for refused in [on_redis(17, 250), on_redis(1, 0), on_redis(1, 4001)] {
            assert!(refused.validate().is_err(), "{refused:?}");
        }
        let embedded = StoreConfig {
            redis_wait_replicas: 1,
            ..StoreConfig::default()
        };
        assert!(embedded.validate().unwrap_err().contains("redis_wait"));
    }

    #[test]
    fn cert_and_key_come_together() {
        let tls = TlsConfig {
            cert_file: Some("c.pem".into()),
            ..TlsConfig::default()
        };
        assert!(tls.validate().is_err());
        assert!(TlsConfig::default().validate().is_ok());
    }
}
