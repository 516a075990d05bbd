//! `notify-bench`: notifications per second from `@alice` on one atServer to `@bob`'s monitor
//! on another, and the end-to-end latency (from writing `notify` to reading the monitor line),
//! beside a Redis PUBLISH → SUBSCRIBE round trip measured on the same machine in the same run.
//!
//! 1. Redis: a real `redis-server`; one subscriber connection; `--in-flight` publisher
//!    connections, each publishing its share of `--count` messages one at a time (waiting for
//!    the reply); the subscriber stamps each message's arrival.
//! 2. atServers: one cluster CA, one `at-directory`, server A hosting `@alice`, server B
//!    hosting `@bob` (separate processes and stores, talking over TLS with `pol`); `@bob`
//!    monitors on B; `--in-flight` owner connections of `@alice` on A each send their share of
//!    `notify:id:<id>:update:messageType:text:@bob:m<n>`, one at a time (waiting for
//!    `data:<id>`); the monitor stamps each `notification:` line. A warm-up batch (which also
//!    opens the pol link) is not measured. Every id must arrive exactly once.
//!
//! The atServers run twice each way: A's link to B pipelined (the default: B announces it in
//! `info`) and one request at a time (A with `peer_pipelining = false`, as to a reference
//! server). B paces no sender (`peer_notifications_per_second = 0`): what is measured is the
//! path, not that policy.
//!
//! Each system runs twice: one message at a time (the next sent once the last arrived: latency
//! without load) and flooded by `--in-flight` senders (the next sent once the last was
//! accepted: the most it takes; latency then includes the queue that builds up).
//! Throughput is messages / (last arrival − first send); latency percentiles are per message;
//! `acked` is each sender's wait for its answer, which paces a flooding sender.
//! Build the servers first in the same target directory:
//! `cargo build --release -p at-server -p at-directory -p at-tests && cargo run --release -p at-tests --bin notify-bench`

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use at_tests::bench::{fmt_latency, load_average, number_arg};
use at_tests::client::Client;
use at_tests::redis::RedisServer;
use at_tests::servers::Cluster;
use at_tests::TempDir;

const USAGE: &str = "\
notify-bench: notifications/s and latency from @alice on one atServer to @bob's monitor on
another, beside a Redis PUBLISH/SUBSCRIBE round trip

USAGE: notify-bench [--count N] [--in-flight C] [--warmup W] [--only one|flood]
  --count N      measured messages per system [2000]
  --in-flight C  sending connections, one message in flight each [8]
  --warmup W     unmeasured notifications first [200]
  --only P       only one pacing: one at a time, or flooded [both]";

/// Send, acknowledgement and arrival times of the measured messages, by index.
struct Stamps {
    sent: Vec<Option<Instant>>,
    /// When the sender had its answer (`data:<id>`, Redis's subscriber count).
    acked: Vec<Option<Instant>>,
    arrived: Vec<Option<Instant>>,
}

impl Stamps {
    fn new(count: usize) -> Stamps {
        Stamps {
            sent: vec![None; count],
            acked: vec![None; count],
            arrived: vec![None; count],
        }
    }
}

struct Figures {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    /// The sender's wait for its answer: what paces a flooding sender.
    acked_p50: Duration,
    acked_p99: Duration,
}

fn figures(stamps: &Stamps) -> Result<Figures, String> {
    let mut latencies = Vec::with_capacity(stamps.sent.len());
    for (i, (sent, arrived)) in stamps.sent.iter().zip(&stamps.arrived).enumerate() {
        match (sent, arrived) {
            (Some(sent), Some(arrived)) => latencies.push(arrived.saturating_duration_since(*sent)),
            _ => return Err(format!("message {i} was not both sent and received")),
        }
    }
    let first = stamps.sent.iter().flatten().min().ok_or("nothing sent")?;
    let last = stamps
        .arrived
        .iter()
        .flatten()
        .max()
        .ok_or("nothing arrived")?;
    let mut acks: Vec<Duration> = stamps
        .sent
        .iter()
        .zip(&stamps.acked)
        .filter_map(|(sent, acked)| Some(acked.as_ref()?.saturating_duration_since((*sent)?)))
        .collect();
    if acks.len() != latencies.len() {
        return Err("a message was not acknowledged".into());
    }
    latencies.sort();
    acks.sort();
    let at = |sorted: &[Duration], q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
    Ok(Figures {
        per_second: latencies.len() as f64 / last.duration_since(*first).as_secs_f64(),
        p50: at(&latencies, 0.50),
        p99: at(&latencies, 0.99),
        max: *latencies.last().expect("not empty"),
        acked_p50: at(&acks, 0.50),
        acked_p99: at(&acks, 0.99),
    })
}

fn print(name: &str, f: &Figures, baseline: Option<&Figures>) {
    let ratio = baseline.map_or(String::new(), |b| {
        format!(
            "  ({:.1}% of Redis's rate; p50 {:.1}x Redis's)",
            100.0 * f.per_second / b.per_second,
            f.p50.as_secs_f64() / b.p50.as_secs_f64()
        )
    });
    println!(
        "{name:<34} {:>8.0} msg/s  p50 {:>9}  p99 {:>9}  max {:>9}  acked p50 {:>9} p99 {:>9}{ratio}",
        f.per_second,
        fmt_latency(f.p50),
        fmt_latency(f.p99),
        fmt_latency(f.max),
        fmt_latency(f.acked_p50),
        fmt_latency(f.acked_p99)
    );
}

/// One RESP command as bulk strings.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    out
}

/// How the senders pace themselves.
#[derive(Clone, Copy, PartialEq)]
enum Pace {
    /// `in_flight` senders, each sending its next message once the last is accepted: the
    /// most the system takes (latency then includes the queue that builds up).
    Flood(usize),
    /// One sender, sending its next message once the last has arrived: latency unloaded.
    OneAtATime,
}

impl Pace {
    fn senders(self) -> usize {
        match self {
            Pace::Flood(n) => n,
            Pace::OneAtATime => 1,
        }
    }
}

/// Waits for message `i` to arrive (when pacing one at a time).
fn await_arrival(
    arrivals: &Option<std::sync::mpsc::Receiver<usize>>,
    i: usize,
) -> Result<(), String> {
    let Some(arrivals) = arrivals else {
        return Ok(());
    };
    match arrivals.recv_timeout(Duration::from_secs(30)) {
        Ok(got) if got == i => Ok(()),
        Ok(got) => Err(format!("waited for {i}, {got} arrived")),
        Err(e) => Err(format!("message {i} did not arrive: {e}")),
    }
}

fn redis_round_trips(count: usize, pace: Pace) -> Result<Figures, String> {
    let in_flight = pace.senders();
    let (arrived_tx, arrived_rx) = std::sync::mpsc::channel();
    let mut arrivals = (pace == Pace::OneAtATime).then_some(arrived_rx);
    let redis = RedisServer::start();
    let addr = ("127.0.0.1", redis.port());
    let stamps = Arc::new(Mutex::new(Stamps::new(count)));
    let mut subscriber = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    subscriber
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    subscriber
        .write_all(&resp(&["SUBSCRIBE", "bench"]))
        .map_err(|e| e.to_string())?;
    let mut lines = BufReader::new(subscriber);
    // The subscription's confirmation: *3, $9 subscribe, $5 bench, :1.
    for _ in 0..6 {
        lines
            .read_line(&mut String::new())
            .map_err(|e| e.to_string())?;
    }
    let listener_stamps = Arc::clone(&stamps);
    let listener = std::thread::spawn(move || -> Result<(), String> {
        for _ in 0..count {
            // *3 $7 message $5 bench $<n> <payload>
            let mut line = String::new();
            for _ in 0..7 {
                line.clear();
                lines
                    .read_line(&mut line)
                    .map_err(|e| format!("subscriber: {e}"))?;
            }
            let i: usize = line
                .trim()
                .parse()
                .map_err(|_| format!("payload {line:?}"))?;
            listener_stamps.lock().unwrap().arrived[i] = Some(Instant::now());
            let _ = arrived_tx.send(i);
        }
        Ok(())
    });
    let senders: Vec<_> = (0..in_flight)
        .map(|c| {
            let stamps = Arc::clone(&stamps);
            let arrivals = arrivals.take();
            std::thread::spawn(move || -> Result<(), String> {
                let mut publisher = TcpStream::connect(addr).map_err(|e| e.to_string())?;
                publisher.set_nodelay(true).map_err(|e| e.to_string())?;
                let mut reply = [0u8; 64];
                for i in (c..count).step_by(in_flight) {
                    stamps.lock().unwrap().sent[i] = Some(Instant::now());
                    let payload = i.to_string();
                    publisher
                        .write_all(&resp(&["PUBLISH", "bench", &payload]))
                        .map_err(|e| e.to_string())?;
                    // `:1\r\n`: one subscriber.
                    let n = publisher.read(&mut reply).map_err(|e| e.to_string())?;
                    if !reply[..n].starts_with(b":1") {
                        return Err(format!("PUBLISH answered {:?}", &reply[..n]));
                    }
                    stamps.lock().unwrap().acked[i] = Some(Instant::now());
                    await_arrival(&arrivals, i)?;
                }
                Ok(())
            })
        })
        .collect();
    for sender in senders {
        sender.join().map_err(|_| "publisher panicked")??;
    }
    listener.join().map_err(|_| "subscriber panicked")??;
    let stamps = stamps.lock().unwrap();
    figures(&stamps)
}

fn at_server_notifications(
    count: usize,
    pace: Pace,
    warmup: usize,
    pipelining: bool,
) -> Result<Figures, String> {
    let in_flight = pace.senders();
    let (arrived_tx, arrived_rx) = std::sync::mpsc::channel();
    let mut arrivals = (pace == Pace::OneAtATime).then_some(arrived_rx);
    let dir = TempDir::new("notify-bench");
    let cluster = Cluster::start(dir.path());
    let ca = cluster.ca();
    let (mut a, alice_secret) =
        cluster.server("a", "@alice", &format!("peer_pipelining = {pipelining}"));
    let (mut b, bob_secret) = cluster.server("b", "@bob", "peer_notifications_per_second = 0");
    a.start();
    b.start();
    let mut monitor = b.connect(&ca);
    monitor.cram_in("@bob", &bob_secret);
    monitor.send(b"monitor bench\n");

    let total = warmup + count;
    let stamps = Arc::new(Mutex::new(Stamps::new(count)));
    let listener_stamps = Arc::clone(&stamps);
    let listener = std::thread::spawn(move || -> Result<(), String> {
        let mut seen: HashMap<usize, ()> = HashMap::new();
        let mut progress = Instant::now();
        while seen.len() < total {
            // The stats notification comes every 15 s: without a new message for 30 s, one
            // was lost.
            if progress.elapsed() > Duration::from_secs(30) {
                return Err(format!(
                    "monitor: {} of {total} seen, then nothing",
                    seen.len()
                ));
            }
            // One line, or several that came together.
            let chunk = monitor
                .try_read_until(b"\n", Duration::from_secs(30))
                .map_err(|e| format!("monitor, {} of {total} seen: {e}", seen.len()))?;
            let at = Instant::now();
            for line in chunk.lines() {
                let Some(rest) = line.strip_prefix("notification: {\"id\":\"bench-") else {
                    continue; // the stats notification
                };
                let n: usize = rest[..rest.find('"').ok_or("id")?]
                    .parse()
                    .map_err(|_| format!("id in {line}"))?;
                if seen.insert(n, ()).is_some() {
                    return Err(format!("bench-{n} arrived twice"));
                }
                progress = at;
                if n >= warmup {
                    listener_stamps.lock().unwrap().arrived[n - warmup] = Some(at);
                    let _ = arrived_tx.send(n - warmup);
                }
            }
        }
        Ok(())
    });
    let mut connections = Vec::new();
    for _ in 0..in_flight {
        let mut alice = a.connect(&ca);
        alice.cram_in("@alice", &alice_secret);
        connections.push(alice);
    }
    // Warm-up, from one connection, so the pol link is open before measuring.
    let send = |alice: &mut Client, n: usize| -> Result<(), String> {
        alice.send(
            format!("notify:id:bench-{n}:update:messageType:text:@bob:bench{n}\n").as_bytes(),
        );
        let reply = alice
            .try_read_until(b"\n@alice@", Duration::from_secs(30))
            .map_err(|e| format!("notify {n}: {e}"))?;
        match reply == format!("data:bench-{n}\n@alice@") {
            true => Ok(()),
            false => Err(format!("notify {n} answered {reply:?}")),
        }
    };
    for n in 0..warmup {
        send(&mut connections[0], n)?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let senders: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(c, mut alice)| {
            let stamps = Arc::clone(&stamps);
            let arrivals = arrivals.take();
            std::thread::spawn(move || -> Result<(), String> {
                for i in (c..count).step_by(in_flight) {
                    stamps.lock().unwrap().sent[i] = Some(Instant::now());
                    send(&mut alice, warmup + i)?;
                    stamps.lock().unwrap().acked[i] = Some(Instant::now());
                    await_arrival(&arrivals, i)?;
                }
                Ok(())
            })
        })
        .collect();
    for sender in senders {
        sender.join().map_err(|_| "sender panicked")??;
    }
    listener.join().map_err(|_| "monitor panicked")??;
    let stamps = stamps.lock().unwrap();
    figures(&stamps)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut count, mut in_flight, mut warmup) = (2000usize, 8usize, 200usize);
    let mut only: Option<String> = None;
    while let Some(flag) = args.next() {
        let parsed = match flag.as_str() {
            "--count" => number_arg(&flag, args.next(), 1, 1_000_000).map(|v| count = v),
            "--in-flight" => number_arg(&flag, args.next(), 1, 256).map(|v| in_flight = v),
            "--warmup" => number_arg(&flag, args.next(), 1, 100_000).map(|v| warmup = v),
            "--only" => match args.next().as_deref() {
                Some(pace @ ("one" | "flood")) => {
                    only = Some(pace.to_string());
                    Ok(())
                }
                other => Err(format!("--only takes one or flood, not {other:?}")),
            },
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unknown option {other}\n\n{USAGE}")),
        };
        if let Err(error) = parsed {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    }
    println!(
        "notify-bench: {count} messages, {in_flight} in flight, {} CPU(s), load {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average()
    );
    for (name, label, pace) in [
        ("one", "one at a time", Pace::OneAtATime),
        ("flood", "flood", Pace::Flood(in_flight)),
    ] {
        if only.as_ref().is_some_and(|only| only != name) {
            continue;
        }
        println!("-- {label}");
        let redis = match redis_round_trips(count, pace) {
            Ok(figures) => figures,
            Err(error) => {
                eprintln!("redis: {error}");
                return ExitCode::FAILURE;
            }
        };
        print("Redis PUBLISH -> SUBSCRIBE", &redis, None);
        for (name, pipelining) in [
            ("notify A -> B monitor, pipelined", true),
            ("notify A -> B monitor, one by one", false),
        ] {
            match at_server_notifications(count, pace, warmup, pipelining) {
                Ok(figures) => print(name, &figures, Some(&redis)),
                Err(error) => {
                    eprintln!("atServers ({name}): {error}");
                    return ExitCode::FAILURE;
                }
            }
        }
        match redis_round_trips(count, pace) {
            Ok(again) => print("Redis PUBLISH -> SUBSCRIBE, again", &again, None),
            Err(error) => eprintln!("redis, again: {error}"),
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_need_every_message_and_order_latencies() {
        let base = Instant::now();
        let at = |ms| Some(base + Duration::from_millis(ms));
        let stamps = Stamps {
            sent: vec![at(0), at(10)],
            acked: vec![at(1), at(13)],
            arrived: vec![at(5), at(30)],
        };
        let f = figures(&stamps).unwrap();
        assert_eq!(
            (f.p50, f.max),
            (Duration::from_millis(5), Duration::from_millis(20))
        );
        assert_eq!(
            (f.acked_p50, f.acked_p99),
            (Duration::from_millis(1), Duration::from_millis(1))
        );
        assert!((f.per_second - 2.0 / 0.030).abs() < 1e-6);
        let missing = Stamps {
            sent: vec![at(0)],
            acked: vec![at(1)],
            arrived: vec![None],
        };
        assert!(figures(&missing).is_err());
        let unacked = Stamps {
            sent: vec![at(0)],
            acked: vec![None],
            arrived: vec![at(1)],
        };
        assert!(figures(&unacked).is_err());
    }
}
