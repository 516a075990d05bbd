//! An `at-server` node on a store of a test's choosing, routed by SNI, and an owner's
//! connection to it: what the multi-node and notification tests share.
// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use at_tests::client::Client;
use at_tests::process::{run, workspace_binary, Running};
use at_tests::redis::RedisServer;

pub const DOMAIN: &str = "atsign.test";
/// How long a change made through one node may take to show on another.
pub const PROPAGATION: Duration = Duration::from_secs(10);

/// One node: its configuration file and, while serving, its process.
pub struct Node {
    config: PathBuf,
    ca: PathBuf,
    running: Running,
}

impl Node {
    /// Starts node `n` with its own data dir under `dir`, on `redis` (else the embedded
    /// store), registering atSigns in the directory store under `dir`.
    pub fn start(dir: &Path, n: usize, redis: Option<&RedisServer>) -> Node {
        Node::start_with(dir, n, redis, "")
    }

    /// [`Node::start`] on the Redis (or Redis Cluster) that `store` names: the lines of a
    /// `[store]` section without its header, e.g. from [`store_lines`].
    pub fn start_on(dir: &Path, n: usize, store: &str) -> Node {
        Node::start_configured(dir, n, Some(store), "")
    }

    /// [`Node::start`] with `extra` top-level TOML; with `metrics_listen` in it, waits for the
    /// HTTP listener too ([`Node::metrics`]).
    pub fn start_with(dir: &Path, n: usize, redis: Option<&RedisServer>, extra: &str) -> Node {
        let store =
            redis.map(|redis| format!("backend = \"redis\"\nredis_url = \"{}\"\n", redis.url()));
        Node::start_configured(dir, n, store.as_deref(), extra)
    }

    fn start_configured(dir: &Path, n: usize, store: Option<&str>, extra: &str) -> Node {
        let data = dir.join(format!("node{n}"));
        std::fs::create_dir_all(&data).unwrap();
        let config = data.join("server.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\ndirectory_data_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\n\
                 public_port = 6464\nsni_domain = \"{DOMAIN}\"\n{extra}\n{}",
                data.display(),
                dir.join("directory").display(),
                // On Redis, the directory's registrations are there too (one directory
                // process serves them: `directory`).
                store.map_or(String::new(), |store| format!(
                    "[store]\n{store}[directory_store]\n{store}"
                ))
            ),
        )
        .unwrap();
        let running = Running::start(
            &workspace_binary("at-server"),
            &["--config", &config.display().to_string(), "serve"],
            &[("AT_SERVER_LOG", "warn")],
            extra.contains("metrics_listen"),
        );
        Node {
            ca: data.join("tls/ca.pem"),
            config,
            running,
        }
    }

    /// Its process, e.g. to send it SIGTERM.
    pub fn process(&mut self) -> &mut Running {
        &mut self.running
    }

    /// The address of its (SNI) listener.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.running.addr
    }

    /// The address of its HTTP listener (`/healthz`, `/readyz`, `/metrics`).
    pub fn metrics(&self) -> std::net::SocketAddr {
        self.running.metrics.expect("started with metrics_listen")
    }

    /// Runs an admin command through this node (its admin socket).
    pub fn admin(&self, args: &[&str]) -> String {
        let config = self.config.display().to_string();
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        let out = run(&workspace_binary("at-server"), &all, &[]);
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Provisions `atsign` here; returns its TLS host name and CRAM secret.
    pub fn provision(&self, atsign: &str) -> (String, String) {
        let out = self.admin(&["provision", atsign]);
        let (address, secret) = at_tests::servers::provisioned(&out, atsign);
        let host = address.rsplit_once(':').unwrap().0.to_string();
        (host, secret)
    }

    pub fn try_connect(&self, host: &str) -> Result<Client, String> {
        let mut client = Client::try_tls_named(self.running.addr, &self.ca, host)?;
        client.try_expect(b"@", Duration::from_secs(5))?;
        Ok(client)
    }

    /// An owner connection for `atsign`, retried until this node serves it (bounded).
    pub fn owner(&self, atsign: &str, host: &str, secret: &str) -> Client {
        let deadline = Instant::now() + PROPAGATION;
        loop {
            match self.try_connect(host) {
                Ok(mut client) => {
                    client.cram_in(atsign, secret);
                    return client;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("{atsign} not served within {PROPAGATION:?}: {e}"),
            }
        }
    }
}

/// The lines of a `[store]` section (without its header) on `cluster`.
pub fn store_lines(cluster: &at_tests::redis_cluster::RedisCluster) -> String {
    cluster
        .store_section()
        .trim_start_matches("[store]\n")
        .to_string()
}

/// An `at-directory` serving the registrations in the Redis (or Redis Cluster) that `store`
/// names ([`Node::start_on`]), with its CA under `dir`.
pub fn directory_on(dir: &Path, store: &str) -> (Running, PathBuf) {
    let data = dir.join("directory-process");
    std::fs::create_dir_all(&data).unwrap();
    let config = data.join("directory.toml");
    std::fs::write(&config, format!("[store]\n{store}")).unwrap();
    let config = config.display().to_string();
    let running = at_tests::servers::directory_with_env(
        &data,
        None,
        false,
        &[("AT_DIRECTORY_CONFIG", &config)],
    );
    (running, data.join("tls/ca.pem"))
}

/// An `at-directory` serving the registrations in `redis`, with its CA under `dir`.
pub fn directory(dir: &Path, redis: &RedisServer) -> (Running, PathBuf) {
    let data = dir.join("directory-process");
    let running = at_tests::servers::directory(&data, Some(&redis.url()), false);
    (running, data.join("tls/ca.pem"))
}

/// `update:<key> <value>` on `client` (authenticated as `atsign`); the commit id.
pub fn update(client: &mut Client, atsign: &str, key: &str, value: &str) -> u64 {
    client.send(format!("update:{key} {value}\n").as_bytes());
    let prompt = format!("\n{atsign}@");
    let reply = client.read_until(prompt.as_bytes());
    reply
        .strip_prefix("data:")
        .and_then(|r| r.strip_suffix(&prompt))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("update:{key}: {reply:?}"))
}
