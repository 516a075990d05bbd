//! One client connection of the atServer. So far only its session state machine
//! ([`auth_state`]); the `Connection` actor that drives it over TLS comes next.

pub mod auth_state;
