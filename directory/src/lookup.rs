//! The one request of the atDirectory, and its answers.
//!
//! # Format
//! A request is one line: an atSign with or without its `@`, in any case (`alice`, `@Alice`),
//! or `@exit`. Answers are `host:port\r\n@` for a registered atSign and `null\r\n@` for
//! anything else, exactly as the reference root writes them (CRLF, then the prompt `@`).

use at_common::{Address, AtSign};
use bytes::Bytes;

/// The prompt, written on connect and after every answer.
pub const PROMPT: &[u8] = b"@";

/// What a request line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Look this atSign up.
    Lookup(AtSign),
    /// Close the connection, without an answer.
    Exit,
    /// An empty line: what clients send to check the connection is alive (the C SDK does,
    /// with a 3 s read timeout). Answered `null` at once and not counted as a miss: it names
    /// no atSign, so throttling it protects nothing.
    Empty,
    /// Not an atSign: answered like a miss, so garbage reveals nothing either.
    Invalid,
}

impl Request {
    /// Reads one request line (its terminator already removed); surrounding whitespace is ignored.
    pub fn parse(line: &str) -> Request {
        let text = line.trim();
        if text.is_empty() {
            return Request::Empty;
        }
        if text.eq_ignore_ascii_case("@exit") {
            return Request::Exit;
        }
        AtSign::parse(text).map_or(Request::Invalid, Request::Lookup)
    }
}

/// `host:port\r\n@`.
pub fn found(address: &Address) -> Bytes {
    Bytes::from(format!("{address}\r\n@"))
}

/// `null\r\n@`.
pub fn not_found() -> Bytes {
    Bytes::from_static(b"null\r\n@")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atsigns_are_accepted_with_or_without_at_and_in_any_case() {
        let alice = AtSign::parse("alice").unwrap();
        for line in ["alice", "@alice", "ALICE", "@Alice", "  alice\t", "alice\r"] {
            assert_eq!(
                Request::parse(line),
                Request::Lookup(alice.clone()),
                "{line:?}"
            );
        }
    }

    #[test]
    fn exit_is_recognised_in_any_case() {
        assert_eq!(Request::parse("@exit"), Request::Exit);
        assert_eq!(Request::parse("@EXIT "), Request::Exit);
        // Without the `@` it is the atSign `@exit`, as for the reference root.
        assert!(matches!(Request::parse("exit"), Request::Lookup(_)));
    }

    #[test]
    fn blank_lines_are_empty_requests() {
        for line in ["", "   ", "\t", "\r"] {
            assert_eq!(Request::parse(line), Request::Empty, "{line:?}");
        }
    }

    #[test]
    fn anything_else_is_invalid() {
        for line in ["@", "a b", "al:ice", "@@alice", "from:@alice", "\u{0}"] {
            assert_eq!(Request::parse(line), Request::Invalid, "{line:?}");
        }
    }

    #[test]
    fn answers_are_crlf_then_prompt() {
        let address = Address::parse("vip.ve.atsign.zone:25000").unwrap();
        assert_eq!(&found(&address)[..], b"vip.ve.atsign.zone:25000\r\n@");
        assert_eq!(&not_found()[..], b"null\r\n@");
    }
}
