//! One client connection of the atServer. So far its session state machine ([`auth_state`])
//! the owner's authentication verbs ([`authenticate`]), and the `Connection` actor that drives
//! them over TLS ([`actor`]).

pub mod actor;
pub mod auth_state;
pub mod authenticate;
