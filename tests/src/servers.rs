//! Independent atServers that reach each other, as two operators' servers do: one cluster CA
//! (`at-server ca-create`), one `at-directory`, and servers each with its own store (embedded,
//! or a `redis-server` of its own), a certificate issued by the CA, and one port per hosted
//! atSign. What the server-to-server tests and the notification benchmark share.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::client::Client;
use crate::process::{run, workspace_binary, Running};
use crate::redis::RedisServer;

/// The CA and the directory every server of a [`Cluster`] uses.
pub struct Cluster {
    root: PathBuf,
    directory: Running,
}

/// Where a [`Server`] of a [`Cluster`] keeps its atSigns' data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// Its embedded store, under its data directory.
    Embedded,
    /// A `redis-server` of its own, started with it and stopped after it.
    OwnRedis,
    /// The same, reached only over TLS (`rediss://`, the Redis's CA in `redis_ca_file`) with
    /// a client certificate the Redis requires: a managed Redis with encryption in transit.
    OwnRedisOverTls,
}

/// One atServer of a [`Cluster`], hosting one atSign (or a few) on a port of its own.
pub struct Server {
    config: PathBuf,
    data: PathBuf,
    /// The port of its (first) atSign.
    pub port: u16,
    running: Option<Running>,
    /// Its Redis with [`Store::OwnRedis`]; after `running`, so it outlives the process.
    _redis: Option<RedisServer>,
}

/// What `at-server provision <atsign>` printed, read: the address the directory now gives for
/// `atsign` (`host:port`) and its CRAM secret. Panics (with the output) on anything else.
pub fn provisioned(output: &str, atsign: &str) -> (String, String) {
    let mut lines = output.lines();
    let address = lines
        .next()
        .and_then(|l| l.strip_prefix(&format!("provisioned {atsign} at ")))
        .unwrap_or_else(|| panic!("{output}"))
        .to_string();
    let secret = lines
        .next()
        .and_then(|l| l.strip_prefix("cram secret: "))
        .unwrap_or_else(|| panic!("{output}"))
        .to_string();
    (address, secret)
}

fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// `at-directory serve` on a free loopback port with its data (and TLS files) in `data`, on
/// the Redis at `redis_url` or its embedded store, with its HTTP listener (`Running::metrics`)
/// on a free port when `with_http`.
pub fn directory(data: &Path, redis_url: Option<&str>, with_http: bool) -> Running {
    directory_with_env(data, redis_url, with_http, &[])
}

/// [`directory`] with more environment variables (`AT_DIRECTORY__<OPTION>` overrides).
pub fn directory_with_env(
    data: &Path,
    redis_url: Option<&str>,
    with_http: bool,
    envs: &[(&str, &str)],
) -> Running {
    let data = data.display().to_string();
    let mut args = vec!["--data-dir", data.as_str()];
    if let Some(url) = redis_url {
        args.extend(["--redis", url]);
    }
    let http = if with_http { "127.0.0.1:0" } else { "" };
    args.extend(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", http]);
    let mut env = vec![("AT_DIRECTORY_LOG", "warn")];
    env.extend_from_slice(envs);
    Running::start(&workspace_binary("at-directory"), &args, &env, with_http)
}

impl Cluster {
    /// Makes the CA under `root` and starts the directory.
    pub fn start(root: &Path) -> Cluster {
        let ca = root.join("ca");
        let out = run(
            &workspace_binary("at-server"),
            &["ca-create", "--out", &ca.display().to_string()],
            &[],
        );
        assert!(out.status.success(), "ca-create: {out:?}");
        let directory = directory(&root.join("directory"), None, false);
        Cluster {
            root: root.to_path_buf(),
            directory,
        }
    }

    /// The cluster CA, which clients trust for every server.
    pub fn ca(&self) -> PathBuf {
        self.root.join("ca/ca.pem")
    }

    /// The directory's own CA.
    pub fn directory_ca(&self) -> PathBuf {
        self.root.join("directory/tls/ca.pem")
    }

    pub fn directory_addr(&self) -> SocketAddr {
        self.directory.addr
    }

    /// Tells the directory that `atsign` lives at `address` (its admin command, run while it
    /// serves: it reads its log again on a miss), for a server the test plays itself.
    pub fn register(&self, atsign: &str, address: SocketAddr) {
        let out = run(
            &workspace_binary("at-directory"),
            &[
                "--data-dir",
                &self.root.join("directory").display().to_string(),
                "register",
                atsign,
                &address.to_string(),
            ],
            &[],
        );
        assert!(out.status.success(), "register: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("registered {atsign} at {address}\n")
        );
    }

    /// Configures server `name` (with `extra` TOML lines for the top level), provisions
    /// `atsign` on it and returns it, not yet serving, with the atSign's CRAM secret.
    pub fn server(&self, name: &str, atsign: &str, extra: &str) -> (Server, String) {
        self.server_on(name, atsign, extra, Store::Embedded)
    }

    /// [`Cluster::server`] keeping its data in `store`.
    pub fn server_on(
        &self,
        name: &str,
        atsign: &str,
        extra: &str,
        store: Store,
    ) -> (Server, String) {
        let (server, mut secrets) = self.server_hosting_on(name, &[atsign], extra, store);
        (server, secrets.remove(0))
    }

    /// [`Cluster::server`] hosting every one of `atsigns`, each on a port of its own (the
    /// first on [`Server::port`], the next ones after it, in order); their CRAM secrets.
    pub fn server_hosting(
        &self,
        name: &str,
        atsigns: &[&str],
        extra: &str,
    ) -> (Server, Vec<String>) {
        self.server_hosting_on(name, atsigns, extra, Store::Embedded)
    }

    /// [`Cluster::server_hosting`] keeping its data in `store`.
    pub fn server_hosting_on(
        &self,
        name: &str,
        atsigns: &[&str],
        extra: &str,
        store: Store,
    ) -> (Server, Vec<String>) {
        let (redis, store_section) = match store {
            Store::Embedded => (None, String::new()),
            Store::OwnRedis => {
                let redis = RedisServer::start();
                let section = format!(
                    "[store]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
                    redis.url()
                );
                (Some(redis), section)
            }
            Store::OwnRedisOverTls => {
                let files = crate::redis::TlsFiles::make(&self.root.join(format!("{name}-redis")));
                let redis = RedisServer::start_tls_verifying_clients(&files);
                let section = format!(
                    "[store]\nbackend = \"redis\"\nredis_url = \"rediss://127.0.0.1:{}\"\n\
                     redis_ca_file = {}\nredis_client_cert_file = {}\n\
                     redis_client_key_file = {}\n",
                    redis.tls_port().expect("a TLS port"),
                    toml_path(&files.ca),
                    toml_path(&files.client.0),
                    toml_path(&files.client.1),
                );
                (Some(redis), section)
            }
        };
        let count = u16::try_from(atsigns.len()).expect("a few atSigns");
        let port = crate::free_ports(count);
        let (data, config) = (self.root.join(name), self.root.join(format!("{name}.toml")));
        let ca = self.root.join("ca");
        std::fs::write(
            &config,
            format!(
                "data_dir = {}\ndirectory_data_dir = {}\npublic_host = \"127.0.0.1\"\n\
                 listen = \"127.0.0.1:0\"\nport_range_start = {port}\nport_range_len = {count}\n\
                 directory = \"{}\"\ndirectory_ca_file = {}\npeer_ca_files = [{}]\n{extra}\n\
                 [tls]\nca_file = {}\nca_key_file = {}\n{store_section}",
                toml_path(&data),
                toml_path(&self.root.join("directory")),
                self.directory.addr,
                toml_path(&self.directory_ca()),
                toml_path(&self.ca()),
                toml_path(&self.ca()),
                toml_path(&ca.join("ca-key.pem")),
            ),
        )
        .unwrap();
        let config_arg = config.display().to_string();
        // Provisioning takes the lowest free port of the range: the order of `atsigns`.
        let secrets = (port..)
            .zip(atsigns)
            .map(|(its_port, atsign)| {
                let out = run(
                    &workspace_binary("at-server"),
                    &["--config", &config_arg, "provision", atsign],
                    &[],
                );
                assert!(out.status.success(), "provision: {out:?}");
                let stdout = String::from_utf8(out.stdout).unwrap();
                let (address, secret) = provisioned(&stdout, atsign);
                assert_eq!(address, format!("127.0.0.1:{its_port}"), "{stdout}");
                secret
            })
            .collect();
        // The data is where `store` says: no embedded store was made beside a Redis one.
        assert_eq!(
            data.join("store").exists(),
            store == Store::Embedded,
            "{name}'s embedded store after provisioning on {store:?}"
        );
        let server = Server {
            config,
            data,
            port,
            running: None,
            _redis: redis,
        };
        (server, secrets)
    }
}

impl Server {
    /// Starts `serve` (logging warnings only).
    pub fn start(&mut self) {
        assert!(self.running.is_none(), "already running");
        let config = self.config.display().to_string();
        self.running = Some(Running::start(
            &workspace_binary("at-server"),
            &["--config", &config, "serve"],
            &[("AT_SERVER_LOG", "warn")],
            false,
        ));
    }

    pub fn stop(&mut self) {
        self.running.take().expect("running").stop();
    }

    /// Stops it as Kubernetes does (SIGTERM) and waits up to `within` for it to exit: its exit
    /// status, or `None` if it was still running (then it is killed).
    pub fn terminate(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        let mut running = self.running.take().expect("running");
        running.terminate();
        let status = running.wait_exit(within);
        running.stop();
        status
    }

    /// Its configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.config.clone()
    }

    /// The process id while serving.
    pub fn pid(&self) -> u32 {
        self.running.as_ref().expect("running").pid()
    }

    /// Where its TLS certificate and key are (`cert.pem`, `key.pem`), issued by the cluster CA
    /// for 127.0.0.1 and localhost.
    pub fn tls_dir(&self) -> PathBuf {
        self.data.join("tls")
    }

    /// The address of its atSign's port.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A new connection to its atSign, past the `@` prompt, trusting `ca`.
    pub fn connect(&self, ca: &Path) -> Client {
        let mut client = Client::tls_named(self.addr(), ca, "127.0.0.1");
        client.expect(b"@");
        client
    }
}

/// The usual two-server scene: @alice served by A and @bob by B, on one cluster CA and
/// directory, each with an owner connection logged in with cram.
pub struct AliceAndBob {
    pub cluster: Cluster,
    pub ca: PathBuf,
    pub a: Server,
    pub b: Server,
    pub alice_secret: String,
    pub bob_secret: String,
    /// @alice's owner connection to A (prompt `\n@alice@`).
    pub alice: Client,
    /// @bob's owner connection to B (prompt `\n@bob@`).
    pub bob: Client,
}

impl AliceAndBob {
    /// Starts it under `root`, with `a_extra` / `b_extra` top-level TOML for A / B, each on
    /// its embedded store.
    pub fn start(root: &Path, a_extra: &str, b_extra: &str) -> AliceAndBob {
        AliceAndBob::start_on(root, a_extra, b_extra, Store::Embedded)
    }

    /// [`AliceAndBob::start`] with A and B each keeping its data in `store` (with
    /// [`Store::OwnRedis`], each its own Redis).
    pub fn start_on(root: &Path, a_extra: &str, b_extra: &str, store: Store) -> AliceAndBob {
        let cluster = Cluster::start(root);
        let ca = cluster.ca();
        let (mut a, alice_secret) = cluster.server_on("a", "@alice", a_extra, store);
        let (mut b, bob_secret) = cluster.server_on("b", "@bob", b_extra, store);
        a.start();
        b.start();
        let mut alice = a.connect(&ca);
        alice.cram_in("@alice", &alice_secret);
        let mut bob = b.connect(&ca);
        bob.cram_in("@bob", &bob_secret);
        AliceAndBob {
            cluster,
            ca,
            a,
            b,
            alice_secret,
            bob_secret,
            alice,
            bob,
        }
    }
}

/// Polls `check` every 100 ms until it holds; panics after 10 s.
pub fn eventually(mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "not within 10 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
