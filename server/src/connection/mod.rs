//! One client connection of the atServer: its session state machine ([`auth_state`]), the
//! owner's authentication verbs ([`authenticate`]), the slowing down of failed proofs
//! ([`throttle`]), the node's connection pools ([`admission`]), and the `Connection` actor that
//! drives them over TLS ([`actor`]).

pub mod actor;
pub mod admission;
pub mod auth_state;
pub mod authenticate;
pub mod throttle;
