//! `soak-bench`: how much hostile clients cost the well-behaved clients of one atServer.
//!
//! One real `at-server` (the release build next to this binary, embedded store, TLS, the
//! default limits) hosts the measured atSigns `@soak0`…, and `@mallory` and `@flood` for the
//! hostile clients, each atSign on a port of its own, under one cluster CA and one
//! `at-directory` (loopback only).
//!
//! Well-behaved clients (from 127.0.0.1): `--owners` owner connections spread over the
//! `--atsigns` measured atSigns, one request in flight each, cycling through
//! * `update:public:u<c>.<k>@soak<i> <n>`: the reply must be `data:<commit id>`;
//! * `llookup:public:k<j>@soak<i>`: exactly `data:v<j>`;
//! * `lookup:s<j>.soak@soak<i+1>` (a key `@soak<i+1>` shares with `@soak<i>`, fetched over
//!   the in-process peer link with `pol`): exactly `data:s<j>from<i+1>`;
//! * `notify:id:<id>:update:messageType:text:@soak<i+1>:…`: exactly `data:<id>`;
//!
//! paced to `--rate` requests per second in all (0: each sends its next request as soon as the
//! last is answered), and `--monitors` monitor connections per measured atSign that read
//! every notification (a well-behaved notification's delivery latency, from `notify` to the
//! monitor line, is reported too); and once a second a fresh login (TLS + `from` + `cram`).
//! Any error reply, wrong reply, reply later than 10 s or dropped connection (a monitor's
//! too) is an error; the connection is made again and the run goes on.
//!
//! Hostile clients, all at once, each from a loopback address of its own kind, each loop
//! bounded in count and by the phase's end:
//! * `pipeline`: connections that pipeline requests and never read: `@mallory`'s owner asking
//!   `llookup` of a 100 KB value, and unauthenticated ones asking `lookup` of a 10 KB public
//!   value of a measured atSign; each held 5 s, then made again;
//! * `stall`: connections that stop mid-line (an unauthenticated `from:` half sent, an owner's
//!   `update` half sent) or mid-TLS-record (half of a record's bytes), held to the end;
//! * `proofs`: `from:@soak<i>` and a wrong `cram` in a loop, connecting again when closed or
//!   slowed (a reply later than 2 s);
//! * `flood`: `@flood`, hosted on the same node, pipelining `notify` to the measured atSigns
//!   (16 at a time per connection) as fast as they are delivered (at most `--flood-backlog`
//!   accepted and not yet seen by the monitors): delivered in-process, as a peer's are;
//! * `deaf-monitor`: monitors of the measured atSigns (a broken device of their owner) with a
//!   16 KiB receive window that never read; each held 5 s, then made again;
//! * `raw-tcp`: TCP connections that never start TLS, made again when closed.
//!
//! Phases alternate, in one process against one server: baseline (no hostile client),
//! hostile, baseline, hostile… (`--rounds` pairs; the machine is noisy, so the figures are
//! given as ranges). Each phase has a `--warmup` first (hostile clients already at work), then
//! `--seconds` measured; after a phase, the notifications still on their way are let arrive
//! (at most 60 s) before the next. Client threads: one for the well-behaved requests, one for
//! the monitors, one for every hostile client (so the attack takes at most one core of this
//! process); their CPU is reported beside the server's.
//!
//! Exit code 0, or 1 when a well-behaved request failed (the errors are printed), 2 for bad
//! flags. Build the servers first in the same target directory:
//! `cargo build --release -p at-server -p at-directory -p at-tests && cargo run --release -p at-tests --bin soak-bench`

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use at_tests::bench::{
    connect_tcp_from, connect_tls_from, connector, cpu_seconds, cram_login, fmt_latency,
    load_average, number_arg, read_until, read_until_suffix, threads_cpu_seconds, write_within,
    Stream,
};
use at_tests::servers::{Cluster, Server};
use at_tests::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

const USAGE: &str = "\
soak-bench: the latency of well-behaved clients of one atServer with and without hostile
clients at once (pipelining without reading, stalling mid-line, failing proofs, a notification
flood, monitors that never read, TCP without TLS)

USAGE: soak-bench [OPTIONS]

OPTIONS (defaults in brackets):
  --seconds S          measured period per phase, seconds [20]
  --warmup S           unmeasured time at the start of each phase, seconds [2]
  --rounds R           baseline + hostile pairs [2]
  --atsigns N          measured atSigns [4]
  --owners C           well-behaved owner connections, spread over the atSigns [20]
  --monitors M         well-behaved monitor connections per measured atSign [1]
  --rate R             well-behaved requests per second in all; 0: as fast as answered [1000]
  --hostile LIST       comma-separated hostile kinds: pipeline, stall, proofs, flood,
                       deaf-monitor, raw-tcp; `all` [all]
  --pipeliners N       pipelining connections at once [8]
  --stallers N         stalled connections at once [60]
  --provers N          connections failing proofs at once [4]
  --flooders N         @flood connections sending notify [4]
  --flood-backlog N    most flood notifications accepted and not yet delivered [2000]
  --deaf-monitors N    monitors that never read, at once [8]
  --raw-tcp N          TCP connections without TLS, at once [200]
  --help               this text

Every loop is bounded in count and by its phase's end; everything is stopped at the end.";

const MAX_SECONDS: u64 = 600;
/// Longest wait for a well-behaved reply, handshake or login.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Distinct keys per well-behaved connection (`update`) and per atSign (`llookup`, `lookup`).
const KEYS: usize = 50;
/// How long a pipelining or never-reading monitor connection is held before it is made again.
const HOLD: Duration = Duration::from_secs(5);
/// A proof's answer later than this: the prover connects again (the server slowed it).
const PROOF_PATIENCE: Duration = Duration::from_secs(2);
/// Notifications a flood connection sends before reading their answers.
const FLOOD_BATCH: usize = 16;
/// Bounds per hostile client and phase, beside the phase's end.
const MAX_HOSTILE_CONNECTIONS: u64 = 10_000;
const MAX_HOSTILE_REQUESTS: u64 = 2_000_000;
/// Longest wait, after a phase, for its notifications to arrive.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// Errors printed at the end (all are counted).
const ERRORS_SHOWN: usize = 40;

/// Where each kind of client comes from (the server's per-source bounds see them apart).
const WELL_BEHAVED: [u8; 4] = [127, 0, 0, 1];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Hostile {
    Pipeline,
    Stall,
    Proofs,
    Flood,
    DeafMonitor,
    RawTcp,
}

impl Hostile {
    const ALL: [Hostile; 6] = [
        Hostile::Pipeline,
        Hostile::Stall,
        Hostile::Proofs,
        Hostile::Flood,
        Hostile::DeafMonitor,
        Hostile::RawTcp,
    ];

    fn name(self) -> &'static str {
        match self {
            Hostile::Pipeline => "pipeline",
            Hostile::Stall => "stall",
            Hostile::Proofs => "proofs",
            Hostile::Flood => "flood",
            Hostile::DeafMonitor => "deaf-monitor",
            Hostile::RawTcp => "raw-tcp",
        }
    }

    fn source(self) -> IpAddr {
        let last = match self {
            Hostile::Pipeline => 2,
            Hostile::Stall => 3,
            Hostile::Proofs => 4,
            Hostile::Flood => 5,
            Hostile::RawTcp => 6,
            Hostile::DeafMonitor => 7,
        };
        IpAddr::from([127, 0, 0, last])
    }
}

#[derive(Debug, Clone)]
struct Options {
    seconds: u64,
    warmup: u64,
    rounds: usize,
    atsigns: usize,
    owners: usize,
    monitors: usize,
    rate: u64,
    hostile: Vec<Hostile>,
    pipeliners: usize,
    stallers: usize,
    provers: usize,
    flooders: usize,
    flood_backlog: u64,
    deaf_monitors: usize,
    raw_tcp: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seconds: 20,
            warmup: 2,
            rounds: 2,
            atsigns: 4,
            owners: 20,
            monitors: 1,
            rate: 1000,
            hostile: Hostile::ALL.to_vec(),
            pipeliners: 8,
            stallers: 60,
            provers: 4,
            flooders: 4,
            flood_backlog: 2000,
            deaf_monitors: 8,
            raw_tcp: 200,
        }
    }
}

impl Options {
    /// How many clients of `kind` run at once in a hostile phase.
    fn count(&self, kind: Hostile) -> usize {
        if !self.hostile.contains(&kind) {
            return 0;
        }
        match kind {
            Hostile::Pipeline => self.pipeliners,
            Hostile::Stall => self.stallers,
            Hostile::Proofs => self.provers,
            Hostile::Flood => self.flooders,
            Hostile::DeafMonitor => self.deaf_monitors,
            Hostile::RawTcp => self.raw_tcp,
        }
    }
}

/// `Ok(None)` means `--help` was asked for.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut o = Options::default();
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next();
        match flag.as_str() {
            "--help" | "-h" => return Ok(None),
            "--seconds" => o.seconds = number_arg(&flag, value(), 1, MAX_SECONDS)?,
            "--warmup" => o.warmup = number_arg(&flag, value(), 0, 60)?,
            "--rounds" => o.rounds = number_arg(&flag, value(), 1, 20)?,
            "--atsigns" => o.atsigns = number_arg(&flag, value(), 2, 50)?,
            "--owners" => o.owners = number_arg(&flag, value(), 1, 150)?,
            "--monitors" => o.monitors = number_arg(&flag, value(), 0, 20)?,
            "--rate" => o.rate = number_arg(&flag, value(), 0, 1_000_000)?,
            "--pipeliners" => o.pipeliners = number_arg(&flag, value(), 0, 100)?,
            "--stallers" => o.stallers = number_arg(&flag, value(), 0, 150)?,
            "--provers" => o.provers = number_arg(&flag, value(), 0, 64)?,
            "--flooders" => o.flooders = number_arg(&flag, value(), 0, 64)?,
            "--flood-backlog" => o.flood_backlog = number_arg(&flag, value(), 1, 1_000_000)?,
            "--deaf-monitors" => o.deaf_monitors = number_arg(&flag, value(), 0, 64)?,
            "--raw-tcp" => o.raw_tcp = number_arg(&flag, value(), 0, 250)?,
            "--hostile" => {
                let list = value().ok_or("--hostile needs a value")?;
                o.hostile = if list.trim() == "all" {
                    Hostile::ALL.to_vec()
                } else {
                    list.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|name| {
                            Hostile::ALL
                                .into_iter()
                                .find(|kind| kind.name() == name)
                                .ok_or_else(|| format!("--hostile: unknown kind {name:?}"))
                        })
                        .collect::<Result<_, _>>()?
                };
                if o.hostile.is_empty() {
                    return Err("--hostile: name at least one kind".into());
                }
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if o.owners < o.atsigns {
        return Err(format!(
            "--owners {} is fewer than --atsigns {}: every measured atSign needs a connection",
            o.owners, o.atsigns
        ));
    }
    Ok(Some(o))
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("soak-bench: {message}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("soak-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What every client shares.

/// One hosted atSign: its name with `@`, its port, its CRAM secret.
#[derive(Clone)]
struct Account {
    name: String,
    addr: SocketAddr,
    secret: String,
}

/// Per-phase counters the monitors and the flood share.
struct Counters {
    /// Flood notifications answered `data:<id>`, by phase.
    flood_accepted: Vec<AtomicU64>,
    /// Flood notifications seen by a well-behaved monitor, by phase.
    flood_seen: Vec<AtomicU64>,
    /// Well-behaved notifications answered `data:<id>`, by phase.
    notified: Vec<AtomicU64>,
}

/// What the well-behaved monitors saw.
#[derive(Default)]
struct Seen {
    /// Ids of well-behaved notifications seen (each counted once).
    ids: HashSet<String>,
    /// Their delivery latencies (µs), by phase.
    latencies: Vec<Vec<u32>>,
}

struct Ctx {
    connector: TlsConnector,
    measured: Vec<Account>,
    mallory: Account,
    flood: Account,
    /// The time well-behaved notification ids count from.
    epoch: Instant,
    counters: Counters,
    seen: Mutex<Seen>,
    /// Every well-behaved failure, in order: `phase: what`.
    errors: Mutex<Vec<String>>,
}

impl Ctx {
    fn error(&self, phase: &str, what: String) {
        self.errors.lock().unwrap().push(format!("{phase}: {what}"));
    }

    fn error_count(&self) -> usize {
        self.errors.lock().unwrap().len()
    }

    /// A new TLS connection to `account`'s port from `source`, logged in as it when `login`.
    async fn connect(
        &self,
        account: &Account,
        source: IpAddr,
        window: Option<u32>,
        login: bool,
    ) -> Result<Stream, String> {
        let mut stream = connect_tls_from(
            &self.connector,
            Some(source),
            window,
            account.addr,
            "127.0.0.1",
            REPLY_TIMEOUT,
        )
        .await?;
        if login {
            cram_login(&mut stream, &account.name, &account.secret, REPLY_TIMEOUT).await?;
        } else {
            let mut buf = Vec::new();
            read_until_suffix(&mut stream, &mut buf, b"@", 4096, REPLY_TIMEOUT).await?;
        }
        Ok(stream)
    }
}

fn runtime(name: &str) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime {name}: {e}"))
}

fn run(options: &Options) -> Result<usize, String> {
    let phases = 2 * options.rounds;
    println!(
        "soak-bench: {} measured atSign(s), {} owner connection(s), {} monitor(s) each, rate {}, \
         {} s warm-up + {} s measured per phase, {} round(s); hostile: {}; {} CPU(s), load {}",
        options.atsigns,
        options.owners,
        options.monitors,
        match options.rate {
            0 => "unpaced".to_string(),
            r => format!("{r} requests/s"),
        },
        options.warmup,
        options.seconds,
        options.rounds,
        Hostile::ALL
            .iter()
            .filter(|k| options.count(**k) > 0)
            .map(|k| format!("{} x{}", k.name(), options.count(*k)))
            .collect::<Vec<_>>()
            .join(", "),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average(),
    );

    // One node hosting every atSign, each on a port of its own.
    let dir = TempDir::new("soak-bench");
    let cluster = Cluster::start(dir.path());
    let names: Vec<String> = (0..options.atsigns)
        .map(|i| format!("@soak{i}"))
        .chain(["@mallory".to_string(), "@flood".to_string()])
        .collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (mut server, secrets) = cluster.server_hosting("node", &name_refs, "");
    server.start();
    let accounts: Vec<Account> = names
        .iter()
        .zip(&secrets)
        .enumerate()
        .map(|(i, (name, secret))| Account {
            name: name.clone(),
            addr: SocketAddr::from(([127, 0, 0, 1], server.port + i as u16)),
            secret: secret.clone(),
        })
        .collect();
    let per_phase = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
    let ctx = Arc::new(Ctx {
        connector: connector(&cluster.ca())?,
        measured: accounts[..options.atsigns].to_vec(),
        mallory: accounts[options.atsigns].clone(),
        flood: accounts[options.atsigns + 1].clone(),
        epoch: Instant::now(),
        counters: Counters {
            flood_accepted: per_phase(phases),
            flood_seen: per_phase(phases),
            notified: per_phase(phases),
        },
        seen: Mutex::new(Seen {
            ids: HashSet::new(),
            latencies: vec![Vec::new(); phases],
        }),
        errors: Mutex::new(Vec::new()),
    });

    let measured_rt = runtime("soak-measured")?;
    let monitor_rt = runtime("soak-monitors")?;
    let hostile_rt = runtime("soak-hostile")?;

    let outcome = soak(
        options,
        &ctx,
        &server,
        &measured_rt,
        &monitor_rt,
        &hostile_rt,
    );

    // Everything stopped: the clients' runtimes, then the server (SIGTERM, as Kubernetes
    // stops it), then the directory with the cluster.
    let stopping = Instant::now();
    hostile_rt.shutdown_timeout(Duration::from_secs(5));
    monitor_rt.shutdown_timeout(Duration::from_secs(5));
    measured_rt.shutdown_timeout(Duration::from_secs(5));
    let rss = at_tests::bench::rss_bytes(server.pid());
    match server.terminate(Duration::from_secs(30)) {
        Some(status) if status.success() => println!(
            "at-server stopped on SIGTERM in {:.2} s (RSS before: {})",
            stopping.elapsed().as_secs_f64(),
            rss.map_or("?".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0))
        ),
        Some(status) => {
            ctx.error(
                "shutdown",
                format!("at-server exited with {status} on SIGTERM"),
            );
        }
        None => ctx.error(
            "shutdown",
            "at-server still ran 30 s after SIGTERM (killed)".into(),
        ),
    }
    drop(cluster);
    let reports = outcome?;
    summarize(options, &reports);

    let errors = ctx.errors.lock().unwrap();
    if !errors.is_empty() {
        println!(
            "\n{} well-behaved request(s) failed (the first {}):",
            errors.len(),
            errors.len().min(ERRORS_SHOWN)
        );
        for error in errors.iter().take(ERRORS_SHOWN) {
            println!("  {error}");
        }
    }
    Ok(errors.len())
}

/// Prefill, monitors, the phases; the monitors stopped and the owners logged out at the end.
fn soak(
    options: &Options,
    ctx: &Arc<Ctx>,
    server: &Server,
    measured_rt: &tokio::runtime::Runtime,
    monitor_rt: &tokio::runtime::Runtime,
    hostile_rt: &tokio::runtime::Runtime,
) -> Result<Vec<PhaseReport>, String> {
    let mut owners = measured_rt.block_on(open_owners(ctx, options))?;
    measured_rt.block_on(prefill(ctx, &mut owners))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let monitors: Vec<_> = (0..options.atsigns * options.monitors)
        .map(|m| {
            let stop = stop_rx.clone();
            monitor_rt.spawn(monitor(Arc::clone(ctx), m % options.atsigns, stop))
        })
        .collect();
    // The monitors are in place (and the first lookups open the peer links) before measuring.
    std::thread::sleep(Duration::from_millis(500));

    let mut reports = Vec::new();
    for phase in 0..2 * options.rounds {
        let hostile = phase % 2 == 1;
        let label = format!(
            "phase {}/{} ({})",
            phase + 1,
            2 * options.rounds,
            if hostile { "hostile" } else { "baseline" }
        );
        let (back, report) = run_phase(
            options,
            ctx,
            server,
            measured_rt,
            hostile_rt,
            phase,
            hostile,
            &label,
            owners,
        )?;
        owners = back;
        print_phase(&label, &report);
        reports.push(report);
    }

    let _ = stop_tx.send(true);
    monitor_rt.block_on(async {
        for m in monitors {
            let _ = tokio::time::timeout(Duration::from_secs(5), m).await;
        }
    });
    measured_rt.block_on(async {
        for owner in owners {
            if let Some(mut stream) = owner.stream {
                let _ = write_within(&mut stream, b"@exit\n", Duration::from_secs(1)).await;
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
            }
        }
    });
    Ok(reports)
}

// ---------------------------------------------------------------------------------------------
// Well-behaved owners.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Update,
    Llookup,
    Lookup,
    Notify,
}

const OPS: [Op; 4] = [Op::Update, Op::Llookup, Op::Lookup, Op::Notify];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Update => "update",
            Op::Llookup => "llookup",
            Op::Lookup => "lookup (peer)",
            Op::Notify => "notify",
        }
    }
}

/// One well-behaved owner connection (`None` after a failure, until made again).
struct Owner {
    stream: Option<Stream>,
    /// Index of its atSign in `Ctx::measured`.
    atsign: usize,
    /// Its number among all owner connections.
    index: usize,
    seq: u64,
}

async fn open_owners(ctx: &Arc<Ctx>, options: &Options) -> Result<Vec<Owner>, String> {
    let mut owners = Vec::new();
    for index in 0..options.owners {
        let atsign = index % ctx.measured.len();
        let stream = ctx
            .connect(&ctx.measured[atsign], WELL_BEHAVED.into(), None, true)
            .await?;
        owners.push(Owner {
            stream: Some(stream),
            atsign,
            index,
            seq: 0,
        });
    }
    Ok(owners)
}

/// Sends `request`, reads one reply up to `prompt` (within [`REPLY_TIMEOUT`]).
async fn exchange(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    request: &[u8],
    prompt: &[u8],
) -> Result<(), String> {
    write_within(stream, request, REPLY_TIMEOUT).await?;
    read_until_suffix(stream, buf, prompt, 1 << 20, REPLY_TIMEOUT).await
}

/// The keys the well-behaved `llookup` and `lookup` read, written once (not measured): by
/// every measured atSign, `public:k<j>` = `v<j>`, and `s<j>.soak` shared with the atSign
/// before it = `s<j>from<i>`; and what the hostile pipelines read.
async fn prefill(ctx: &Arc<Ctx>, owners: &mut [Owner]) -> Result<(), String> {
    let n = ctx.measured.len();
    let mut buf = Vec::new();
    for i in 0..n {
        let owner = owners
            .iter_mut()
            .find(|o| o.atsign == i)
            .ok_or("an atSign without a connection")?;
        let stream = owner.stream.as_mut().ok_or("not connected")?;
        let me = &ctx.measured[i].name;
        let before = &ctx.measured[(i + n - 1) % n].name;
        let prompt = format!("\n{me}@");
        let big = "p".repeat(10_000);
        let mut lines: Vec<String> = (0..KEYS)
            .flat_map(|j| {
                [
                    format!("update:public:k{j}{me} v{j}\n"),
                    format!("update:{before}:s{j}.soak{me} s{j}from{i}\n"),
                ]
            })
            .collect();
        lines.push(format!("update:public:big.soak{me} {big}\n"));
        for line in lines {
            exchange(stream, &mut buf, line.as_bytes(), prompt.as_bytes()).await?;
            if !buf.starts_with(b"data:") {
                return Err(format!(
                    "{}: {:?}",
                    line.trim_end(),
                    String::from_utf8_lossy(&buf)
                ));
            }
        }
    }
    // @mallory's 100 KB value, for her pipelining connections.
    let mut mallory = ctx
        .connect(&ctx.mallory, WELL_BEHAVED.into(), None, true)
        .await?;
    let line = format!("update:big@mallory {}\n", "m".repeat(100_000));
    exchange(&mut mallory, &mut buf, line.as_bytes(), b"\n@mallory@").await?;
    if !buf.starts_with(b"data:") {
        return Err(format!(
            "@mallory's update: {:?}",
            String::from_utf8_lossy(&buf)
        ));
    }
    // What the anonymous pipelines will ask: checked once here.
    let mut anonymous = ctx
        .connect(&ctx.measured[0], WELL_BEHAVED.into(), None, false)
        .await?;
    let line = format!("lookup:big.soak{}\n", ctx.measured[0].name);
    exchange(&mut anonymous, &mut buf, line.as_bytes(), b"\n@").await?;
    if !buf.starts_with(b"data:ppp") {
        return Err(format!(
            "an unauthenticated {}: {:?}",
            line.trim_end(),
            String::from_utf8_lossy(&buf[..buf.len().min(200)])
        ));
    }
    Ok(())
}

/// The measured window of a phase.
#[derive(Clone, Copy)]
struct Window {
    measure_from: Instant,
    end: Instant,
}

impl Window {
    fn counts(&self, at: Instant) -> bool {
        at >= self.measure_from && at < self.end
    }
}

/// What one owner connection measured in a phase: latencies (µs) by [`OPS`] index.
struct OwnerOutcome {
    owner: Owner,
    latencies: [Vec<u32>; 4],
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// One owner connection for one phase: requests one at a time (paced by `interval`, if any)
/// until the window ends; a failure is recorded and the connection made again.
async fn owner_phase(
    ctx: Arc<Ctx>,
    mut owner: Owner,
    phase: usize,
    label: String,
    window: Window,
    interval: Option<Duration>,
    owners: usize,
) -> OwnerOutcome {
    let n = ctx.measured.len();
    let me = ctx.measured[owner.atsign].name.clone();
    let next_atsign = (owner.atsign + 1) % n;
    let next = ctx.measured[next_atsign].name.clone();
    let prompt = format!("\n{me}@").into_bytes();
    let mut latencies: [Vec<u32>; 4] = Default::default();
    let mut buf = Vec::with_capacity(256);
    // Staggered, so paced connections do not all send at once.
    let mut slot = interval.map(|i| Instant::now() + i.mul_f64(owner.index as f64 / owners as f64));
    loop {
        if let Some(at) = slot {
            tokio::time::sleep_until(at.into()).await;
        }
        let sent = Instant::now();
        if sent >= window.end {
            break;
        }
        if let (Some(at), Some(interval)) = (slot.as_mut(), interval) {
            *at = (*at + interval).max(sent);
        }
        let Some(stream) = owner.stream.as_mut() else {
            match ctx
                .connect(&ctx.measured[owner.atsign], WELL_BEHAVED.into(), None, true)
                .await
            {
                Ok(stream) => owner.stream = Some(stream),
                Err(e) => {
                    ctx.error(
                        &label,
                        format!("{me} connection {}: reconnecting: {e}", owner.index),
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            continue;
        };
        owner.seq += 1;
        let seq = owner.seq;
        let op = OPS[(seq as usize + owner.index) % OPS.len()];
        let j = (seq as usize / OPS.len() + owner.index) % KEYS;
        let (request, want): (String, Option<String>) = match op {
            Op::Update => (
                format!("update:public:u{}.{j}{me} {seq}\n", owner.index),
                None,
            ),
            Op::Llookup => (
                format!("llookup:public:k{j}{me}\n"),
                Some(format!("data:v{j}\n{me}@")),
            ),
            Op::Lookup => (
                format!("lookup:s{j}.soak{next}\n"),
                Some(format!("data:s{j}from{next_atsign}\n{me}@")),
            ),
            Op::Notify => {
                let id = format!(
                    "w-{phase}-{}-{seq}-{}",
                    owner.index,
                    ctx.epoch.elapsed().as_micros()
                );
                (
                    format!("notify:id:{id}:update:messageType:text:{next}:hello {seq}\n"),
                    Some(format!("data:{id}\n{me}@")),
                )
            }
        };
        let outcome = exchange(stream, &mut buf, request.as_bytes(), &prompt).await;
        let done = Instant::now();
        let checked = outcome.and_then(|()| match &want {
            Some(want) if buf == want.as_bytes() => Ok(()),
            None if is_commit(&buf, &prompt) => Ok(()),
            _ => Err(format!("answered {:?}", String::from_utf8_lossy(&buf))),
        });
        match checked {
            Ok(()) => {
                if op == Op::Notify {
                    ctx.counters.notified[phase].fetch_add(1, Ordering::Relaxed);
                }
                if window.counts(sent) {
                    latencies[op as usize].push(micros(done - sent));
                }
            }
            Err(e) => {
                ctx.error(
                    &label,
                    format!(
                        "{me} connection {} after {:.3} s: {}: {e}",
                        owner.index,
                        (done - sent).as_secs_f64(),
                        request.trim_end().chars().take(80).collect::<String>()
                    ),
                );
                owner.stream = None;
            }
        }
    }
    OwnerOutcome { owner, latencies }
}

/// `data:<digits><prompt>`.
fn is_commit(reply: &[u8], prompt: &[u8]) -> bool {
    reply
        .strip_prefix(b"data:")
        .and_then(|r| r.strip_suffix(prompt))
        .is_some_and(|digits| !digits.is_empty() && digits.iter().all(u8::is_ascii_digit))
}

/// Once a second, a fresh connection logs in as one of the measured atSigns (from the
/// well-behaved address): the owner can always log in. Latencies (µs) of the measured ones.
async fn logins(ctx: Arc<Ctx>, label: String, window: Window) -> Vec<u32> {
    let mut latencies = Vec::new();
    let mut k = 0usize;
    let mut at = Instant::now() + Duration::from_millis(500);
    while at < window.end {
        tokio::time::sleep_until(at.into()).await;
        let account = &ctx.measured[k % ctx.measured.len()];
        k += 1;
        let began = Instant::now();
        match ctx.connect(account, WELL_BEHAVED.into(), None, true).await {
            Ok(mut stream) => {
                if window.counts(began) {
                    latencies.push(micros(began.elapsed()));
                }
                let _ = write_within(&mut stream, b"@exit\n", Duration::from_secs(1)).await;
            }
            Err(e) => ctx.error(&label, format!("fresh login as {}: {e}", account.name)),
        }
        at += Duration::from_secs(1);
    }
    latencies
}

// ---------------------------------------------------------------------------------------------
// Well-behaved monitors.

/// A monitor of measured atSign `atsign` until `stop`: every line read; well-behaved
/// notifications stamped, flood ones counted. Dropped: an error, and it monitors again from
/// the last notification's time (the replay gives what it missed).
async fn monitor(ctx: Arc<Ctx>, atsign: usize, mut stop: watch::Receiver<bool>) {
    let account = ctx.measured[atsign].clone();
    let mut since: Option<u64> = None;
    let mut line = Vec::with_capacity(1024);
    let mut failures = 0u32;
    while !*stop.borrow() && failures < 1000 {
        let stream = match ctx.connect(&account, WELL_BEHAVED.into(), None, true).await {
            Ok(stream) => stream,
            Err(e) => {
                failures += 1;
                ctx.error(
                    "monitor",
                    format!("{}'s monitor: connecting: {e}", account.name),
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut reader = BufReader::with_capacity(64 * 1024, stream);
        let request = match since {
            Some(ms) => format!("monitor:{ms}\n"),
            None => "monitor\n".to_string(),
        };
        if let Err(e) = write_within(reader.get_mut(), request.as_bytes(), REPLY_TIMEOUT).await {
            failures += 1;
            ctx.error("monitor", format!("{}'s monitor: {e}", account.name));
            continue;
        }
        loop {
            line.clear();
            let read = tokio::select! {
                read = reader.read_until(b'\n', &mut line) => read,
                _ = stop.changed() => return,
            };
            match read {
                Ok(0) | Err(_) => {
                    failures += 1;
                    let why = match read {
                        Err(e) => format!("read: {e}"),
                        _ => "closed by the server".to_string(),
                    };
                    ctx.error(
                        "monitor",
                        format!(
                            "{}'s monitor dropped ({why}) at {:.1} s",
                            account.name,
                            ctx.epoch.elapsed().as_secs_f64()
                        ),
                    );
                    break;
                }
                Ok(_) => seen_line(&ctx, &line, &mut since),
            }
        }
    }
}

/// One monitor line: a flood notification counted for its phase, a well-behaved one stamped.
fn seen_line(ctx: &Ctx, line: &[u8], since: &mut Option<u64>) {
    let Some(json) = line.strip_prefix(b"notification: ") else {
        return;
    };
    let text = String::from_utf8_lossy(json);
    if let Some(ms) = field(&text, "\"epochMillis\":", ',').and_then(|s| s.parse().ok()) {
        *since = Some(ms);
    }
    let Some(id) = field(&text, "\"id\":\"", '"') else {
        return;
    };
    let parts: Vec<&str> = id.split('-').collect();
    match parts.as_slice() {
        ["f", phase, ..] => {
            if let Some(counter) = phase
                .parse::<usize>()
                .ok()
                .and_then(|p| ctx.counters.flood_seen.get(p))
            {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        ["w", phase, _, _, sent] => {
            let (Ok(phase), Ok(sent)) = (phase.parse::<usize>(), sent.parse::<u128>()) else {
                return;
            };
            let now = ctx.epoch.elapsed().as_micros();
            let mut seen = ctx.seen.lock().unwrap();
            if seen.ids.insert(id.to_string()) {
                if let Some(latencies) = seen.latencies.get_mut(phase) {
                    latencies.push(u32::try_from(now.saturating_sub(sent)).unwrap_or(u32::MAX));
                }
            }
        }
        _ => {}
    }
}

/// The text after `key` in `text`, up to `end`.
fn field<'a>(text: &'a str, key: &str, end: char) -> Option<&'a str> {
    let at = text.find(key)? + key.len();
    let rest = &text[at..];
    Some(&rest[..rest.find(end)?])
}

// ---------------------------------------------------------------------------------------------
// Hostile clients.

/// What the clients of one hostile kind did in a phase.
#[derive(Default)]
struct Tally {
    connections: u64,
    /// Requests (or notifications, or proofs) written.
    sent: u64,
    /// Connections the server closed while the client held them.
    closed_by_server: u64,
    /// Counted outcomes: replies by kind, why connecting failed, …
    notes: BTreeMap<String, u64>,
}

impl Tally {
    fn note(&mut self, what: impl Into<String>) {
        *self.notes.entry(what.into()).or_default() += 1;
    }

    fn add(&mut self, other: Tally) {
        self.connections += other.connections;
        self.sent += other.sent;
        self.closed_by_server += other.closed_by_server;
        for (note, count) in other.notes {
            *self.notes.entry(note).or_default() += count;
        }
    }
}

/// A short, countable form of an error (numbers and ids dropped).
fn short(e: &str) -> String {
    let cut: String = e.chars().take(60).collect();
    cut.chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

/// Sleeps until `deadline`, or returns early when the server closes `stream` (reading what
/// it sends meanwhile, at most 64 KiB in all): whether it closed.
async fn held_until<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, deadline: Instant) -> bool {
    let mut chunk = [0u8; 4096];
    let mut read = 0usize;
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(n)) => {
                read += n;
                if read > 64 * 1024 {
                    tokio::time::sleep_until(deadline.into()).await;
                    return false;
                }
            }
        }
    }
}

/// (a) Pipelines requests and never reads: even `k`, `@mallory`'s owner asking `llookup` of
/// her 100 KB value; odd `k`, unauthenticated, `lookup` of a measured atSign's 10 KB public
/// value. Each connection held [`HOLD`], then made again.
async fn pipeline(ctx: Arc<Ctx>, k: usize, end: Instant) -> Tally {
    let mut tally = Tally::default();
    let as_mallory = k.is_multiple_of(2);
    let target = &ctx.measured[k % ctx.measured.len()];
    let (account, request) = if as_mallory {
        (&ctx.mallory, "llookup:big@mallory\n".to_string())
    } else {
        (target, format!("lookup:big.soak{}\n", target.name))
    };
    let batch = request.repeat(64);
    while Instant::now() < end && tally.connections < MAX_HOSTILE_CONNECTIONS {
        tally.connections += 1;
        let mut stream = match ctx
            .connect(
                account,
                Hostile::Pipeline.source(),
                Some(16 * 1024),
                as_mallory,
            )
            .await
        {
            Ok(stream) => stream,
            Err(e) => {
                tally.note(format!("connect: {}", short(&e)));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let until = (Instant::now() + HOLD).min(end);
        // Writes until the server stops reading (the write is not taken), never reading.
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || tally.sent >= MAX_HOSTILE_REQUESTS {
                break;
            }
            match tokio::time::timeout(left, stream.write_all(batch.as_bytes())).await {
                Ok(Ok(())) => tally.sent += 64,
                Ok(Err(_)) => {
                    tally.closed_by_server += 1;
                    break;
                }
                Err(_) => {
                    tally.note("server stopped reading");
                    break;
                }
            }
        }
        tokio::time::sleep_until(until.into()).await;
    }
    tally
}

/// (b) Stops mid-line or mid-TLS-record and sends nothing more, held to the end (made again
/// if the server closes it): `k % 3` 0, unauthenticated, half a `from:`; 1, `@mallory`'s
/// owner, half an `update`; 2, unauthenticated, half of a TLS record's bytes.
async fn stall(ctx: Arc<Ctx>, k: usize, end: Instant) -> Tally {
    let mut tally = Tally::default();
    let variant = k % 3;
    let target = ctx.measured[k % ctx.measured.len()].clone();
    let account = if variant == 1 { &ctx.mallory } else { &target };
    while Instant::now() < end && tally.connections < MAX_HOSTILE_CONNECTIONS {
        tally.connections += 1;
        let connected = ctx
            .connect(account, Hostile::Stall.source(), None, variant == 1)
            .await;
        let mut stream = match connected {
            Ok(stream) => stream,
            Err(e) => {
                tally.note(format!("connect: {}", short(&e)));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let sent = match variant {
            0 => write_within(&mut stream, b"from:@so", REPLY_TIMEOUT).await,
            1 => {
                write_within(
                    &mut stream,
                    b"update:public:stall@mallory half a li",
                    REPLY_TIMEOUT,
                )
                .await
            }
            _ => {
                // A whole record made, half of its bytes sent under the TLS layer.
                let (tcp, tls) = stream.get_mut();
                let mut record = Vec::new();
                let made = std::io::Write::write_all(&mut tls.writer(), b"from:@soak0\n")
                    .and_then(|()| tls.write_tls(&mut record).map(|_| ()));
                match made {
                    Ok(()) => write_within(tcp, &record[..record.len() / 2], REPLY_TIMEOUT).await,
                    Err(e) => Err(format!("making a record: {e}")),
                }
            }
        };
        if let Err(e) = sent {
            tally.note(format!("send: {}", short(&e)));
            continue;
        }
        tally.sent += 1;
        let began = Instant::now();
        if held_until(&mut stream, end).await {
            tally.closed_by_server += 1;
            tally.note(format!(
                "variant {variant} closed after {} s",
                began.elapsed().as_secs()
            ));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tally
}

/// (c) `from:@soak<k>` and a wrong `cram`, in a loop; connects again when closed, or when a
/// reply takes longer than [`PROOF_PATIENCE`] (the server slowing it down).
async fn proofs(ctx: Arc<Ctx>, k: usize, end: Instant) -> Tally {
    let mut tally = Tally::default();
    let target = ctx.measured[k % ctx.measured.len()].clone();
    let from = format!("from:{}\n", target.name);
    let wrong = format!("cram:{}\n", "0".repeat(128));
    let mut buf = Vec::new();
    'connections: while Instant::now() < end && tally.connections < MAX_HOSTILE_CONNECTIONS {
        tally.connections += 1;
        let mut stream = match ctx
            .connect(&target, Hostile::Proofs.source(), None, false)
            .await
        {
            Ok(stream) => stream,
            Err(e) => {
                tally.note(format!("connect: {}", short(&e)));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while Instant::now() < end && tally.sent < MAX_HOSTILE_REQUESTS {
            for line in [&from, &wrong] {
                let patience = PROOF_PATIENCE.min(end.saturating_duration_since(Instant::now()));
                let asked = async {
                    write_within(&mut stream, line.as_bytes(), patience).await?;
                    buf.clear();
                    read_until(
                        &mut stream,
                        &mut buf,
                        |got| got.ends_with(b"\n@"),
                        4096,
                        patience,
                    )
                    .await
                };
                if let Err(e) = asked.await {
                    if e.contains("closed") || e.contains("read:") || e.contains("write:") {
                        tally.closed_by_server += 1;
                    } else {
                        tally.note("slowed (no answer within 2 s)");
                    }
                    continue 'connections;
                }
                if line == &wrong {
                    tally.sent += 1;
                    let reply = String::from_utf8_lossy(&buf);
                    tally.note(reply.chars().take(12).collect::<String>());
                } else if !buf.starts_with(b"data:") {
                    let reply = String::from_utf8_lossy(&buf);
                    tally.note(format!(
                        "from: {}",
                        reply.chars().take(12).collect::<String>()
                    ));
                }
            }
        }
    }
    tally
}

/// (d) `@flood`'s owner sending text notifications to the measured atSigns, [`FLOOD_BATCH`]
/// at a time, reading their answers, as fast as they are delivered: it waits while more
/// than `backlog` of this phase's were accepted and not yet seen by the monitors.
async fn flood(ctx: Arc<Ctx>, k: usize, end: Instant, phase: usize, backlog: u64) -> Tally {
    let mut tally = Tally::default();
    let mut seq = 0u64;
    let mut buf = Vec::new();
    let n = ctx.measured.len();
    let accepted = &ctx.counters.flood_accepted[phase];
    let seen = &ctx.counters.flood_seen[phase];
    while Instant::now() < end && tally.connections < MAX_HOSTILE_CONNECTIONS {
        tally.connections += 1;
        let mut stream = match ctx
            .connect(&ctx.flood, Hostile::Flood.source(), None, true)
            .await
        {
            Ok(stream) => stream,
            Err(e) => {
                tally.note(format!("connect: {}", short(&e)));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while Instant::now() < end && tally.sent < MAX_HOSTILE_REQUESTS {
            if accepted
                .load(Ordering::Relaxed)
                .saturating_sub(seen.load(Ordering::Relaxed))
                > backlog
            {
                tally.note("waited for deliveries");
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            let mut batch = String::new();
            for _ in 0..FLOOD_BATCH {
                seq += 1;
                let to = &ctx.measured[seq as usize % n].name;
                batch.push_str(&format!(
                    "notify:id:f-{phase}-{k}-{seq}:update:messageType:text:{to}:flood {seq}\n"
                ));
            }
            let prompt = b"\n@flood@";
            let answered = |got: &[u8]| {
                got.ends_with(prompt)
                    && got.windows(prompt.len()).filter(|w| w == prompt).count() >= FLOOD_BATCH
            };
            buf.clear();
            let asked = async {
                write_within(&mut stream, batch.as_bytes(), REPLY_TIMEOUT).await?;
                read_until(&mut stream, &mut buf, answered, 1 << 20, REPLY_TIMEOUT).await
            };
            if let Err(e) = asked.await {
                tally.closed_by_server += 1;
                tally.note(format!("failed: {}", short(&e)));
                continue;
            }
            tally.sent += FLOOD_BATCH as u64;
            let text = String::from_utf8_lossy(&buf);
            let ok = text.matches("data:f-").count() as u64;
            accepted.fetch_add(ok, Ordering::Relaxed);
            if ok < FLOOD_BATCH as u64 {
                for reply in text
                    .split("\n@flood@")
                    .filter(|r| !r.starts_with("data:f-"))
                {
                    if !reply.is_empty() {
                        tally.note(format!("answered {}", short(reply)));
                    }
                }
            }
        }
    }
    tally
}

/// (e) A monitor of a measured atSign with a small receive window that never reads; held
/// [`HOLD`], then made again. Whether the server closed it is read (without limit in count,
/// for at most 0.5 s) only when it is given up.
async fn deaf_monitor(ctx: Arc<Ctx>, k: usize, end: Instant) -> Tally {
    let mut tally = Tally::default();
    let target = ctx.measured[k % ctx.measured.len()].clone();
    while Instant::now() < end && tally.connections < MAX_HOSTILE_CONNECTIONS {
        tally.connections += 1;
        let mut stream = match ctx
            .connect(
                &target,
                Hostile::DeafMonitor.source(),
                Some(16 * 1024),
                true,
            )
            .await
        {
            Ok(stream) => stream,
            Err(e) => {
                tally.note(format!("connect: {}", short(&e)));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(e) = write_within(&mut stream, b"monitor\n", REPLY_TIMEOUT).await {
            tally.note(format!("send: {}", short(&e)));
            continue;
        }
        tally.sent += 1;
        let until = (Instant::now() + HOLD).min(end);
        tokio::time::sleep_until(until.into()).await;
        // Given up: did the server close it meanwhile? (Read what it had queued, briefly.)
        let mut chunk = vec![0u8; 64 * 1024];
        let check = Instant::now() + Duration::from_millis(500);
        loop {
            match tokio::time::timeout_at(check.into(), stream.read(&mut chunk)).await {
                Err(_) => {
                    tally.note("still open when given up");
                    break;
                }
                Ok(Ok(0)) | Ok(Err(_)) => {
                    tally.closed_by_server += 1;
                    break;
                }
                Ok(Ok(_)) => {}
            }
        }
    }
    tally
}

/// (f) A TCP connection to a measured atSign's port that never starts TLS; made again when
/// the server closes it.
async fn raw_tcp(ctx: Arc<Ctx>, k: usize, end: Instant) -> Tally {
    let mut tally = Tally::default();
    let addr = ctx.measured[k % ctx.measured.len()].addr;
    while Instant::now() < end && tally.connections < MAX_HOSTILE_CONNECTIONS {
        tally.connections += 1;
        let mut tcp = match connect_tcp_from(Some(Hostile::RawTcp.source()), None, addr).await {
            Ok(tcp) => tcp,
            Err(e) => {
                tally.note(format!("connect: {}", short(&e)));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let began = Instant::now();
        if held_until(&mut tcp, end).await {
            tally.closed_by_server += 1;
            tally.note(format!("closed after {} s", began.elapsed().as_secs()));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tally
}

/// Every hostile client of a phase, on the hostile runtime, until `end`.
fn spawn_hostile(
    options: &Options,
    ctx: &Arc<Ctx>,
    rt: &tokio::runtime::Runtime,
    phase: usize,
    end: Instant,
) -> Vec<(Hostile, tokio::task::JoinHandle<Tally>)> {
    let mut tasks = Vec::new();
    for kind in Hostile::ALL {
        for k in 0..options.count(kind) {
            let ctx = Arc::clone(ctx);
            let backlog = options.flood_backlog;
            let task = match kind {
                Hostile::Pipeline => rt.spawn(pipeline(ctx, k, end)),
                Hostile::Stall => rt.spawn(stall(ctx, k, end)),
                Hostile::Proofs => rt.spawn(proofs(ctx, k, end)),
                Hostile::Flood => rt.spawn(flood(ctx, k, end, phase, backlog)),
                Hostile::DeafMonitor => rt.spawn(deaf_monitor(ctx, k, end)),
                Hostile::RawTcp => rt.spawn(raw_tcp(ctx, k, end)),
            };
            tasks.push((kind, task));
        }
    }
    tasks
}

// ---------------------------------------------------------------------------------------------
// Phases.

/// Sorted latencies (µs) and how many requests failed.
#[derive(Default, Clone)]
struct Latencies(Vec<u32>);

impl Latencies {
    fn sorted(mut values: Vec<u32>) -> Latencies {
        values.sort_unstable();
        Latencies(values)
    }

    /// The `q` quantile (nearest rank), or `None` when empty.
    fn at(&self, q: f64) -> Option<Duration> {
        let n = self.0.len();
        if n == 0 {
            return None;
        }
        let i = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
        Some(Duration::from_micros(u64::from(self.0[i])))
    }
}

struct PhaseReport {
    hostile: bool,
    measured: Duration,
    ops: Vec<(Op, Latencies)>,
    all: Latencies,
    logins: Latencies,
    deliveries: Latencies,
    errors: usize,
    /// CPU seconds in the measured window: server, well-behaved clients, monitors, hostile.
    cpu: [f64; 4],
    flood: (u64, u64),
    notified: u64,
    drained: Duration,
    tallies: BTreeMap<Hostile, Tally>,
    load: String,
}

fn cpu_now(server: u32) -> [f64; 4] {
    [
        cpu_seconds(server).unwrap_or(0.0),
        threads_cpu_seconds("soak-measured"),
        threads_cpu_seconds("soak-monitors"),
        threads_cpu_seconds("soak-hostile"),
    ]
}

#[allow(clippy::too_many_arguments)]
fn run_phase(
    options: &Options,
    ctx: &Arc<Ctx>,
    server: &Server,
    measured_rt: &tokio::runtime::Runtime,
    hostile_rt: &tokio::runtime::Runtime,
    phase: usize,
    hostile: bool,
    label: &str,
    owners: Vec<Owner>,
) -> Result<(Vec<Owner>, PhaseReport), String> {
    let errors_before = ctx.error_count();
    let start = Instant::now();
    let window = Window {
        measure_from: start + Duration::from_secs(options.warmup),
        end: start + Duration::from_secs(options.warmup + options.seconds),
    };
    let hostile_tasks = if hostile {
        spawn_hostile(options, ctx, hostile_rt, phase, window.end)
    } else {
        Vec::new()
    };
    let interval = (options.rate > 0)
        .then(|| Duration::from_secs_f64(options.owners as f64 / options.rate as f64));
    let count = owners.len();
    let owner_tasks: Vec<_> = owners
        .into_iter()
        .map(|owner| {
            measured_rt.spawn(owner_phase(
                Arc::clone(ctx),
                owner,
                phase,
                label.to_string(),
                window,
                interval,
                count,
            ))
        })
        .collect();
    let login_task = measured_rt.spawn(logins(Arc::clone(ctx), label.to_string(), window));

    std::thread::sleep(
        window
            .measure_from
            .saturating_duration_since(Instant::now()),
    );
    let cpu_from = cpu_now(server.pid());
    std::thread::sleep(window.end.saturating_duration_since(Instant::now()));
    let cpu_to = cpu_now(server.pid());
    let load = load_average();

    let mut owners = Vec::new();
    let mut by_op: [Vec<u32>; 4] = Default::default();
    let logins = measured_rt.block_on(async {
        for task in owner_tasks {
            let outcome = task.await.map_err(|e| format!("owner task: {e}"))?;
            for (all, mine) in by_op.iter_mut().zip(outcome.latencies) {
                all.extend(mine);
            }
            owners.push(outcome.owner);
        }
        login_task.await.map_err(|e| format!("login task: {e}"))
    })?;
    owners.sort_by_key(|o| o.index);
    let mut tallies: BTreeMap<Hostile, Tally> = BTreeMap::new();
    hostile_rt.block_on(async {
        for (kind, task) in hostile_tasks {
            // Each ends by `window.end`, a reply timeout at most after it.
            match tokio::time::timeout(REPLY_TIMEOUT + Duration::from_secs(5), task).await {
                Ok(Ok(tally)) => tallies.entry(kind).or_default().add(tally),
                Ok(Err(e)) => tallies.entry(kind).or_default().note(format!("task: {e}")),
                Err(_) => tallies
                    .entry(kind)
                    .or_default()
                    .note("still running 15 s after the end (left to stop with the runtime)"),
            }
        }
    });

    // What is still on its way arrives before the next phase (bounded).
    let drain_from = Instant::now();
    let mut last_progress = (Instant::now(), 0u64);
    loop {
        let flood_left = ctx.counters.flood_accepted[phase]
            .load(Ordering::Relaxed)
            .saturating_sub(ctx.counters.flood_seen[phase].load(Ordering::Relaxed));
        let notified = ctx.counters.notified[phase].load(Ordering::Relaxed);
        let seen = ctx.seen.lock().unwrap().latencies[phase].len() as u64;
        let left = flood_left + notified.saturating_sub(seen);
        if options.monitors == 0 || left == 0 || drain_from.elapsed() > DRAIN_LIMIT {
            break;
        }
        let progress = ctx.counters.flood_seen[phase].load(Ordering::Relaxed) + seen;
        if progress != last_progress.1 {
            last_progress = (Instant::now(), progress);
        } else if last_progress.0.elapsed() > Duration::from_secs(10) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let drained = drain_from.elapsed();
    // Sockets closed, the server's timers settled.
    std::thread::sleep(Duration::from_secs(1));

    let all = Latencies::sorted(by_op.iter().flatten().copied().collect());
    let ops = OPS
        .iter()
        .zip(by_op)
        .map(|(op, l)| (*op, Latencies::sorted(l)))
        .collect();
    let deliveries = Latencies::sorted(ctx.seen.lock().unwrap().latencies[phase].clone());
    let report = PhaseReport {
        hostile,
        measured: window.end - window.measure_from,
        ops,
        all,
        logins: Latencies::sorted(logins),
        deliveries,
        errors: ctx.error_count() - errors_before,
        cpu: std::array::from_fn(|i| cpu_to[i] - cpu_from[i]),
        flood: (
            ctx.counters.flood_accepted[phase].load(Ordering::Relaxed),
            ctx.counters.flood_seen[phase].load(Ordering::Relaxed),
        ),
        notified: ctx.counters.notified[phase].load(Ordering::Relaxed),
        drained,
        tallies,
        load,
    };
    Ok((owners, report))
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), fmt_latency)
}

fn print_phase(label: &str, r: &PhaseReport) {
    let secs = r.measured.as_secs_f64();
    println!("\n== {label}: {secs:.0} s measured; load {}", r.load);
    println!(
        "  {:<26} {:>7} {:>8} {:>11} {:>11} {:>11}",
        "well-behaved", "count", "per s", "p50", "p99", "max"
    );
    let row = |name: &str, l: &Latencies, rate: bool| {
        println!(
            "  {:<26} {:>7} {:>8} {:>11} {:>11} {:>11}",
            name,
            l.0.len(),
            if rate {
                format!("{:.0}", l.0.len() as f64 / secs)
            } else {
                String::new()
            },
            ms(l.at(0.5)),
            ms(l.at(0.99)),
            ms(l.at(1.0))
        );
    };
    for (op, l) in &r.ops {
        row(op.name(), l, true);
    }
    row("all requests", &r.all, true);
    row("fresh login (TLS + cram)", &r.logins, false);
    row("notify -> monitor line", &r.deliveries, false);
    println!(
        "  errors: {}; well-behaved notifications accepted {}, seen {}; flood accepted {}, seen {}; \
         drained in {:.1} s",
        r.errors,
        r.notified,
        r.deliveries.0.len(),
        r.flood.0,
        r.flood.1,
        r.drained.as_secs_f64()
    );
    println!(
        "  CPU: at-server {:.0}%, well-behaved clients {:.0}%, monitors {:.0}%, hostile clients {:.0}%",
        100.0 * r.cpu[0] / secs,
        100.0 * r.cpu[1] / secs,
        100.0 * r.cpu[2] / secs,
        100.0 * r.cpu[3] / secs
    );
    for (kind, t) in &r.tallies {
        let notes: Vec<String> = t
            .notes
            .iter()
            .map(|(note, count)| format!("{note:?} x{count}"))
            .collect();
        println!(
            "  hostile {:<12} connections {:>6}, sent {:>8}, closed by the server {:>5}; {}",
            kind.name(),
            t.connections,
            t.sent,
            t.closed_by_server,
            notes.join(", ")
        );
    }
}

fn range(values: impl Iterator<Item = Option<Duration>>) -> String {
    let values: Vec<Duration> = values.flatten().collect();
    match (values.iter().min(), values.iter().max()) {
        (Some(lo), Some(hi)) if lo == hi => fmt_latency(*lo),
        (Some(lo), Some(hi)) => format!(
            "{:.3}-{:.3} ms",
            lo.as_secs_f64() * 1e3,
            hi.as_secs_f64() * 1e3
        ),
        _ => "-".into(),
    }
}

fn ratio(hostile: Option<Duration>, baseline: Option<Duration>) -> Option<f64> {
    match (hostile, baseline) {
        (Some(h), Some(b)) if !b.is_zero() => Some(h.as_secs_f64() / b.as_secs_f64()),
        _ => None,
    }
}

fn summarize(options: &Options, reports: &[PhaseReport]) {
    println!(
        "\n== summary: well-behaved requests, ranges over {} round(s)",
        options.rounds
    );
    println!(
        "  {:<9} {:>19} {:>19} {:>19} {:>7} {:>19}",
        "", "p50", "p99", "max", "errors", "delivery p99"
    );
    for hostile in [false, true] {
        let of = || reports.iter().filter(move |r| r.hostile == hostile);
        println!(
            "  {:<9} {:>19} {:>19} {:>19} {:>7} {:>19}",
            if hostile { "hostile" } else { "baseline" },
            range(of().map(|r| r.all.at(0.5))),
            range(of().map(|r| r.all.at(0.99))),
            range(of().map(|r| r.all.at(1.0))),
            of().map(|r| r.errors).sum::<usize>(),
            range(of().map(|r| r.deliveries.at(0.99))),
        );
    }
    // Each hostile phase against the baseline just before it.
    let pairs: Vec<(&PhaseReport, &PhaseReport)> = reports
        .chunks(2)
        .filter_map(|pair| match pair {
            [baseline, hostile] => Some((baseline, hostile)),
            _ => None,
        })
        .collect();
    let show = |q: f64, of: fn(&PhaseReport) -> &Latencies| {
        pairs
            .iter()
            .map(|(b, h)| {
                ratio(of(h).at(q), of(b).at(q)).map_or("-".into(), |r| format!("{r:.2}x"))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "  hostile / baseline, per round: p50 {}; p99 {}; max {}; delivery p99 {}",
        show(0.5, |r| &r.all),
        show(0.99, |r| &r.all),
        show(1.0, |r| &r.all),
        show(0.99, |r| &r.deliveries)
    );
    let worst = pairs
        .iter()
        .filter_map(|(b, h)| ratio(h.all.at(0.99), b.all.at(0.99)))
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
    let errors: usize = reports.iter().filter(|r| r.hostile).map(|r| r.errors).sum();
    match worst {
        Some(worst) => println!(
            "  target (p99 less than 2x with hostile clients, no error): worst round {worst:.2}x, \
             {errors} error(s) in hostile phases: {}",
            if worst < 2.0 && errors == 0 {
                "met"
            } else {
                "NOT met"
            }
        ),
        None => println!("  target: no ratio (a phase measured nothing)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Option<Options>, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags_are_validated() {
        let o = args(&[]).unwrap().unwrap();
        assert_eq!((o.seconds, o.rounds, o.owners), (20, 2, 20));
        assert_eq!(o.hostile, Hostile::ALL.to_vec());
        let o = args(&["--hostile", "flood,raw-tcp", "--seconds", "3"])
            .unwrap()
            .unwrap();
        assert_eq!(o.hostile, vec![Hostile::Flood, Hostile::RawTcp]);
        assert_eq!((o.count(Hostile::Flood), o.count(Hostile::Stall)), (4, 0));
        assert!(args(&["--seconds", "0"]).is_err());
        assert!(args(&["--seconds"]).is_err());
        assert!(args(&["--raw-tcp", "251"]).is_err());
        assert!(args(&["--hostile", "nice"]).is_err());
        assert!(args(&["--hostile", ","]).is_err());
        assert!(args(&["--owners", "3", "--atsigns", "4"]).is_err());
        assert!(args(&["--frobnicate"]).is_err());
        assert!(args(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn quantiles_and_monitor_lines() {
        let l = Latencies::sorted((1..=100).rev().collect());
        assert_eq!(l.at(0.5), Some(Duration::from_micros(50)));
        assert_eq!(l.at(0.99), Some(Duration::from_micros(99)));
        assert_eq!(l.at(1.0), Some(Duration::from_micros(100)));
        assert_eq!(Latencies::default().at(0.5), None);
        let line = r#"{"id":"w-3-1-7-123","from":"@soak0","epochMillis":1700,"x":1}"#;
        assert_eq!(field(line, "\"id\":\"", '"'), Some("w-3-1-7-123"));
        assert_eq!(field(line, "\"epochMillis\":", ','), Some("1700"));
        assert!(is_commit(b"data:12\n@a@", b"\n@a@"));
        assert!(!is_commit(b"data:\n@a@", b"\n@a@"));
        assert!(!is_commit(b"error:AT0001\n@a@", b"\n@a@"));
    }
}
