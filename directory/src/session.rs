//! `Session`: one actor per client connection. Reads request lines, answers them in order,
//! throttles misses, and closes idle or misbehaving connections.
//!
//! One request is in flight at a time (`ctx.wait`), so answers leave in request order and a
//! throttling delay also delays whatever the client sends next, as the reference root does.
//! Throttling: the first miss is answered at once; each later miss waits `miss_delay`; the
//! `max_misses`th waits and then closes the connection without an answer. So enumerating
//! atSigns through the directory costs a connection (and a TLS handshake) per few guesses.
//! An empty line (a client's liveness check) is answered `null` at once and is no miss.
//! A client that does not read its answers stops being read ([`Session::send`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::io::{FramedWrite, WriteHandler};
use actix::prelude::*;
use at_common::backlog::{Backlog, Counted};
use at_common::codec::{CodecError, LineCodec};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, WriteHalf};
use tokio_util::codec::FramedRead;

use crate::lookup::{self, Request};
use crate::metrics::{LookupResult, Metrics};
use crate::store::Store;

/// The per-connection rules, from the configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    pub idle_timeout: Option<Duration>,
    pub miss_delay: Duration,
    pub max_misses: u32,
    pub buffer_limit: usize,
    /// Turns true when the directory drains: each session closes once its lookup in flight
    /// (and a throttling delay) is answered.
    pub draining: tokio::sync::watch::Receiver<bool>,
}

/// A slot among `max_connections`; freed when dropped, wherever the connection ends.
pub struct Slot {
    open: Arc<AtomicUsize>,
    metrics: Metrics,
}

impl Slot {
    /// Takes a slot, or `None` when `max` connections are already open.
    pub fn take(open: &Arc<AtomicUsize>, max: usize, metrics: &Metrics) -> Option<Slot> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()?;
        metrics.connections.inc();
        Some(Slot {
            open: Arc::clone(open),
            metrics: metrics.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.metrics.connections.dec();
    }
}

/// One client connection.
pub struct Session<IO: AsyncWrite + Unpin + 'static> {
    store: Store,
    metrics: Metrics,
    policy: Arc<Policy>,
    writer: FramedWrite<Bytes, Counted<WriteHalf<IO>>, LineCodec>,
    /// What the client has not read yet of the answers ([`Session::send`]).
    backlog: Backlog,
    /// Misses (and invalid requests) so far on this connection.
    misses: u32,
    /// The pending idle-timeout, re-armed by every request.
    idle: Option<SpawnHandle>,
    _slot: Slot,
}

impl<IO: AsyncRead + AsyncWrite + Unpin + 'static> Session<IO> {
    /// Starts the actor for an established (TLS or plain) connection.
    pub fn start(
        io: IO,
        store: Store,
        metrics: Metrics,
        policy: Arc<Policy>,
        slot: Slot,
    ) -> Addr<Self> {
        Session::create(move |ctx| {
            let (read, write) = tokio::io::split(io);
            let backlog = Backlog::default();
            let requests = FramedRead::new(read, LineCodec::new(policy.buffer_limit));
            ctx.add_stream(backlog.gate(requests));
            let writer = FramedWrite::new(
                backlog.count(write),
                LineCodec::new(policy.buffer_limit),
                ctx,
            );
            Session {
                store,
                metrics,
                policy,
                writer,
                backlog,
                misses: 0,
                idle: None,
                _slot: slot,
            }
        })
    }

    fn handle_request(&mut self, request: Request, ctx: &mut Context<Self>) {
        match request {
            Request::Exit => self.close(ctx),
            Request::Empty => {
                self.metrics.lookup(LookupResult::Empty, Duration::ZERO);
                self.send(lookup::not_found(), ctx);
            }
            Request::Invalid => {
                self.metrics.lookup(LookupResult::Invalid, Duration::ZERO);
                self.miss(ctx);
            }
            Request::Lookup(atsign) => {
                let store = self.store.clone();
                let began = Instant::now();
                let lookup = async move { store.get(&atsign).await };
                ctx.wait(lookup.into_actor(self).map(move |found, act, ctx| match found {
                    Ok(Some(address)) => {
                        act.metrics.lookup(LookupResult::Hit, began.elapsed());
                        act.send(lookup::found(&address), ctx);
                    }
                    Ok(None) => {
                        act.metrics.lookup(LookupResult::Miss, began.elapsed());
                        act.miss(ctx);
                    }
                    Err(error) => {
                        // Not `null`: a client would take the atSign for unregistered. A closed
                        // connection makes it retry on a new one instead.
                        tracing::error!(%error, "store failed during a lookup; closing the connection");
                        act.metrics.lookup(LookupResult::Error, began.elapsed());
                        act.close(ctx);
                    }
                }));
            }
        }
    }

    fn miss(&mut self, ctx: &mut Context<Self>) {
        self.misses += 1;
        let last = self.misses >= self.policy.max_misses;
        if self.misses == 1 && !last {
            self.send(lookup::not_found(), ctx);
            return;
        }
        let delay = if self.misses == 1 {
            Duration::ZERO
        } else {
            self.policy.miss_delay
        };
        ctx.wait(
            actix::clock::sleep(delay)
                .into_actor(self)
                .map(move |(), act, ctx| {
                    if last {
                        act.close(ctx);
                    } else {
                        act.send(lookup::not_found(), ctx);
                    }
                }),
        );
    }

    /// The one way answers leave: counted into the backlog and written. The requests are
    /// gated by the backlog ([`at_common::backlog`]): a client that pipelines lookups without
    /// reading the answers is not read from past 1 MiB unread, closed by the idle timeout if it
    /// reads nothing, and at once 64 MiB behind.
    fn send(&mut self, bytes: Bytes, ctx: &mut Context<Self>) {
        self.backlog.queued(bytes.len());
        self.writer.write(bytes);
        if self.backlog.overflowing() {
            self.close(ctx);
        }
    }

    /// Re-arms the idle timeout.
    fn touch(&mut self, ctx: &mut Context<Self>) {
        if let Some(pending) = self.idle.take() {
            ctx.cancel_future(pending);
        }
        if let Some(timeout) = self.policy.idle_timeout {
            self.idle = Some(ctx.run_later(timeout, |act, ctx| {
                tracing::debug!("closing an idle connection");
                act.close(ctx);
            }));
        }
    }

    /// Flushes what was written, ends TLS cleanly, and stops.
    fn close(&mut self, ctx: &mut Context<Self>) {
        self.writer.close();
        ctx.stop();
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin + 'static> Actor for Session<IO> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.send(Bytes::from_static(lookup::PROMPT), ctx);
        self.touch(ctx);
        // A `Drain` when the directory drains, after the lookup in flight is answered.
        let draining = crate::shutdown::drained(self.policy.draining.clone());
        ctx.add_stream(futures_util::StreamExt::map(draining, |()| Drain));
    }
}

/// The directory is shutting down.
struct Drain;

impl<IO: AsyncRead + AsyncWrite + Unpin + 'static> StreamHandler<Drain> for Session<IO> {
    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) {
        self.close(ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl<IO: AsyncRead + AsyncWrite + Unpin + 'static> StreamHandler<Result<String, CodecError>>
    for Session<IO>
{
    fn handle(&mut self, line: Result<String, CodecError>, ctx: &mut Context<Self>) {
        match line {
            Ok(line) => {
                self.touch(ctx);
                self.handle_request(Request::parse(&line), ctx);
            }
            Err(CodecError::Io(error)) => {
                tracing::debug!(%error, "connection failed");
                ctx.stop();
            }
            Err(error) => {
                // Overlong or not UTF-8: the reference root destroys the socket; so do we.
                tracing::debug!(%error, "closing a connection that sent a malformed line");
                self.metrics.lookup(LookupResult::Invalid, Duration::ZERO);
                self.close(ctx);
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin + 'static> WriteHandler<CodecError> for Session<IO> {
    fn error(&mut self, error: CodecError, _ctx: &mut Self::Context) -> Running {
        tracing::debug!(%error, "write failed");
        Running::Stop
    }
}
