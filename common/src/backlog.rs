//! `Backlog`: how much of what a connection wrote its peer the peer has not read yet, so that a
//! peer that sends requests but never reads the answers cannot make a server buffer without
//! bound (backpressure). Both binaries' connections use it the same way:
//!
//! - every reply is [`Backlog::queued`] when handed to the connection's writer, and the
//!   writer's socket is wrapped in [`Counted`], which records what the socket took;
//! - the connection's stream of request lines is [`Backlog::gate`]d: past [`PAUSE_BYTES`]
//!   unread it yields no further request (and so reads no more from the socket) until the
//!   backlog is down to [`RESUME_BYTES`], so the peer's own TCP window holds its further
//!   requests, not our memory; the writer keeps writing meanwhile. Any other stream that
//!   writes to the peer (a monitor's notifications) is gated the same way, so its own bounded
//!   queue fills instead;
//! - past [`CLOSE_BYTES`] the connection is closed, and a paused connection that reads
//!   nothing is closed by its idle timeout (no request arrives to re-arm it).
//!
//! Single-threaded by design (an actor's connection and its socket live on one thread).

use std::cell::{Cell, RefCell};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures_util::Stream;
use tokio::io::AsyncWrite;

/// Unread bytes past which a connection stops reading requests.
pub const PAUSE_BYTES: usize = 1024 * 1024;

/// Unread bytes at or below which a paused connection reads requests again.
pub const RESUME_BYTES: usize = 256 * 1024;

/// Unread bytes past which a connection is closed: a peer this far behind is not reading
/// (one reply alone may be larger than [`PAUSE_BYTES`]: a value is up to the line limit).
pub const CLOSE_BYTES: usize = 64 * 1024 * 1024;

/// The counts of one connection; cheap to clone (shared by the connection and its socket).
#[derive(Clone, Default)]
pub struct Backlog(Rc<Inner>);

#[derive(Default)]
struct Inner {
    queued: Cell<usize>,
    written: Cell<usize>,
    /// What waits for the peer to read (each gated stream of the connection).
    wakers: RefCell<Vec<Waker>>,
}

impl Backlog {
    /// Counts `bytes` handed to the writer.
    pub fn queued(&self, bytes: usize) {
        let inner = &self.0;
        inner.queued.set(inner.queued.get().saturating_add(bytes));
    }

    /// Bytes handed to the writer that the socket has not taken yet.
    pub fn unread(&self) -> usize {
        self.0.queued.get().saturating_sub(self.0.written.get())
    }

    /// Whether the peer is so far behind that the connection should close.
    pub fn overflowing(&self) -> bool {
        self.unread() > CLOSE_BYTES
    }

    /// `requests` gated by this backlog: see the module docs.
    pub fn gate<S>(&self, requests: S) -> Gated<S> {
        Gated {
            inner: requests,
            backlog: self.clone(),
            paused: false,
        }
    }

    /// `writer` counted into this backlog.
    pub fn count<W>(&self, writer: W) -> Counted<W> {
        Counted {
            inner: writer,
            backlog: self.clone(),
        }
    }

    fn took(&self, bytes: usize) {
        let inner = &self.0;
        inner.written.set(inner.written.get().saturating_add(bytes));
        if self.unread() <= RESUME_BYTES {
            for waker in inner.wakers.borrow_mut().drain(..) {
                waker.wake();
            }
        }
    }
}

/// A stream of requests that waits while its connection's peer is too far behind.
pub struct Gated<S> {
    inner: S,
    backlog: Backlog,
    paused: bool,
}

impl<S: Stream + Unpin> Stream for Gated<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = &mut *self;
        let unread = this.backlog.unread();
        this.paused = match this.paused {
            true => unread > RESUME_BYTES,
            false => unread > PAUSE_BYTES,
        };
        if this.paused {
            // Woken by the writer once the peer has read enough.
            let mut wakers = this.backlog.0.wakers.borrow_mut();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_next(cx)
    }
}

/// A writer whose taken bytes are counted into a [`Backlog`].
pub struct Counted<W> {
    inner: W,
    backlog: Backlog,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Counted<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &written {
            this.backlog.took(*n);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn unread_bytes_are_what_the_socket_has_not_taken() {
        let backlog = Backlog::default();
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let mut writer = backlog.count(near);
        let reply = vec![b'x'; 10_000];
        backlog.queued(reply.len());
        assert_eq!(backlog.unread(), 10_000);
        writer.write_all(&reply).await.unwrap();
        assert_eq!(backlog.unread(), 0);
        let mut read = vec![0; 10_000];
        far.read_exact(&mut read).await.unwrap();
    }

    #[tokio::test]
    async fn past_the_pause_mark_requests_wait_until_the_peer_has_read_enough() {
        use std::task::Poll;
        let backlog = Backlog::default();
        let mut requests = backlog.gate(futures_util::stream::iter(1..=3));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut next = |requests: &mut Gated<_>| Pin::new(requests).poll_next(&mut cx);
        assert_eq!(next(&mut requests), Poll::Ready(Some(1)));
        backlog.queued(PAUSE_BYTES + 1);
        assert_eq!(next(&mut requests), Poll::Pending);
        // Read below the pause mark but above the resume mark: still waiting.
        backlog.took(PAUSE_BYTES + 1 - RESUME_BYTES - 1);
        assert_eq!(next(&mut requests), Poll::Pending);
        backlog.took(1);
        assert_eq!(next(&mut requests), Poll::Ready(Some(2)));
        backlog.queued(CLOSE_BYTES + 1);
        assert!(backlog.overflowing());
    }
}
