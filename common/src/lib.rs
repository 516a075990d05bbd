//! # at-common: the atProtocol, typed
//!
//! Everything both the atServer and the atDirectory agree on, with no sockets, actors or storage.
//!
//! - [`address`]: `Address`, the `host:port` an atDirectory answers.
//! - [`backlog`]: how far behind a connection's peer is in reading, for backpressure.
//! - [`auth`]: cram digests and pkam signature checks, pure functions over `ring`.
//! - [`atsign`]: `AtSign`, parsed and normalised once (leading `@` optional, case-folded).
//! - [`key`]: `AtKey`, the five kinds of key of the spec and their wire form.
//! - [`limits`]: the bounds on keys, ids and times that a client or a peer sends, in one place.
//! - [`metadata`]: `Metadata`, every field of the spec's table, and its JSON shape.
//! - [`error`]: `AtError`, the only table of protocol error codes, and whether each closes the connection.
//! - [`verb`]: `Command`, one typed variant per verb; `Command::parse` is the only grammar.
//! - [`reply`]: `Reply` and `Prompt`, the only place a response is rendered to bytes.
//! - [`codec`]: `LineCodec`, bytes to lines with the buffer limit; no protocol policy.
//! - [`config`]: configuration pieces shared by the binaries (TLS, storage backend).
//! - [`redis_client`]: one Redis or a Redis Cluster behind one client and connection type.
//! - [`status`]: `AtStatus`, the atSign lifecycle (notFound → teapot → activated) and its HTTP codes.
//! - [`tls`]: turning a [`config::TlsConfig`] into a rustls acceptor, self-signed when no certificate is given.

pub mod address;
pub mod atsign;
pub mod auth;
pub mod backlog;
pub mod codec;
pub mod config;
pub mod error;
pub mod key;
pub mod limits;
pub mod metadata;
pub mod redis_client;
pub mod reply;
pub mod status;
pub mod tls;
pub mod verb;

pub use address::Address;
pub use atsign::AtSign;
