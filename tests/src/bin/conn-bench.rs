//! `conn-bench`: capacity at tenant scale. N devices over M atSigns each hold a TLS connection
//! to ONE atServer node (embedded store), or to one of three on one Redis (`--nodes 3`,
//! `deploy/local-cluster.sh`), authenticated with APKAM (`pkam:enrollmentId:`) and monitoring;
//! what it costs to get them there, to keep them, and to reach them.
//!
//! What it does, in one session on one machine (loopback only):
//! 1. provisions M atSigns with `at-server provision --json` into a fresh data directory, and
//!    starts `at-server serve` on it, SNI-routed (one shared port), with limits that let it hold
//!    every connection (`max_connections`, `inbound_max_limit`, the unauthenticated pools);
//! 2. per atSign, one connection logs in with `cram` and sends `enroll:request` with the test RSA
//!    key (`common/testdata/auth`), approved at once; it stays open as that atSign's sender;
//! 3. reads the server's `VmRSS`, then sets up the N devices, `--concurrency` at a time, device
//!    i for atSign i % M: TCP connect, TLS handshake, `from:@x`, `pkam:enrollmentId:<id>:<sig>`
//!    (RSASSA-PKCS1-v1_5 SHA-256 of the challenge, made here with `ring`), `monitor` and a
//!    `noop:0` whose `data:ok` says the monitor is subscribed: the setup rate is devices set up
//!    / (last one done − first started), with each device's setup time;
//! 4. leaves them idle `--idle` seconds and reads `VmRSS` again: (after − before) / N per idle
//!    connection (the atSigns' key stores were already loaded by the senders);
//! 5. fan-out: one notification per atSign unmeasured (warm-up), then `--fanout-repeats` times,
//!    atSign k % M: its sender sends `notify:id:<id>:update:messageType:text:@x:fanout<k>` (to
//!    itself: it goes straight to its received log and its monitors); each of its monitors
//!    stamps the line with that id; latency is from just before the `notify` was written to
//!    each monitor's line (and the last one's);
//! 6. counts every failure instead of stopping at it: connections refused (AT0012) or failed
//!    at any step, monitors closed afterwards, deliveries missing.
//!
//! Every phase is bounded by `--seconds`, every exchange by 10 s; the server is killed at the
//! end. The soft file-descriptor limit is raised to the hard one first (the client holds N
//! connections, the server N more). Build `at-server` in the same target directory first:
//! `cargo build --release -p at-server -p at-tests && ./target/release/conn-bench --help`

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use at_tests::apkam::pkam_signature;
use at_tests::bench::{
    connect_tls_from, connector, cpu_seconds, cram_login, fmt_latency, load_average, number_arg,
    read_until, read_until_suffix, rss_bytes, write_within, Stream,
};
use at_tests::local_cluster::LocalCluster;
use at_tests::process::{self, Running};
use at_tests::TempDir;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_rustls::TlsConnector;

const USAGE: &str = "\
conn-bench: N devices over M atSigns connected to one atServer node, or to three on one Redis
(TLS, pkam with an APKAM enrollment, monitor): setup rate, idle memory per connection,
notification fan-out latency

USAGE: conn-bench [OPTIONS]

OPTIONS (defaults in brackets):
  --devices N          device connections, device i for atSign i % M [2000]
  --atsigns M          atSigns provisioned [20]
  --senders S          of those, how many (the first S) keep the connection that enrolled
                       open as their sender, for the fan-out; the others close it [all]
  --fanout-repeats K   measured notifications, one atSign's monitors each (atSign k % S),
                       after one unmeasured per sender [50]
  --default-limits     serve with the node's default connection limits (the node's limit
                       derived from its file-descriptor limit, 200 per atSign) instead of
                       limits raised to hold every connection
  --concurrency C      device connections being set up at once [64]
  --idle S             seconds the connected devices are left idle before VmRSS is read [5]
  --seconds S          bound on each phase (enrolling, setting up, fan-out), seconds [120]
  --client-threads T   tokio worker threads of this client [1]
  --nodes K            1: one node on its own (embedded store); 3: three nodes on one Redis
                       (deploy/local-cluster.sh, SNI-routed), device i on node i % 3, the
                       senders on node 1, memory and CPU summed over the nodes; at most 100
                       atSigns (every node binds a port per atSign) [1]
  --help               this text

Loopback only; the at-server processes are stopped at the end. A connection that fails is
counted (refused with AT0012, or failed at another step), never fatal.";

const MAX_DEVICES: usize = 100_000;
const MAX_ATSIGNS: usize = 10_000;
const MAX_REPEATS: usize = 100_000;
const MAX_CONCURRENCY: usize = 1000;
const MAX_SECONDS: u64 = 3600;
/// atSigns on three nodes: each node binds a port per atSign on its own address.
const MAX_ATSIGNS_ON_THREE: usize = 100;
/// atSigns enrolling at once.
const ENROLL_CONCURRENCY: usize = 8;
/// Longest wait for one answer, one handshake, or one notification's deliveries.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the freshly started server (and its atSigns' key stores) is left alone before
/// the first `VmRSS` reading.
const SETTLE: Duration = Duration::from_secs(3);
/// Descriptors the server keeps back for itself (its own `max_connections` derivation keeps
/// 512: files, peer links).
const SERVER_RESERVED_FDS: u64 = 512;
/// Descriptors this client needs beyond its connections.
const CLIENT_RESERVED_FDS: u64 = 64;
/// The test RSA key pair every device of the bench signs with.
const PUBLIC_KEY: &str = include_str!("../../../common/testdata/auth/rsa_public_spki.b64");
const PRIVATE_KEY: &str = include_str!("../../../common/testdata/auth/rsa_private_pkcs8.b64");

#[derive(Debug, Clone, PartialEq, Eq)]
struct Options {
    devices: usize,
    atsigns: usize,
    /// 0: every atSign keeps its sender.
    senders: usize,
    fanout_repeats: usize,
    default_limits: bool,
    concurrency: usize,
    idle: u64,
    seconds: u64,
    client_threads: usize,
    /// 1, or 3 on one Redis.
    nodes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            devices: 2000,
            atsigns: 20,
            senders: 0,
            fanout_repeats: 50,
            default_limits: false,
            concurrency: 64,
            idle: 5,
            seconds: 120,
            client_threads: 1,
            nodes: 1,
        }
    }
}

/// `Ok(None)` means `--help` was asked for.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options::default();
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--help" | "-h" => return Ok(None),
            "--devices" => options.devices = number_arg(&flag, args.next(), 1, MAX_DEVICES)?,
            "--atsigns" => options.atsigns = number_arg(&flag, args.next(), 1, MAX_ATSIGNS)?,
            "--senders" => options.senders = number_arg(&flag, args.next(), 1, MAX_ATSIGNS)?,
            "--default-limits" => options.default_limits = true,
            "--fanout-repeats" => {
                options.fanout_repeats = number_arg(&flag, args.next(), 0, MAX_REPEATS)?
            }
            "--concurrency" => {
                options.concurrency = number_arg(&flag, args.next(), 1, MAX_CONCURRENCY)?
            }
            "--idle" => options.idle = number_arg(&flag, args.next(), 0, MAX_SECONDS)?,
            "--seconds" => options.seconds = number_arg(&flag, args.next(), 1, MAX_SECONDS)?,
            "--client-threads" => options.client_threads = number_arg(&flag, args.next(), 1, 64)?,
            "--nodes" => {
                options.nodes = number_arg(&flag, args.next(), 1, 3)?;
                if options.nodes == 2 {
                    return Err("--nodes is 1 or 3".into());
                }
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if options.atsigns > options.devices {
        return Err(format!(
            "--atsigns {} is more than --devices {}: every atSign needs a device",
            options.atsigns, options.devices
        ));
    }
    if options.nodes == 3 && options.atsigns > MAX_ATSIGNS_ON_THREE {
        return Err(format!(
            "--nodes 3 takes at most {MAX_ATSIGNS_ON_THREE} atSigns (every node binds a port per atSign)"
        ));
    }
    if options.senders == 0 || options.senders > options.atsigns {
        options.senders = options.atsigns;
    }
    Ok(Some(options))
}

fn main() -> ExitCode {
    at_tests::bench::main("conn-bench", USAGE, parse_args, run)
}

/// The soft `RLIMIT_NOFILE` raised to the hard one (as the server raises its own); returns
/// (soft, hard) as they are then.
fn raise_nofile() -> Result<(u64, u64), String> {
    let raised = rlimit::increase_nofile_limit(u64::MAX);
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map_err(|e| format!("reading the file-descriptor limit: {e}"))?;
    if let Err(e) = raised {
        println!("conn-bench: could not raise the file-descriptor limit ({e}); soft {soft}");
    }
    Ok((soft, hard))
}

fn at_server_binary() -> Result<PathBuf, String> {
    let server = process::workspace_binary("at-server");
    if !server.is_file() {
        return Err(format!(
            "{} not found: build it in the same target directory first \
             (cargo build --release -p at-server -p at-tests)",
            server.display()
        ));
    }
    Ok(server)
}

/// Devices of the atSign with the most (atSign i % M gets device i).
fn devices_per_atsign(options: &Options) -> usize {
    options.devices.div_ceil(options.atsigns)
}

fn run(options: &Options) -> Result<(), String> {
    let (soft, hard) = raise_nofile()?;
    let connections = (options.devices + options.senders) as u64;
    if connections + CLIENT_RESERVED_FDS > soft {
        return Err(format!(
            "{connections} connections need {} file descriptors here, but the limit is {soft} \
             (hard {hard}): fewer --devices, or a higher hard limit (ulimit -Hn)",
            connections + CLIENT_RESERVED_FDS
        ));
    }
    if connections + SERVER_RESERVED_FDS > hard {
        return Err(format!(
            "the server would need {} file descriptors for {connections} connections, over \
             the hard limit {hard}",
            connections + SERVER_RESERVED_FDS
        ));
    }
    let server = at_server_binary()?;
    println!(
        "conn-bench: {} devices over {} atSigns (up to {} each), concurrency {}, {} client \
         thread(s), {} CPU(s), file descriptors soft {soft} / hard {hard}",
        options.devices,
        options.atsigns,
        devices_per_atsign(options),
        options.concurrency,
        options.client_threads,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let began = Instant::now();
    let (nodes, tenants) = Nodes::start(&server, options)?;
    println!(
        "conn-bench: {} node(s) serving {} atSigns, provisioned in {:.1} s",
        options.nodes,
        tenants.len(),
        began.elapsed().as_secs_f64()
    );
    let runtime = if options.client_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.client_threads)
            .enable_all()
            .build()
    }
    .map_err(|e| format!("tokio runtime: {e}"))?;
    let target = Target {
        addrs: nodes.addrs(),
        connector: connector(&nodes.ca())?,
    };
    let outcome = runtime.block_on(bench(&target, tenants, (&server, &nodes), options));
    runtime.shutdown_timeout(Duration::from_secs(2));
    nodes.stop();
    let figures = outcome?;
    figures.print(options);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The nodes.

/// The nodes under test.
enum Nodes {
    /// One node on its own data directory (embedded store).
    One { node: Node, running: Running },
    /// Three nodes on one Redis, SNI-routed on each node's shared port.
    Three(LocalCluster),
}

impl Nodes {
    /// Starts the nodes and provisions `--atsigns` atSigns on them.
    fn start(server: &Path, options: &Options) -> Result<(Nodes, Vec<Tenant>), String> {
        let names: Vec<String> = (0..options.atsigns).map(|i| format!("cb{i:05}")).collect();
        if options.nodes == 1 {
            let node = Node::new(options)?;
            let tenants = provision(server, &node.config, node.dir.path(), &names)?;
            let running = node.serve(server);
            return Ok((Nodes::One { node, running }, tenants));
        }
        let ports = u16::try_from(options.atsigns).map_err(|_| "too many atSigns")?;
        let cluster = LocalCluster::up(
            "conn-bench",
            ports,
            &[
                ("LOCAL_CLUSTER_SNI_DOMAIN", SNI_DOMAIN),
                ("LOCAL_CLUSTER_NODE_SETTINGS", &limits(options)),
                ("LOCAL_CLUSTER_NO_BUILD", "1"),
            ],
        )?;
        let config = cluster.node_config(1).display().to_string();
        let tenants = provision(server, &config, cluster.path(), &names)?;
        // The other nodes follow provisioning through Redis.
        std::thread::sleep(SETTLE);
        Ok((Nodes::Three(cluster), tenants))
    }

    /// Where devices connect: device i to the `i % len`th; the senders to the first.
    fn addrs(&self) -> Vec<SocketAddr> {
        match self {
            Nodes::One { running, .. } => vec![running.addr],
            Nodes::Three(cluster) => (1..=3).map(|n| cluster.node(n)).collect(),
        }
    }

    fn ca(&self) -> PathBuf {
        match self {
            Nodes::One { node, .. } => node.ca(),
            Nodes::Three(cluster) => cluster.ca(),
        }
    }

    fn pids(&self) -> Result<Vec<u32>, String> {
        match self {
            Nodes::One { running, .. } => Ok(vec![running.pid()]),
            Nodes::Three(cluster) => (1..=3).map(|n| cluster.pid(&format!("node{n}"))).collect(),
        }
    }

    /// Each node's configuration file.
    fn configs(&self) -> Vec<String> {
        match self {
            Nodes::One { node, .. } => vec![node.config.clone()],
            Nodes::Three(cluster) => (1..=3)
                .map(|n| cluster.node_config(n).display().to_string())
                .collect(),
        }
    }

    fn stop(self) {
        match self {
            Nodes::One { running, .. } => running.stop(),
            Nodes::Three(cluster) => drop(cluster),
        }
    }

    /// The nodes' `VmRSS`, summed.
    fn rss(&self) -> Result<u64, String> {
        self.pids()?
            .into_iter()
            .map(|pid| rss_bytes(pid).ok_or_else(|| format!("could not read VmRSS of {pid}")))
            .sum()
    }

    /// The nodes' CPU seconds, summed.
    fn cpu_seconds(&self) -> f64 {
        self.pids()
            .unwrap_or_default()
            .into_iter()
            .map(|pid| cpu_seconds(pid).unwrap_or(0.0))
            .sum()
    }
}

/// The SNI domain the nodes route.
const SNI_DOMAIN: &str = "atsign.test";

/// The connection limits of every node (none without `--default-limits`: the defaults).
fn limits(options: &Options) -> String {
    if options.default_limits {
        return String::new();
    }
    format!(
        "max_connections = {}\n\
         inbound_max_limit = {}\n\
         unauthenticated_max_limit = {2}\n\
         unauthenticated_per_source_limit = {2}\n",
        // Every device and sender, and a margin, beside the sixteenth of the node
        // kept for connections still proving themselves.
        (options.devices + options.senders + 64) * 16 / 15 + 1,
        // An atSign's devices, its sender, and a margin.
        devices_per_atsign(options) + 1 + 8,
        // Everything being set up at once, all from 127.0.0.1.
        (options.concurrency + 64).max(1000),
    )
}

/// `@cb00000` … in one `provision --from-file` through the node of `config`.
fn provision(
    server: &Path,
    config: &str,
    dir: &Path,
    names: &[String],
) -> Result<Vec<Tenant>, String> {
    let began = Instant::now();
    let done = at_tests::bench::provision_batch(server, config, dir, names)?;
    println!(
        "provisioned {} atSigns in {:.2} s ({:.0}/s)",
        names.len(),
        began.elapsed().as_secs_f64(),
        names.len() as f64 / began.elapsed().as_secs_f64()
    );
    done.into_iter()
        .map(|p| {
            let host = p
                .address
                .rsplit_once(':')
                .map(|(host, _)| host.to_string())
                .ok_or_else(|| format!("@{}: address {:?} without a port", p.name, p.address))?;
            Ok(Tenant {
                name: p.name,
                host,
                secret: p.secret,
            })
        })
        .collect()
}

/// The node's data directory and config file.
struct Node {
    dir: TempDir,
    config: String,
}

/// A provisioned atSign: its name without `@`, its SNI name, its CRAM secret.
struct Tenant {
    name: String,
    host: String,
    secret: String,
}

impl Node {
    /// SNI routing only (one shared port, no per-atSign listeners), with room for every
    /// connection the bench opens.
    fn new(options: &Options) -> Result<Node, String> {
        let dir = TempDir::new("conn-bench");
        let mut config = format!(
            "data_dir = \"{0}/server\"\n\
             directory_data_dir = \"{0}/directory\"\n\
             listen = \"127.0.0.1:0\"\n\
             public_port = 6464\n\
             sni_domain = \"atsign.test\"\n",
            dir.path().display(),
        );
        config.push_str(&limits(options));
        let file = dir.path().join("server.toml");
        std::fs::write(&file, config).map_err(|e| format!("writing {}: {e}", file.display()))?;
        Ok(Node {
            config: file.display().to_string(),
            dir,
        })
    }

    fn serve(&self, server: &Path) -> Running {
        Running::start(
            server,
            &["--config", &self.config, "serve"],
            &[("AT_SERVER_LOG", "warn")],
            false,
        )
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("server").join("tls").join("ca.pem")
    }
}

/// Where every connection goes and whom it trusts (the SNI name picks the atSign).
struct Target {
    /// Each node's shared port.
    addrs: Vec<SocketAddr>,
    connector: TlsConnector,
}

// ---------------------------------------------------------------------------------------------
// Figures.

/// Percentiles of a sample, nearest rank.
#[derive(Debug, Clone, Copy, Default)]
struct Spread {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Spread {
    fn of(mut sample: Vec<Duration>) -> Option<Spread> {
        if sample.is_empty() {
            return None;
        }
        sample.sort_unstable();
        let pick = |q: f64| {
            let i = ((sample.len() as f64 * q).ceil() as usize).clamp(1, sample.len()) - 1;
            sample[i]
        };
        Some(Spread {
            p50: pick(0.50),
            p99: pick(0.99),
            max: pick(1.0),
        })
    }

    fn text(spread: Option<Spread>) -> String {
        spread.map_or("none".into(), |s| {
            format!(
                "p50 {}, p99 {}, max {}",
                fmt_latency(s.p50),
                fmt_latency(s.p99),
                fmt_latency(s.max)
            )
        })
    }
}

#[derive(Debug, Default)]
struct Figures {
    enroll_secs: f64,
    /// Devices set up (TLS, from, pkam, monitor subscribed).
    set_up: usize,
    setup_secs: f64,
    setup_each: Option<Spread>,
    /// CPU seconds during the setup phase.
    setup_cpu_server: f64,
    setup_cpu_client: f64,
    /// Failed setups by kind, with the first message of each.
    failures: BTreeMap<&'static str, (usize, String)>,
    rss_before: u64,
    rss_after: u64,
    /// Devices still connected when `rss_after` was read.
    idle_connections: usize,
    /// Owner connections the node itself counts then (`list --usage`), senders included.
    server_connections: Option<Result<usize, String>>,
    /// Monitors closed after being set up, with the first reason.
    dropped: usize,
    first_drop: Option<String>,
    warmup: Option<Spread>,
    repeats: usize,
    expected: usize,
    delivered: usize,
    fanout: Option<Spread>,
    /// Per notification, the time to its last monitor.
    fanout_last: Option<Spread>,
    /// `notify` answered (the sender's `data:<id>`).
    notify_answer: Option<Spread>,
    /// Deliveries of an earlier notification after its wait had ended, or of an unknown id.
    late: usize,
    /// CPU seconds during the fan-out phase (warm-up included), server and client: what one
    /// delivery costs each, whatever the latency the machine's load makes of it.
    fanout_cpu_server: f64,
    fanout_cpu_client: f64,
    fanout_error: Option<String>,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.set_up as f64 / self.setup_secs.max(1e-9)
    }

    fn kib_per_connection(&self) -> Option<f64> {
        (self.idle_connections > 0).then(|| {
            (self.rss_after as f64 - self.rss_before as f64) / 1024.0 / self.idle_connections as f64
        })
    }

    fn refused(&self) -> usize {
        self.failures.get(REFUSED).map_or(0, |(n, _)| *n)
    }

    fn failed(&self) -> usize {
        self.failures.values().map(|(n, _)| n).sum::<usize>() - self.refused()
    }

    fn print(&self, options: &Options) {
        let n = self.set_up.max(1) as f64;
        println!(
            "setup: {} of {} devices set up (TLS handshake, from, pkam, monitor) in {:.2} s: \
             {:.0} connections/s; per device {}; CPU: at-server {:.0}% ({:.0} us/connection), \
             client {:.0}% ({:.0} us/connection); load {}",
            self.set_up,
            options.devices,
            self.setup_secs,
            self.rate(),
            Spread::text(self.setup_each),
            100.0 * self.setup_cpu_server / self.setup_secs.max(1e-9),
            1e6 * self.setup_cpu_server / n,
            100.0 * self.setup_cpu_client / self.setup_secs.max(1e-9),
            1e6 * self.setup_cpu_client / n,
            load_average(),
        );
        println!(
            "memory: at-server VmRSS {} KiB before, {} KiB with {} idle connections ({} s idle): \
             {} per idle connection",
            self.rss_before / 1024,
            self.rss_after / 1024,
            self.idle_connections,
            options.idle,
            self.kib_per_connection()
                .map_or("?".into(), |k| format!("{k:.1} KiB")),
        );
        match &self.server_connections {
            Some(Ok(n)) => println!(
                "connections: the node counts {n} owner connections (list --usage): {} devices \
                 and {} senders",
                self.idle_connections, options.senders
            ),
            Some(Err(e)) => println!("connections: list --usage failed: {e}"),
            None => {}
        }
        println!(
            "fan-out warm-up: one notification per atSign, notify to monitor line {}",
            Spread::text(self.warmup)
        );
        println!(
            "fan-out: {} notifications, {} of {} monitor deliveries; notify to each monitor line \
             {}; to its last monitor {}; notify answered {}; {} late or unknown",
            self.repeats,
            self.delivered,
            self.expected,
            Spread::text(self.fanout),
            Spread::text(self.fanout_last),
            Spread::text(self.notify_answer),
            self.late,
        );
        let deliveries = self.delivered.max(1) as f64;
        println!(
            "fan-out CPU per measured monitor delivery (the warm-up's CPU counted too, so a little high): at-server {:.1} us, client {:.1} us",
            1e6 * self.fanout_cpu_server / deliveries,
            1e6 * self.fanout_cpu_client / deliveries,
        );
        if let Some(e) = &self.fanout_error {
            println!("fan-out stopped early: {e}");
        }
        println!(
            "errors: {} refused (AT0012), {} failed otherwise, {} monitors closed after setup, \
             {} deliveries missing",
            self.refused(),
            self.failed(),
            self.dropped,
            self.expected - self.delivered,
        );
        for (kind, (count, first)) in &self.failures {
            println!("  {kind}: {count}, the first: {first}");
        }
        if let Some(why) = &self.first_drop {
            println!("  monitor closed: the first: {why}");
        }
        println!();
        println!(
            "| devices | atSigns | concurrency | setup conn/s | setup p50 / p99 | at-server CPU per \
             setup | RSS per idle conn | fan-out p50 | p99 | max | refused / failed / dropped / \
             missing |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        let spread = |s: Option<Spread>, f: fn(&Spread) -> Duration| {
            s.map_or("–".into(), |s| fmt_latency(f(&s)))
        };
        println!(
            "| {} | {} | {} | {:.0} | {} / {} | {:.0} us | {} | {} | {} | {} | {} / {} / {} / {} |",
            options.devices,
            options.atsigns,
            options.concurrency,
            self.rate(),
            spread(self.setup_each, |s| s.p50),
            spread(self.setup_each, |s| s.p99),
            1e6 * self.setup_cpu_server / n,
            self.kib_per_connection()
                .map_or("?".into(), |k| format!("{k:.1} KiB")),
            spread(self.fanout, |s| s.p50),
            spread(self.fanout, |s| s.p99),
            spread(self.fanout, |s| s.max),
            self.refused(),
            self.failed(),
            self.dropped,
            self.expected - self.delivered,
        );
    }
}

const REFUSED: &str = "refused (AT0012)";

/// What kind of failure a device's setup error is.
fn failure_kind(message: &str) -> &'static str {
    if message.contains("AT0012") {
        REFUSED
    } else if message.contains("connecting to") || message.contains("socket:") {
        "TCP connect failed"
    } else if message.contains("TLS handshake") {
        "TLS handshake failed or silent"
    } else if message.contains("phase bound") {
        "not set up within the phase bound"
    } else if message.starts_with("from:") {
        "from failed"
    } else if message.starts_with("pkam:") {
        "pkam failed"
    } else if message.starts_with("monitor:") {
        "monitor failed"
    } else {
        "other"
    }
}

// ---------------------------------------------------------------------------------------------
// The bench.

/// What the device tasks tell the driver.
enum Event {
    Setup {
        atsign: usize,
        began: Instant,
        done: Instant,
        outcome: Result<(), String>,
    },
    /// A monitor line with notification id `id` (not a stats notification) arrived at `at`.
    Delivered { id: String, at: Instant },
    /// A monitor set up earlier was closed, or failed.
    Closed { atsign: usize, why: String },
}

/// One atSign's sender: the cram connection that enrolled, now that enrollment.
struct Sender {
    stream: Stream,
    enrollment: String,
}

async fn bench(
    target: &Target,
    tenants: Vec<Tenant>,
    (server, nodes): (&Path, &Nodes),
    options: &Options,
) -> Result<Figures, String> {
    let mut figures = Figures::default();

    // Enrollments: one per atSign, its connection kept as the sender.
    let began = Instant::now();
    let mut senders = enroll_all(target, &tenants, options).await?;
    figures.enroll_secs = began.elapsed().as_secs_f64();
    let enrollments: Vec<String> = senders.iter().map(|s| s.enrollment.clone()).collect();
    // Only the first `--senders` keep their connection.
    senders.truncate(options.senders);
    println!(
        "conn-bench: {} atSigns logged in with cram and enrolled (approved at once) in {:.2} s",
        tenants.len(),
        figures.enroll_secs
    );
    tokio::time::sleep(SETTLE).await;
    figures.rss_before = nodes.rss()?;

    // Setup: every device, `concurrency` at a time, within the phase bound.
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (stop_tx, stop) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(options.concurrency));
    let targets = Arc::new(
        tenants
            .iter()
            .zip(&enrollments)
            .map(|(tenant, enrollment)| DeviceTarget {
                connector: target.connector.clone(),
                name: tenant.name.clone(),
                host: tenant.host.clone(),
                enrollment: enrollment.clone(),
            })
            .collect::<Vec<_>>(),
    );
    let cpu_from = (
        nodes.cpu_seconds(),
        cpu_seconds(std::process::id()).unwrap_or(0.0),
    );
    let phase_start = Instant::now();
    let deadline = phase_start + Duration::from_secs(options.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for device in 0..options.devices {
        let atsign = device % tenants.len();
        let node = target.addrs[device % target.addrs.len()];
        tasks.spawn(run_device(
            (atsign, node),
            Arc::clone(&targets),
            Arc::clone(&permits),
            deadline,
            events_tx.clone(),
            stop.clone(),
        ));
    }
    drop(events_tx);
    let mut live = vec![0usize; tenants.len()];
    let mut setup_times = Vec::with_capacity(options.devices);
    let mut last_done = phase_start;
    let mut reported = 0;
    // The tasks bound their setups by `deadline`; the grace covers their last report.
    let collect_until = deadline + Duration::from_secs(5);
    while reported < options.devices {
        let Ok(Some(event)) = tokio::time::timeout_at(collect_until.into(), events.recv()).await
        else {
            break;
        };
        match event {
            Event::Setup {
                atsign,
                began,
                done,
                outcome,
            } => {
                reported += 1;
                match outcome {
                    Ok(()) => {
                        live[atsign] += 1;
                        setup_times.push(done.saturating_duration_since(began));
                        last_done = last_done.max(done);
                    }
                    Err(message) => {
                        let entry = figures
                            .failures
                            .entry(failure_kind(&message))
                            .or_insert((0, message));
                        entry.0 += 1;
                    }
                }
            }
            other => absorb(other, &mut live, &mut figures),
        }
    }
    if reported < options.devices {
        figures
            .failures
            .entry("no report within the phase bound")
            .or_insert((0, String::new()))
            .0 += options.devices - reported;
    }
    figures.setup_cpu_server = nodes.cpu_seconds() - cpu_from.0;
    figures.setup_cpu_client = cpu_seconds(std::process::id()).unwrap_or(0.0) - cpu_from.1;
    figures.set_up = setup_times.len();
    figures.setup_secs = last_done
        .saturating_duration_since(phase_start)
        .as_secs_f64();
    figures.setup_each = Spread::of(setup_times);

    // Idle: the connections sit; then the server's memory.
    let idle_until = Instant::now() + Duration::from_secs(options.idle);
    drain_until(&mut events, idle_until, &mut live, &mut figures).await;
    figures.rss_after = nodes.rss()?;
    figures.idle_connections = live.iter().sum();
    figures.server_connections = Some(server_connections(server, &nodes.configs()).await);

    // Fan-out.
    let cpu_from = (
        nodes.cpu_seconds(),
        cpu_seconds(std::process::id()).unwrap_or(0.0),
    );
    fan_out(
        &tenants,
        &mut senders,
        &mut events,
        &mut live,
        &mut figures,
        options,
    )
    .await;
    figures.fanout_cpu_server = nodes.cpu_seconds() - cpu_from.0;
    figures.fanout_cpu_client = cpu_seconds(std::process::id()).unwrap_or(0.0) - cpu_from.1;

    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    Ok(figures)
}

/// Takes in an event that is not a setup's.
fn absorb(event: Event, live: &mut [usize], figures: &mut Figures) {
    match event {
        Event::Closed { atsign, why } => {
            live[atsign] = live[atsign].saturating_sub(1);
            figures.dropped += 1;
            figures.first_drop.get_or_insert(why);
        }
        Event::Delivered { .. } => figures.late += 1,
        Event::Setup { .. } => {}
    }
}

/// Takes in events until `until`.
async fn drain_until(
    events: &mut mpsc::UnboundedReceiver<Event>,
    until: Instant,
    live: &mut [usize],
    figures: &mut Figures,
) {
    while let Ok(Some(event)) = tokio::time::timeout_at(until.into(), events.recv()).await {
        absorb(event, live, figures);
    }
}

/// The owner connections the serving node counts over all its atSigns (`list --usage --json`,
/// answered by the node through its admin socket).
/// The owner connections the nodes count, summed (each counts its own).
async fn server_connections(server: &Path, configs: &[String]) -> Result<usize, String> {
    let mut total = 0;
    for config in configs {
        total += node_connections(server, config).await?;
    }
    Ok(total)
}

async fn node_connections(server: &Path, config: &str) -> Result<usize, String> {
    let (server, config) = (server.to_path_buf(), config.to_string());
    let out = tokio::task::spawn_blocking(move || {
        let args = ["--config", &config, "list", "--usage", "--json"];
        process::run(&server, &args, &[("AT_SERVER_LOG", "warn")])
    })
    .await
    .map_err(|e| format!("list task: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let listed: serde_json::Value = serde_json::from_str(&stdout)
        .map_err(|e| format!("list --usage --json printed {stdout:?}: {e}"))?;
    listed
        .as_array()
        .ok_or_else(|| format!("list --usage --json printed {stdout:?}"))?
        .iter()
        .map(|entry| {
            entry["usage"]["connections"]
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| format!("no usage.connections in {entry}"))
        })
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Enrolling.

/// Per atSign, `concurrency` at a time within the phase bound: a cram connection that sends
/// `enroll:request` (approved at once) and stays open as that atSign's sender. Any failure
/// here stops the bench: without the enrollments no device can log in.
async fn enroll_all(
    target: &Target,
    tenants: &[Tenant],
    options: &Options,
) -> Result<Vec<Sender>, String> {
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    // Few at once: an atSign's first login makes its signing keys (RSA key generation, tens
    // of milliseconds of CPU each), and many at once would each wait past the reply timeout.
    let permits = Arc::new(Semaphore::new(options.concurrency.min(ENROLL_CONCURRENCY)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, tenant) in tenants.iter().enumerate() {
        let (addr, connector) = (target.addrs[0], target.connector.clone());
        let (name, host, secret) = (
            tenant.name.clone(),
            tenant.host.clone(),
            tenant.secret.clone(),
        );
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .map_err(|e| format!("permits: {e}"))?;
            let enrolled = enroll(addr, &connector, &name, &host, &secret);
            tokio::time::timeout_at(deadline.into(), enrolled)
                .await
                .unwrap_or_else(|_| Err("not enrolled within the phase bound".into()))
                .map(|sender| (i, sender))
                .map_err(|e| format!("enrolling @{name}: {e}"))
        });
    }
    let mut senders: Vec<Option<Sender>> = tenants.iter().map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (i, sender) = joined.map_err(|e| format!("enroll task: {e}"))??;
        senders[i] = Some(sender);
    }
    senders
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| "an atSign was not enrolled".to_string())
}

/// cram as `@name`, then `enroll:request` with the bench's public key; the enrollment id.
async fn enroll(
    addr: SocketAddr,
    connector: &TlsConnector,
    name: &str,
    host: &str,
    secret: &str,
) -> Result<Sender, String> {
    let mut stream = connect_tls_from(connector, None, None, addr, host, REPLY_TIMEOUT).await?;
    let atsign = format!("@{name}");
    cram_login(&mut stream, &atsign, secret, REPLY_TIMEOUT).await?;
    let request = format!(
        r#"enroll:request:{{"appName":"conn-bench","deviceName":"devices","namespaces":{{"bench":"rw"}},"apkamPublicKey":"{}"}}"#,
        PUBLIC_KEY.trim()
    ) + "\n";
    write_within(&mut stream, request.as_bytes(), REPLY_TIMEOUT).await?;
    let prompt = format!("\n{atsign}@");
    let mut buf = Vec::with_capacity(256);
    read_until_suffix(
        &mut stream,
        &mut buf,
        prompt.as_bytes(),
        64 * 1024,
        REPLY_TIMEOUT,
    )
    .await?;
    let reply = String::from_utf8_lossy(&buf).into_owned();
    let answer: serde_json::Value = reply
        .strip_prefix("data:")
        .and_then(|rest| rest.strip_suffix(&prompt))
        .and_then(|json| serde_json::from_str(json).ok())
        .ok_or_else(|| format!("enroll:request answered {reply:?}"))?;
    match (answer["status"].as_str(), answer["enrollmentId"].as_str()) {
        (Some("approved"), Some(id)) => Ok(Sender {
            stream,
            enrollment: id.to_string(),
        }),
        _ => Err(format!("enroll:request answered {reply:?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Devices.

/// What a device of one atSign needs to log in.
struct DeviceTarget {
    connector: TlsConnector,
    name: String,
    host: String,
    enrollment: String,
}

/// One device: set up (one of `permits`, bounded by `deadline`), reported; then its monitor
/// until `stop`.
async fn run_device(
    (atsign, node): (usize, SocketAddr),
    targets: Arc<Vec<DeviceTarget>>,
    permits: Arc<Semaphore>,
    deadline: Instant,
    events: mpsc::UnboundedSender<Event>,
    stop: watch::Receiver<bool>,
) {
    let Ok(permit) = permits.acquire_owned().await else {
        return;
    };
    let began = Instant::now();
    let outcome = tokio::time::timeout_at(deadline.into(), set_up(&targets[atsign], node))
        .await
        .unwrap_or_else(|_| Err("not set up within the phase bound".into()));
    let done = Instant::now();
    drop(permit);
    let (stream, pending) = match outcome {
        Ok(connected) => connected,
        Err(e) => {
            let _ = events.send(Event::Setup {
                atsign,
                began,
                done,
                outcome: Err(e),
            });
            return;
        }
    };
    let reported = events.send(Event::Setup {
        atsign,
        began,
        done,
        outcome: Ok(()),
    });
    if reported.is_ok() {
        monitor_loop(atsign, stream, pending, events, stop).await;
    }
}

/// TLS handshake, the `@` prompt, `from`, `pkam:enrollmentId:`, `monitor` (subscribed once
/// the `noop:0` after it is answered); the stream and what came after `data:ok`.
async fn set_up(target: &DeviceTarget, node: SocketAddr) -> Result<(Stream, Vec<u8>), String> {
    let mut stream = connect_tls_from(
        &target.connector,
        None,
        None,
        node,
        &target.host,
        REPLY_TIMEOUT,
    )
    .await?;
    let mut buf = Vec::with_capacity(1024);
    read_until(
        &mut stream,
        &mut buf,
        |got| got.ends_with(b"@"),
        4096,
        REPLY_TIMEOUT,
    )
    .await
    .map_err(|e| format!("prompt: {e}"))?;
    if buf != b"@" {
        return Err(format!(
            "prompt: got {:?} instead",
            String::from_utf8_lossy(&buf)
        ));
    }
    let from = format!("from:@{}\n", target.name);
    write_within(&mut stream, from.as_bytes(), REPLY_TIMEOUT)
        .await
        .map_err(|e| format!("from: {e}"))?;
    read_until_suffix(&mut stream, &mut buf, b"\n@", 4096, REPLY_TIMEOUT)
        .await
        .map_err(|e| format!("from: {e}"))?;
    let reply = String::from_utf8_lossy(&buf).into_owned();
    let challenge = reply
        .strip_prefix("data:")
        .and_then(|rest| rest.strip_suffix("\n@"))
        .ok_or_else(|| format!("from: answered {reply:?}"))?;
    let proof = format!(
        "pkam:enrollmentId:{}:{}\n",
        target.enrollment,
        pkam_signature(PRIVATE_KEY, challenge)
    );
    write_within(&mut stream, proof.as_bytes(), REPLY_TIMEOUT)
        .await
        .map_err(|e| format!("pkam: {e}"))?;
    let want = format!("data:success\n@{}@", target.name);
    buf.clear();
    // Exactly that, or an error line and the bare prompt.
    let answered = |got: &[u8]| got == want.as_bytes() || got.ends_with(b"\n@");
    read_until(&mut stream, &mut buf, answered, 4096, REPLY_TIMEOUT)
        .await
        .map_err(|e| format!("pkam: {e}"))?;
    if buf != want.as_bytes() {
        return Err(format!(
            "pkam: answered {:?}",
            String::from_utf8_lossy(&buf)
        ));
    }
    write_within(&mut stream, b"monitor\nnoop:0\n", REPLY_TIMEOUT)
        .await
        .map_err(|e| format!("monitor: {e}"))?;
    buf.clear();
    let subscribed = |got: &[u8]| line_end(got, b"data:ok\n").is_some();
    read_until(&mut stream, &mut buf, subscribed, 64 * 1024, REPLY_TIMEOUT)
        .await
        .map_err(|e| format!("monitor: {e}"))?;
    let end = line_end(&buf, b"data:ok\n").expect("checked by read_until");
    Ok((stream, buf.split_off(end)))
}

/// Where the whole line `line` (with its `\n`) first ends in `buf`, if it is there.
fn line_end(buf: &[u8], line: &[u8]) -> Option<usize> {
    let mut at = 0;
    for got in buf.split_inclusive(|b| *b == b'\n') {
        at += got.len();
        if got == line {
            return Some(at);
        }
    }
    None
}

/// The id of a monitor's `notification: {"id":"<id>",…` line.
fn notification_id(line: &[u8]) -> Option<&str> {
    let rest = line.strip_prefix(b"notification: {\"id\":\"")?;
    let end = rest.iter().position(|b| *b == b'"')?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// A subscribed monitor: every notification line but the stats ones (`-1`) is reported with
/// the instant its read returned; a close or error is reported once; ends at `stop`.
async fn monitor_loop(
    atsign: usize,
    mut stream: Stream,
    mut pending: Vec<u8>,
    events: mpsc::UnboundedSender<Event>,
    mut stop: watch::Receiver<bool>,
) {
    let mut chunk = vec![0u8; 4096];
    let mut at = Instant::now();
    loop {
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            match notification_id(&line) {
                Some("-1") => {}
                Some(id) => {
                    let id = id.to_string();
                    if events.send(Event::Delivered { id, at }).is_err() {
                        return;
                    }
                }
                None => {
                    let why = format!("unexpected line {:?}", String::from_utf8_lossy(&line));
                    let _ = events.send(Event::Closed { atsign, why });
                    return;
                }
            }
        }
        if pending.len() > 64 * 1024 {
            let why = "more than 64 KiB without a line end".to_string();
            let _ = events.send(Event::Closed { atsign, why });
            return;
        }
        tokio::select! {
            _ = stop.changed() => return,
            read = stream.read(&mut chunk) => {
                at = Instant::now();
                let why = match read {
                    Ok(0) => "closed by the server",
                    Ok(n) => {
                        pending.extend_from_slice(&chunk[..n]);
                        continue;
                    }
                    Err(_) => "read failed",
                };
                let why = format!("{why} after {:?}", String::from_utf8_lossy(&pending));
                let _ = events.send(Event::Closed { atsign, why });
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fan-out.

/// One notification's figures.
struct Shot {
    /// Sent → each monitor's line.
    latencies: Vec<Duration>,
    /// Monitors of the atSign when it was sent.
    expected: usize,
    /// Sent → the sender's `data:<id>`.
    answered: Duration,
}

async fn fan_out(
    tenants: &[Tenant],
    senders: &mut [Sender],
    events: &mut mpsc::UnboundedReceiver<Event>,
    live: &mut [usize],
    figures: &mut Figures,
    options: &Options,
) {
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    // Ids unique to this run (word characters and `-`, as the grammar allows).
    let run = format!(
        "cb{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let mut warm = Vec::new();
    for (a, tenant) in tenants.iter().enumerate().take(senders.len()) {
        let id = format!("{run}-w{a}");
        let text = format!("warmup{a}");
        match notify(
            &tenant.name,
            &mut senders[a],
            &id,
            &text,
            a,
            events,
            live,
            figures,
        )
        .await
        {
            Ok(shot) => warm.extend(shot.latencies),
            Err(e) => {
                figures.fanout_error = Some(format!("warm-up, @{}: {e}", tenant.name));
                return;
            }
        }
    }
    figures.warmup = Spread::of(warm);
    let (mut all, mut last, mut answers) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..options.fanout_repeats {
        if Instant::now() >= deadline {
            figures.fanout_error = Some(format!(
                "the phase bound ({} s) was reached after {k} of {} notifications",
                options.seconds, options.fanout_repeats
            ));
            break;
        }
        let a = k % senders.len();
        let id = format!("{run}-k{k}");
        let text = format!("fanout{k}");
        let name = &tenants[a].name;
        match notify(name, &mut senders[a], &id, &text, a, events, live, figures).await {
            Ok(shot) => {
                figures.repeats += 1;
                figures.expected += shot.expected;
                figures.delivered += shot.latencies.len().min(shot.expected);
                if let Some(max) = shot.latencies.iter().max() {
                    last.push(*max);
                }
                answers.push(shot.answered);
                all.extend(shot.latencies);
            }
            Err(e) => {
                figures.fanout_error = Some(format!("notification {k}, @{name}: {e}"));
                break;
            }
        }
    }
    figures.fanout = Spread::of(all);
    figures.fanout_last = Spread::of(last);
    figures.notify_answer = Spread::of(answers);
}

/// `@name` notifies itself of the text `text` with id `id` through its sender, and waits (at
/// most [`REPLY_TIMEOUT`] from sending) until each of its live monitors has shown it.
#[allow(clippy::too_many_arguments)]
async fn notify(
    name: &str,
    sender: &mut Sender,
    id: &str,
    text: &str,
    atsign: usize,
    events: &mut mpsc::UnboundedReceiver<Event>,
    live: &mut [usize],
    figures: &mut Figures,
) -> Result<Shot, String> {
    let request = format!("notify:id:{id}:update:messageType:text:@{name}:{text}\n");
    let prompt = format!("\n@{name}@");
    let want = format!("data:{id}{prompt}");
    let expected = live[atsign];
    let mut buf = Vec::with_capacity(128);
    let sent = Instant::now();
    write_within(&mut sender.stream, request.as_bytes(), REPLY_TIMEOUT).await?;
    read_until_suffix(
        &mut sender.stream,
        &mut buf,
        prompt.as_bytes(),
        4096,
        REPLY_TIMEOUT,
    )
    .await?;
    let answered = sent.elapsed();
    if buf != want.as_bytes() {
        return Err(format!(
            "notify answered {:?}, expected {want:?}",
            String::from_utf8_lossy(&buf)
        ));
    }
    let until = sent + REPLY_TIMEOUT;
    let mut latencies = Vec::with_capacity(expected);
    // Monitors closing meanwhile are taken off `live` (and their deliveries counted missing).
    while latencies.len() < live[atsign] {
        match tokio::time::timeout_at(until.into(), events.recv()).await {
            Ok(Some(Event::Delivered { id: got, at })) if got == id => {
                latencies.push(at.saturating_duration_since(sent));
            }
            Ok(Some(other)) => absorb(other, live, figures),
            Ok(None) | Err(_) => break,
        }
    }
    Ok(Shot {
        latencies,
        expected,
        answered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_parsed_and_bounded() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = parse_args(args(
            "--devices 300 --atsigns 3 --fanout-repeats 7 --concurrency 5",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            (o.devices, o.atsigns, o.fanout_repeats, o.concurrency),
            (300, 3, 7, 5)
        );
        assert_eq!(devices_per_atsign(&o), 100);
        // Every atSign keeps its sender unless told otherwise.
        assert_eq!(
            parse_args(args("")).unwrap().unwrap(),
            Options {
                senders: 20,
                ..Options::default()
            }
        );
        let o = parse_args(args("--atsigns 30 --senders 4 --default-limits"))
            .unwrap()
            .unwrap();
        assert_eq!((o.senders, o.default_limits), (4, true));
        let o = parse_args(args("--atsigns 3 --senders 10"))
            .unwrap()
            .unwrap();
        assert_eq!(o.senders, 3);
        assert!(parse_args(args("--help")).unwrap().is_none());
        assert!(parse_args(args("--devices 0")).is_err());
        assert!(parse_args(args("--devices 10 --atsigns 11")).is_err());
        assert!(parse_args(args("--concurrency 1001")).is_err());
        assert!(parse_args(args("--seconds")).is_err());
        assert!(parse_args(args("--bogus")).is_err());
        // One node, or three on one Redis binding a port per atSign each.
        let o = parse_args(args("--nodes 3 --atsigns 100 --devices 100"))
            .unwrap()
            .unwrap();
        assert_eq!(o.nodes, 3);
        assert!(parse_args(args("--nodes 2")).is_err());
        assert!(parse_args(args("--nodes 3 --atsigns 101 --devices 200")).is_err());
    }

    #[test]
    fn monitor_lines_are_read() {
        assert_eq!(
            notification_id(br#"notification: {"id":"cb1-k3","from":"@a"}"#),
            Some("cb1-k3")
        );
        assert_eq!(notification_id(b"data:ok\n"), None);
        assert_eq!(line_end(b"data:ok\n", b"data:ok\n"), Some(8));
        let stats = b"notification: {\"id\":\"-1\"}\ndata:ok\nnotification: {";
        assert_eq!(line_end(stats, b"data:ok\n"), Some(34));
        assert_eq!(line_end(b"xdata:ok\n", b"data:ok\n"), None);
        assert_eq!(failure_kind("pkam: error:AT0012-… in use"), REFUSED);
        assert_eq!(
            failure_kind("pkam: answered \"error:AT0401\""),
            "pkam failed"
        );
    }
}
