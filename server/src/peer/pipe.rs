//! `Pipe`: a peer link's connection carrying several requests at once, to a server that
//! announced pipelining (its `info`), replies matched to requests strictly in order.
//!
//! A writer task writes each request as it comes (what queued meanwhile in one write), after
//! putting its answer's place at the back of the queue of those waiting; a reader task reads
//! the replies and hands each to the front of that queue. So the n-th reply answers the n-th
//! request whatever it says: an `error:` reply is its own request's answer and nothing more.
//!
//! Bounds, as one request at a time has them: at most [`MAX_IN_FLIGHT`] requests unanswered
//! (a further one waits for a place), each reply within `peer_timeout_millis` of the previous
//! one (or of the request, when none was awaited), each write within it too, each reply at
//! most [`super::MAX_REPLY`] bytes. Anything else — a timeout, the connection closed, a reply
//! too long, not text, neither `data:` nor `error:`, or one no request awaits — means the
//! replies can no longer be matched: every request in flight fails with that error, and the
//! pipe is closed for good (the link opens another).
//!
//! Both tasks run on the link's arbiter (the connection, TLS or in-process, is not `Send`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use at_directory::client::Conversation;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};

use super::link::Io;
use super::{PeerError, Peers};

/// The most requests written and not yet answered on one pipe.
pub const MAX_IN_FLIGHT: usize = 64;

/// The most bytes of queued requests written at once.
const WRITE_BATCH: usize = 64 * 1024;

type Answer = oneshot::Sender<Result<String, PeerError>>;

struct Request {
    line: String,
    answer: Answer,
    place: OwnedSemaphorePermit,
}

/// What the writer and the reader share.
struct Shared {
    waiting: Mutex<Waiting>,
    /// The reader is woken when a request joins the queue, or the pipe failed.
    wake: Notify,
    /// Places for requests in flight.
    places: Arc<Semaphore>,
}

#[derive(Default)]
struct Waiting {
    /// Written requests' answers, in the order the requests were written.
    answers: VecDeque<(Answer, OwnedSemaphorePermit)>,
    /// Why the pipe failed, once it did.
    failed: Option<PeerError>,
}

impl Shared {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pipe failed: every request in flight (and every later one) gets `error`.
    fn fail(&self, error: PeerError) {
        let answers = {
            let mut waiting = self.waiting();
            if waiting.failed.is_none() {
                waiting.failed = Some(error.clone());
            }
            std::mem::take(&mut waiting.answers)
        };
        for (answer, _) in answers {
            let _ = answer.send(Err(error.clone()));
        }
        self.places.close();
        self.wake.notify_one();
    }
}

/// A pipelined connection; clones share it. Dropping the last clone closes it.
#[derive(Clone)]
pub struct Pipe {
    requests: mpsc::UnboundedSender<Request>,
    shared: Arc<Shared>,
    server: Arc<str>,
}

impl Pipe {
    /// Starts the writer and the reader of `conversation` (handshaken) with `server`
    /// (`@bob's atServer`, as errors name it).
    pub fn start(conversation: Conversation<Box<dyn Io>>, peers: &Peers, server: String) -> Pipe {
        let (write, replies) = conversation.split();
        let shared = Arc::new(Shared {
            waiting: Mutex::default(),
            wake: Notify::new(),
            places: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        });
        let (requests, queue) = mpsc::unbounded_channel();
        let server: Arc<str> = server.into();
        actix::spawn(writer(
            write,
            queue,
            Arc::clone(&shared),
            peers.clone(),
            Arc::clone(&server),
        ));
        actix::spawn(reader(
            replies,
            Arc::clone(&shared),
            peers.clone(),
            Arc::clone(&server),
        ));
        Pipe {
            requests,
            shared,
            server,
        }
    }

    /// Whether it failed (then every request on it fails).
    pub fn is_closed(&self) -> bool {
        self.shared.waiting().failed.is_some()
    }

    /// Fails what is in flight and closes it (the other side is closing it).
    pub fn close(&self, why: PeerError) {
        self.shared.fail(why);
    }

    /// Queues `line` to be written once there is a place for it (requests are written in the
    /// order they are queued); its reply, prompt removed, is awaited with [`Sent::reply`].
    pub async fn send(&self, line: String) -> Result<Sent, PeerError> {
        let place = match Arc::clone(&self.shared.places).acquire_owned().await {
            Ok(place) => place,
            Err(_) => {
                return Err(self
                    .shared
                    .waiting()
                    .failed
                    .clone()
                    .unwrap_or_else(|| self.gone()))
            }
        };
        let (answer, reply) = oneshot::channel();
        let request = Request {
            line,
            answer,
            place,
        };
        if self.requests.send(request).is_err() {
            return Err(self.gone());
        }
        Ok(Sent {
            reply,
            gone: self.gone(),
        })
    }

    fn gone(&self) -> PeerError {
        PeerError::Unreachable(format!("{} is unreachable", self.server))
    }
}

/// A request queued on a [`Pipe`].
pub struct Sent {
    reply: oneshot::Receiver<Result<String, PeerError>>,
    gone: PeerError,
}

impl Sent {
    /// The reply, prompt removed.
    pub async fn reply(self) -> Result<String, PeerError> {
        self.reply.await.unwrap_or(Err(self.gone))
    }
}

/// Writes requests as they come (the ones queued meanwhile together), each answer's place
/// queued first. Ends when every [`Pipe`] clone is gone, failing the pipe so the reader ends.
async fn writer(
    mut write: WriteHalf<Box<dyn Io>>,
    mut queue: mpsc::UnboundedReceiver<Request>,
    shared: Arc<Shared>,
    peers: Peers,
    server: Arc<str>,
) {
    let timeout = peers.settings().timeout;
    let mut bytes = Vec::new();
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        let mut size = batch[0].line.len();
        while size < WRITE_BATCH {
            match queue.try_recv() {
                Ok(request) => {
                    size += request.line.len() + 1;
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        bytes.clear();
        {
            let mut waiting = shared.waiting();
            if let Some(failed) = &waiting.failed {
                for request in batch {
                    let _ = request.answer.send(Err(failed.clone()));
                }
                continue;
            }
            for request in batch {
                bytes.extend_from_slice(request.line.as_bytes());
                bytes.push(b'\n');
                waiting.answers.push_back((request.answer, request.place));
            }
        }
        shared.wake.notify_one();
        let written = async {
            write.write_all(&bytes).await?;
            write.flush().await
        };
        match tokio::time::timeout(timeout, written).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let failure =
                    at_directory::client::Failure::Unreachable(format!("connection: {e}"));
                shared.fail(peers.failed(&server, failure));
            }
            Err(_) => shared.fail(peers.silent(&server)),
        }
    }
    shared.fail(PeerError::Unreachable(format!("{server} is unreachable")));
    let _ = tokio::time::timeout(timeout, write.shutdown()).await;
}

/// Reads replies and answers the oldest request with each, until the pipe fails.
async fn reader(
    mut replies: Conversation<ReadHalf<Box<dyn Io>>>,
    shared: Arc<Shared>,
    peers: Peers,
    server: Arc<str>,
) {
    let timeout = peers.settings().timeout;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        {
            let waiting = shared.waiting();
            if waiting.failed.is_some() {
                return;
            }
            if waiting.answers.is_empty() {
                deadline = None;
            } else if deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + timeout);
            }
        }
        let until = deadline.unwrap_or_else(|| tokio::time::Instant::now() + timeout);
        // Reading a line can be given up and taken up again: what was read stays buffered.
        let read = tokio::select! {
            biased;
            read = replies.read_line() => read,
            () = shared.wake.notified() => continue,
            () = tokio::time::sleep_until(until), if deadline.is_some() => {
                return shared.fail(peers.silent(&server));
            }
        };
        let reply = match read {
            Ok(reply) => reply,
            Err(failure) => return shared.fail(peers.failed(&server, failure)),
        };
        let oldest = shared.waiting().answers.pop_front();
        let Some((answer, _place)) = oldest else {
            return shared.fail(not_the_protocol(&server, &reply));
        };
        if !reply.starts_with("data:") && !reply.starts_with("error:") {
            let error = not_the_protocol(&server, &reply);
            let _ = answer.send(Err(error.clone()));
            return shared.fail(error);
        }
        let _ = answer.send(Ok(reply));
        deadline = None;
    }
}

fn not_the_protocol(server: &str, reply: &str) -> PeerError {
    let shown: String = reply.chars().take(200).collect();
    PeerError::Protocol(format!("{server}: unexpected reply {shown:?}"))
}
