//! `server-bench`: atServer `update` and `llookup` operations per second over TLS, beside
//! `redis-benchmark -t set,get`, and idle memory per provisioned atSign.
//!
//! What it does, in one session on one machine (loopback only):
//! 1. starts a real `redis-server` and runs `redis-benchmark -t set,get -c <connections> -n <N> -q`
//!    against it (the baseline; run again after the atServer runs, so drift shows); then, for
//!    context, over TLS (`--tls`, on a second port of the same server, with a certificate made
//!    by `at-server ca-create`), and SET with `appendfsync always` (every write fsynced before
//!    its reply, as an atServer update is) without and with TLS;
//! 2. for each layout (`one`: every connection authenticated as `@alice`; `spread`: one atSign
//!    per connection): provisions the atSigns with `at-server provision` (each on a port of its
//!    own), starts `at-server serve`, opens `--connections` TLS connections and authenticates
//!    each with `cram` (not measured), writes every key once (not measured), then
//!    * `update:public:k<j>@<atsign> v<j>`, one in flight per connection: a warm-up, then a
//!      measured period; every reply must be `data:<commit id>\n@<atsign>@`, and no commit id
//!      may be handed out twice for one atSign;
//!    * `llookup:public:k<j>@<atsign>` the same way; every reply must be exactly
//!      `data:v<j>\n@<atsign>@`;
//! 3. prints operations/second, the ratio to redis-benchmark's SET (for update) and GET (for
//!    llookup) rates, and p50/p99 latency;
//! 4. memory: provisions N atSigns (one `provision --from-file`, timed: atSigns per second) on
//!    a node routed by SNI only (no port range, so no per-atSign listener exists), starts
//!    `serve`, waits for it to settle, and reads `VmRSS` from `/proc/<pid>/status`; the same for
//!    a node with 1 atSign; reports `(rss_N - rss_1) / (N - 1)` bytes per idle atSign.
//!
//! Build `at-server` in the same target directory first; it is found next to this binary:
//! `cargo build --release -p at-server -p at-tests && cargo run --release -p at-tests --bin server-bench`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use at_tests::bench::{
    connector, cpu_seconds, fmt_latency, load_average, number_arg, redis_benchmark_rate,
    run_redis_benchmark, Stream,
};
use at_tests::process::{self, Running};
use at_tests::redis::RedisServer;
use at_tests::redis_cluster::RedisCluster;
use at_tests::TempDir;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream as AsyncTcpStream;
use tokio_rustls::TlsConnector;

const USAGE: &str = "\
server-bench: atServer update/llookup per second over TLS beside redis-benchmark -t set,get,
and idle memory per provisioned atSign

USAGE: server-bench [OPTIONS]

OPTIONS (defaults in brackets):
  --seconds S            measured period per phase, seconds [10]
  --warmup S             warm-up before it, seconds [2]
  --connections C        concurrent connections, for the atServer and redis-benchmark [50]
  --keys K               distinct keys per atSign [1000]
  --redis-requests N     redis-benchmark -n [200000]
  --layouts LIST         comma-separated: one (all connections as @alice), spread (one atSign
                         per connection); empty for none [one,spread]
  --memory LIST          comma-separated atSign counts for the idle-memory test; empty for
                         none [1000,10000]
  --redis-nodes LIST     comma-separated node counts for the Redis layouts: that many at-server
                         nodes on one redis-server, one atSign per connection, connections
                         spread over the nodes; empty for none [1,2,3]
  --redis-cluster-nodes LIST
                         the same on a local Redis Cluster (three masters, three replicas),
                         after the single-Redis layouts [none]
  --client-threads T     tokio worker threads of this client (redis-benchmark uses 1) [1]
  --enrolled             each connection enrolls after cram (APKAM, approved at once), so every
                         command pays the enrollment check of a device's connection
  --help                 this text

Every phase is bounded by time; child processes are stopped at the end.";

const MAX_SECONDS: u64 = 600;
const MAX_CONNECTIONS: usize = 1000;
const MAX_KEYS: usize = 1_000_000;
const MAX_REDIS_REQUESTS: u64 = 20_000_000;
const MAX_MEMORY_ATSIGNS: usize = 100_000;
const MAX_NODES: usize = 16;
/// Longest wait for one answer, one handshake, or one redis-benchmark run.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a freshly started server is left alone before its RSS is read.
const SETTLE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Every connection authenticated as `@alice`.
    One,
    /// One atSign per connection.
    Spread,
    /// One atSign per connection, on this many nodes sharing one Redis (SNI routing), the
    /// connections spread over the nodes.
    Cluster(usize),
    /// [`Layout::Cluster`] on a Redis Cluster of three masters and three replicas.
    RedisCluster(usize),
}

impl Layout {
    fn name(self) -> String {
        match self {
            Layout::One => "one atSign".into(),
            Layout::Spread => "one atSign per connection".into(),
            Layout::Cluster(1) => "Redis, 1 node, one atSign per connection".into(),
            Layout::Cluster(n) => format!("Redis, {n} nodes, one atSign per connection"),
            Layout::RedisCluster(n) => {
                format!("Redis Cluster (3 masters), {n} nodes, one atSign per connection")
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Options {
    seconds: u64,
    warmup: u64,
    connections: usize,
    keys: usize,
    redis_requests: u64,
    layouts: Vec<Layout>,
    /// Node counts of the Redis layouts ([`Layout::Cluster`]).
    redis_nodes: Vec<usize>,
    /// Node counts of the Redis Cluster layouts ([`Layout::RedisCluster`]).
    redis_cluster_nodes: Vec<usize>,
    memory: Vec<usize>,
    client_threads: usize,
    /// Each connection, after cram, enrolls (an APKAM enrollment approved at once), so its
    /// commands go through the per-command enrollment check a device's do.
    enrolled: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seconds: 10,
            warmup: 2,
            connections: 50,
            keys: 1000,
            redis_requests: 200_000,
            enrolled: false,
            layouts: vec![Layout::One, Layout::Spread],
            redis_nodes: vec![1, 2, 3],
            redis_cluster_nodes: Vec::new(),
            memory: vec![1000, 10_000],
            client_threads: 1,
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
            "--seconds" => options.seconds = number_arg(&flag, args.next(), 1, MAX_SECONDS)?,
            "--warmup" => options.warmup = number_arg(&flag, args.next(), 0, MAX_SECONDS)?,
            "--connections" => {
                options.connections = number_arg(&flag, args.next(), 1, MAX_CONNECTIONS)?
            }
            "--keys" => options.keys = number_arg(&flag, args.next(), 1, MAX_KEYS)?,
            "--redis-requests" => {
                options.redis_requests = number_arg(&flag, args.next(), 1000, MAX_REDIS_REQUESTS)?
            }
            "--client-threads" => options.client_threads = number_arg(&flag, args.next(), 1, 64)?,
            "--enrolled" => options.enrolled = true,
            "--layouts" => {
                let list = args.next().ok_or("--layouts needs a value")?;
                options.layouts = list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|l| match l {
                        "one" => Ok(Layout::One),
                        "spread" => Ok(Layout::Spread),
                        other => Err(format!("--layouts: unknown layout {other:?}")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--redis-nodes" => {
                let list = args.next().ok_or("--redis-nodes needs a value")?;
                options.redis_nodes = list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|n| number_arg("--redis-nodes", Some(n.to_string()), 1, MAX_NODES))
                    .collect::<Result<_, _>>()?;
            }
            "--redis-cluster-nodes" => {
                let list = args.next().ok_or("--redis-cluster-nodes needs a value")?;
                options.redis_cluster_nodes = list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|n| number_arg("--redis-cluster-nodes", Some(n.to_string()), 1, MAX_NODES))
                    .collect::<Result<_, _>>()?;
            }
            "--memory" => {
                let list = args.next().ok_or("--memory needs a value")?;
                options.memory = list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|n| number_arg("--memory", Some(n.to_string()), 2, MAX_MEMORY_ATSIGNS))
                    .collect::<Result<_, _>>()?;
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(Some(options))
}

fn main() -> ExitCode {
    at_tests::bench::main("server-bench", USAGE, parse_args, run)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Update,
    Llookup,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Update => "update",
            Op::Llookup => "llookup",
        }
    }
}

/// One measured phase.
struct Measured {
    layout: Layout,
    op: Op,
    ops: u64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
    cpu: Cpu,
    /// Commands Redis processed in the measured period, for the Redis layouts.
    redis_commands: Option<u64>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    server: f64,
    client: f64,
}

/// redis-benchmark's rates from one run.
#[derive(Debug, Clone, Copy)]
struct Baseline {
    set: f64,
    get: f64,
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

fn run(options: &Options) -> Result<(), String> {
    let server = at_server_binary()?;
    println!(
        "server-bench: {} connections, {} keys per atSign, {} s warm-up + {} s measured per phase, \
         {} client thread(s), {} CPU(s)",
        options.connections,
        options.keys,
        options.warmup,
        options.seconds,
        options.client_threads,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
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

    let mut baselines = Vec::new();
    let mut results = Vec::new();
    let layouts: Vec<Layout> = (options.layouts.iter().copied())
        .chain(options.redis_nodes.iter().map(|&n| Layout::Cluster(n)))
        .chain(
            options
                .redis_cluster_nodes
                .iter()
                .map(|&n| Layout::RedisCluster(n)),
        )
        .collect();
    if !layouts.is_empty() {
        let certificate = TempDir::new("server-bench-redis-tls");
        let (cert, key) = create_certificate(&server, certificate.path())?;
        let redis = RedisServer::start_tls(&cert, &key);
        let tls_port = redis
            .tls_port()
            .ok_or("redis-server without its TLS port")?;
        baselines.push(redis_benchmark(redis.port(), false, options)?);
        for &layout in &layouts {
            results.extend(run_layout(layout, &server, &runtime, options)?);
        }
        baselines.push(redis_benchmark(redis.port(), false, options)?);
        // For context (the target is against plain SET): Redis paying what an atServer update
        // pays, TLS, and every write fsynced before its reply (AOF, appendfsync always).
        let context = Context {
            tls: redis_benchmark(tls_port, true, options)?,
            durable_set: {
                redis_cli(redis.port(), &["CONFIG", "SET", "appendonly", "yes"])?;
                redis_cli(redis.port(), &["CONFIG", "SET", "appendfsync", "always"])?;
                redis_benchmark(redis.port(), false, options)?.set
            },
            durable_tls_set: redis_benchmark(tls_port, true, options)?.set,
        };
        print_table(options, &baselines, &results, &context);
    }
    let mut memory = Vec::new();
    for &count in &options.memory {
        memory.push(measure_memory(&server, count)?);
    }
    if !memory.is_empty() {
        print_memory(&memory);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Nodes: config, provisioning, serving.

fn free_port() -> Result<u16, String> {
    Ok(at_tests::free_port())
}

/// A node's data directory and config file.
struct Node {
    dir: TempDir,
    config: String,
}

/// A provisioned atSign: name without `@`, its own address (when it has a port), CRAM secret.
struct Provisioned {
    name: String,
    addr: Option<SocketAddr>,
    /// Its TLS server name, when routed by SNI.
    host: Option<String>,
    secret: String,
}

impl Node {
    /// `port_range`: `Some(len)` for a port per atSign on 127.0.0.1; `None` for SNI routing only.
    /// `store`: the `[store]` section of a Redis store, or `None` for the embedded store.
    fn new(label: &str, port_range: Option<usize>, store: Option<&str>) -> Result<Node, String> {
        let dir = TempDir::new(label);
        let mut config = format!(
            "data_dir = \"{0}/server\"\ndirectory_data_dir = \"{0}/directory\"\nlisten = \"127.0.0.1:0\"\n",
            dir.path().display()
        );
        match port_range {
            Some(len) => config.push_str(&format!(
                "public_host = \"127.0.0.1\"\nport_range_start = {}\nport_range_len = {len}\n",
                free_port()?
            )),
            None => config.push_str("public_port = 6464\nsni_domain = \"atsign.test\"\n"),
        }
        if let Some(store) = store {
            config.push_str(store);
        }
        let file = dir.path().join("server.toml");
        std::fs::write(&file, config).map_err(|e| format!("writing {}: {e}", file.display()))?;
        Ok(Node {
            config: file.display().to_string(),
            dir,
        })
    }

    /// Provisions `@<name>` for each of `names`, in one `provision --from-file`.
    fn provision(&self, server: &Path, names: &[String]) -> Result<Vec<Provisioned>, String> {
        let done = at_tests::bench::provision_batch(server, &self.config, self.dir.path(), names)?;
        Ok(done
            .into_iter()
            .map(|p| Provisioned {
                addr: p.address.parse().ok(),
                host: p.address.rsplit_once(':').map(|(host, _)| host.to_string()),
                name: p.name,
                secret: p.secret,
            })
            .collect())
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

// ---------------------------------------------------------------------------------------------
// Throughput.

/// The requests of one atSign, precomputed so the client spends its time on the wire.
struct Requests {
    prompt: Vec<u8>,
    /// `update:public:k<j>@name v<j>\n`.
    updates: Vec<Vec<u8>>,
    /// (`llookup:public:k<j>@name\n`, `data:v<j>\n@name@`).
    lookups: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Requests {
    fn new(name: &str, keys: usize) -> Requests {
        Requests {
            prompt: format!("\n@{name}@").into_bytes(),
            updates: (0..keys)
                .map(|j| format!("update:public:k{j}@{name} v{j}\n").into_bytes())
                .collect(),
            lookups: (0..keys)
                .map(|j| {
                    (
                        format!("llookup:public:k{j}@{name}\n").into_bytes(),
                        format!("data:v{j}\n@{name}@").into_bytes(),
                    )
                })
                .collect(),
        }
    }
}

/// One authenticated connection and the keys it works on: `slot`, `slot + share`, … of its atSign.
struct Conn {
    stream: Stream,
    atsign: usize,
    slot: usize,
    share: usize,
    /// Every commit id this connection was handed (checked for duplicates per atSign).
    commits: Vec<u64>,
}

fn run_layout(
    layout: Layout,
    server: &Path,
    runtime: &tokio::runtime::Runtime,
    options: &Options,
) -> Result<Vec<Measured>, String> {
    let names: Vec<String> = match layout {
        Layout::One => vec!["alice".to_string()],
        Layout::Spread | Layout::Cluster(_) | Layout::RedisCluster(_) => (0..options.connections)
            .map(|i| format!("bench{i:04}"))
            .collect(),
    };
    if let Layout::Cluster(_) | Layout::RedisCluster(_) = layout {
        return run_cluster(layout, &names, server, runtime, options);
    }
    let node = Node::new("server-bench", Some(names.len()), None)?;
    let provisioned = provision_all(&node, server, &names, layout)?;
    let running = node.serve(server);
    let connector = connector(&node.ca())?;
    let routes = (0..options.connections)
        .map(|i| {
            let p = &provisioned[i % provisioned.len()];
            let addr = p
                .addr
                .ok_or_else(|| format!("@{} has no address of its own", p.name))?;
            Ok(Route {
                addr,
                name: "localhost".into(),
                connector: connector.clone(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let servers = [running.pid()];
    let outcome = runtime.block_on(throughput(
        layout,
        routes,
        &provisioned,
        &servers,
        &[],
        options,
    ));
    running.stop();
    report(layout, outcome?)
}

/// A fresh Redis for a layout: one redis-server, or a Redis Cluster (three masters, three
/// replicas), kept running while it is in scope.
enum Backing {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl Backing {
    /// The `[store]` section of a node on it.
    fn store_section(&self) -> String {
        match self {
            Backing::Single(redis) => format!(
                "[store]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
                redis.url()
            ),
            Backing::Cluster(cluster) => cluster.store_section(),
        }
    }

    /// The ports of the Redis processes serving commands (a cluster's masters).
    fn serving_ports(&self) -> Vec<u16> {
        match self {
            Backing::Single(redis) => vec![redis.port()],
            Backing::Cluster(cluster) => cluster.master_ports(),
        }
    }
}

/// `layout`'s nodes (at-server processes) on a fresh Redis or Redis Cluster, SNI-routed;
/// connection i goes to node i % nodes as its own atSign.
fn run_cluster(
    layout: Layout,
    names: &[String],
    server: &Path,
    runtime: &tokio::runtime::Runtime,
    options: &Options,
) -> Result<Vec<Measured>, String> {
    let (nodes, backing) = match layout {
        Layout::RedisCluster(nodes) => (nodes, Backing::Cluster(RedisCluster::start())),
        Layout::Cluster(nodes) => (nodes, Backing::Single(RedisServer::start())),
        other => return Err(format!("{} is not on Redis", other.name())),
    };
    let redis_ports = backing.serving_ports();
    let memory_before = redis_sum(&redis_ports, "memory", "used_memory");
    let cluster = (0..nodes)
        .map(|_| Node::new("server-bench-cluster", None, Some(&backing.store_section())))
        .collect::<Result<Vec<_>, _>>()?;
    // Provisioned through the first node's CLI, straight into Redis: every node serves them.
    let provisioned = provision_all(&cluster[0], server, names, layout)?;
    let running: Vec<Running> = cluster.iter().map(|node| node.serve(server)).collect();
    let connectors = cluster
        .iter()
        .map(|node| connector(&node.ca()))
        .collect::<Result<Vec<_>, _>>()?;
    let routes = (0..options.connections)
        .map(|i| {
            let p = &provisioned[i % provisioned.len()];
            let host = p
                .host
                .clone()
                .ok_or_else(|| format!("@{} has no SNI name", p.name))?;
            Ok(Route {
                addr: running[i % nodes].addr,
                name: host,
                connector: connectors[i % nodes].clone(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let pids: Vec<u32> = running.iter().map(Running::pid).collect();
    let outcome = runtime.block_on(throughput(
        layout,
        routes,
        &provisioned,
        &pids,
        &redis_ports,
        options,
    ));
    for node in running {
        node.stop();
    }
    // Every key was written (prefill), each with its record, commit entry and index entry.
    let stored = (names.len() * options.keys) as u64;
    if let (Some(before), Some(after)) = (
        memory_before,
        redis_sum(&redis_ports, "memory", "used_memory"),
    ) {
        println!(
            "{}: Redis used_memory grew {} bytes for {stored} stored keys: {:.0} bytes per key \
             (record with its metadata, commit entry, index; values of 2-4 bytes)",
            layout.name(),
            after.saturating_sub(before),
            after.saturating_sub(before) as f64 / stored as f64
        );
    }
    report(layout, outcome?)
}

fn provision_all(
    node: &Node,
    server: &Path,
    names: &[String],
    layout: Layout,
) -> Result<Vec<Provisioned>, String> {
    let began = Instant::now();
    let provisioned = node.provision(server, names)?;
    println!(
        "{}: provisioned {} atSign(s) in {:.1} s",
        layout.name(),
        provisioned.len(),
        began.elapsed().as_secs_f64()
    );
    Ok(provisioned)
}

fn report(layout: Layout, measured: Vec<Measured>) -> Result<Vec<Measured>, String> {
    for m in &measured {
        let secs = m.elapsed.as_secs_f64();
        let redis = m.redis_commands.map_or(String::new(), |commands| {
            format!("; {:.2} Redis commands/op", commands as f64 / m.ops as f64)
        });
        println!(
            "at-server {:<7} {:>10.0} ops/s  ({}; p50 {:?}, p99 {:?}, max {:?}, {} ops in {:.2} s; \
             CPU: at-server {:.0}%, client {:.0}%; at-server {:.1} us CPU/op{redis}; load {})",
            m.op.name(),
            m.rate(),
            layout.name(),
            m.p50,
            m.p99,
            m.max,
            m.ops,
            secs,
            100.0 * m.cpu.server / secs,
            100.0 * m.cpu.client / secs,
            1e6 * m.cpu.server / m.ops as f64,
            load_average(),
        );
    }
    Ok(measured)
}

/// Where one connection goes: the address, the TLS server name, and whom it trusts.
struct Route {
    addr: SocketAddr,
    name: String,
    connector: TlsConnector,
}

async fn throughput(
    layout: Layout,
    routes: Vec<Route>,
    provisioned: &[Provisioned],
    servers: &[u32],
    redis_ports: &[u16],
    options: &Options,
) -> Result<Vec<Measured>, String> {
    let requests: Arc<Vec<Requests>> = Arc::new(
        provisioned
            .iter()
            .map(|p| Requests::new(&p.name, options.keys))
            .collect(),
    );
    // Connection i works for atSign i % n, as the (i / n)-th of its connections.
    let n = provisioned.len();
    let mut handshakes = tokio::task::JoinSet::new();
    for (i, route) in routes.into_iter().enumerate() {
        let atsign = i % n;
        let p = &provisioned[atsign];
        let (name, secret) = (p.name.clone(), p.secret.clone());
        let share = options.connections / n + usize::from(atsign < options.connections % n);
        let enrolled = options.enrolled;
        handshakes.spawn(async move {
            let stream = connect(&route.connector, route.addr, &route.name).await?;
            let mut stream = authenticate(stream, &name, &secret).await?;
            if enrolled {
                enroll(&mut stream, &name, i).await?;
            }
            Ok::<_, String>(Conn {
                stream,
                atsign,
                slot: i / n,
                share,
                commits: Vec::new(),
            })
        });
    }
    let mut conns = Vec::with_capacity(options.connections);
    while let Some(joined) = handshakes.join_next().await {
        conns.push(joined.map_err(|e| format!("connect task: {e}"))??);
    }

    // Every key once, so llookup finds them all (not measured).
    let mut prefill = tokio::task::JoinSet::new();
    for mut conn in conns.drain(..) {
        let requests = Arc::clone(&requests);
        prefill.spawn(async move {
            let mut buf = Vec::with_capacity(128);
            let mine = &requests[conn.atsign];
            for j in (conn.slot..mine.updates.len()).step_by(conn.share) {
                let id =
                    exchange_update(&mut conn.stream, &mut buf, &mine.updates[j], &mine.prompt)
                        .await?;
                conn.commits.push(id);
            }
            Ok::<_, String>(conn)
        });
    }
    while let Some(joined) = prefill.join_next().await {
        conns.push(joined.map_err(|e| format!("prefill task: {e}"))??);
    }

    let mut measured = Vec::new();
    for op in [Op::Update, Op::Llookup] {
        let (back, m) = phase(layout, op, conns, &requests, servers, redis_ports, options).await?;
        conns = back;
        measured.push(m);
    }

    // No commit id twice for one atSign.
    let mut by_atsign: HashMap<usize, Vec<u64>> = HashMap::new();
    for conn in &mut conns {
        by_atsign
            .entry(conn.atsign)
            .or_default()
            .append(&mut conn.commits);
    }
    for (atsign, mut ids) in by_atsign {
        let total = ids.len();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != total {
            return Err(format!(
                "@{}: {} of {total} commit ids were handed out more than once",
                provisioned[atsign].name,
                total - ids.len()
            ));
        }
    }
    for mut conn in conns {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = conn.stream.write_all(b"@exit\n").await;
            let _ = conn.stream.shutdown().await;
        })
        .await;
    }
    Ok(measured)
}

/// One operation on every connection: warm-up, then the measured period.
async fn phase(
    layout: Layout,
    op: Op,
    conns: Vec<Conn>,
    requests: &Arc<Vec<Requests>>,
    servers: &[u32],
    redis_ports: &[u16],
    options: &Options,
) -> Result<(Vec<Conn>, Measured), String> {
    let start = Instant::now();
    let window = Window {
        measure_from: start + Duration::from_secs(options.warmup),
        end: start + Duration::from_secs(options.warmup + options.seconds),
        counted: Arc::new(AtomicU64::new(0)),
    };
    let mut clients = tokio::task::JoinSet::new();
    for conn in conns {
        let requests = Arc::clone(requests);
        let window = window.clone();
        clients.spawn(async move { operations(op, conn, requests, window).await });
    }
    let measure_from = window.measure_from;
    let (pids, ports) = (servers.to_vec(), redis_ports.to_vec());
    let cpu_from = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        (cpu_now(&pids), redis_commands(&ports))
    });
    let mut latencies: Vec<u32> = Vec::new();
    let mut last_done = window.measure_from;
    let mut back = Vec::new();
    while let Some(joined) = clients.join_next().await {
        let outcome = joined.map_err(|e| format!("client task: {e}"))??;
        latencies.extend(outcome.latencies_us);
        last_done = last_done.max(outcome.last_done);
        back.push(outcome.conn);
    }
    let (cpu_to, commands_to) = (cpu_now(servers), redis_commands(redis_ports));
    let (cpu_from, commands_from) = cpu_from.await.map_err(|e| format!("CPU sampler: {e}"))?;
    if latencies.is_empty() {
        return Err(format!(
            "{}: nothing done in the measured period",
            op.name()
        ));
    }
    latencies.sort_unstable();
    let pick = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        Duration::from_micros(u64::from(latencies[i]))
    };
    let measured = Measured {
        layout,
        op,
        ops: latencies.len() as u64,
        elapsed: last_done.saturating_duration_since(window.measure_from),
        p50: pick(0.50),
        p99: pick(0.99),
        max: pick(1.0),
        cpu: Cpu {
            server: cpu_to.server - cpu_from.server,
            client: cpu_to.client - cpu_from.client,
        },
        // Both samples bracket the measured period (and a little of the drain after it).
        redis_commands: commands_from
            .zip(commands_to)
            .map(|(from, to)| to.saturating_sub(from)),
    };
    Ok((back, measured))
}

#[derive(Clone)]
struct Window {
    measure_from: Instant,
    end: Instant,
    /// Operations completed in the measured period, across every connection.
    counted: Arc<AtomicU64>,
}

struct Outcome {
    conn: Conn,
    latencies_us: Vec<u32>,
    last_done: Instant,
}

/// One connection: operations one at a time (no pipelining) until the window closes.
async fn operations(
    op: Op,
    mut conn: Conn,
    requests: Arc<Vec<Requests>>,
    window: Window,
) -> Result<Outcome, String> {
    let mine = &requests[conn.atsign];
    let keys = mine.updates.len();
    let mut latencies_us = Vec::new();
    let mut last_done = window.measure_from;
    let mut buf = Vec::with_capacity(128);
    let mut next = conn.slot % keys;
    // Bounded by `window.end`, checked every iteration; every exchange has a timeout.
    loop {
        let sent = Instant::now();
        if sent >= window.end {
            break;
        }
        let j = next;
        next = (next + conn.share) % keys;
        match op {
            Op::Update => {
                let id =
                    exchange_update(&mut conn.stream, &mut buf, &mine.updates[j], &mine.prompt)
                        .await?;
                conn.commits.push(id);
            }
            Op::Llookup => {
                let (request, answer) = &mine.lookups[j];
                exchange_exact(&mut conn.stream, &mut buf, request, answer).await?;
            }
        }
        let done = Instant::now();
        if sent >= window.measure_from {
            window.counted.fetch_add(1, Ordering::Relaxed);
            latencies_us
                .push(u32::try_from(done.duration_since(sent).as_micros()).unwrap_or(u32::MAX));
            last_done = done;
        }
    }
    Ok(Outcome {
        conn,
        latencies_us,
        last_done,
    })
}

/// Samples CPU seconds of the servers (summed) and of this process.
fn cpu_now(servers: &[u32]) -> Cpu {
    Cpu {
        server: servers
            .iter()
            .map(|&pid| cpu_seconds(pid).unwrap_or(0.0))
            .sum(),
        client: cpu_seconds(std::process::id()).unwrap_or(0.0),
    }
}

/// Redis's `total_commands_processed`, summed over `ports` (`None` without Redis).
fn redis_commands(ports: &[u16]) -> Option<u64> {
    redis_sum(ports, "stats", "total_commands_processed")
}

/// [`redis_info`] summed over `ports` (`None` if there are none, or one does not answer).
fn redis_sum(ports: &[u16], section: &str, field: &str) -> Option<u64> {
    if ports.is_empty() {
        return None;
    }
    ports
        .iter()
        .map(|&port| redis_info(port, section, field))
        .sum()
}

/// One numeric field of `INFO <section>` (blocking; a few milliseconds on loopback).
fn redis_info(port: u16, section: &str, field: &str) -> Option<u64> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "INFO", section])
        .output()
        .ok()?;
    let prefix = format!("{field}:");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|n| n.trim().parse().ok())
}

/// TCP connect, TLS handshake (server name `name`), and the first prompt.
async fn connect(connector: &TlsConnector, addr: SocketAddr, name: &str) -> Result<Stream, String> {
    let handshake = async {
        let tcp = AsyncTcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| format!("server name {name:?}: {e}"))?;
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let mut buf = Vec::new();
        read_exact_reply(&mut tls, &mut buf, b"@").await?;
        Ok(tls)
    };
    tokio::time::timeout(REPLY_TIMEOUT, handshake)
        .await
        .map_err(|_| format!("no TLS handshake and prompt from {addr} within {REPLY_TIMEOUT:?}"))?
}

/// `from:@name`, then `cram:` with the SHA-512 of secret + challenge.
async fn authenticate(mut stream: Stream, name: &str, secret: &str) -> Result<Stream, String> {
    let mut buf = Vec::with_capacity(256);
    send(&mut stream, format!("from:@{name}\n").as_bytes()).await?;
    read_until_suffix(&mut stream, &mut buf, b"\n@").await?;
    let reply = String::from_utf8_lossy(&buf).into_owned();
    let challenge = reply
        .strip_prefix("data:")
        .and_then(|r| r.strip_suffix("\n@"))
        .ok_or_else(|| format!("from:@{name} answered {reply:?}"))?;
    let hex = at_tests::client::cram_digest(secret, challenge);
    exchange_exact(
        &mut stream,
        &mut buf,
        format!("cram:{hex}\n").as_bytes(),
        format!("data:success\n@{name}@").as_bytes(),
    )
    .await?;
    Ok(stream)
}

/// An `enroll:request` on the cram connection (approved at once): from now on the connection
/// is that enrollment, with `*:rw`.
async fn enroll(stream: &mut Stream, name: &str, device: usize) -> Result<(), String> {
    let mut buf = Vec::with_capacity(256);
    let request = format!(
        r#"enroll:request:{{"appName":"bench","deviceName":"d{device}","namespaces":{{"bench":"rw"}},"apkamPublicKey":"k"}}"#
    ) + "\n";
    send(stream, request.as_bytes()).await?;
    read_until_suffix(stream, &mut buf, format!("\n@{name}@").as_bytes()).await?;
    let reply = String::from_utf8_lossy(&buf);
    if !reply.contains(r#""status":"approved""#) {
        return Err(format!("enroll:request answered {reply:?}"));
    }
    Ok(())
}

async fn send(stream: &mut Stream, request: &[u8]) -> Result<(), String> {
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    stream.flush().await.map_err(|e| format!("flush: {e}"))
}

/// Sends `request`; the reply must be exactly `want`.
async fn exchange_exact(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    request: &[u8],
    want: &[u8],
) -> Result<(), String> {
    let exchange = async {
        send(stream, request).await?;
        read_exact_reply(stream, buf, want).await
    };
    tokio::time::timeout(REPLY_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {REPLY_TIMEOUT:?}"))?
}

/// Sends an update; the reply must be `data:<commit id>` and `prompt`; returns the commit id.
async fn exchange_update(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    request: &[u8],
    prompt: &[u8],
) -> Result<u64, String> {
    let exchange = async {
        send(stream, request).await?;
        read_until_suffix(stream, buf, prompt).await?;
        parse_commit_id(buf, prompt).ok_or_else(|| {
            format!(
                "{:?} answered {:?}, expected data:<commit id>{:?}",
                String::from_utf8_lossy(request),
                String::from_utf8_lossy(buf),
                String::from_utf8_lossy(prompt)
            )
        })
    };
    tokio::time::timeout(REPLY_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {REPLY_TIMEOUT:?}"))?
}

/// `data:<digits><prompt>` → the number.
fn parse_commit_id(reply: &[u8], prompt: &[u8]) -> Option<u64> {
    let digits = reply.strip_prefix(b"data:")?.strip_suffix(prompt)?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Reads until `want.len()` bytes have arrived and checks they are exactly `want`.
async fn read_exact_reply(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    want: &[u8],
) -> Result<(), String> {
    buf.clear();
    let mut chunk = [0u8; 512];
    while buf.len() < want.len() {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!(
                "connection closed after {:?}, expected {:?}",
                String::from_utf8_lossy(buf),
                String::from_utf8_lossy(want)
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if buf.as_slice() != want {
        return Err(format!(
            "answer {:?}, expected {:?}",
            String::from_utf8_lossy(buf),
            String::from_utf8_lossy(want)
        ));
    }
    Ok(())
}

/// Reads until the bytes so far end with `suffix` (one request in flight: that is the reply).
async fn read_until_suffix(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    suffix: &[u8],
) -> Result<(), String> {
    buf.clear();
    let mut chunk = [0u8; 512];
    while !buf.ends_with(suffix) {
        if buf.len() > 64 * 1024 {
            return Err(format!(
                "no {:?} after 64 KiB of answer",
                String::from_utf8_lossy(suffix)
            ));
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!(
                "connection closed after {:?}, expected it to end with {:?}",
                String::from_utf8_lossy(buf),
                String::from_utf8_lossy(suffix)
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// redis-benchmark.

/// Runs `redis-benchmark -t set,get` (over TLS, with `tls`) and returns its rates.
fn redis_benchmark(port: u16, tls: bool, options: &Options) -> Result<Baseline, String> {
    let text = run_redis_benchmark(
        port,
        "set,get",
        options.connections,
        options.redis_requests,
        tls,
    )?;
    let set = redis_benchmark_rate(&text, "SET")
        .ok_or_else(|| format!("no SET rate in redis-benchmark's output: {text:?}"))?;
    let get = redis_benchmark_rate(&text, "GET")
        .ok_or_else(|| format!("no GET rate in redis-benchmark's output: {text:?}"))?;
    println!(
        "redis-benchmark -t set,get{}  SET {set:.0} requests/s, GET {get:.0} requests/s  (load {})",
        if tls { " --tls" } else { "" },
        load_average()
    );
    Ok(Baseline { set, get })
}

/// Redis's rates when it pays what an atServer update pays, for context.
struct Context {
    /// Over TLS (no persistence).
    tls: Baseline,
    /// SET with `appendfsync always`, without TLS.
    durable_set: f64,
    /// SET with `appendfsync always`, over TLS.
    durable_tls_set: f64,
}

/// A certificate and key for Redis's TLS port, made by `at-server ca-create` in `dir`
/// (`redis-benchmark --insecure` does not check it).
fn create_certificate(server: &Path, dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let out_dir = dir.join("tls");
    let out = Command::new(server)
        .arg("ca-create")
        .arg("--out")
        .arg(&out_dir)
        .output()
        .map_err(|e| format!("at-server ca-create: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "at-server ca-create: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok((out_dir.join("ca.pem"), out_dir.join("ca-key.pem")))
}

/// `redis-cli -p <port> args…`, which must answer `OK`.
fn redis_cli(port: u16, args: &[&str]) -> Result<(), String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .map_err(|e| format!("redis-cli (apt-get install -y redis-tools): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim() != "OK" {
        return Err(format!("redis-cli {args:?}: {text}"));
    }
    Ok(())
}

fn print_table(options: &Options, baselines: &[Baseline], results: &[Measured], context: &Context) {
    let set = baselines.iter().map(|b| b.set).sum::<f64>() / baselines.len() as f64;
    let get = baselines.iter().map(|b| b.get).sum::<f64>() / baselines.len() as f64;
    println!();
    println!(
        "| what (c={}; atServer over TLS, one request in flight per connection) | ops/s | vs redis | p50 | p99 |",
        options.connections
    );
    println!("|---|---:|---:|---:|---:|");
    for (i, b) in baselines.iter().enumerate() {
        println!(
            "| redis-benchmark SET, run {} | {:.0} | | | |",
            i + 1,
            b.set
        );
        println!(
            "| redis-benchmark GET, run {} | {:.0} | | | |",
            i + 1,
            b.get
        );
    }
    println!(
        "| redis-benchmark SET, appendfsync always | {:.0} | | | |",
        context.durable_set
    );
    println!(
        "| redis-benchmark --tls SET / GET | {:.0} / {:.0} | | | |",
        context.tls.set, context.tls.get
    );
    println!(
        "| redis-benchmark --tls SET, appendfsync always | {:.0} | | | |",
        context.durable_tls_set
    );
    let mut target_met = true;
    for m in results {
        let (baseline, against) = match m.op {
            Op::Update => (set, "SET"),
            Op::Llookup => (get, "GET"),
        };
        // The target is the embedded store's; the Redis layouts are reported beside it.
        if !matches!(m.layout, Layout::Cluster(_) | Layout::RedisCluster(_)) {
            target_met &= m.rate() >= baseline / 2.0;
        }
        let mut durable = match m.op {
            Op::Update => format!(
                "; {:.0}% of TLS SET, {:.0}% of durable SET, {:.0}% of durable TLS SET",
                100.0 * m.rate() / context.tls.set,
                100.0 * m.rate() / context.durable_set,
                100.0 * m.rate() / context.durable_tls_set
            ),
            Op::Llookup => format!("; {:.0}% of TLS GET", 100.0 * m.rate() / context.tls.get),
        };
        if let Some(commands) = m.redis_commands {
            durable.push_str(&format!(
                "; {:.2} Redis commands/op",
                commands as f64 / m.ops as f64
            ));
        }
        println!(
            "| at-server {}, {} | {:.0} | {:.1}% of {against} ({baseline:.0}, mean of the runs){durable} | {} | {} |",
            m.op.name(),
            m.layout.name(),
            m.rate(),
            100.0 * m.rate() / baseline,
            fmt_latency(m.p50),
            fmt_latency(m.p99),
        );
    }
    println!();
    println!(
        "target (update >= 50% of redis SET, llookup >= 50% of redis GET): {}",
        if target_met { "met" } else { "NOT met" }
    );
}

// ---------------------------------------------------------------------------------------------
// Idle memory.

struct Memory {
    count: usize,
    rss_1: u64,
    rss_n: u64,
    provision_secs: f64,
}

impl Memory {
    fn per_atsign(&self) -> f64 {
        (self.rss_n as f64 - self.rss_1 as f64) / (self.count - 1) as f64
    }
}

/// Provisions `names` on an SNI-only node; serves; reads its RSS.
fn idle_rss(server: &Path, names: &[String]) -> Result<(u64, f64), String> {
    let node = Node::new("server-bench-mem", None, None)?;
    let began = Instant::now();
    node.provision(server, names)?;
    let provision_secs = began.elapsed().as_secs_f64();
    let running = node.serve(server);
    std::thread::sleep(SETTLE);
    let rss = vm_rss(running.pid());
    running.stop();
    Ok((
        rss.ok_or("could not read the server's VmRSS")?,
        provision_secs,
    ))
}

fn measure_memory(server: &Path, count: usize) -> Result<Memory, String> {
    let names: Vec<String> = (0..count).map(|i| format!("idle{i:06}")).collect();
    let (rss_1, _) = idle_rss(server, &names[..1])?;
    let (rss_n, provision_secs) = idle_rss(server, &names)?;
    let memory = Memory {
        count,
        rss_1,
        rss_n,
        provision_secs,
    };
    println!(
        "memory: {count} atSigns provisioned in {provision_secs:.1} s ({:.0}/s); VmRSS idle: \
         1 atSign {} KiB, {count} atSigns {} KiB: {:.0} bytes per idle atSign",
        count as f64 / provision_secs,
        rss_1 / 1024,
        rss_n / 1024,
        memory.per_atsign()
    );
    Ok(memory)
}

fn print_memory(memory: &[Memory]) {
    println!();
    println!(
        "| idle atSigns | provisioned per second | VmRSS, 1 atSign | VmRSS, N atSigns | bytes per idle atSign |"
    );
    println!("|---:|---:|---:|---:|---:|");
    let mut target_met = true;
    for m in memory {
        let per = m.per_atsign();
        target_met &= per < 1024.0;
        println!(
            "| {} | {:.0} | {} KiB | {} KiB | {per:.0} |",
            m.count,
            m.count as f64 / m.provision_secs,
            m.rss_1 / 1024,
            m.rss_n / 1024,
        );
    }
    println!();
    println!(
        "target (< 1 KiB per idle atSign): {}",
        if target_met { "met" } else { "NOT met" }
    );
}

/// `VmRSS` of `pid` in bytes, from `/proc/<pid>/status`.
fn vm_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_ids_are_parsed_exactly() {
        let prompt = b"\n@alice@";
        assert_eq!(parse_commit_id(b"data:42\n@alice@", prompt), Some(42));
        assert_eq!(parse_commit_id(b"data:-1\n@alice@", prompt), None);
        assert_eq!(parse_commit_id(b"data:\n@alice@", prompt), None);
        assert_eq!(parse_commit_id(b"data:4\n@bob@", prompt), None);
        assert_eq!(parse_commit_id(b"error:AT0015\n@alice@", prompt), None);
    }

    #[test]
    fn flags_are_parsed_and_bounded() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = parse_args(args("--seconds 3 --layouts one --memory 1000"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (o.seconds, o.layouts.clone(), o.memory.clone()),
            (3, vec![Layout::One], vec![1000])
        );
        assert_eq!(o.redis_nodes, [1, 2, 3]);
        let o = parse_args(args("--redis-nodes 2,4")).unwrap().unwrap();
        assert_eq!(o.redis_nodes, [2, 4]);
        assert!(o.redis_cluster_nodes.is_empty());
        let o = parse_args(args("--redis-cluster-nodes 1"))
            .unwrap()
            .unwrap();
        assert_eq!(o.redis_cluster_nodes, [1]);
        assert!(parse_args(args("--redis-cluster-nodes 17")).is_err());
        assert!(parse_args(args("--redis-nodes 0")).is_err());
        let o = parse_args(vec!["--memory".to_string(), String::new()])
            .unwrap()
            .unwrap();
        assert!(o.memory.is_empty());
        assert!(parse_args(args("--help")).unwrap().is_none());
        assert!(parse_args(args("--seconds 0")).is_err());
        assert!(parse_args(args("--layouts many")).is_err());
        assert!(parse_args(args("--bogus")).is_err());
    }
}
