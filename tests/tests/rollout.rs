//! Zero-drop rollouts (issue 18): nodes rolled one at a time under SDK traffic, as a
//! Kubernetes rolling update does it, refuse no connection and lose no acknowledged write.
//!
//! The cluster: one real `redis-server`, three `at-server` nodes on it (one cluster CA, SNI
//! routing, `/readyz` on `metrics_listen`), all hosting `@alice`, behind a loopback "Service"
//! ([`at_tests::balancer`]): new connections go round-robin to the nodes its `/readyz` polls
//! find ready, 200 ms apart, each change acted on 300 ms after it is seen; open connections stay
//! where they are.
//!
//! The traffic: the real Python SDK (`tests/python/rollout_traffic.py`), four `AtClient`s
//! through the Service, each putting public keys back to back (`c<client>w<n>` = `<n>`, so a
//! put is in flight whenever a node drains), recording every put acknowledged, and, when the
//! node it is on drains and closes its connection, connecting again through the Service (a new
//! `AtClient`, PKAM) and going on. A connection that cannot be made, handshaken or
//! authenticated is a refused connection.
//!
//! The roll, for each node in turn (a rolling update with `maxSurge: 0, maxUnavailable: 1`):
//! SIGTERM; the node answers `/readyz` 503 at once and serves on for `shutdown_pause_millis`
//! (2 s, well past the Service's 0.5 s lag), then stops accepting and drains; it exits; its
//! replacement starts on the same Redis and is ready; then the next.
//!
//! Asserted: no refused connection (in the SDK clients, and in the Service: none sent to a
//! node that refused it), no error answer; every acknowledged put read back, through a fresh
//! connection, with its value; and that the rollout was exercised: each node had clients on it
//! when it was told to stop (so each roll moved clients: reconnects > 0), every client had
//! writes acknowledged before each roll and after it.
//!
//! The negative control rolls one node of two with `shutdown_pause_millis = 0`: the node stops
//! accepting at SIGTERM while the Service still sends it the clients it just closed, so those
//! reconnects are refused. Reliable, not by luck: the reconnects come within milliseconds of the
//! drain, the Service keeps the node for at least its 300 ms propagation after a poll sees it
//! gone, and round-robin over two nodes sends one of any two consecutive connections to it.
//!
//! Needs a Python with `atsdk` installed, named by `AT_PYTHON_SDK` (see
//! `at_tests::python_named_by`). The SDK drives the traffic with three changes the script
//! documents: a read that notices a closed connection (atsdk 0.2.81 spins on one forever, so it
//! could not reconnect), a read timeout, and its RSA key parsed once rather than for every put
//! (50 ms of CPU each). Everything on the wire is the SDK's own.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use at_tests::balancer::{BackendId, Balancer, Probing};
use at_tests::client::Client;
use at_tests::process::{run, workspace_binary};
use at_tests::redis::RedisServer;
use at_tests::TempDir;
use support::Node;

const ATSIGN: &str = "@alice";
/// The Service's readiness polling: a change acted on within about 0.5 s.
const PROBING: Probing = Probing {
    period: Duration::from_millis(200),
    propagation: Duration::from_millis(300),
};
/// The nodes' shutdown pause: the Service's lag and 1.5 s to spare on a busy machine.
const PAUSE: Duration = Duration::from_millis(2000);
/// The nodes' drain grace period.
const GRACE: Duration = Duration::from_millis(5000);
/// SDK clients, each on a connection of its own.
const CLIENTS: usize = 4;
/// Between two puts of one client: none, back to back.
const PACE_MS: u64 = 0;
/// Bounds on the traffic script: puts per client, and seconds.
const MAX_WRITES: usize = 20_000;
const SCRIPT_SECONDS: u64 = 100;
/// How long one step of the test (a node starting, clients recovering) may take.
const STEP: Duration = Duration::from_secs(20);

/// The two tests each run a cluster and SDK traffic: one at a time on a small machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn rolling_every_node_under_sdk_traffic_refuses_nothing_and_loses_no_acknowledged_write() {
    let Some(python) = at_tests::python_sdk() else {
        return;
    };
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let mut fleet = Fleet::start("rollout", 3, PAUSE);
    eprintln!("rollout: 3 nodes ready after {:?}", started.elapsed());
    let traffic = Traffic::start(&python, &fleet);
    traffic.until_each_client_acked_after(started, 10, STEP);
    eprintln!("rollout: traffic running after {:?}", started.elapsed());

    let original = fleet.pods.len();
    let mut rolls = Vec::new();
    for _ in 0..original {
        let roll = fleet.roll_oldest(&traffic);
        eprintln!("{roll:?}");
        rolls.push(roll);
    }
    let events = traffic.stop();
    let took = started.elapsed();

    let sent: usize = events.done.values().map(|(sent, _)| sent).sum();
    eprintln!(
        "rollout: {sent} puts sent, {} acknowledged, {} connections lost (reconnected), {} \
         refused, {} errors, Service: {} connections accepted, {} refused; {took:?}",
        events.acked.len(),
        events.lost.len(),
        events.refused.len(),
        events.errors.len(),
        fleet.balancer.accepted(),
        fleet.balancer.refusals().len(),
    );
    for (_, lost) in events.lost.iter().take(3) {
        eprintln!("  e.g. {lost}");
    }
    // First: a Service slower than the pause would make refusals the test's own fault.
    for roll in &rolls {
        assert!(
            roll.lag < PAUSE,
            "the Service took {:?} to stop sending to a stopping node, not within the \
             {PAUSE:?} pause: the test's own timing is off ({roll:?})",
            roll.lag
        );
    }
    assert!(
        events.refused.is_empty(),
        "refused connections:\n{}",
        events.refused_lines()
    );
    assert!(
        fleet.balancer.refusals().is_empty(),
        "the Service could not forward: {:?}",
        fleet.balancer.refusals()
    );
    events.assert_clean();
    for roll in &rolls {
        assert!(
            roll.clients_on_it > 0,
            "no client was on the node when it was told to stop: nothing moved ({roll:?})"
        );
        assert!(roll.acked_before > 0, "no put acknowledged before {roll:?}");
    }
    assert!(
        events.lost.len() >= rolls.iter().map(|roll| roll.clients_on_it).sum::<usize>(),
        "every client on a rolled node lost its connection and reconnected: {} lost, rolls {rolls:?}",
        events.lost.len()
    );
    // Every client connected once, then once per connection lost.
    assert_eq!(events.connected.len(), CLIENTS + events.lost.len());

    fleet.assert_all_read_back(&events);
    // Not asserted (either is right): whether the put a lost connection left unanswered was
    // stored; none is expected, as a node closes a connection between commands.
    let unanswered: Vec<Ack> = events.lost.iter().map(|(put, _)| *put).collect();
    eprintln!(
        "rollout: every acknowledged put read back; of {} unanswered puts, {} stored anyway; \
         {:?} in all",
        unanswered.len(),
        fleet.stored(&unanswered),
        started.elapsed()
    );
}

#[test]
fn without_a_shutdown_pause_the_same_roll_refuses_connections() {
    let Some(python) = at_tests::python_sdk() else {
        return;
    };
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let mut fleet = Fleet::start("rollout-no-pause", 2, Duration::ZERO);
    let traffic = Traffic::start(&python, &fleet);
    traffic.until_each_client_acked_after(started, 10, STEP);
    let rolled = fleet.pods[0].1;
    let roll = fleet.roll_oldest(&traffic);
    eprintln!("{roll:?}");
    let events = traffic.stop();
    let refusals = fleet.balancer.refusals();
    eprintln!(
        "no pause: {} puts acknowledged, {} connections lost, {} refused, Service refusals: \
         {refusals:?}; {:?}",
        events.acked.len(),
        events.lost.len(),
        events.refused.len(),
        started.elapsed()
    );
    assert!(roll.clients_on_it > 0, "nothing moved: {roll:?}");
    assert!(
        !events.refused.is_empty(),
        "no SDK client was refused without a pause: the rollout test could not fail"
    );
    assert!(
        refusals
            .iter()
            .any(|refusal| refusal.backend == Some(rolled.index())),
        "the Service sent no connection to the stopped node: {refusals:?}"
    );
    // Refused connections, but still no acknowledged write lost.
    assert!(events.errors.is_empty(), "{:?}", events.errors);
    assert!(events.hung.is_empty(), "clients hung: {:?}", events.hung);
    fleet.assert_all_read_back(&events);
}

/// The "Deployment": nodes (pods) on one Redis, each a backend of the Service.
struct Fleet {
    /// Oldest first: each node and its backend. (Fields drop in order: the nodes first, the
    /// temporary directory last.)
    pods: Vec<(Node, BackendId)>,
    balancer: Balancer,
    redis: RedisServer,
    ca: PathBuf,
    settings: String,
    next_node: usize,
    /// @alice's SNI name and CRAM secret.
    host: String,
    secret: String,
    dir: TempDir,
}

/// What one roll did.
struct Roll {
    /// Connections the Service had open to the node when it was told to stop.
    clients_on_it: usize,
    /// From SIGTERM to the Service no longer sending it new connections.
    lag: Duration,
    /// From SIGTERM to the node's exit.
    exited_after: Duration,
    /// Puts acknowledged before SIGTERM; between SIGTERM and the exit (by any node).
    acked_before: usize,
    acked_while_stopping: usize,
    /// From the exit to every client having a put acknowledged again.
    recovered_after: Duration,
    /// From the exit to the replacement being ready in the Service.
    replaced_after: Duration,
}

impl std::fmt::Debug for Roll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "roll: {} clients on the node; out of the Service {:?} after SIGTERM, exited after \
             {:?}; {} puts acknowledged before, {} while it stopped; replacement ready {:?} and \
             every client acknowledged again {:?} after the exit",
            self.clients_on_it,
            self.lag,
            self.exited_after,
            self.acked_before,
            self.acked_while_stopping,
            self.replaced_after,
            self.recovered_after
        )
    }
}

impl Fleet {
    /// Redis, a cluster CA, the Service and `replicas` nodes in it, ready, and @alice
    /// provisioned and served by every node.
    fn start(label: &str, replicas: usize, pause: Duration) -> Fleet {
        let dir = TempDir::new(label);
        let redis = RedisServer::start();
        let ca_dir = dir.path().join("ca");
        let out = run(
            &workspace_binary("at-server"),
            &["ca-create", "--out", &ca_dir.display().to_string()],
            &[],
        );
        assert!(out.status.success(), "ca-create: {out:?}");
        let settings = format!(
            "metrics_listen = \"127.0.0.1:0\"\nshutdown_pause_millis = {}\n\
             shutdown_grace_millis = {}\n[tls]\nca_file = {:?}\nca_key_file = {:?}\n",
            pause.as_millis(),
            GRACE.as_millis(),
            ca_dir.join("ca.pem").display().to_string(),
            ca_dir.join("ca-key.pem").display().to_string(),
        );
        let mut fleet = Fleet {
            dir,
            redis,
            ca: ca_dir.join("ca.pem"),
            settings,
            next_node: 0,
            balancer: Balancer::start(PROBING),
            pods: Vec::new(),
            host: String::new(),
            secret: String::new(),
        };
        for _ in 0..replicas {
            fleet.start_pod();
        }
        let (host, secret) = fleet.pods[0].0.provision(ATSIGN);
        for (node, _) in &fleet.pods {
            drop(node.owner(ATSIGN, &host, &secret));
        }
        fleet.host = host;
        fleet.secret = secret;
        fleet
    }

    /// Starts the next node and adds it to the Service; returns once the Service sends it
    /// connections.
    fn start_pod(&mut self) -> BackendId {
        let node = Node::start_with(
            self.dir.path(),
            self.next_node,
            Some(&self.redis),
            &self.settings,
        );
        self.next_node += 1;
        let id = self.balancer.add(node.addr(), node.metrics());
        self.balancer
            .until_routable(id, true, STEP)
            .unwrap_or_else(|| panic!("node {} not ready in the Service", self.next_node - 1));
        self.pods.push((node, id));
        id
    }

    /// Rolls the oldest node: SIGTERM, its exit, its replacement ready, every client
    /// acknowledged again.
    fn roll_oldest(&mut self, traffic: &Traffic) -> Roll {
        let (mut node, id) = self.pods.remove(0);
        let clients_on_it = self.balancer.open(id);
        let acked_before = traffic.acked();
        let signalled = Instant::now();
        node.process().terminate();
        let out = self
            .balancer
            .until_routable(id, false, STEP)
            .expect("the Service stops sending to a stopping node");
        let status = node
            .process()
            .wait_exit(PAUSE + GRACE + STEP)
            .expect("the node exits after its pause and drain");
        assert!(status.success(), "{status:?}");
        let exited = Instant::now();
        let acked_while_stopping = traffic.acked() - acked_before;
        self.balancer.remove(id);
        drop(node);
        self.start_pod();
        let replaced_after = exited.elapsed();
        let recovered = traffic.until_each_client_acked_after(exited, 1, STEP);
        Roll {
            clients_on_it,
            lag: out.saturating_duration_since(signalled),
            exited_after: exited - signalled,
            acked_before,
            acked_while_stopping,
            recovered_after: recovered - exited,
            replaced_after,
        }
    }

    /// Reads every acknowledged put back through the Service on a fresh connection: each key
    /// there, with the value that was acknowledged.
    fn assert_all_read_back(&self, events: &Events) {
        let mut reader = self.owner_through_service();
        let prompt = format!("\n{ATSIGN}@");
        for batch in events.acked.chunks(200) {
            let asked: String = batch
                .iter()
                .map(|ack| format!("llookup:{}\n", ack.key()))
                .collect();
            let want: String = batch
                .iter()
                .map(|ack| format!("data:{}{prompt}", ack.n))
                .collect();
            reader.send(asked.as_bytes());
            if reader
                .try_expect(want.as_bytes(), Duration::from_secs(20))
                .is_err()
            {
                // Which ones: one at a time, on a connection of its own.
                let mut one = self.owner_through_service();
                let wrong: Vec<String> = batch
                    .iter()
                    .filter_map(|ack| {
                        let got = one.reply_to(&format!("llookup:{}", ack.key()), &prompt);
                        (got != format!("data:{}", ack.n)).then(|| format!("{}: {got}", ack.key()))
                    })
                    .collect();
                panic!("acknowledged puts not read back as written: {wrong:?}");
            }
        }
    }

    /// How many of `puts` are stored, with their value.
    fn stored(&self, puts: &[Ack]) -> usize {
        let mut reader = self.owner_through_service();
        let prompt = format!("\n{ATSIGN}@");
        puts.iter()
            .filter(|put| {
                reader.reply_to(&format!("llookup:{}", put.key()), &prompt)
                    == format!("data:{}", put.n)
            })
            .count()
    }

    fn owner_through_service(&self) -> Client {
        let mut client = Client::try_tls_named(self.balancer.addr, &self.ca, &self.host)
            .unwrap_or_else(|e| panic!("through the Service: {e}"));
        client.expect(b"@");
        client.cram_in(ATSIGN, &self.secret);
        client
    }
}

/// One acknowledged put.
#[derive(Debug, Clone, Copy)]
struct Ack {
    client: usize,
    n: u64,
    at: Instant,
}

impl Ack {
    /// The key it wrote (as the SDK names a public key in namespace `rollout`).
    fn key(&self) -> String {
        format!("public:c{}w{}.rollout{ATSIGN}", self.client, self.n)
    }
}

/// What the traffic script reported, as it came.
#[derive(Debug, Default)]
struct Events {
    onboarded: bool,
    acked: Vec<Ack>,
    connected: Vec<(usize, Instant)>,
    /// Connections lost: the put that was not acknowledged, and the line.
    lost: Vec<(Ack, String)>,
    refused: Vec<(Instant, String)>,
    errors: Vec<String>,
    /// Client → (puts sent, acknowledged).
    done: BTreeMap<usize, (usize, usize)>,
    hung: Vec<usize>,
    unexpected: Vec<String>,
}

impl Events {
    fn take(&mut self, line: &str) {
        let now = Instant::now();
        let fields: Vec<&str> = line.splitn(4, ' ').collect();
        let number = |i: usize| -> Option<u64> { fields.get(i)?.parse().ok() };
        match fields[0] {
            "onboarded" => self.onboarded = true,
            "connected" => match number(1) {
                Some(c) => self.connected.push((c as usize, now)),
                None => self.unexpected.push(line.into()),
            },
            "ack" => match (number(1), number(2), number(3)) {
                (Some(c), Some(n), Some(_commit_id)) => self.acked.push(Ack {
                    client: c as usize,
                    n,
                    at: now,
                }),
                _ => self.unexpected.push(line.into()),
            },
            "lost" => match (number(1), number(2)) {
                (Some(c), Some(n)) => self.lost.push((
                    Ack {
                        client: c as usize,
                        n,
                        at: now,
                    },
                    line.into(),
                )),
                _ => self.unexpected.push(line.into()),
            },
            "refused" => self.refused.push((now, line.into())),
            "error" => self.errors.push(line.into()),
            "done" => match (number(1), number(2), number(3)) {
                (Some(c), Some(sent), Some(acked)) => {
                    self.done
                        .insert(c as usize, (sent as usize, acked as usize));
                }
                _ => self.unexpected.push(line.into()),
            },
            "hung" => self.hung.extend(number(1).map(|c| c as usize)),
            _ => self.unexpected.push(line.into()),
        }
    }

    fn refused_lines(&self) -> String {
        self.refused
            .iter()
            .map(|(_, line)| line.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// No error answer, no hung client, nothing unexpected; every client reported its end,
    /// and its count of acknowledgements is the one seen.
    fn assert_clean(&self) {
        assert!(self.errors.is_empty(), "error answers: {:?}", self.errors);
        assert!(self.hung.is_empty(), "clients hung: {:?}", self.hung);
        assert!(self.unexpected.is_empty(), "{:?}", self.unexpected);
        assert_eq!(
            self.done.keys().copied().collect::<Vec<_>>(),
            (0..CLIENTS).collect::<Vec<_>>(),
            "every client ended"
        );
        for (client, (_, acked)) in &self.done {
            let seen = self
                .acked
                .iter()
                .filter(|ack| ack.client == *client)
                .count();
            assert_eq!(*acked, seen, "client {client}'s acknowledgements");
        }
    }
}

/// The traffic script, running.
struct Traffic {
    child: Child,
    stdin: Option<ChildStdin>,
    events: Arc<Mutex<Events>>,
    stdout: Option<std::thread::JoinHandle<()>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Traffic {
    /// Starts the script against `fleet`'s Service; returns once it has onboarded @alice.
    fn start(python: &str, fleet: &Fleet) -> Traffic {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/rollout_traffic.py");
        let home = fleet.dir.path().join("home");
        let keys = home.join(".atsign/keys");
        std::fs::create_dir_all(&keys).unwrap();
        let mut child = Command::new(python)
            .arg(&script)
            .args([
                fleet.balancer.addr.port().to_string(),
                fleet.host.clone(),
                ATSIGN.to_string(),
                fleet.secret.clone(),
                keys.display().to_string(),
                CLIENTS.to_string(),
                PACE_MS.to_string(),
                MAX_WRITES.to_string(),
                SCRIPT_SECONDS.to_string(),
            ])
            .env("SSL_CERT_FILE", &fleet.ca)
            .env("HOME", &home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the traffic script");
        let events = Arc::new(Mutex::new(Events::default()));
        let stdout = child.stdout.take().expect("piped stdout");
        let into = Arc::clone(&events);
        let stdout = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                into.lock().unwrap().take(&line);
            }
        });
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr_pipe, &mut text);
            text
        });
        let traffic = Traffic {
            stdin: child.stdin.take(),
            child,
            events,
            stdout: Some(stdout),
            stderr: Some(stderr),
        };
        traffic.until("the SDK onboarded @alice", STEP, |events| events.onboarded);
        traffic
    }

    /// Puts acknowledged so far.
    fn acked(&self) -> usize {
        self.events.lock().unwrap().acked.len()
    }

    /// Waits until every client has had `count` puts acknowledged since `since`; when the
    /// last of them came.
    fn until_each_client_acked_after(
        &self,
        since: Instant,
        count: usize,
        within: Duration,
    ) -> Instant {
        let what = format!("every client with {count} puts acknowledged");
        self.until(&what, within, |events| {
            (0..CLIENTS).all(|client| {
                events
                    .acked
                    .iter()
                    .filter(|ack| ack.client == client && ack.at >= since)
                    .count()
                    >= count
            })
        });
        let events = self.events.lock().unwrap();
        (0..CLIENTS)
            .filter_map(|client| {
                events
                    .acked
                    .iter()
                    .filter(|ack| ack.client == client && ack.at >= since)
                    .nth(count - 1)
                    .map(|ack| ack.at)
            })
            .max()
            .expect("checked above")
    }

    /// Waits (bounded) for `done` to hold of the events; fails with the script's output if
    /// it does not, or if the script ended.
    fn until(&self, what: &str, within: Duration, done: impl Fn(&Events) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            if done(&self.events.lock().unwrap()) {
                return;
            }
            let ended = std::fs::metadata(format!("/proc/{}", self.child.id())).is_err()
                || self.stdout.as_ref().is_some_and(|t| t.is_finished());
            if ended || Instant::now() >= deadline {
                let events = self.events.lock().unwrap();
                panic!(
                    "{what}: not within {within:?} (script ended: {ended}); {} acknowledged, \
                     lost {:?}, refused {:?}, errors {:?}, unexpected {:?}",
                    events.acked.len(),
                    events.lost,
                    events.refused,
                    events.errors,
                    events.unexpected
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Closes the script's stdin (it stops), waits for its end (bounded) and returns what it
    /// reported; fails if it did not end well.
    fn stop(mut self) -> Events {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the script") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = self.stdout.take().map(|t| t.join());
        let stderr = self
            .stderr
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        let events = std::mem::take(&mut *self.events.lock().unwrap());
        assert!(
            status.is_some_and(|status| status.success()),
            "the traffic script ended with {status:?}:\n{stderr}"
        );
        events
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
