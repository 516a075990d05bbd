//! `info` and `info:brief` (docs/protocol.md#info): the server's version, uptime and
//! features, for anyone.
//!
//! # Format
//! `data:{"version":"<crate version>","uptimeAsWords":"1 hours 35 minutes 29 seconds","features":["pipelining"]}`;
//! `info:brief` → `data:{"version":"<crate version>","uptimeAsMillis":5729000,"features":["pipelining"]}`.
//! (The APKAM `apkam_metadata` field arrives with enrollments.)
//!
//! `features` is ours, not the reference's (clients ignore fields they do not know):
//! `pipelining` tells another atServer that a pol connection to this one may carry several
//! commands before their replies ([`FEATURES`]). A peer whose `info` does not say so (the
//! reference) is sent one command at a time (`crate::peer::link`).

use std::time::Duration;

use at_common::reply::Reply;
use at_common::verb::Info;

use super::llookup::json_string;

/// The version `info` reports: this crate's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What `info` announces beyond the reference: this server answers several commands in flight
/// on one authenticated peer connection, in order.
pub const FEATURES: &str = r#"["pipelining"]"#;

/// `info[:brief]`, given how long the server has been up.
pub fn info(cmd: &Info, uptime: Duration) -> Reply {
    let version = json_string(VERSION);
    if cmd.brief {
        Reply::Data(format!(
            "{{\"version\":{version},\"uptimeAsMillis\":{},\"features\":{FEATURES}}}",
            uptime.as_millis()
        ))
    } else {
        let secs = uptime.as_secs();
        let words = format!(
            "{} hours {} minutes {} seconds",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        Reply::Data(format!(
            "{{\"version\":{version},\"uptimeAsWords\":{},\"features\":{FEATURES}}}",
            json_string(&words)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_reports_uptime_in_words() {
        let uptime = Duration::from_millis(5_729_400);
        assert_eq!(
            info(&Info { brief: false }, uptime),
            Reply::Data(format!(
                "{{\"version\":\"{VERSION}\",\"uptimeAsWords\":\"1 hours 35 minutes 29 seconds\",\"features\":[\"pipelining\"]}}"
            ))
        );
    }

    #[test]
    fn info_brief_reports_uptime_in_millis() {
        let uptime = Duration::from_millis(5_729_400);
        assert_eq!(
            info(&Info { brief: true }, uptime),
            Reply::Data(format!(
                "{{\"version\":\"{VERSION}\",\"uptimeAsMillis\":5729400,\"features\":[\"pipelining\"]}}"
            ))
        );
    }
}
