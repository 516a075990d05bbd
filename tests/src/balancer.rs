//! A loopback "Service": a TCP load balancer in front of several atServer nodes that sends each
//! new connection to one of the nodes it currently believes ready, as Kubernetes does for a
//! Service in front of a Deployment's pods.
//!
//! - Readiness is learnt by polling each backend's HTTP `/readyz` every [`Probing::period`]
//!   (the kubelet's readiness probe), and a change takes effect for routing only
//!   [`Probing::propagation`] after it was observed (the endpoints controller publishing it and
//!   kube-proxy syncing its rules): so a node told to stop keeps receiving new connections for
//!   up to `period + propagation` (plus the probe's own time), as a pod does.
//! - A new connection goes to the next routable backend, round-robin (kube-proxy's IPVS
//!   default), once: if that backend refuses it, the client's connection is reset, as a client
//!   of an iptables/IPVS Service is refused when the pod it was sent to has closed its port.
//!   No retry on another backend: that is what the server's own shutdown pause must make
//!   unnecessary. With no routable backend, the connection is reset at once.
//! - A connection stays on its backend until either side closes it; bytes are copied both ways,
//!   and an end of stream on one side is passed on as a half-close, so a server's last reply
//!   before it closes reaches the client.
//!
//! Refusals (no routable backend, or the backend refused) are counted and described
//! ([`Balancer::refusals`]), as are the connections each backend got and has open.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How readiness is learnt and how late it is acted on.
#[derive(Debug, Clone, Copy)]
pub struct Probing {
    /// Time between two polls of a backend's `/readyz` (the probe's `periodSeconds`).
    pub period: Duration,
    /// Time from a poll seeing a change to routing following it.
    pub propagation: Duration,
}

impl Probing {
    /// The longest a backend that stopped being ready can still be sent new connections,
    /// nominally (a slow probe adds its own time).
    pub fn lag(&self) -> Duration {
        self.period + self.propagation
    }
}

/// Which backend, as [`Balancer::add`] returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendId(usize);

impl BackendId {
    /// Its number, as [`Refusal::backend`] gives it.
    pub fn index(self) -> usize {
        self.0
    }
}

/// A connection the balancer could not forward.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// When, since the balancer started.
    pub after: Duration,
    /// The backend it was sent to (`None`: no backend was routable).
    pub backend: Option<usize>,
    pub why: String,
}

struct Backend {
    id: usize,
    addr: SocketAddr,
    readyz: SocketAddr,
    /// A change seen by a poll, and when routing follows it.
    pending: Option<(bool, Instant)>,
    /// Whether new connections are sent here.
    routable: bool,
    /// Every change of `routable`, in order.
    changes: Vec<(bool, Instant)>,
    /// Connections sent here, in all.
    forwarded: usize,
    /// Connections sent here and not closed yet.
    open: Arc<AtomicUsize>,
}

struct Shared {
    started: Instant,
    probing: Probing,
    backends: Mutex<Vec<Backend>>,
    next_id: AtomicUsize,
    round_robin: AtomicUsize,
    refusals: Mutex<Vec<Refusal>>,
    accepted: AtomicUsize,
    stop: AtomicBool,
    /// Both ends of every open forwarded connection, by number, to close them when the
    /// balancer is dropped.
    streams: Mutex<HashMap<usize, [TcpStream; 2]>>,
}

/// The balancer: listening on [`Balancer::addr`] until dropped.
pub struct Balancer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Balancer {
    /// Listens on a free loopback port, with no backends yet.
    pub fn start(probing: Probing) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the balancer");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            started: Instant::now(),
            probing,
            backends: Mutex::default(),
            next_id: AtomicUsize::new(0),
            round_robin: AtomicUsize::new(0),
            refusals: Mutex::default(),
            accepted: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            streams: Mutex::default(),
        });
        let accepting = Arc::clone(&shared);
        std::thread::spawn(move || accept_loop(listener, accepting));
        let probing = Arc::clone(&shared);
        std::thread::spawn(move || probe_loop(probing));
        Balancer { addr, shared }
    }

    /// A new backend (a pod the Service selects): its atServer port and its HTTP port
    /// (`/readyz`). Not sent anything until a poll finds it ready and that has propagated.
    pub fn add(&self, addr: SocketAddr, readyz: SocketAddr) -> BackendId {
        let id = self.shared.next_id.fetch_add(1, Ordering::SeqCst);
        self.shared.backends.lock().unwrap().push(Backend {
            id,
            addr,
            readyz,
            pending: None,
            routable: false,
            changes: Vec::new(),
            forwarded: 0,
            open: Arc::default(),
        });
        BackendId(id)
    }

    /// Forgets a backend (its pod was deleted); its open connections are left as they are.
    pub fn remove(&self, id: BackendId) {
        self.shared
            .backends
            .lock()
            .unwrap()
            .retain(|backend| backend.id != id.0);
    }

    /// Whether new connections are sent to `id` now.
    pub fn routable(&self, id: BackendId) -> bool {
        self.with(id, |backend| backend.routable)
    }

    /// Waits up to `within` for `id` to become routable (`true`) or not (`false`); when it
    /// did, or `None`.
    pub fn until_routable(
        &self,
        id: BackendId,
        routable: bool,
        within: Duration,
    ) -> Option<Instant> {
        let deadline = Instant::now() + within;
        loop {
            let (now, since) = self.with(id, |backend| {
                let since = backend.changes.last().map(|(_, at)| *at);
                (backend.routable, since)
            });
            if now == routable {
                return Some(since.unwrap_or_else(Instant::now));
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Connections sent to `id` and still open.
    pub fn open(&self, id: BackendId) -> usize {
        self.with(id, |backend| backend.open.load(Ordering::SeqCst))
    }

    /// Connections sent to `id` in all.
    pub fn forwarded(&self, id: BackendId) -> usize {
        self.with(id, |backend| backend.forwarded)
    }

    /// Connections accepted in all.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Every connection that could not be forwarded, in order.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.shared.refusals.lock().unwrap().clone()
    }

    /// How long the balancer has run (the time base of [`Refusal::after`]).
    pub fn elapsed(&self) -> Duration {
        self.shared.started.elapsed()
    }

    fn with<T>(&self, id: BackendId, f: impl FnOnce(&Backend) -> T) -> T {
        let backends = self.shared.backends.lock().unwrap();
        let backend = backends
            .iter()
            .find(|backend| backend.id == id.0)
            .unwrap_or_else(|| panic!("backend {} was removed", id.0));
        f(backend)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for (_, pair) in self.shared.streams.lock().unwrap().drain() {
            for stream in pair {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let number = shared.accepted.fetch_add(1, Ordering::SeqCst);
        let picked = {
            let mut backends = shared.backends.lock().unwrap();
            let routable: Vec<usize> = (0..backends.len())
                .filter(|&i| backends[i].routable)
                .collect();
            if routable.is_empty() {
                None
            } else {
                let turn = shared.round_robin.fetch_add(1, Ordering::SeqCst);
                let backend = &mut backends[routable[turn % routable.len()]];
                backend.forwarded += 1;
                backend.open.fetch_add(1, Ordering::SeqCst);
                Some((backend.id, backend.addr, Arc::clone(&backend.open)))
            }
        };
        let Some((id, addr, open)) = picked else {
            refuse(&shared, client, None, "no ready backend".into());
            continue;
        };
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || forward(shared, number, client, id, addr, open));
    }
}

/// Records a refusal and resets the client's connection (as a closed port would).
fn refuse(shared: &Shared, client: TcpStream, backend: Option<usize>, why: String) {
    shared.refusals.lock().unwrap().push(Refusal {
        after: shared.started.elapsed(),
        backend,
        why,
    });
    let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
    drop(client);
}

/// Decrements a backend's open count when dropped (the connection is over).
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Connects to the backend and copies both ways until both directions have ended.
fn forward(
    shared: Arc<Shared>,
    number: usize,
    client: TcpStream,
    id: usize,
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
) {
    let _open = OpenGuard(open);
    let server = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(server) => server,
        Err(e) => {
            refuse(
                &shared,
                client,
                Some(id),
                format!("backend {id} ({addr}): {e}"),
            );
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let clones = (client.try_clone(), server.try_clone());
    let kept = (client.try_clone(), server.try_clone());
    let ((Ok(client_copy), Ok(server_copy)), (Ok(client_kept), Ok(server_kept))) = (clones, kept)
    else {
        return;
    };
    shared
        .streams
        .lock()
        .unwrap()
        .insert(number, [client_kept, server_kept]);
    let upstream = std::thread::spawn(move || pump(client, server_copy));
    pump(server, client_copy);
    let _ = upstream.join();
    shared.streams.lock().unwrap().remove(&number);
}

/// Copies `from` to `to`. At `from`'s end of stream, half-closes `to` (what was copied is
/// delivered, then the end); on an error either way, closes both.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

fn probe_loop(shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let round = Instant::now();
        let targets: Vec<(usize, SocketAddr)> = shared
            .backends
            .lock()
            .unwrap()
            .iter()
            .map(|backend| (backend.id, backend.readyz))
            .collect();
        for (id, readyz) in targets {
            // The kubelet's default probe timeout: 1 s.
            let ready =
                crate::http::request_within(readyz, "GET", "/readyz", Duration::from_secs(1))
                    .is_ok_and(|response| response.status == 200);
            let now = Instant::now();
            let mut backends = shared.backends.lock().unwrap();
            let Some(backend) = backends.iter_mut().find(|backend| backend.id == id) else {
                continue;
            };
            backend.pending = if ready == backend.routable {
                None
            } else {
                match backend.pending {
                    Some((to, at)) if to == ready => Some((to, at)),
                    _ => Some((ready, now + shared.probing.propagation)),
                }
            };
        }
        // Propagation is applied between polls too, every 10 ms, so its delay is what it says.
        let next = round + shared.probing.period;
        loop {
            apply_due(&shared);
            let now = Instant::now();
            if now >= next || shared.stop.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep((next - now).min(Duration::from_millis(10)));
        }
    }
}

/// Makes routing follow every observed change whose propagation delay is over.
fn apply_due(shared: &Shared) {
    let now = Instant::now();
    for backend in shared.backends.lock().unwrap().iter_mut() {
        if let Some((to, at)) = backend.pending {
            if at <= now {
                backend.pending = None;
                backend.routable = to;
                backend.changes.push((to, now));
            }
        }
    }
}
