//! `directory-bench`: atDirectory lookups per second over TLS, beside `redis-benchmark -t get`.
//!
//! What it does, in one session on one machine (loopback only):
//! 1. starts a real `redis-server` and runs `redis-benchmark -t get -c <connections> -n <N> -q`
//!    against it (the baseline; run again at the end, so drift shows);
//! 2. for each backend (`embedded`, `redis`): stores `--atsigns` registrations, starts
//!    `at-directory serve`, opens `--connections` TLS connections (handshakes are not measured),
//!    then every connection looks registered atSigns up one at a time (no pipelining, as a real
//!    client does), checking every answer byte for byte: a warm-up, then a measured period;
//! 3. prints requests/second, the ratio to redis-benchmark's GET rate, and p50/p99 latency.
//!
//! Registrations are written without going through `serve`, for speed: for `embedded`, the
//! store's own log format (`+ @name host:port` lines in `<data dir>/registrations.log`) is
//! written before `serve` starts; for `redis`, one pipeline of `SET name host:port` (the
//! store's key layout, no prefix). Either way `at-directory list` (the admin command) must then
//! report every one of them, so a change of format fails the benchmark instead of skewing it.
//!
//! Build `at-directory` in the same target directory first; it is found next to this binary:
//! `cargo build --release -p at-directory -p at-tests && cargo run --release -p at-tests --bin directory-bench`

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use at_tests::bench::{
    connector, cpu_seconds, fmt_latency, load_average, number_arg, redis_benchmark_rate,
    run_redis_benchmark, Stream,
};
use at_tests::process::{self, Running};
use at_tests::redis::RedisServer;
use at_tests::TempDir;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream as AsyncTcpStream;
use tokio_rustls::TlsConnector;

const USAGE: &str = "\
directory-bench: atDirectory lookups/second over TLS, beside redis-benchmark -t get

USAGE: directory-bench [OPTIONS]

OPTIONS (defaults in brackets):
  --seconds S          measured period per backend, seconds [10]
  --warmup S           warm-up before it, seconds [2]
  --connections C      concurrent connections, for the directory and redis-benchmark [50]
  --atsigns K          registered atSigns looked up round-robin [1000]
  --redis-requests N   redis-benchmark -n [200000]
  --max-requests M     stop a measured period early after M lookups [5000000]
  --backends LIST      comma-separated: embedded,redis [embedded,redis]
  --rounds R           repeat (every backend, then redis-benchmark) R times; medians reported [1]
  --workers W          AT_DIRECTORY__WORKERS for serve; 0 = its default (one per CPU) [0]
  --client-threads T   tokio worker threads of this client (redis-benchmark uses 1) [1]
  --help               this text

Every phase is bounded by time; child processes are stopped at the end.";

/// Hard ceilings on the flags, so a typo cannot make a run take hours.
const MAX_SECONDS: u64 = 600;
const MAX_CONNECTIONS: usize = 1000;
const MAX_ATSIGNS: usize = 1_000_000;
const MAX_REDIS_REQUESTS: u64 = 20_000_000;
const MAX_LOOKUPS: u64 = 50_000_000;
/// Longest wait for one answer, one handshake, or one redis-benchmark run.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Options {
    seconds: u64,
    warmup: u64,
    connections: usize,
    atsigns: usize,
    redis_requests: u64,
    max_requests: u64,
    backends: Vec<Backend>,
    rounds: u32,
    workers: usize,
    client_threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Embedded,
    Redis,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Redis => "redis",
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seconds: 10,
            warmup: 2,
            connections: 50,
            atsigns: 1000,
            redis_requests: 200_000,
            max_requests: 5_000_000,
            backends: vec![Backend::Embedded, Backend::Redis],
            rounds: 1,
            workers: 0,
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
            "--atsigns" => options.atsigns = number_arg(&flag, args.next(), 1, MAX_ATSIGNS)?,
            "--redis-requests" => {
                options.redis_requests = number_arg(&flag, args.next(), 1000, MAX_REDIS_REQUESTS)?
            }
            "--max-requests" => {
                options.max_requests = number_arg(&flag, args.next(), 1, MAX_LOOKUPS)?
            }
            "--rounds" => options.rounds = number_arg(&flag, args.next(), 1, 20)?,
            "--workers" => options.workers = number_arg(&flag, args.next(), 0, 256)?,
            "--client-threads" => options.client_threads = number_arg(&flag, args.next(), 1, 64)?,
            "--backends" => {
                let list = args.next().ok_or("--backends needs a value")?;
                options.backends = list
                    .split(',')
                    .map(|b| match b.trim() {
                        "embedded" => Ok(Backend::Embedded),
                        "redis" => Ok(Backend::Redis),
                        other => Err(format!("--backends: unknown backend {other:?}")),
                    })
                    .collect::<Result<_, _>>()?;
                if options.backends.is_empty() {
                    return Err("--backends: name at least one".into());
                }
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(Some(options))
}

fn main() -> ExitCode {
    at_tests::bench::main("directory-bench", USAGE, parse_args, run)
}

/// One directory measurement.
struct Measured {
    backend: Backend,
    round: u32,
    lookups: u64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
    /// CPU seconds used in the measured period by at-directory, this client, and redis-server.
    cpu: Cpu,
}

#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    server: f64,
    client: f64,
    redis: f64,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.lookups as f64 / self.elapsed.as_secs_f64()
    }
}

fn run(options: &Options) -> Result<(), String> {
    // A binary lives in `target/<profile>/` beside `at-directory`; `workspace_binary` expects
    // a test executable in `target/<profile>/deps/`, so look beside this one first.
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("at-directory")))
        .filter(|path| path.is_file());
    let directory = beside.unwrap_or_else(|| process::workspace_binary("at-directory"));
    if !directory.is_file() {
        return Err(format!(
            "{} not found: build it in the same target directory first \
             (cargo build --release -p at-directory -p at-tests)",
            directory.display()
        ));
    }
    let registrations = Registrations::new(options.atsigns);
    println!(
        "directory-bench: {} connections, {} atSigns, {} s warm-up + {} s measured per backend, \
         {} round(s), {} client thread(s), serve workers: {}, {} CPU(s)",
        options.connections,
        options.atsigns,
        options.warmup,
        options.seconds,
        options.rounds,
        options.client_threads,
        if options.workers == 0 {
            "default".to_string()
        } else {
            options.workers.to_string()
        },
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );

    let redis = RedisServer::start();
    let redis_pid = redis_server_pid(redis.port());
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

    // redis-benchmark, then every backend, then redis-benchmark again, and so on: each
    // directory figure has a baseline taken just before and just after it.
    let mut baselines = vec![redis_benchmark(redis.port(), redis_pid, options)?];
    let mut results = Vec::new();
    for round in 1..=options.rounds {
        for &backend in &options.backends {
            let measured = run_backend(
                backend,
                round,
                &directory,
                &redis,
                redis_pid,
                &registrations,
                &runtime,
                options,
            )?;
            results.push(measured);
        }
        baselines.push(redis_benchmark(redis.port(), redis_pid, options)?);
    }
    print_table(options, &baselines, &results);
    Ok(())
}

/// One backend, one round: store the registrations, serve, measure, stop.
#[allow(clippy::too_many_arguments)]
fn run_backend(
    backend: Backend,
    round: u32,
    directory: &Path,
    redis: &RedisServer,
    redis_pid: Option<u32>,
    registrations: &Registrations,
    runtime: &tokio::runtime::Runtime,
    options: &Options,
) -> Result<Measured, String> {
    let data = TempDir::new(&format!("bench-{}", backend.name()));
    let redis_url = redis.url();
    let store_args: Vec<&str> = match backend {
        Backend::Embedded => {
            registrations.write_log(data.path())?;
            vec!["--data-dir", path_str(data.path())?]
        }
        Backend::Redis => {
            registrations.write_redis(redis.port())?;
            vec!["--data-dir", path_str(data.path())?, "--redis", &redis_url]
        }
    };
    registrations.check_listed(directory, &store_args)?;

    let workers = options.workers.to_string();
    let mut envs = vec![("AT_DIRECTORY_LOG", "warn")];
    if options.workers > 0 {
        envs.push(("AT_DIRECTORY__WORKERS", workers.as_str()));
    }
    let mut serve_args = store_args.clone();
    serve_args.extend(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", ""]);
    let server = Running::start(directory, &serve_args, &envs, false);
    let ca = data.path().join("tls").join("ca.pem");
    let pids = Pids {
        server: server.pid(),
        redis: redis_pid,
    };
    let measured = runtime.block_on(measure(
        backend,
        round,
        server.addr,
        &ca,
        registrations,
        options,
        pids,
    ));
    server.stop();
    if backend == Backend::Redis {
        // Leave the shared Redis as redis-benchmark found it.
        redis_command(redis.port(), &[b"FLUSHALL"])?;
    }
    let measured = measured?;
    let secs = measured.elapsed.as_secs_f64();
    println!(
        "directory {:<9} {:>10.0} lookups/s  (round {round}; p50 {:?}, p99 {:?}, max {:?}, {} lookups in {:.2} s; \
         CPU: at-directory {:.0}%, client {:.0}%, redis-server {:.0}%; \
         at-directory {:.1} us CPU/lookup; load {})",
        backend.name(),
        measured.rate(),
        measured.p50,
        measured.p99,
        measured.max,
        measured.lookups,
        secs,
        100.0 * measured.cpu.server / secs,
        100.0 * measured.cpu.client / secs,
        100.0 * measured.cpu.redis / secs,
        1e6 * measured.cpu.server / measured.lookups as f64,
        load_average(),
    );
    Ok(measured)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// `baselines[r-1]` and `baselines[r]` bracket round `r`.
fn print_table(options: &Options, baselines: &[f64], results: &[Measured]) {
    println!();
    println!(
        "| what (c={}; directory over TLS, one lookup in flight per connection) | requests/s | vs redis GET | p50 | p99 |",
        options.connections
    );
    println!("|---|---:|---:|---:|---:|");
    for (i, rate) in baselines.iter().enumerate() {
        println!(
            "| redis-benchmark -t get, run {} | {rate:.0} | | | |",
            i + 1
        );
    }
    for m in results {
        let round = m.round as usize;
        let bracket = (baselines[round - 1] + baselines[round]) / 2.0;
        println!(
            "| at-directory {}, round {} | {:.0} | {:.1}% (of {:.0}, the runs around it) | {} | {} |",
            m.backend.name(),
            m.round,
            m.rate(),
            100.0 * m.rate() / bracket,
            bracket,
            fmt_latency(m.p50),
            fmt_latency(m.p99),
        );
    }
    let baseline = median(&mut baselines.to_vec());
    println!("| **redis-benchmark -t get, median** | **{baseline:.0}** | 100% | | |");
    let mut target_met = true;
    for &backend in &options.backends {
        let runs: Vec<&Measured> = results.iter().filter(|m| m.backend == backend).collect();
        let rate = median(&mut runs.iter().map(|m| m.rate()).collect::<Vec<_>>());
        let p50 = median(&mut runs.iter().map(|m| m.p50.as_secs_f64()).collect::<Vec<_>>());
        let p99 = median(&mut runs.iter().map(|m| m.p99.as_secs_f64()).collect::<Vec<_>>());
        target_met &= rate >= baseline / 2.0;
        println!(
            "| **at-directory {}, median** | **{rate:.0}** | **{:.1}%** | {} | {} |",
            backend.name(),
            100.0 * rate / baseline,
            fmt_latency(Duration::from_secs_f64(p50)),
            fmt_latency(Duration::from_secs_f64(p99)),
        );
    }
    println!();
    println!(
        "target (median >= 50% of redis-benchmark's median GET rate): {}",
        if target_met { "met" } else { "NOT met" }
    );
}

fn path_str(path: &Path) -> Result<&str, String> {
    path.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))
}

/// The atSigns and what the directory must answer for each.
struct Registrations {
    /// (name without `@`, address).
    entries: Vec<(String, String)>,
}

impl Registrations {
    fn new(count: usize) -> Registrations {
        let entries = (0..count)
            .map(|i| {
                (
                    format!("bench{i:07}"),
                    format!("srv{i:07}.bench.example:{}", 1024 + (i % 60_000)),
                )
            })
            .collect();
        Registrations { entries }
    }

    /// The embedded store's log, written whole before `serve` opens it.
    fn write_log(&self, dir: &Path) -> Result<(), String> {
        let mut text = String::new();
        for (name, address) in &self.entries {
            text.push_str(&format!("+ @{name} {address}\n"));
        }
        let log = dir.join("registrations.log");
        std::fs::write(&log, text).map_err(|e| format!("writing {}: {e}", log.display()))
    }

    /// One pipeline of `SET name address` in the Redis store's layout (no key prefix).
    fn write_redis(&self, port: u16) -> Result<(), String> {
        let mut stream = redis_connect(port)?;
        let mut out = Vec::new();
        for (name, address) in &self.entries {
            encode_command(&mut out, &[b"SET", name.as_bytes(), address.as_bytes()]);
        }
        stream
            .write_all(&out)
            .map_err(|e| format!("redis pipeline: {e}"))?;
        let want = b"+OK\r\n".repeat(self.entries.len());
        let mut got = vec![0u8; want.len()];
        stream
            .read_exact(&mut got)
            .map_err(|e| format!("redis pipeline replies: {e}"))?;
        if got != want {
            return Err("redis pipeline: not every SET answered +OK".into());
        }
        Ok(())
    }

    /// `at-directory … list` must show every registration: the store reads what we wrote.
    fn check_listed(&self, directory: &Path, store_args: &[&str]) -> Result<(), String> {
        let mut args = store_args.to_vec();
        args.push("list");
        let output = process::run(directory, &args, &[("AT_DIRECTORY_LOG", "warn")]);
        if !output.status.success() {
            return Err(format!(
                "at-directory list failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let listed = String::from_utf8_lossy(&output.stdout).lines().count();
        if listed != self.entries.len() {
            return Err(format!(
                "at-directory list shows {listed} registrations, {} were written",
                self.entries.len()
            ));
        }
        Ok(())
    }
}

fn redis_connect(port: u16) -> Result<TcpStream, String> {
    let stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connecting to redis: {e}"))?;
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(REPLY_TIMEOUT)))
        .map_err(|e| format!("redis socket: {e}"))?;
    Ok(stream)
}

fn encode_command(out: &mut Vec<u8>, parts: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", parts.len()).as_bytes());
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
}

/// Sends one command expecting `+OK`.
fn redis_command(port: u16, parts: &[&[u8]]) -> Result<(), String> {
    let mut stream = redis_connect(port)?;
    let mut out = Vec::new();
    encode_command(&mut out, parts);
    stream.write_all(&out).map_err(|e| format!("redis: {e}"))?;
    let mut reply = [0u8; 5];
    stream
        .read_exact(&mut reply)
        .map_err(|e| format!("redis: {e}"))?;
    if &reply != b"+OK\r\n" {
        return Err(format!(
            "redis answered {:?}",
            String::from_utf8_lossy(&reply)
        ));
    }
    Ok(())
}

/// Runs `redis-benchmark -t get` and returns its requests/second.
fn redis_benchmark(port: u16, redis_pid: Option<u32>, options: &Options) -> Result<f64, String> {
    let began = Instant::now();
    let redis_cpu = redis_pid.and_then(cpu_seconds);
    let text = run_redis_benchmark(
        port,
        "get",
        options.connections,
        options.redis_requests,
        false,
    )?;
    let wall = began.elapsed().as_secs_f64();
    let redis_cpu = redis_cpu
        .zip(redis_pid.and_then(cpu_seconds))
        .map(|(from, to)| to - from);
    let rate = redis_benchmark_rate(&text, "GET")
        .ok_or_else(|| format!("no GET rate in redis-benchmark's output: {text:?}"))?;
    let per_request = redis_cpu.map_or("?".to_string(), |cpu| {
        format!("{:.1}", 1e6 * cpu / options.redis_requests as f64)
    });
    let percent = redis_cpu.map_or("?".to_string(), |cpu| format!("{:.0}", 100.0 * cpu / wall));
    println!(
        "redis-benchmark -t get    {rate:>10.0} requests/s  (redis-server CPU {percent}%, \
         {per_request} us CPU/request; load {})",
        load_average()
    );
    Ok(rate)
}

/// Connects every client (handshakes not timed), then warm-up, then the measured period.
#[allow(clippy::too_many_arguments)]
async fn measure(
    backend: Backend,
    round: u32,
    addr: SocketAddr,
    ca: &Path,
    registrations: &Registrations,
    options: &Options,
    pids: Pids,
) -> Result<Measured, String> {
    let connector = connector(ca)?;
    let mut handshakes = tokio::task::JoinSet::new();
    for _ in 0..options.connections {
        let connector = connector.clone();
        handshakes.spawn(async move { connect(&connector, addr).await });
    }
    let mut streams = Vec::with_capacity(options.connections);
    while let Some(joined) = handshakes.join_next().await {
        streams.push(joined.map_err(|e| format!("connect task: {e}"))??);
    }

    let requests: Arc<Vec<(Vec<u8>, Vec<u8>)>> = Arc::new(
        registrations
            .entries
            .iter()
            .map(|(name, address)| {
                (
                    format!("{name}\n").into_bytes(),
                    format!("{address}\r\n@").into_bytes(),
                )
            })
            .collect(),
    );
    let start = Instant::now();
    let window = Window {
        measure_from: start + Duration::from_secs(options.warmup),
        end: start + Duration::from_secs(options.warmup + options.seconds),
        max_requests: options.max_requests,
        counted: Arc::new(AtomicU64::new(0)),
    };
    let mut clients = tokio::task::JoinSet::new();
    let stride = (requests.len() / streams.len()).max(1);
    for (i, stream) in streams.into_iter().enumerate() {
        let requests = Arc::clone(&requests);
        let window = window.clone();
        clients.spawn(async move { lookups(stream, requests, i * stride, window).await });
    }
    let measure_from = window.measure_from;
    let cpu_from = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        pids.cpu()
    });
    let mut latencies: Vec<u32> = Vec::new();
    let mut last_done = window.measure_from;
    while let Some(joined) = clients.join_next().await {
        let outcome = joined.map_err(|e| format!("client task: {e}"))??;
        latencies.extend(outcome.latencies_us);
        last_done = last_done.max(outcome.last_done);
    }
    let cpu_to = pids.cpu();
    let cpu_from = cpu_from.await.map_err(|e| format!("CPU sampler: {e}"))?;
    let cpu = Cpu {
        server: cpu_to.server - cpu_from.server,
        client: cpu_to.client - cpu_from.client,
        redis: cpu_to.redis - cpu_from.redis,
    };
    if latencies.is_empty() {
        return Err(format!(
            "{}: no lookups in the measured period",
            backend.name()
        ));
    }
    latencies.sort_unstable();
    let pick = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        Duration::from_micros(u64::from(latencies[i]))
    };
    Ok(Measured {
        backend,
        round,
        lookups: latencies.len() as u64,
        elapsed: last_done.saturating_duration_since(window.measure_from),
        p50: pick(0.50),
        p99: pick(0.99),
        max: pick(1.0),
        cpu,
    })
}

/// The processes whose CPU time is sampled.
#[derive(Debug, Clone, Copy)]
struct Pids {
    server: u32,
    redis: Option<u32>,
}

impl Pids {
    /// Cumulative CPU seconds of each (0 when unknown).
    fn cpu(&self) -> Cpu {
        Cpu {
            server: cpu_seconds(self.server).unwrap_or(0.0),
            client: cpu_seconds(std::process::id()).unwrap_or(0.0),
            redis: self.redis.and_then(cpu_seconds).unwrap_or(0.0),
        }
    }
}

/// The pid of the `redis-server` listening on `port` (it titles itself `redis-server 127.0.0.1:<port>`).
fn redis_server_pid(port: u16) -> Option<u32> {
    let title = format!("127.0.0.1:{port}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline);
            (cmdline.starts_with("redis-server") && cmdline.contains(&title)).then_some(pid)
        })
}

#[derive(Clone)]
struct Window {
    measure_from: Instant,
    end: Instant,
    max_requests: u64,
    /// Lookups completed in the measured period, across every connection.
    counted: Arc<AtomicU64>,
}

struct Outcome {
    latencies_us: Vec<u32>,
    last_done: Instant,
}

/// TCP connect, TLS handshake (SNI `localhost`), and the first prompt.
async fn connect(connector: &TlsConnector, addr: SocketAddr) -> Result<Stream, String> {
    let handshake = async {
        let tcp = AsyncTcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        let name = ServerName::try_from("localhost").expect("valid server name");
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let mut buf = Vec::new();
        read_reply(&mut tls, &mut buf, b"@").await?;
        Ok(tls)
    };
    tokio::time::timeout(REPLY_TIMEOUT, handshake)
        .await
        .map_err(|_| format!("no TLS handshake and prompt from {addr} within {REPLY_TIMEOUT:?}"))?
}

/// Reads until `want.len()` bytes have arrived and checks they are exactly `want`.
async fn read_reply(stream: &mut Stream, buf: &mut Vec<u8>, want: &[u8]) -> Result<(), String> {
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

/// One connection: lookups one at a time until the window closes or the request cap is hit.
async fn lookups(
    mut stream: Stream,
    requests: Arc<Vec<(Vec<u8>, Vec<u8>)>>,
    first: usize,
    window: Window,
) -> Result<Outcome, String> {
    let mut latencies_us = Vec::new();
    let mut last_done = window.measure_from;
    let mut buf = Vec::with_capacity(128);
    let mut next = first % requests.len();
    // Bounded by `window.end` (checked every iteration; every read has a timeout) and by
    // `window.max_requests`.
    loop {
        let sent = Instant::now();
        if sent >= window.end || window.counted.load(Ordering::Relaxed) >= window.max_requests {
            break;
        }
        let (request, answer) = &requests[next];
        next = (next + 1) % requests.len();
        let exchange = async {
            stream
                .write_all(request)
                .await
                .map_err(|e| format!("write: {e}"))?;
            stream.flush().await.map_err(|e| format!("flush: {e}"))?;
            read_reply(&mut stream, &mut buf, answer).await
        };
        tokio::time::timeout(REPLY_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no answer within {REPLY_TIMEOUT:?}"))??;
        let done = Instant::now();
        if sent >= window.measure_from {
            window.counted.fetch_add(1, Ordering::Relaxed);
            latencies_us
                .push(u32::try_from(done.duration_since(sent).as_micros()).unwrap_or(u32::MAX));
            last_done = done;
        }
    }
    // Say goodbye as a client would; the answer does not matter.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(b"@exit\n").await;
        let _ = stream.shutdown().await;
    })
    .await;
    Ok(Outcome {
        latencies_us,
        last_done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_parsed_and_bounded() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = parse_args(args("--seconds 3 --connections 10 --backends redis"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (o.seconds, o.connections, o.backends.clone()),
            (3, 10, vec![Backend::Redis])
        );
        assert!(parse_args(args("--help")).unwrap().is_none());
        assert!(parse_args(args("--seconds 0")).is_err());
        assert!(parse_args(args("--seconds 100000")).is_err());
        assert!(parse_args(args("--backends mongo")).is_err());
        assert!(parse_args(args("--bogus")).is_err());
    }
}
