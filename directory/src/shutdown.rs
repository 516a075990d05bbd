//! How a process stops: which signal asked, and on SIGTERM the pause before it stops accepting.
//! Shared by the atDirectory and the atServer.
//!
//! Kubernetes removes a terminating pod from its Service's endpoints a few seconds after it
//! sends SIGTERM; until then the load balancer still sends new clients. So on SIGTERM the
//! process first turns `/readyz` to 503 and keeps accepting and serving for its
//! `shutdown_pause_millis`, and only then stops accepting: no client is refused on the way.
//! SIGINT (Ctrl-C, someone at a terminal) never pauses.

use std::time::Duration;

use tokio::sync::watch;

/// Which signal asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT: someone at a terminal (Ctrl-C).
    Interrupt,
    /// SIGTERM: what Kubernetes and systemd send.
    Terminate,
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn signal() -> Signal {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        tracing::warn!("cannot watch SIGTERM; only Ctrl-C stops the process");
        let _ = tokio::signal::ctrl_c().await;
        return Signal::Interrupt;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Signal::Interrupt,
        _ = term.recv() => Signal::Terminate,
    }
}

/// One item once `draining` is (or turns) true: what each connection's actor adds as a stream
/// so that it closes when the process drains. An actor holds stream items back while a
/// request is in flight (`ctx.wait`), so that request is answered before the close.
pub fn drained(draining: watch::Receiver<bool>) -> impl futures_util::Stream<Item = ()> {
    futures_util::stream::unfold(Some(draining), |state| async move {
        let mut draining = state?;
        while !*draining.borrow_and_update() {
            draining.changed().await.ok()?;
        }
        Some(((), None))
    })
}

/// After `signal`: readiness off (`stopping`), then, for SIGTERM, `pause` more of serving.
pub async fn pause(signal: Signal, pause: Duration, stopping: &watch::Sender<bool>) {
    let _ = stopping.send(true);
    if signal == Signal::Terminate && !pause.is_zero() {
        tracing::info!(?pause, "told to stop; accepting a while longer");
        tokio::time::sleep(pause).await;
    }
}

/// Waits until `open()` connections are left none, or `grace` is over (then says how many
/// are cut off): the end of a drain, after accepting stopped and the connections were told.
pub async fn closed(open: impl Fn() -> usize, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    while open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = open();
    if left > 0 {
        tracing::warn!(left, "grace period over; closing the remaining connections");
    }
}
