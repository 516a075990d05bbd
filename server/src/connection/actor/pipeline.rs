//! Pipelining on a connection authenticated as another atSign's server (after `pol`).
//!
//! Our servers' peer links write a peer's commands without waiting for the replies (they ask
//! `info` first, whose `features` say `pipelining`). Run one at a time, a burst of
//! notifications would cost a durable write each, one after the other; so on such a connection
//! up to [`MAX_IN_FLIGHT`] key-store commands run at once (their writes share the store's
//! group commits), each numbered as it arrives, and each reply is written when every earlier
//! one has been (a reorder buffer). With that many in flight no further line is read
//! (`ctx.wait`) until the oldest is answered: the peer's TCP window holds the rest.
//!
//! What must stay in order does: each command gets a [`crate::turn::Turn`], so a received
//! notification is shown on the monitors (and its key cached) after those that arrived before
//! it on this connection. Any other command (`from`, `pol`, `info`, `noop`, `exit`, a refused
//! one…) and anything that closes the connection (end of input, node shutdown, suspension)
//! waits until the commands in flight are answered, then goes as before. A reply that closes
//! the connection is the last one written. Owner and unauthenticated connections never get
//! here: one command in flight, as the reference's clients expect.
//!
//! The commands run as tasks of their own, not as the actor's futures: `ctx.wait` holds those
//! back, and it is used to stop reading. Each tells the actor it is done ([`Flush`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix::prelude::*;
use at_common::error::{AtError, ErrorCode};
use at_common::reply::Reply;
use at_common::verb::Command;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;

use super::Connection;
use crate::access;
use crate::keystore::Run;
use crate::turn::Turns;

/// Commands of one peer connection run at once, at most.
pub const MAX_IN_FLIGHT: u64 = 64;

/// A connection's commands in flight.
#[derive(Default)]
pub(super) struct Pipeline {
    /// The number of the next command run, and of the next reply to write.
    next: u64,
    next_reply: u64,
    /// The verb and arrival of each command in flight, oldest first (for the metrics).
    started: VecDeque<(&'static str, Instant)>,
    done: Arc<Done>,
    turns: Turns,
}

/// The results of the commands in flight, by number, as they finish.
#[derive(Default)]
struct Done {
    results: Mutex<BTreeMap<u64, Result<Reply, AtError>>>,
    finished: Notify,
}

impl Done {
    fn results(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Result<Reply, AtError>>> {
        self.results.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns once the results of every command numbered `from..to` are in.
    async fn all_in(self: Arc<Self>, from: u64, to: u64) {
        loop {
            if self.results().range(from..to).count() as u64 == to - from {
                return;
            }
            self.finished.notified().await;
        }
    }
}

impl Pipeline {
    fn in_flight(&self) -> u64 {
        self.next - self.next_reply
    }
}

/// A command in flight finished: the replies now in order are written.
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl<IO: AsyncRead + AsyncWrite + Unpin + 'static> Connection<IO> {
    /// Where each parsed command goes: run at once when it may be pipelined; otherwise, once
    /// the commands in flight are answered, as one command at a time is.
    pub(super) fn dispatch(&mut self, command: Command, ctx: &mut Context<Self>) {
        if let Some(view) = self.pipelinable(&command) {
            return self.run_pipelined(command, view, ctx);
        }
        self.after_in_flight(ctx, move |act, ctx| act.handle_command(command, ctx));
    }

    /// Runs `then` now if nothing is in flight, else once every command in flight is answered
    /// (reading nothing meanwhile); not at all if one of those replies closed the connection.
    pub(super) fn after_in_flight(
        &mut self,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) {
        let Some(pipeline) = self.pipeline.as_ref().filter(|p| p.in_flight() > 0) else {
            return then(self, ctx);
        };
        let all_in = Arc::clone(&pipeline.done).all_in(pipeline.next_reply, pipeline.next);
        ctx.wait(all_in.into_actor(self).map(move |(), act, ctx| {
            act.flush(ctx);
            if !act.closing {
                then(act, ctx);
            }
        }));
    }

    /// What `command` may see, when it runs pipelined: on a peer's connection, a key-store
    /// command it is allowed.
    fn pipelinable(&self, command: &Command) -> Option<access::View> {
        self.state.peer()?;
        if self.hosts.suspensions().is_suspended(&self.me) {
            return None;
        }
        match command {
            Command::From(_)
            | Command::Pol
            | Command::Cram(_)
            | Command::Pkam(_)
            | Command::Monitor(_)
            | Command::Enroll(_)
            | Command::Info(_)
            | Command::Noop(_)
            | Command::Exit => None,
            command => access::decide(&self.state.asker(), command).ok(),
        }
    }

    fn run_pipelined(&mut self, command: Command, view: access::View, ctx: &mut Context<Self>) {
        // Made on a peer connection's first pipelined command: most connections never need one.
        let pipeline = self.pipeline.get_or_insert_with(Default::default);
        let number = pipeline.next;
        pipeline.next += 1;
        pipeline.started.push_back((command.verb(), Instant::now()));
        let turn = pipeline.turns.next();
        // With the most in flight, nothing more is read until the oldest is answered.
        let oldest_answered = (pipeline.in_flight() >= MAX_IN_FLIGHT).then(|| {
            let oldest = pipeline.next_reply;
            Arc::clone(&pipeline.done).all_in(oldest, oldest + 1)
        });
        let done = Arc::clone(&pipeline.done);
        let run = Run {
            command,
            view,
            asker: self.state.asker(),
            inbound: self.limits.admission.open(),
            turn: Some(turn),
        };
        let sent = self.keystore(ctx).send(run);
        let connection = ctx.address();
        actix_rt::spawn(async move {
            let result = sent
                .await
                .unwrap_or_else(|_| Err(ErrorCode::InternalServerException.into()));
            done.results().insert(number, result);
            done.finished.notify_one();
            connection.do_send(Flush);
        });
        if let Some(answered) = oldest_answered {
            ctx.wait(answered.into_actor(self).map(|(), act, ctx| act.flush(ctx)));
        }
    }

    /// Writes the replies that are next in order; none after one that closes the connection.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        while !self.closing {
            let Some(pipeline) = self.pipeline.as_mut() else {
                return;
            };
            let number = pipeline.next_reply;
            let Some(result) = pipeline.done.results().remove(&number) else {
                return;
            };
            pipeline.next_reply += 1;
            self.current = pipeline.started.pop_front();
            self.reply(result, ctx);
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin + 'static> Handler<Flush> for Connection<IO> {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        self.flush(ctx);
    }
}
