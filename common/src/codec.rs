//! `LineCodec`: bytes to request lines, and response bytes out. No protocol policy lives here.
//!
//! # Format
//! A request is UTF-8 text ended by `\n`; one `\r` before the `\n` is dropped, so `\r\n`
//! clients work too. A line longer than the configured limit (the spec's `bufferLimit`) is an
//! error as soon as the limit is passed, without waiting for its end, so a peer cannot make us
//! buffer without bound. What to answer and whether to close is the caller's decision
//! (the atServer answers AT0005 and closes; the atDirectory closes, as the reference root does).
//!
//! Incomplete input is `Ok(None)`; only a real fault is `Err`. Once `decode` has returned an
//! error the stream must not be read further (tokio-util's `FramedRead` ends it for us).
//!
//! # A node's budget
//! The per-line limit bounds one connection; a [`BufferBudget`] bounds them all together:
//! every connection's unfinished request past its first [`UNCHARGED`] bytes is charged to the
//! node's budget, and a line that would take more than is left fails ([`CodecError::Busy`]).
//! So many clients each sending most of a maximal line cannot together exhaust the node's
//! memory, while ordinary commands (shorter than [`UNCHARGED`]) never touch the budget.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::{AtError, ErrorCode};

/// Buffered bytes of one connection's unfinished request that are not charged to the budget.
pub const UNCHARGED: usize = 64 * 1024;

/// The bytes of unfinished requests that all of a node's connections may hold beyond
/// [`UNCHARGED`] each; cheap to clone (one per node).
#[derive(Debug, Clone)]
pub struct BufferBudget {
    held: Arc<AtomicUsize>,
    max: usize,
}

impl BufferBudget {
    pub fn new(max: usize) -> BufferBudget {
        BufferBudget {
            held: Arc::default(),
            max,
        }
    }

    /// Bytes charged now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    fn take(&self, n: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(n).filter(|total| *total <= self.max)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Splits input into lines of at most `max_line` bytes (terminator not counted).
#[derive(Debug)]
pub struct LineCodec {
    max_line: usize,
    /// Where to resume the search for `\n`, so a long line arriving in many reads is scanned once.
    scanned: usize,
    /// The node's budget, and what this connection holds of it now.
    budget: Option<BufferBudget>,
    charged: usize,
}

impl Clone for LineCodec {
    /// A codec in the same state, holding nothing of the budget yet (charges are per buffer).
    fn clone(&self) -> LineCodec {
        LineCodec {
            max_line: self.max_line,
            scanned: self.scanned,
            budget: self.budget.clone(),
            charged: 0,
        }
    }
}

impl Drop for LineCodec {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.give(self.charged);
        }
    }
}

/// Why the input cannot be framed into lines.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// A line is longer than the buffer limit.
    #[error("line longer than the buffer limit of {limit} bytes")]
    TooLong { limit: usize },
    /// The node's [`BufferBudget`] has no room for more of this line.
    #[error("the node's request buffers are full")]
    Busy,
    /// A complete line is not valid UTF-8.
    #[error("line is not valid UTF-8")]
    InvalidUtf8,
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl CodecError {
    /// The protocol error an atServer answers with before closing: AT0005 for an overlong
    /// line (the spec's "Buffer limit exceeded"), AT0003 for bytes that are not text.
    /// `None` for a socket failure, where there is nobody left to answer.
    pub fn to_at_error(&self) -> Option<AtError> {
        match self {
            CodecError::TooLong { limit } => Some(AtError::with_detail(
                ErrorCode::BufferLimitExceeded,
                format!("line longer than {limit} bytes"),
            )),
            CodecError::Busy => Some(AtError::with_detail(
                ErrorCode::BufferLimitExceeded,
                "the server's request buffers are full; send it again later",
            )),
            CodecError::InvalidUtf8 => Some(AtError::syntax("command is not valid UTF-8")),
            CodecError::Io(_) => None,
        }
    }
}

impl LineCodec {
    /// A codec refusing lines longer than `max_line` bytes.
    pub fn new(max_line: usize) -> LineCodec {
        LineCodec {
            max_line,
            scanned: 0,
            budget: None,
            charged: 0,
        }
    }

    /// The same, charging what this connection buffers beyond [`UNCHARGED`] to `budget`.
    pub fn with_budget(max_line: usize, budget: BufferBudget) -> LineCodec {
        LineCodec {
            budget: Some(budget),
            ..LineCodec::new(max_line)
        }
    }

    /// Charges the budget for `buffered` bytes held now (giving back what is no longer held);
    /// `false` when the budget has no room for them.
    fn charge(&mut self, buffered: usize) -> bool {
        let Some(budget) = &self.budget else {
            return true;
        };
        let wanted = buffered.saturating_sub(UNCHARGED);
        if wanted > self.charged {
            if !budget.take(wanted - self.charged) {
                return false;
            }
        } else {
            budget.give(self.charged - wanted);
        }
        self.charged = wanted;
        true
    }

    /// The configured limit, in bytes.
    pub fn max_line(&self) -> usize {
        self.max_line
    }
}

impl Decoder for LineCodec {
    type Item = String;
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<String>, CodecError> {
        let line = self.split_line(buf)?;
        // A complete line is answered even when what follows it does not fit: the next call
        // (made before anything more is read) refuses that.
        match self.charge(buf.len()) || line.is_some() {
            true => Ok(line),
            false => Err(CodecError::Busy),
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<String>, CodecError> {
        // A last line without its `\n` was never sent as a request: drop it.
        let line = self.decode(buf)?;
        if line.is_none() {
            buf.advance(buf.len());
            self.scanned = 0;
            self.charge(0);
        }
        Ok(line)
    }
}

impl LineCodec {
    /// The next complete line of `buf`, split off it.
    fn split_line(&mut self, buf: &mut BytesMut) -> Result<Option<String>, CodecError> {
        let newline = buf[self.scanned..].iter().position(|b| *b == b'\n');
        let Some(offset) = newline else {
            self.scanned = buf.len();
            // `\r` may be followed by the `\n` still to come, so it does not count yet.
            let pending = buf.len() - usize::from(buf.last() == Some(&b'\r'));
            if pending > self.max_line {
                return Err(CodecError::TooLong {
                    limit: self.max_line,
                });
            }
            return Ok(None);
        };
        let end = self.scanned + offset;
        self.scanned = 0;
        let mut line = buf.split_to(end + 1);
        line.truncate(end);
        if line.last() == Some(&b'\r') {
            line.truncate(end - 1);
        }
        if line.len() > self.max_line {
            return Err(CodecError::TooLong {
                limit: self.max_line,
            });
        }
        String::from_utf8(line.to_vec())
            .map(Some)
            .map_err(|_| CodecError::InvalidUtf8)
    }
}

/// Responses are rendered elsewhere ([`crate::reply`]); the codec writes their bytes as they are,
/// so a reply and its prompt handed over together leave in one write.
impl Encoder<Bytes> for LineCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.put(item);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_lines_beyond_the_uncharged_part_share_the_node_budget() {
        let budget = BufferBudget::new(100_000);
        let max = 1 << 20;
        let mut one = LineCodec::with_budget(max, budget.clone());
        let mut two = LineCodec::with_budget(max, budget.clone());
        // Ordinary commands never touch it.
        assert_eq!(
            decode_all(&mut one, b"scan\n"),
            vec![Ok("scan".to_string())]
        );
        assert_eq!(budget.held(), 0);
        // Most of a long line: charged past the first UNCHARGED bytes.
        let mut first = BytesMut::from(&vec![b'a'; UNCHARGED + 60_000][..]);
        assert!(one.decode(&mut first).unwrap().is_none());
        assert_eq!(budget.held(), 60_000);
        // Another connection's long line does not fit beside it: refused, the first kept.
        let mut second = BytesMut::from(&vec![b'b'; UNCHARGED + 50_000][..]);
        assert!(matches!(two.decode(&mut second), Err(CodecError::Busy)));
        assert_eq!(budget.held(), 60_000);
        assert_eq!(
            CodecError::Busy.to_at_error().unwrap().code(),
            crate::error::ErrorCode::BufferLimitExceeded
        );
        // A complete line ahead of a part that does not fit is still answered; the part is not.
        let mut both = BytesMut::from(&b"scan\n"[..]);
        both.extend_from_slice(&vec![b'd'; UNCHARGED + 50_000]);
        let mut four = LineCodec::with_budget(max, budget.clone());
        assert_eq!(four.decode(&mut both).unwrap().as_deref(), Some("scan"));
        assert!(matches!(four.decode(&mut both), Err(CodecError::Busy)));
        drop(four);
        // The first line ends: what it held goes back, and the other's fits now.
        first.extend_from_slice(b"\n");
        assert_eq!(
            one.decode(&mut first).unwrap().unwrap().len(),
            UNCHARGED + 60_000
        );
        assert_eq!(budget.held(), 0);
        let mut third = BytesMut::from(&vec![b'c'; UNCHARGED + 50_000][..]);
        let mut three = LineCodec::with_budget(max, budget.clone());
        assert!(three.decode(&mut third).unwrap().is_none());
        assert_eq!(budget.held(), 50_000);
        // A connection that goes away gives back what it held.
        drop(three);
        assert_eq!(budget.held(), 0);
    }

    fn decode_all(codec: &mut LineCodec, input: &[u8]) -> Vec<Result<String, String>> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(line)) => out.push(Ok(line)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn lines_end_at_newline_and_a_carriage_return_is_tolerated() {
        let mut codec = LineCodec::new(100);
        assert_eq!(
            decode_all(&mut codec, b"from:@alice\nscan\r\nhalf"),
            vec![Ok("from:@alice".to_string()), Ok("scan".to_string())]
        );
    }

    #[test]
    fn incomplete_line_waits_for_more_bytes() {
        let mut codec = LineCodec::new(100);
        let mut buf = BytesMut::from(&b"llook"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"up:a@b\n");
        assert_eq!(
            codec.decode(&mut buf).unwrap().as_deref(),
            Some("llookup:a@b")
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn line_of_exactly_the_limit_passes_and_one_more_byte_fails() {
        let mut codec = LineCodec::new(5);
        assert_eq!(
            decode_all(&mut codec, b"abcde\r\n"),
            vec![Ok("abcde".into())]
        );
        let mut codec = LineCodec::new(5);
        assert!(matches!(
            codec.decode(&mut BytesMut::from(&b"abcdef\n"[..])),
            Err(CodecError::TooLong { limit: 5 })
        ));
    }

    #[test]
    fn overlong_line_fails_before_its_newline_arrives() {
        let mut codec = LineCodec::new(5);
        let mut buf = BytesMut::from(&b"abcde\r"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"x");
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::TooLong { limit: 5 })
        ));
    }

    #[test]
    fn invalid_utf8_is_an_error_not_a_panic() {
        let mut codec = LineCodec::new(100);
        assert!(matches!(
            codec.decode(&mut BytesMut::from(&b"\xff\xfe\n"[..])),
            Err(CodecError::InvalidUtf8)
        ));
    }

    #[test]
    fn unterminated_last_line_is_dropped_at_eof() {
        let mut codec = LineCodec::new(100);
        let mut buf = BytesMut::from(&b"scan"[..]);
        assert!(codec.decode_eof(&mut buf).unwrap().is_none());
        assert!(buf.is_empty());
    }

    #[test]
    fn overlong_lines_map_to_at0005_which_closes_the_connection() {
        let error = CodecError::TooLong { limit: 5 }.to_at_error().unwrap();
        assert_eq!(error.code(), ErrorCode::BufferLimitExceeded);
        assert_eq!(error.code().code(), "AT0005");
        assert!(error.closes_connection());
        let not_text = CodecError::InvalidUtf8.to_at_error().unwrap();
        assert_eq!(not_text.code(), ErrorCode::InvalidSyntax);
        assert!(CodecError::Io(std::io::ErrorKind::BrokenPipe.into())
            .to_at_error()
            .is_none());
    }

    #[test]
    fn encoder_writes_bytes_unchanged() {
        let mut codec = LineCodec::new(10);
        let mut dst = BytesMut::new();
        codec
            .encode(Bytes::from_static(b"data:1\n@alice@"), &mut dst)
            .unwrap();
        assert_eq!(&dst[..], b"data:1\n@alice@");
    }
}
