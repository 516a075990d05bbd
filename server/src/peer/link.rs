//! `PeerLink`: one connection from a hosted atSign to another atSign's server, opened on the
//! first request and reused until idle.
//!
//! A [`Mode::Pol`] link acts as its atSign: it runs `from:@me`, signs the proof's challenge
//! with the atSign's signing key (made on first use, [`crate::signing`]), leaves the signature
//! at `public:<sessionId>@me` for 60 s where the other server looks it up, then sends `pol`
//! (docs/authentication.md#pol). A [`Mode::Anonymous`] link skips all that (public lookups).
//! Either kind first asks for the other atSign's encryption public key, as the reference does,
//! which is how a reset of that atSign is noticed (told to the node's [`super::Observer`]).
//!
//! The connection is TLS to a server elsewhere, or in-process to an atSign hosted on this
//! cluster ([`super::InProcess`]); the conversation over it is the same.
//!
//! Requests are answered in order. To the reference's servers one request is in flight per
//! connection: the reference reads several lines arriving together as one command. A pol link
//! to a server that announces pipelining (`"features":["pipelining"]` in its `info:brief`,
//! asked once after `pol` and remembered per server, [`Peers::pipelining_of`]) writes each
//! request as it comes instead, up to [`super::pipe::MAX_IN_FLIGHT`] unanswered, and matches
//! the replies to them in order ([`super::pipe`]): one notification no longer waits for the
//! previous one's round trip and durable write on the other side. A server whose `info` is an
//! error, or names no such feature, and every link when `peer_pipelining = false`, gets one
//! request at a time. Anonymous links (public lookups) never pipeline.
//!
//! A link whose connection broke drops it and reconnects on the next request; a request on a
//! reused connection that finds it closed (the other side's idle timeout), or refused as
//! blocked (AT0013: the other atSign's owner blocked this one since the link was made, and the
//! other side closes), is retried once on a fresh one, whose handshake then gives the answer a
//! new link would get. On a pipelined connection "reused" means one this request did not open:
//! each request that failed with it is retried once, on the connection open by then.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use at_common::auth;
use at_common::metadata::{now_ms, Metadata, MetadataUpdate};
use at_common::AtSign;
use at_directory::client::{self, Conversation, Failure};
use tokio::io::{AsyncRead, AsyncWrite};

use super::pipe::Pipe;
use super::{PeerError, Peers, MAX_REPLY};
use crate::signing;
use crate::store::{Mutation, Record};
use crate::turn::{Turn, Turns};

/// How long the signature answering a challenge stays readable (the reference's 60 s).
const PROOF_TTL_MS: i64 = 60_000;

/// How a link talks to the other server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// As the hosted atSign, after `from` + `pol`.
    Pol,
    /// Unauthenticated.
    Anonymous,
}

/// Sends one request line; answers the reply line without its prompt.
#[derive(Message)]
#[rtype(result = "Result<String, PeerError>")]
pub struct Ask(pub String);

/// Closes the link (evicted to make room for another).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;

/// A link's connection: TLS, or in-process.
pub trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

type Stream = Conversation<Box<dyn Io>>;

/// The reply a server gives a request of an atSign its owner blocked (and then closes).
const BLOCKED: &str = "error:AT0013-";

pub struct PeerLink {
    me: AtSign,
    other: AtSign,
    mode: Mode,
    peers: Peers,
    /// The connection, once open: a request holds the lock for its whole exchange on a
    /// one-at-a-time connection, and only to find (or open) a pipelined one.
    connection: Arc<tokio::sync::Mutex<Option<Open>>>,
    /// The order requests arrived in, which is the order they are written in: each waits for
    /// the ones before it to be written (or, one at a time, to have the connection).
    order: Turns,
    /// When a request last started or ended: shared with the requests, which run as tasks of
    /// their own on this link's thread.
    last_used: Rc<Cell<Instant>>,
}

/// An open connection of a link.
enum Open {
    /// One request at a time.
    One(Stream),
    /// To a server that pipelines.
    Pipelined(Pipe),
}

impl PeerLink {
    pub fn new(me: AtSign, other: AtSign, mode: Mode, peers: Peers) -> PeerLink {
        PeerLink {
            me,
            other,
            mode,
            peers,
            connection: Arc::default(),
            order: Turns::default(),
            last_used: Rc::new(Cell::new(Instant::now())),
        }
    }
}

impl Actor for PeerLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let idle = self.peers.settings().idle;
        let check = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
        ctx.run_interval(check, move |act, ctx| {
            if act.last_used.get().elapsed() >= idle {
                tracing::debug!(me = %act.me, other = %act.other, "closing an idle peer link");
                ctx.stop();
            }
        });
    }
}

impl Handler<Close> for PeerLink {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Ask> for PeerLink {
    type Result = ResponseFuture<Result<String, PeerError>>;

    /// Requests run concurrently here; the connection decides how many are in flight. Each
    /// runs as a task of its own, not as a future of this actor: actix polls every future of
    /// an actor's context each time it wakes, so a burst of thousands queued on one link cost
    /// thousands of polls per reply (most of a flooded node's CPU).
    fn handle(&mut self, Ask(line): Ask, _: &mut Context<Self>) -> Self::Result {
        self.last_used.set(Instant::now());
        let link = Link {
            peers: self.peers.clone(),
            me: self.me.clone(),
            other: self.other.clone(),
            mode: self.mode,
            connection: Arc::clone(&self.connection),
        };
        let turn = self.order.next();
        let last_used = Rc::clone(&self.last_used);
        Box::pin(async move {
            let result = link.ask(line, turn).await;
            last_used.set(Instant::now());
            result
        })
    }
}

/// What a request needs of its link.
struct Link {
    peers: Peers,
    me: AtSign,
    other: AtSign,
    mode: Mode,
    connection: Arc<tokio::sync::Mutex<Option<Open>>>,
}

impl Link {
    /// `line`'s reply: on the open connection, or on a new one; once more on a new one when a
    /// reused connection failed it (or answered it blocked). Sent after the requests whose
    /// `turn` came before.
    async fn ask(&self, line: String, turn: Turn) -> Result<String, PeerError> {
        let (peers, me, other) = (&self.peers, &self.me, &self.other);
        let server = server_of(other);
        let mut retried = false;
        let mut turn = Some(turn);
        loop {
            if let Some(turn) = &turn {
                turn.wait().await;
            }
            let mut connection = self.connection.lock().await;
            if matches!(&*connection, Some(Open::Pipelined(pipe)) if pipe.is_closed()) {
                *connection = None;
            }
            let fresh = connection.is_none();
            if fresh {
                *connection = Some(open(peers, me, other, self.mode).await?);
            }
            let (answer, pipe) = match connection.as_mut() {
                Some(Open::One(conversation)) => {
                    // Holding the connection: the next request waits for it, in order.
                    drop(turn.take());
                    let answer = peers.bounded(&server, conversation.ask(&line)).await;
                    let blocked = matches!(&answer, Ok(reply) if reply.starts_with(BLOCKED));
                    if answer.is_err() || blocked {
                        *connection = None;
                    }
                    (answer, None)
                }
                Some(Open::Pipelined(pipe)) => {
                    let pipe = pipe.clone();
                    drop(connection);
                    let sent = pipe.send(line.clone()).await;
                    drop(turn.take());
                    let answer = match sent {
                        Ok(sent) => sent.reply().await,
                        Err(error) => Err(error),
                    };
                    (answer, Some(pipe))
                }
                None => unreachable!("opened above"),
            };
            let blocked = matches!(&answer, Ok(reply) if reply.starts_with(BLOCKED));
            if fresh || retried || (answer.is_ok() && !blocked) {
                return answer;
            }
            if let (Some(pipe), true) = (pipe, blocked) {
                // The other side closes after it: what follows on this connection is lost.
                pipe.close(PeerError::Unreachable(format!("{server} is unreachable")));
            }
            tracing::debug!(%me, %other, blocked, "peer link closed under us; reconnecting");
            retried = true;
        }
    }
}

/// How errors name `other`'s server.
fn server_of(other: &AtSign) -> String {
    format!("{other}'s atServer")
}

/// A new connection to `other`'s server (in-process when it is hosted on this cluster),
/// handshaken for `mode`.
async fn open(peers: &Peers, me: &AtSign, other: &AtSign, mode: Mode) -> Result<Open, PeerError> {
    let server = server_of(other);
    let io: Box<dyn Io> = match peers.in_process(other).await? {
        Some(io) => Box::new(io),
        None => {
            let address = peers.locate(other).await?;
            let tls = peers.settings().tls.clone();
            tracing::debug!(%me, %other, %address, "connecting to another atServer");
            Box::new(
                peers
                    .bounded(&server, client::tls_stream(&tls, &address))
                    .await?,
            )
        }
    };
    let mut conversation = Conversation::new(io, MAX_REPLY);
    check_public_key(peers, &mut conversation, me, other).await?;
    if mode == Mode::Pol {
        if let Err(error) = handshake(peers, &mut conversation, me, other).await {
            crate::metrics::metrics().handshake_failures.inc();
            return Err(error);
        }
    }
    let pipelined = mode == Mode::Pol
        && peers.settings().pipelining
        && pipelines(peers, &mut conversation, other).await?;
    tracing::debug!(%me, %other, ?mode, pipelined, "peer link open");
    Ok(match pipelined {
        true => Open::Pipelined(Pipe::start(conversation, peers, server)),
        false => Open::One(conversation),
    })
}

/// Whether `other`'s server pipelines: as remembered, or as its `info:brief` says now (then
/// remembered). An error (a server without `info`), or no `pipelining` among its `features`
/// (the reference's), is no.
async fn pipelines(
    peers: &Peers,
    conversation: &mut Stream,
    other: &AtSign,
) -> Result<bool, PeerError> {
    if let Some(known) = peers.pipelining_of(other) {
        return Ok(known);
    }
    let reply = peers
        .bounded(&server_of(other), conversation.ask("info:brief"))
        .await?;
    let pipelines = announces_pipelining(&reply);
    peers.remember_pipelining(other, pipelines);
    Ok(pipelines)
}

/// Whether an `info` reply names `pipelining` among its `features`.
fn announces_pipelining(reply: &str) -> bool {
    let Some(json) = reply.strip_prefix("data:") else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|info| {
            let features = info.get("features")?.as_array()?;
            Some(features.iter().any(|feature| feature == "pipelining"))
        })
        .unwrap_or(false)
}

/// The first request of every new link (the reference's): `other`'s encryption public key,
/// handed to the node's [`super::Observer`] (which caches it, or handles a reset). A reply
/// that is not the protocol fails the link; no key or a refusal is no reason to.
async fn check_public_key(
    peers: &Peers,
    conversation: &mut Stream,
    me: &AtSign,
    other: &AtSign,
) -> Result<(), PeerError> {
    let question = format!("lookup:all:publickey{other}");
    let reply = peers
        .bounded(&server_of(other), conversation.ask(&question))
        .await?;
    if !reply.starts_with("data:") && !reply.starts_with("error:") {
        let shown: String = reply.chars().take(200).collect();
        return Err(PeerError::Protocol(format!(
            "unexpected reply from the remote atServer: {shown:?}"
        )));
    }
    peers.learned_public_key(me, other, &reply).await;
    Ok(())
}

/// `from:@me`, the signed challenge left at `public:<sessionId>@me`, then `pol`.
async fn handshake(
    peers: &Peers,
    conversation: &mut Stream,
    me: &AtSign,
    other: &AtSign,
) -> Result<(), PeerError> {
    let refused = |why: String| PeerError::Handshake {
        who: other.clone(),
        why,
    };
    let proof = peers
        .bounded(&server_of(other), conversation.ask(&format!("from:{me}")))
        .await?;
    let (session_id, nonce) =
        read_proof(&proof, me).ok_or_else(|| refused(format!("from answered {proof:?}")))?;
    let store = peers.store();
    let key = signing::private_key(store, me).await?;
    let signature = auth::sign_rsa_sha256_b64(&key, nonce.trim())
        .map_err(|e| refused(format!("signing the challenge: {e}")))?;
    let me_ = me.clone();
    store
        .modify(me, &format!("public:{session_id}{me}"), move |_| {
            let ttl = MetadataUpdate {
                ttl: Some(PROOF_TTL_MS),
                ..MetadataUpdate::default()
            };
            Ok(Mutation::Put {
                record: Record {
                    value: Some(signature.clone()),
                    metadata: Metadata::updated(None, &ttl, &me_, now_ms())?,
                },
                op: None,
            })
        })
        .await?;
    let timeout = peers.settings().timeout;
    match tokio::time::timeout(timeout, conversation.pol(me)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(Failure::Protocol(why))) => Err(refused(why)),
        Ok(Err(failure)) => {
            tracing::info!(%me, %other, %failure, "pol failed");
            Err(PeerError::Unreachable(format!(
                "{} is unreachable",
                server_of(other)
            )))
        }
        Err(_) => Err(PeerError::Unreachable(format!(
            "{} did not answer within {} ms",
            server_of(other),
            timeout.as_millis()
        ))),
    }
}

/// `data:proof:<sessionId>@me:<nonce>` → (`<sessionId>`, `<nonce>`).
fn read_proof<'a>(reply: &'a str, me: &AtSign) -> Option<(&'a str, &'a str)> {
    let (claimed, nonce) = reply.strip_prefix("data:proof:")?.split_once(':')?;
    let session_id = claimed.strip_suffix(me.as_str())?;
    (session_id.starts_with('_') && !nonce.is_empty()).then_some((session_id, nonce))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_info_naming_the_feature_announces_pipelining() {
        assert!(announces_pipelining(
            r#"data:{"version":"0.1.0","uptimeAsMillis":5,"features":["pipelining"]}"#
        ));
        assert!(announces_pipelining(
            r#"data:{"features":["x","pipelining"]}"#
        ));
        // The reference's.
        assert!(!announces_pipelining(
            r#"data:{"version":"3.0.52","uptimeAsMillis":5,"apkam_metadata":{}}"#
        ));
        assert!(!announces_pipelining(r#"data:{"features":[]}"#));
        assert!(!announces_pipelining(r#"data:{"features":"pipelining"}"#));
        assert!(!announces_pipelining("error:AT0003-Invalid syntax"));
        assert!(!announces_pipelining("data:pipelining"));
    }

    #[test]
    fn the_proof_names_the_session_and_the_challenge() {
        let me = AtSign::parse("@alice").unwrap();
        assert_eq!(
            read_proof("data:proof:_4af2@alice:d6ca-28b9", &me),
            Some(("_4af2", "d6ca-28b9"))
        );
        assert_eq!(read_proof("data:proof:_4af2@bob:d6ca", &me), None);
        assert_eq!(read_proof("data:_4af2@alice:d6ca", &me), None);
        assert_eq!(
            read_proof("error:AT0013-Exception: Unable to connect", &me),
            None
        );
    }
}
