//! # at-server: the atServer
//!
//! Serves many hosted atSigns per node: their owners' clients, other atServers (`pol`), and
//! notifications between them. What the code relies on about the protocol is in docs/README.md.
//!
//! - [`admin`]: `provision | deprovision | list`, run by a serving node over its admin socket
//!   or, when none is serving, directly on the store.
//! - [`cache_refresh`]: the job that asks other atServers again for cached keys due a refresh.
//! - [`config`]: `ServerConfig`, every option with its default.
//! - [`connection`]: one client connection; its session state machine (`auth_state`).
//! - [`dev`]: `at-server dev`, a directory and an atServer in one process for local use.
//! - [`http`]: `/healthz`, `/readyz` and Prometheus `/metrics` on `metrics_listen`.
//! - [`keystore`]: `KeyStore`, the actor owning one hosted atSign's data; `Hosts`, the registry.
//! - [`listener`]: TLS, SNI and per-atSign ports, spreading connections over worker threads.
//! - [`maintenance`]: the background task that removes expired keys and compacts commit logs.
//! - [`metrics`]: the Prometheus metrics every part records into.
//! - [`migrate`]: `at-server migrate`, copying atSigns between stores (embedded ↔ Redis).
//! - [`node`]: one node's parts wired together (key stores, peers, router, limits), and its
//!   own atSigns served in-process to its own peer links.
//! - [`notifications`]: notifications and the monitors streaming them.
//! - [`pace`]: `NotifyPace`, how fast one other atSign can make this node receive notifications.
//! - [`peer`]: links to other atSigns' servers (`from` + `pol`; in-process when hosted on this
//!   cluster), and checking their `pol`.
//! - [`router`]: `NotificationRouter`, delivering notifications to other atServers, with retries.
//! - [`signing`]: each atSign's signing key pair, made once, for `pol`.
//! - [`provision`]: creating and removing hosted atSigns, with their directory entries.
//! - [`store`]: every hosted atSign's keys, metadata, commit log, provisioning record and access
//!   counters behind one `Store` trait; the embedded backend (fjall on local disk) and Redis.
//! - [`suspension`]: which hosted atSigns are suspended, as this node knows it.
//! - [`verbs`]: the verbs' behaviour, one file per verb.

pub mod access;
pub mod admin;
pub mod blocklist;
pub mod cache_refresh;
pub mod config;
pub mod connection;
pub mod dev;
pub mod http;
pub mod keystore;
pub mod lifetime;
pub mod listener;
pub mod maintenance;
pub mod metrics;
pub mod migrate;
pub mod node;
pub mod notifications;
pub mod pace;
pub mod peer;
pub mod provision;
pub mod remote;
pub mod reserved;
pub mod router;
pub mod signing;
pub mod store;
pub mod suspension;
pub mod turn;
pub mod verbs;
