//! `monitor`: turn this owner connection into a stream of received notifications.
//!
//! # Format
//! ```text
//! monitor[:strict][:selfNotifications][:multiplexed][:<epochMillis>][ <regex>]
//! ^monitor(:(?<strict>strict))?(:(?<selfNotifications>selfNotifications))?(:(?<multiplexed>multiplexed))?(:(?<epochMillis>\d+))?( (?<regex>.+))?$
//! ```
//! e.g. `monitor`, `monitor:0 .*`, `monitor:selfNotifications:1700000000000 wavi`.
//! `strict` and `multiplexed` are parsed but ignored by the reference.

use std::fmt;

use super::{digits, first_match, rest_of_line, usage_error};
use crate::error::AtError;
use crate::key::strip_prefix_ci;

/// `monitor` and its options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Monitor {
    pub strict: bool,
    /// Also stream notifications the owner sent to itself.
    pub self_notifications: bool,
    pub multiplexed: bool,
    /// Replay stored notifications newer than this first.
    pub epoch_millis: Option<i64>,
    /// Filter on notification key or sender; `.*` when absent.
    pub regex: Option<String>,
}

impl Monitor {
    /// Parses the text after `monitor`.
    pub fn parse(rest: &str) -> Result<Monitor, AtError> {
        first_match(5, |on| {
            let mut s = rest;
            let mut monitor = Monitor::default();
            for (slot, word, flag) in [
                (0, ":strict", &mut monitor.strict),
                (1, ":selfNotifications", &mut monitor.self_notifications),
                (2, ":multiplexed", &mut monitor.multiplexed),
            ] {
                if on(slot) {
                    s = strip_prefix_ci(s, word)?;
                    *flag = true;
                }
            }
            if on(3) {
                let (n, after) = digits(s.strip_prefix(':')?)?;
                monitor.epoch_millis = Some(n.parse().ok()?);
                s = after;
            }
            if on(4) {
                monitor.regex = Some(rest_of_line(s.strip_prefix(' ')?)?.to_string());
                s = "";
            }
            s.is_empty().then_some(monitor)
        })
        .ok_or_else(|| usage_error("monitor"))
    }
}

impl fmt::Display for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("monitor")?;
        if self.strict {
            f.write_str(":strict")?;
        }
        if self.self_notifications {
            f.write_str(":selfNotifications")?;
        }
        if self.multiplexed {
            f.write_str(":multiplexed")?;
        }
        if let Some(millis) = self.epoch_millis {
            write!(f, ":{millis}")?;
        }
        if let Some(regex) = &self.regex {
            write!(f, " {regex}")?;
        }
        Ok(())
    }
}
