//! `Address`: where an atServer listens, `host:port`, as the atDirectory stores and answers it.
//!
//! # Format
//! `host:port` with exactly one `:`. The host is a DNS name or an IPv4 address; IPv6 literals
//! are refused because the reference SDKs split the directory's answer on its only `:`.

use std::fmt;
use std::str::FromStr;

/// A validated `host:port`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Address {
    host: String,
    port: u16,
}

/// Why a string is not a `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("expected host:port, got {0:?}")]
    Shape(String),
    #[error("{0:?} is not a valid host name")]
    Host(String),
    #[error("{0:?} is not a port number between 1 and 65535")]
    Port(String),
}

impl Address {
    /// Parses `host:port`; host names are lower-cased (DNS is case-insensitive).
    pub fn parse(input: &str) -> Result<Address, AddressError> {
        let (host, port) = input
            .split_once(':')
            .filter(|(_, port)| !port.contains(':'))
            .ok_or_else(|| AddressError::Shape(input.to_string()))?;
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
        if !host_ok {
            return Err(AddressError::Host(host.to_string()));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0 && !port.starts_with('+'))
            .ok_or_else(|| AddressError::Port(port.to_string()))?;
        Ok(Address {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_round_trip() {
        for input in ["vip.ve.atsign.zone:25000", "127.0.0.1:6464", "localhost:1"] {
            assert_eq!(Address::parse(input).unwrap().to_string(), input);
        }
        assert_eq!(
            Address::parse("Host.Example:64").unwrap().to_string(),
            "host.example:64"
        );
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "host",
            ":64",
            "host:",
            "host:0",
            "host:65536",
            "host:+64",
            "::1:64",
            "[::1]:64",
            "ho st:64",
            "host:64:1",
            "h@st:64",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
