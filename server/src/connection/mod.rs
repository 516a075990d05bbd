//! One client connection of the atServer. So far its session state machine ([`auth_state`])
//! and the owner's authentication verbs ([`authenticate`]); the `Connection` actor that drives
//! them over TLS comes next.

pub mod auth_state;
pub mod authenticate;
