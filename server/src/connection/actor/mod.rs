//! `Connection`: the actor for one client connection to one hosted atSign.
//!
//! Reads request lines, parses them, checks them against the session state, runs the
//! authentication verbs itself and everything else through the atSign's [`KeyStore`], and
//! writes each reply with its prompt in one write. One command is in flight at a time
//! (`ctx.wait`), so replies leave in request order; on a connection of another atSign's
//! server (after `pol`) several may be, replies still in order ([`pipeline`]). Errors the
//! reference keeps the connection open for leave it open; AT0005 (overlong line) and the other
//! closing codes close it.
//! `from` by an atSign the owner blocked is refused first (AT0013, closes); failed proofs are
//! slowed down and bounded as [`AuthThrottle`] decides.
//!
//! A connection comes over the network (TLS, or plain TCP when so configured) or, from this
//! node's own peer links to its own atSigns, in-process ([`Origin`]); the two differ only in
//! that an in-process one has no client certificate to check.

mod monitor;
mod pipeline;
mod read_buffer;
mod replayed;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::io::{FramedWrite, WriteHandler};
use actix::prelude::*;
use at_common::backlog::{Backlog, Counted};
use at_common::codec::{CodecError, LineCodec};
use at_common::error::{AtError, ErrorCode};
use at_common::reply::{ErrorStyle, Reply};
use at_common::verb::Command;
use at_common::AtSign;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, WriteHalf};
use tokio_util::codec::FramedRead;

use super::admission::{Admission, Close, Ticket};
use super::auth_state::{AuthState, Proven};
use super::authenticate;
use super::throttle::{is_failed_proof, AuthThrottle, Source};
use crate::access;
use crate::keystore::{
    AdmitPeer, Attach, Detach, Enrolled, EnsureSigningKeys, GetAuthMaterial, Hosts, KeyStore, Run,
    Subscription, Told,
};
use crate::metrics::metrics;
use crate::suspension::Suspensions;

/// A connection's read buffer to begin with (FramedRead's default is 8 KiB); it grows for a
/// longer request.
const READ_BUFFER_START: usize = 512;

/// The next connection's id among its key store's connections.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The per-connection limits, from the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    /// When the server started (`info`'s uptime).
    pub started: Instant,
    pub buffer_limit: usize,
    /// The node's bound on unfinished requests, shared by every connection.
    pub buffer_budget: at_common::codec::BufferBudget,
    /// Failed-proof limits, and the node's per-atSign failure windows (shared by every
    /// connection of the node).
    pub auth_throttle: Arc<AuthThrottle>,
    /// `from:@other` needs a client certificate naming @other's server.
    pub peer_certificate_required: bool,
    /// The node's connection pools, and their idle limits and shutdown ([`Admission`]).
    pub admission: Admission,
}

/// Where a connection comes from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// Over the network: the client's address, and the names of its TLS certificate
    /// (verified by the listener), if it presented one.
    Network {
        address: std::net::IpAddr,
        client_names: Vec<String>,
    },
    /// One of this node's peer links to an atSign hosted on this cluster. The link is the
    /// node itself, so there is no certificate to check; `from`, the block list and `pol`
    /// are as over the network.
    InProcess,
}

/// One client connection.
pub struct Connection<IO: AsyncWrite + Unpin + 'static> {
    me: AtSign,
    keystore: Addr<KeyStore>,
    /// Where a stopped key store is started again.
    hosts: Hosts,
    /// This connection among its key store's ([`Attach`]).
    id: u64,
    /// The atSign was deprovisioned while this connection was open.
    deprovisioned: bool,
    /// It revoked its own enrollment with `force`: it closes 10 s later, not when told.
    revoked_itself: bool,
    /// Its key store knows it is logged in with an APKAM enrollment ([`Enrolled`]).
    told_enrolled: bool,
    /// While this is a monitor connection: its place among the node's monitors.
    subscription: Option<Subscription>,
    state: AuthState,
    style: ErrorStyle,
    limits: Arc<Limits>,
    writer: FramedWrite<Bytes, Counted<WriteHalf<IO>>, LineCodec>,
    /// What the client has not read yet of what was written to it ([`Connection::send`]).
    backlog: Backlog,
    /// Set once the connection is being closed: later input is ignored while the last reply
    /// is flushed.
    closing: bool,
    /// Failed cram/pkam proofs in a row on this connection.
    failures: u32,
    /// Its place among the node's connections (`None` in-process: not among them).
    ticket: Option<Ticket>,
    origin: Origin,
    /// The `state` this connection is counted under in `atserver_connections`.
    counted: Option<&'static str>,
    /// The command being answered: its verb and when its line arrived (for the metrics).
    current: Option<(&'static str, Instant)>,
    /// A peer's commands in flight together ([`pipeline`]); made on its first.
    pipeline: Option<Box<pipeline::Pipeline>>,
}

impl<IO: AsyncRead + AsyncWrite + Unpin + 'static> Connection<IO> {
    /// Starts the actor for an established connection to `me`'s server.
    pub fn start(
        io: IO,
        me: AtSign,
        hosts: &Hosts,
        limits: Arc<Limits>,
        ticket: Option<Ticket>,
        origin: Origin,
    ) -> Addr<Self> {
        let keystore = hosts.get(&me);
        let hosts = hosts.clone();
        Connection::create(move |ctx| {
            let (read, write) = tokio::io::split(io);
            let backlog = Backlog::default();
            let codec = LineCodec::with_budget(limits.buffer_limit, limits.buffer_budget.clone());
            // Requests are short and connections mostly idle (a device's monitor for days):
            // start the read buffer small rather than at FramedRead's 8 KiB; a longer line
            // grows it, and it is given back while the connection waits.
            let requests = FramedRead::with_capacity(read, codec, READ_BUFFER_START);
            ctx.add_stream(backlog.gate(read_buffer::Releasing(requests)));
            let writer = FramedWrite::new(
                backlog.count(write),
                LineCodec::new(limits.buffer_limit),
                ctx,
            );
            Connection {
                me,
                keystore,
                hosts,
                id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                deprovisioned: false,
                revoked_itself: false,
                told_enrolled: false,
                subscription: None,
                state: AuthState::fresh(),
                style: ErrorStyle::Legacy,
                limits,
                writer,
                backlog,
                closing: false,
                failures: 0,
                ticket,
                origin,
                counted: None,
                current: None,
                pipeline: None,
            }
        })
    }

    /// The atSign's key store, which this connection keeps running ([`Attach`]); started again
    /// if it stopped all the same (it failed), unless the atSign was deprovisioned
    /// ([`Deprovisioned`]): then asking it fails, and nothing is written for the removed atSign.
    fn keystore(&mut self, ctx: &mut Context<Self>) -> Addr<KeyStore> {
        if !self.keystore.connected() && !self.deprovisioned {
            self.keystore = self.hosts.get(&self.me);
            self.attach(ctx);
        }
        self.keystore.clone()
    }

    fn attach(&mut self, ctx: &mut Context<Self>) {
        let connection: Recipient<Told> = ctx.address().recipient();
        self.keystore.do_send(Attach {
            id: self.id,
            connection,
        });
        self.told_enrolled = false;
        self.tell_enrolled();
    }

    /// Once logged in with an APKAM enrollment, the connection tells its key store: only such
    /// connections are closed when their enrollment is revoked through another node, so only
    /// they make the node follow the atSign's channel ([`crate::notifications::Monitors::attend`]).
    fn tell_enrolled(&mut self) {
        if !self.told_enrolled && self.state.asker().enrollment().is_some() {
            self.keystore.do_send(Enrolled(self.id));
            self.told_enrolled = true;
        }
    }

    /// What `command` may see on this connection ([`access::decide`]); `None` once its
    /// refusal is answered.
    fn allowed(&mut self, command: &Command, ctx: &mut Context<Self>) -> Option<access::View> {
        match access::decide(&self.state.asker(), command) {
            Ok(view) => Some(view),
            Err(refused) => {
                self.reply(Err(refused), ctx);
                None
            }
        }
    }

    fn reply(&mut self, result: Result<Reply, AtError>, ctx: &mut Context<Self>) {
        let outcome = match &result {
            Err(error) => error.code().code(),
            Ok(_) => "ok",
        };
        if let Some((verb, since)) = self.current.take() {
            let m = metrics();
            m.commands.with_label_values(&[verb, outcome]).inc();
            m.command_duration
                .with_label_values(&[verb])
                .observe(since.elapsed().as_secs_f64());
        }
        let (bytes, closes) = match result {
            Ok(reply) => (reply.render(&self.state.prompt(), self.style), false),
            Err(error) => {
                let closes = error.closes_connection();
                (
                    Reply::Error(error).render(&self.state.prompt(), self.style),
                    closes,
                )
            }
        };
        self.send(bytes, ctx);
        self.recount();
        self.tell_enrolled();
        if closes {
            self.close(ctx);
        }
    }

    /// The one way bytes leave for the client: counted (metrics, backlog) and written. The
    /// requests are gated by the backlog ([`at_common::backlog`]): past 1 MiB unread none is
    /// read until the client has read down to 256 KiB, so it is the client's TCP window that
    /// holds what it sends meanwhile; a client that reads nothing is closed by the idle
    /// timeout (nothing re-arms it), one 64 MiB behind at once.
    fn send(&mut self, bytes: Bytes, ctx: &mut Context<Self>) {
        metrics()
            .bytes
            .with_label_values(&["out"])
            .inc_by(bytes.len() as u64);
        self.backlog.queued(bytes.len());
        self.writer.write(bytes);
        if self.backlog.overflowing() {
            tracing::info!(atsign = %self.me, unread = self.backlog.unread(), "closing a connection that does not read its replies");
            self.close(ctx);
        }
    }

    /// The `state` label this connection belongs under now.
    fn state_label(&self) -> &'static str {
        match self.state.proven() {
            Proven::Owner(_) if self.subscription.is_some() => "monitor",
            Proven::Owner(_) => "owner",
            Proven::Peer(_) => "peer",
            Proven::Nothing => "unauthenticated",
        }
    }

    /// Moves this connection to its current state in `atserver_connections`.
    fn recount(&mut self) {
        let now = self.state_label();
        if self.counted != Some(now) {
            let gauge = &metrics().connections;
            if let Some(before) = self.counted {
                gauge.with_label_values(&[before]).dec();
            }
            gauge.with_label_values(&[now]).inc();
            self.counted = Some(now);
        }
    }

    fn handle_command(&mut self, command: Command, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.current = Some((command.verb(), now));
        if self.hosts.suspensions().is_suspended(&self.me) {
            return self.reply(Err(Suspensions::error(&self.me)), ctx);
        }
        match command {
            Command::Exit => self.close(ctx),
            Command::From(from) => {
                if let Some(config) = &from.client_config {
                    self.style = ErrorStyle::for_client_version(config.version.as_deref());
                }
                if from.atsign == self.me {
                    let reply = authenticate::from(&self.me, &mut self.state, &from, now);
                    return self.reply(Ok(reply), ctx);
                }
                // Another atSign: the owner's block list is checked before anything else,
                // then (when required) that the client's certificate names its server.
                let admitted = self.keystore(ctx).send(AdmitPeer(from.atsign.clone()));
                let peers = self.hosts.peers().clone();
                let names = match (&self.origin, self.limits.peer_certificate_required) {
                    (Origin::Network { client_names, .. }, true) => Some(client_names.clone()),
                    _ => None,
                };
                let claimant = from.atsign.clone();
                let checks = async move {
                    admitted
                        .await
                        .unwrap_or_else(|_| Err(ErrorCode::InternalServerException.into()))?;
                    let Some(names) = names else { return Ok(()) };
                    match peers.certificate_speaks_for(&claimant, &names).await {
                        Ok(true) => Ok(()),
                        Ok(false) => Err(certificate_refused()),
                        Err(error) => {
                            tracing::info!(%claimant, %error, "cannot check the client certificate");
                            Err(certificate_refused())
                        }
                    }
                };
                ctx.wait(checks.into_actor(self).map(move |checked, act, ctx| {
                    let result =
                        checked.map(|()| authenticate::from(&act.me, &mut act.state, &from, now));
                    act.reply(result, ctx);
                }));
            }
            Command::Cram(_) | Command::Pkam(_) => self.prove(command, now, ctx),
            Command::Pol => self.pol(now, ctx),
            Command::Monitor(monitor) => self.monitor(monitor, ctx),
            command @ Command::Enroll(_) => self.enroll(command, now, ctx),
            // Answered here, not by the key store: they touch no data, and noop's wait must not
            // hold up the atSign's other connections.
            Command::Info(info) => {
                let reply = crate::verbs::info(&info, self.limits.started.elapsed());
                self.reply(Ok(reply), ctx);
            }
            Command::Noop(noop) => {
                ctx.wait(
                    async move { crate::verbs::noop(&noop).await }
                        .into_actor(self)
                        .map(|result, act, ctx| act.reply(result, ctx)),
                );
            }
            command => {
                let Some(view) = self.allowed(&command, ctx) else {
                    return;
                };
                let answer = self.run(command, view, ctx);
                ctx.wait(
                    answer
                        .into_actor(self)
                        .map(|result, act, ctx| act.reply(result, ctx)),
                );
            }
        }
    }

    /// `command` run by the atSign's key store with `view`, as this connection asks it; a key
    /// store that cannot be reached is an internal error.
    fn run(
        &mut self,
        command: Command,
        view: access::View,
        ctx: &mut Context<Self>,
    ) -> impl std::future::Future<Output = Result<Reply, AtError>> + 'static {
        let run = Run {
            command,
            view,
            asker: self.state.asker(),
            inbound: self.limits.admission.open(),
            turn: None,
        };
        let sent = self.keystore(ctx).send(run);
        async move {
            sent.await
                .unwrap_or_else(|_| Err(ErrorCode::InternalServerException.into()))
        }
    }

    /// `enroll`: screened here, where who is asking is known, then run by the key store; an
    /// approved `request` makes this connection that enrollment (see `verbs::enroll`).
    fn enroll(&mut self, command: Command, now: Instant, ctx: &mut Context<Self>) {
        let Some(view) = self.allowed(&command, ctx) else {
            return;
        };
        let Command::Enroll(enroll) = &command else {
            unreachable!("only enroll is screened")
        };
        if let Some(answer) = authenticate::screen_enroll(&mut self.state, enroll, now) {
            return self.reply(answer, ctx);
        }
        let enroll = enroll.clone();
        let answer = self.run(command, view, ctx);
        ctx.wait(answer.into_actor(self).map(move |result, act, ctx| {
            let settled = authenticate::settle_enroll(&mut act.state, &enroll, result);
            act.reply(settled.result, ctx);
            if let Some(delay) = settled.close_after {
                act.revoked_itself = true;
                ctx.run_later(delay, |act, ctx| act.close(ctx));
            }
            // A revoked enrollment's connections close, on every node.
            if let Some(ended) = settled.revoked {
                let (monitors, me) = (act.hosts.monitors().clone(), act.me.clone());
                ctx.spawn(
                    async move { monitors.end_enrollment(&me, &ended).await }.into_actor(act),
                );
            }
        }));
    }

    /// `cram`/`pkam`: checked against what the key store holds, unless the atSign's budget of
    /// failed proofs is spent (then refused unchecked, the challenge spent all the same).
    fn prove(&mut self, command: Command, now: Instant, ctx: &mut Context<Self>) {
        // Without a live challenge the proof fails unchecked, as the reference words it; it
        // costs this connection's count, never the atSign's budget.
        if !self.state.has_challenge(&self.me, now) {
            let failed = match &command {
                Command::Cram(cram) => {
                    authenticate::cram(&self.me, &mut self.state, cram, None, now)
                }
                Command::Pkam(pkam) => {
                    authenticate::pkam(&self.me, &mut self.state, pkam, None, None, now)
                }
                _ => unreachable!("only cram and pkam are proved"),
            };
            return self.answer_proof(failed, ctx);
        }
        let source = Source::of(match &self.origin {
            Origin::Network { address, .. } => Some(*address),
            Origin::InProcess => None,
        });
        let admission = match self.limits.auth_throttle.admit(&self.me, source, now) {
            Ok(admission) => admission,
            Err(refusal) => {
                let _ = self.state.take_challenge(&self.me, now);
                return self.answer_proof(Err(refusal), ctx);
            }
        };
        let enrollment_id = match &command {
            Command::Pkam(pkam) => pkam.enrollment_id.clone(),
            _ => None,
        };
        let material = self.keystore(ctx).send(GetAuthMaterial { enrollment_id });
        ctx.wait(material.into_actor(self).map(move |material, act, ctx| {
            let me = act.me.clone();
            let result = match material {
                Ok(Ok(material)) => match &command {
                    Command::Cram(cram) => authenticate::cram(
                        &me,
                        &mut act.state,
                        cram,
                        material.cram_secret.as_deref(),
                        now,
                    ),
                    Command::Pkam(pkam) => authenticate::pkam(
                        &me,
                        &mut act.state,
                        pkam,
                        material.pkam_public_key.as_deref(),
                        material.enrollment.as_ref(),
                        now,
                    ),
                    _ => unreachable!("only cram and pkam are proved"),
                },
                Ok(Err(error)) => Err(error),
                Err(_) => Err(ErrorCode::InternalServerException.into()),
            };
            let failed = result.as_ref().is_err_and(is_failed_proof);
            act.limits.auth_throttle.settle(&me, admission, failed);
            if !act.state.is_owner() {
                return act.answer_proof(result, ctx);
            }
            // Into the atSign's pool of owner connections (AT0012, closing, when it is full of
            // connections in use).
            if let Some(Err(full)) = act.ticket.as_ref().map(|t| t.owner_of(&me)) {
                return act.reply(Err(full), ctx);
            }
            // The owner is in: the atSign's signing keys exist from now on (made once, the
            // first time), before the owner or anyone can look for them.
            let keys = act.keystore(ctx).send(EnsureSigningKeys);
            ctx.wait(keys.into_actor(act).map(move |made, act, ctx| {
                if !matches!(made, Ok(Ok(()))) {
                    tracing::warn!(atsign = %act.me, ?made, "could not make the signing keys; made on first need");
                }
                act.answer_proof(result, ctx);
            }));
        }));
    }

    /// `pol`: the client claims to be the server of the atSign its `from` named. Checked with
    /// that atSign's server ([`crate::peer::pol`]); on success the reply is the new prompt
    /// alone (`@bob@`), on failure AT0401 and the connection stays open, as the reference.
    /// `pol` without a pending challenge is the reference's InvalidRequestException: AT0011,
    /// which closes.
    fn pol(&mut self, now: Instant, ctx: &mut Context<Self>) {
        let Some(challenge) = self.state.take_peer_challenge(&self.me, now) else {
            let error = AtError::with_detail(
                ErrorCode::InternalServerException,
                "pol without a from for another atSign",
            );
            return self.reply(Err(error), ctx);
        };
        let peers = self.hosts.peers().clone();
        let check = async move {
            let claimant = &challenge.claimed;
            let verdict =
                crate::peer::pol::verify(&peers, claimant, &challenge.session_id, &challenge.nonce)
                    .await;
            (challenge.claimed.clone(), verdict)
        };
        ctx.wait(check.into_actor(self).map(|(claimant, verdict), act, ctx| {
            let result = match verdict {
                Ok(true) => match act.ticket.as_ref().map(|t| t.peer_of(&act.me, &claimant)) {
                    Some(Err(full)) => Err(full),
                    _ => {
                        tracing::debug!(me = %act.me, %claimant, "pol succeeded");
                        let prompt = format!("{claimant}@");
                        act.state.prove(Proven::Peer(claimant));
                        Ok(Reply::Raw(prompt))
                    }
                },
                Ok(false) => {
                    tracing::info!(me = %act.me, %claimant, "pol refused: the signature does not verify");
                    Err(pol_failed())
                }
                Err(error) => {
                    tracing::info!(me = %act.me, %claimant, %error, "pol refused: could not check");
                    Err(pol_failed())
                }
            };
            act.reply(result, ctx);
            act.touch();
        }));
    }

    /// Answers a proof. A success clears the count of failures; a failure is answered at once
    /// or after the throttle's delay, and the last one allowed closes the connection.
    fn answer_proof(&mut self, result: Result<Reply, AtError>, ctx: &mut Context<Self>) {
        if !result.as_ref().is_err_and(is_failed_proof) {
            // An APKAM refusal (`error:AT0025:…`) is not a failed proof, but proves nothing.
            if result.is_ok() {
                self.failures = 0;
            }
            self.reply(result, ctx);
            return self.touch();
        }
        self.failures = self.failures.saturating_add(1);
        let penalty = self.limits.auth_throttle.penalty(self.failures);
        if penalty.close {
            tracing::warn!(atsign = %self.me, failures = self.failures, "closing after repeated authentication failures");
        }
        let answer = move |act: &mut Self, ctx: &mut Context<Self>| {
            act.reply(result, ctx);
            if penalty.close {
                act.close(ctx);
            }
        };
        if penalty.delay.is_zero() {
            return answer(self, ctx);
        }
        ctx.wait(
            actix_rt::time::sleep(penalty.delay)
                .into_actor(self)
                .map(move |(), act, ctx| answer(act, ctx)),
        );
    }

    /// The client was active: its idle time starts again (kept by [`Admission`], which tells
    /// it to close when idle too long: [`Close::Idle`]). Also after a reply that authenticates
    /// it, whose idle limit is then the longer one.
    fn touch(&mut self) {
        if let Some(ticket) = &self.ticket {
            ticket.touch();
        }
    }

    /// Closes after what was written has been flushed: stopping the actor at once would drop
    /// a last reply (AT0005, AT0002…) still in the write buffer. The writer's `finished`
    /// stops the actor; the timer is a bound for a peer that stops reading.
    fn close(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.writer.close();
        ctx.run_later(Duration::from_secs(5), |_, ctx| ctx.stop());
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin + 'static> Actor for Connection<IO> {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.keystore.do_send(Detach(self.id));
        if let Some(counted) = self.counted.take() {
            metrics().connections.with_label_values(&[counted]).dec();
        }
    }

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.attach(ctx);
        if let Some(ticket) = &self.ticket {
            ticket.attach(ctx.address().recipient());
        }
        self.send(Bytes::from_static(b"@"), ctx);
        self.recount();
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin + 'static> StreamHandler<Result<String, CodecError>>
    for Connection<IO>
{
    fn handle(&mut self, line: Result<String, CodecError>, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        match line {
            Ok(line) => {
                self.touch();
                metrics()
                    .bytes
                    .with_label_values(&["in"])
                    .inc_by(line.len() as u64 + 1);
                match Command::parse(&line) {
                    Ok(command) => {
                        tracing::debug!(atsign = %self.me, verb = command.verb(), "command");
                        self.dispatch(command, ctx);
                    }
                    Err(error) => {
                        let arrived = Instant::now();
                        self.after_in_flight(ctx, move |act, ctx| {
                            act.current = Some(("invalid", arrived));
                            act.reply(Err(error), ctx)
                        });
                    }
                }
            }
            Err(error) => match error.to_at_error() {
                // The codec has given up on this stream: answer, then close.
                Some(at_error) => self.after_in_flight(ctx, move |act, ctx| {
                    let bytes = Reply::Error(at_error).render(&act.state.prompt(), act.style);
                    act.send(bytes, ctx);
                    act.close(ctx);
                }),
                // A read error: most often a TCP FIN without TLS close_notify (what a client's
                // `shutdown(SHUT_WR)` sends). Commands already read have been answered (a
                // command in flight holds back stream events); flush those replies, then close.
                None => self.after_in_flight(ctx, |act, ctx| act.close(ctx)),
            },
        }
    }

    /// The input ended (the peer half-closed, or the codec gave up): flush, then close.
    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.after_in_flight(ctx, |act, ctx| act.close(ctx));
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin + 'static> Handler<Told> for Connection<IO> {
    type Result = ();

    fn handle(&mut self, told: Told, ctx: &mut Context<Self>) {
        match told {
            Told::Deprovisioned => self.deprovisioned = true,
            // Closed as the reference closes a revoked device's connections: without a word.
            // The connection that revoked itself (`force`) closes on its own clock instead.
            Told::EnrollmentEnded(id) => {
                if self.state.asker().enrollment() == Some(id.as_str()) && !self.revoked_itself {
                    tracing::info!(atsign = %self.me, enrollment = %id, "closing a revoked enrollment's connection");
                    self.close(ctx);
                }
            }
            // Told (AT0024) and closed, as its next command would be.
            Told::Suspended => {
                if !self.closing && self.hosts.suspensions().is_suspended(&self.me) {
                    tracing::debug!(atsign = %self.me, "closing: the atSign was suspended");
                    self.after_in_flight(ctx, |act, ctx| {
                        let bytes = Reply::Error(Suspensions::error(&act.me))
                            .render(&act.state.prompt(), act.style);
                        act.send(bytes, ctx);
                        act.close(ctx);
                    });
                }
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin + 'static> Handler<Close> for Connection<IO> {
    type Result = ();

    fn handle(&mut self, close: Close, ctx: &mut Context<Self>) {
        match close {
            // Another connection took this one's place (it was the oldest unauthenticated, or
            // idle in a full pool): closed without a word, as an idle connection is.
            Close::Evicted => {
                self.ticket = None;
                self.close(ctx);
            }
            Close::Idle => {
                if let Some((idle, true)) = self.ticket.as_ref().map(Ticket::idle) {
                    tracing::debug!(atsign = %self.me, ?idle, "closing an idle connection");
                    self.close(ctx);
                }
            }
            Close::Draining => {
                tracing::debug!(atsign = %self.me, "closing for shutdown");
                self.after_in_flight(ctx, |act, ctx| act.close(ctx));
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin + 'static> WriteHandler<CodecError> for Connection<IO> {
    fn error(&mut self, error: CodecError, _: &mut Self::Context) -> Running {
        tracing::debug!(%error, "write failed");
        Running::Stop
    }
}

/// The reference's answer to a `pol` it cannot verify.
fn pol_failed() -> AtError {
    AtError::with_detail(ErrorCode::Unauthenticated, "Pol Authentication Failed")
}

/// The reference's answer to `from:@other` without a client certificate naming @other's
/// server; the connection stays open (its issue #2424).
fn certificate_refused() -> AtError {
    AtError::with_detail(
        ErrorCode::Unauthenticated,
        "Certificate Verification Failed",
    )
}
