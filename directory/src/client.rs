//! Talking to atProtocol servers as a client does: where an atSign lives (a directory's
//! answer), then a line-by-line conversation with an atServer. Used by the status checks and by
//! atServers talking to each other (`at_server::peer`).
//!
//! Every read is bounded in size ([`Conversation::new`]'s `max_reply`); callers bound time
//! (`tokio::time::timeout`), so a peer that never answers or streams garbage costs a bounded
//! wait and buffer, then a [`Failure`].

use at_common::status;
use at_common::{Address, AtSign};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Why a conversation stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Could not talk: not reachable, TLS refused, closed, or silent past the timeout.
    Unreachable(String),
    /// Talked, but not the protocol.
    Protocol(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(why) => write!(f, "unreachable: {why}"),
            Failure::Protocol(why) => write!(f, "protocol: {why}"),
        }
    }
}

/// A TLS conversation with `address`, verified against its host name (or IP).
pub async fn connect(
    tls: &TlsConnector,
    address: &Address,
    max_reply: usize,
) -> Result<Conversation<TlsStream<TcpStream>>, Failure> {
    Ok(Conversation::new(
        tls_stream(tls, address).await?,
        max_reply,
    ))
}

/// A TLS connection to `address`, verified against its host name (or IP).
pub async fn tls_stream(
    tls: &TlsConnector,
    address: &Address,
) -> Result<TlsStream<TcpStream>, Failure> {
    let unreachable = |what: &str, e: &dyn std::fmt::Display| {
        Failure::Unreachable(format!("{what} {address}: {e}"))
    };
    let name = ServerName::try_from(address.host().to_string())
        .map_err(|e| unreachable("host name of", &e))?;
    let tcp = TcpStream::connect((address.host(), address.port()))
        .await
        .map_err(|e| unreachable("connecting to", &e))?;
    let _ = tcp.set_nodelay(true);
    tls.connect(name, tcp)
        .await
        .map_err(|e| unreachable("TLS with", &e))
}

/// Asks the directory at `directory` where `at_sign` lives: its `host:port`, or `None` when
/// the directory has no such atSign. Unbounded in time: callers wrap it in a timeout.
pub async fn locate(
    tls: &TlsConnector,
    directory: &Address,
    at_sign: &AtSign,
) -> Result<Option<Address>, Failure> {
    let mut conversation = connect(tls, directory, 4096).await?;
    // The directory takes the name without its `@`, as the SDKs send it.
    let answer = conversation.ask(at_sign.name()).await?;
    conversation.close(b"@exit\n").await;
    status::read_directory_answer(&answer).map_err(Failure::Protocol)
}

/// How much room a read of replies has at least.
const READ_ROOM: usize = 16 * 1024;

/// Request lines out, reply lines in. Prompts (`@`, or `@<atSign>@` once authenticated,
/// written after every reply) end up at the start of the next line read, and are dropped there.
pub struct Conversation<S> {
    stream: S,
    buffer: Vec<u8>,
    /// How much of `buffer` is known to hold no `\n`: each read scans only what it added, so
    /// a long reply costs linear time, not quadratic.
    searched: usize,
    max_reply: usize,
    /// The prompt after authentication (`@alice@`), once there is one.
    prompt: Option<String>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conversation<S> {
    /// A conversation over `stream`; a reply longer than `max_reply` bytes is a
    /// [`Failure::Protocol`].
    pub fn new(stream: S, max_reply: usize) -> Self {
        Conversation {
            stream,
            buffer: Vec::new(),
            searched: 0,
            max_reply,
            prompt: None,
        }
    }

    /// Sends `line` and returns the reply line, without prompt, `\r` or `\n`.
    pub async fn ask(&mut self, line: &str) -> Result<String, Failure> {
        self.send(line).await?;
        self.read_line().await
    }

    /// Sends `pol` and waits for its answer: the prompt `@<atSign>@` alone (no newline) on
    /// success, which then prefixes every later reply; an error line otherwise.
    pub async fn pol(&mut self, as_atsign: &AtSign) -> Result<(), Failure> {
        let wanted = format!("{as_atsign}@");
        self.send("pol").await?;
        loop {
            // Skip the `@` left from `from`'s reply, up to where the wanted prompt may start.
            let mut at = 0;
            while self.buffer[at..].starts_with(b"@")
                && !self.buffer[at..].starts_with(wanted.as_bytes())
            {
                at += 1;
            }
            if self.buffer[at..].starts_with(wanted.as_bytes()) {
                self.buffer.drain(..at + wanted.len());
                self.searched = 0;
                self.prompt = Some(wanted);
                return Ok(());
            }
            if let Some(end) = self.newline() {
                let line = String::from_utf8_lossy(&self.buffer[at.min(end)..end]);
                return Err(Failure::Protocol(format!("pol answered {:?}", line.trim())));
            }
            self.fill().await?;
        }
    }

    async fn send(&mut self, line: &str) -> Result<(), Failure> {
        let closed = |e: std::io::Error| Failure::Unreachable(format!("connection: {e}"));
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(closed)?;
        self.stream.flush().await.map_err(closed)
    }

    /// Says goodbye and closes TLS; the answer is already known, so failures don't matter.
    pub async fn close(mut self, goodbye: &[u8]) {
        let _ = self.stream.write_all(goodbye).await;
        let _ = self.stream.shutdown().await;
    }

    /// The conversation split in two, for requests written while earlier ones wait for their
    /// replies (pipelining): the stream's writing half, and the reading half as a conversation
    /// that only reads ([`Conversation::read_line`]), with what was already read and the prompt.
    pub fn split(self) -> (WriteHalf<S>, Conversation<ReadHalf<S>>) {
        let (read, write) = tokio::io::split(self.stream);
        let replies = Conversation {
            stream: read,
            buffer: self.buffer,
            searched: self.searched,
            max_reply: self.max_reply,
            prompt: self.prompt,
        };
        (write, replies)
    }
}

/// Reading replies needs only the reading side.
impl<S: AsyncRead + Unpin> Conversation<S> {
    /// The next reply line, prompts dropped.
    pub async fn read_line(&mut self) -> Result<String, Failure> {
        loop {
            if let Some(end) = self.newline() {
                let raw: Vec<u8> = self.buffer.drain(..=end).collect();
                self.searched = 0;
                let mut text = String::from_utf8(raw)
                    .map_err(|_| Failure::Protocol("a reply that is not UTF-8".into()))?;
                let start = self.prompt_length(text.as_bytes());
                text.drain(..start);
                return Ok(text.trim_end().to_string());
            }
            self.fill().await?;
        }
    }

    /// Where the first `\n` of the buffer is, scanning only bytes not scanned before.
    fn newline(&mut self) -> Option<usize> {
        let found = self.buffer[self.searched..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|at| self.searched + at);
        if found.is_none() {
            self.searched = self.buffer.len();
        }
        found
    }

    /// How many bytes at the start of `bytes` are prompts (`@`, or our `@<atSign>@`); a
    /// reply itself never starts with `@` (`data:`, `error:`, `notification:`).
    fn prompt_length(&self, bytes: &[u8]) -> usize {
        let mut at = 0;
        loop {
            let rest = &bytes[at..];
            match &self.prompt {
                Some(prompt) if rest.starts_with(prompt.as_bytes()) => at += prompt.len(),
                _ if rest.starts_with(b"@") => at += 1,
                _ => return at,
            }
        }
    }

    async fn fill(&mut self) -> Result<(), Failure> {
        if self.buffer.len() > self.max_reply {
            return Err(Failure::Protocol(format!(
                "a reply longer than {} bytes",
                self.max_reply
            )));
        }
        // Straight into the buffer's spare room: a chunk array on the stack would live in
        // every future awaiting a reply (16 KiB each, copied whenever such a future moves: a
        // peer link's request is one).
        if self.buffer.capacity() - self.buffer.len() < READ_ROOM / 4 {
            self.buffer.reserve(READ_ROOM);
        }
        let n = self
            .stream
            .read_buf(&mut self.buffer)
            .await
            .map_err(|e| Failure::Unreachable(format!("connection: {e}")))?;
        if n == 0 {
            return Err(Failure::Unreachable("closed before answering".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replies that come several to a read, and one split over reads, are each read whole;
    /// the future awaiting a reply stays small (it is moved with every request a peer link
    /// makes), which a read buffer on the stack would not.
    #[tokio::test]
    async fn replies_are_read_whole_by_a_small_future() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut conversation = Conversation::new(ours, 1024);
        assert!(
            std::mem::size_of_val(&conversation.read_line()) < 512,
            "{} bytes",
            std::mem::size_of_val(&conversation.read_line())
        );
        let long = "x".repeat(300);
        let sent = format!("data:one\n@data:two\n@data:{long}\n@");
        let writing = tokio::spawn(async move {
            theirs.write_all(sent.as_bytes()).await.unwrap();
            theirs
        });
        assert_eq!(conversation.read_line().await.unwrap(), "data:one");
        assert_eq!(conversation.read_line().await.unwrap(), "data:two");
        assert_eq!(
            conversation.read_line().await.unwrap(),
            format!("data:{long}")
        );
        drop(writing.await.unwrap());
        assert!(matches!(
            conversation.read_line().await,
            Err(Failure::Unreachable(_))
        ));
    }
}
