//! A connection's request stream, whose read buffer is given back while the connection waits.
//!
//! Most connections are idle most of the time (a device's monitor, for days), and a buffer
//! grown for one longer request would otherwise be held all that time. When the stream waits
//! for input with nothing buffered, a buffer grown past [`super::READ_BUFFER_START`] is
//! released; the next request starts a small one again.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_util::Stream;
use tokio::io::AsyncRead;
use tokio_util::codec::{Decoder, FramedRead};

/// [`FramedRead`] that releases its grown buffer while it waits with nothing buffered.
pub(super) struct Releasing<R, D>(pub FramedRead<R, D>);

impl<R: AsyncRead + Unpin, D: Decoder + Unpin> Stream for Releasing<R, D> {
    type Item = Result<D::Item, D::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = Pin::new(&mut self.0).poll_next(cx);
        if next.is_pending() {
            let buffer = self.0.read_buffer_mut();
            if buffer.is_empty() && buffer.capacity() > super::READ_BUFFER_START {
                *buffer = BytesMut::with_capacity(super::READ_BUFFER_START);
            }
        }
        next
    }
}
