//! # at-server: the atServer (being built, issue 3)
//!
//! - [`config`]: `ServerConfig`, every option with its default.
//! - [`connection`]: one client connection; its session state machine (`auth_state`).
//! - [`store`]: one atSign's keys, metadata and commit log behind one `Store` trait; the
//!   embedded backend (redb on local disk) and, later, Redis.

pub mod config;
pub mod connection;
pub mod store;
