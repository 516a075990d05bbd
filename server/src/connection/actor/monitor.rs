//! A connection turned monitor (docs/clients.md#monitor): subscribed with its atSign's key store,
//! it streams the stored notifications newer than `epochMillis` and then each one as it arrives,
//! one `notification: {json}` line each, and writes no prompts; other commands are still
//! answered.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use actix::prelude::*;
use at_common::error::{AtError, ErrorCode};
use at_common::metadata::now_ms;
use at_common::verb::Command;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};

use super::replayed::Replayed;
use super::Connection;
use crate::keystore::{Subscribe, Subscribed, Subscription};

impl<IO: AsyncRead + AsyncWrite + Unpin + 'static> Connection<IO> {
    /// `monitor`: from now on this connection streams the owner's received notifications
    /// (stored ones newer than `epochMillis` first), one `notification: {json}` line each,
    /// and writes no prompts. Other commands are still answered.
    pub(super) fn monitor(&mut self, monitor: at_common::verb::Monitor, ctx: &mut Context<Self>) {
        if self
            .allowed(&Command::Monitor(monitor.clone()), ctx)
            .is_none()
        {
            return;
        }
        if self.subscription.is_some() {
            return; // already streaming
        }
        let filter = match monitor.regex.as_deref().map(regex::Regex::new).transpose() {
            Ok(filter) => filter,
            Err(error) => return self.reply(Err(AtError::syntax(error.to_string())), ctx),
        };
        self.state.start_monitoring();
        self.current = None;
        self.recount();
        // Subscribed (with the atSign's key store) before the replay: what arrives meanwhile
        // waits in the channel. Later commands wait for the subscription.
        let subscribe = Subscribe {
            filter,
            self_notifications: monitor.self_notifications,
            enrollment: self.state.asker().enrollment().map(str::to_string),
        };
        let keystore = self.keystore(ctx);
        ctx.wait(
            keystore
                .send(subscribe)
                .into_actor(self)
                .map(move |subscribed, act, ctx| match subscribed {
                    Ok(Ok(Subscribed { id, lines, view })) => {
                        act.subscription = Some(Subscription {
                            keystore: act.keystore.clone(),
                            id,
                        });
                        act.stream_monitor(monitor.epoch_millis, view, lines, ctx);
                    }
                    Ok(Err(refused)) => act.reply(Err(refused), ctx),
                    Err(_) => act.reply(Err(ErrorCode::InternalServerException.into()), ctx),
                }),
        );
    }

    /// The monitor's lines: the replay first (read page by page as it goes out), then what
    /// arrives meanwhile and after on `lines`: each notification shown once (what arrived
    /// between subscribing and reading the store is in both). Neither is taken while the
    /// client is behind: the monitor's queue fills instead.
    fn stream_monitor(
        &mut self,
        replay_after: Option<at_common::metadata::EpochMillis>,
        view: crate::notifications::MonitorView,
        lines: futures_channel::mpsc::Receiver<Bytes>,
        ctx: &mut Context<Self>,
    ) {
        let shown = Rc::new(RefCell::new(Replayed::default()));
        let replayed = match replay_after {
            Some(after) => self
                .hosts
                .monitors()
                .replay(&self.me, after, view, now_ms())
                .boxed(),
            None => futures_util::stream::empty().boxed(),
        };
        let noted = Rc::clone(&shown);
        let replayed = replayed.map(move |line| {
            if let Some(id) = crate::notifications::id_of(&line) {
                noted.borrow_mut().shown(id);
            }
            MonitorLine(line)
        });
        // Polled once the replay is over.
        let live = futures_util::stream::unfold((lines, shown), |(mut lines, shown)| async move {
            loop {
                let deadline = shown.borrow_mut().deadline(Instant::now());
                let line = match deadline {
                    Some(deadline) => {
                        match tokio::time::timeout_at(deadline.into(), lines.next()).await {
                            Ok(line) => line?,
                            Err(_) => {
                                shown.borrow_mut().forget();
                                continue;
                            }
                        }
                    }
                    None => lines.next().await?,
                };
                let id = crate::notifications::id_of(&line);
                if !shown.borrow_mut().again(id, Instant::now()) {
                    return Some((MonitorLine(line), (lines, shown)));
                }
            }
        });
        let lines = replayed.chain(live);
        ctx.add_stream(self.backlog.gate(Box::pin(lines)));
    }
}

/// A notification line for a monitor connection.
struct MonitorLine(Bytes);

impl<IO: AsyncRead + AsyncWrite + Unpin + 'static> StreamHandler<MonitorLine> for Connection<IO> {
    fn handle(&mut self, MonitorLine(line): MonitorLine, ctx: &mut Context<Self>) {
        if !self.closing {
            self.send(line, ctx);
        }
    }

    /// The monitor's queue was dropped: it overflowed (the client did not read fast enough;
    /// [`crate::notifications::MONITOR_QUEUE`]) or the node is shutting down. Either way the
    /// connection closes; the client reconnects with `monitor:<last epochMillis>` and gets
    /// what it missed from the store.
    fn finished(&mut self, ctx: &mut Context<Self>) {
        tracing::debug!(atsign = %self.me, "monitor queue gone; closing");
        self.close(ctx);
    }
}
