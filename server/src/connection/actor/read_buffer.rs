//! A connection's request stream, which holds no read buffer while the connection waits.
//!
//! Most connections are idle most of the time (a device's monitor, for days), and a buffer
//! held all that time is what a node's capacity is counted in. When the stream waits for input
//! with nothing buffered, its buffer is released; when it is polled again (input arrived), a
//! buffer of [`super::READ_BUFFER_START`] is taken for it, and grows for a longer request.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_util::Stream;
use tokio::io::AsyncRead;
use tokio_util::codec::{Decoder, FramedRead};

/// [`FramedRead`] that releases its buffer while it waits with nothing buffered.
pub(super) struct Releasing<R, D>(pub FramedRead<R, D>);

impl<R: AsyncRead + Unpin, D: Decoder + Unpin> Stream for Releasing<R, D> {
    type Item = Result<D::Item, D::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let buffer = self.0.read_buffer_mut();
        if buffer.capacity() == 0 {
            buffer.reserve(super::READ_BUFFER_START);
        }
        let next = Pin::new(&mut self.0).poll_next(cx);
        if next.is_pending() {
            let buffer = self.0.read_buffer_mut();
            if buffer.is_empty() {
                *buffer = BytesMut::new();
            }
        }
        next
    }
}
