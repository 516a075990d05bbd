//! `otp`: the passcodes a new device presents with its unauthenticated `enroll:request`.
//!
//! # Format
//! ```text
//! otp:get[:ttl:<ms>]                 a one-time passcode, 5 minutes unless ttl says otherwise
//! otp:put:<passcode>[:ttl:<ms>]      the semi-permanent passcode (SPP), for ever unless ttl
//! ^otp:(?<operation>get|put)(:(?<otp>(?<=put:)\w{6,}))?(:(?:ttl:(?<ttl>\d+)))?$
//! ```
//! A passcode is 6 to [`MAX_PASSCODE_CHARS`] word characters (`[A-Za-z0-9_]`); `put` without
//! one parses (the handler refuses it). Ours: a longer passcode, or a ttl past `u64`, is
//! AT0003 with the usage, where the reference's regex has no bound.

use std::fmt;

use super::digits;
use crate::error::AtError;
use crate::key::strip_prefix_ci;

/// The longest passcode `otp:put` takes.
pub const MAX_PASSCODE_CHARS: usize = 128;

/// The reference's usage text (`Otp.usage()`), after `Invalid syntax. `.
const USAGE: &str = "otp:get or otp:validate:<otp>";

keyword_enum!(
    /// What an `otp` command does.
    OtpOp { Get => "get", Put => "put" }
);

/// `otp:get[:ttl:<ms>]` or `otp:put[:<passcode>][:ttl:<ms>]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Otp {
    pub operation: OtpOp,
    /// The semi-permanent passcode of `put`.
    pub passcode: Option<String>,
    /// How long the passcode lives, in milliseconds.
    pub ttl: Option<u64>,
}

impl Otp {
    /// Parses the text after `otp:`.
    pub fn parse(rest: &str) -> Result<Otp, AtError> {
        let usage = || AtError::syntax(format!("Invalid syntax. {USAGE}"));
        let (operation, mut s) = OtpOp::strip(rest).ok_or_else(usage)?;
        let mut passcode = None;
        if operation == OtpOp::Put {
            if let Some(after) = s.strip_prefix(':') {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                // Fewer than 6 word characters (`ttl`, say) are no passcode.
                let (word, tail) = after.split_at(end);
                if word.len() >= 6 {
                    if word.len() > MAX_PASSCODE_CHARS {
                        return Err(usage());
                    }
                    passcode = Some(word.to_string());
                    s = tail;
                }
            }
        }
        let ttl = match s {
            "" => None,
            _ => {
                let t = s
                    .strip_prefix(':')
                    .and_then(|t| strip_prefix_ci(t, "ttl:"))
                    .ok_or_else(usage)?;
                Some(ttl_of(t).map_err(|()| usage())?)
            }
        };
        Ok(Otp {
            operation,
            passcode,
            ttl,
        })
    }
}

/// `\d+` to the end, as a `u64`.
fn ttl_of(text: &str) -> Result<u64, ()> {
    match digits(text) {
        Some((n, "")) => n.parse().map_err(|_| ()),
        _ => Err(()),
    }
}

/// The passcode is a secret: logs get whether there is one.
impl fmt::Debug for Otp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Otp")
            .field("operation", &self.operation)
            .field("passcode", &self.passcode.as_ref().map(|_| "…"))
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl fmt::Display for Otp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "otp:{}", self.operation)?;
        if let Some(passcode) = &self.passcode {
            write!(f, ":{passcode}")?;
        }
        if let Some(ttl) = self.ttl {
            write!(f, ":ttl:{ttl}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::verb::Command;

    fn otp(line: &str) -> Otp {
        match Command::parse(line) {
            Ok(Command::Otp(o)) => o,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn get_and_put_with_and_without_ttl() {
        let o = otp("otp:get");
        assert_eq!((o.operation, o.passcode, o.ttl), (OtpOp::Get, None, None));
        let o = otp("otp:get:ttl:60000");
        assert_eq!((o.operation, o.ttl), (OtpOp::Get, Some(60000)));
        let o = otp("otp:put:ABC123");
        assert_eq!(
            (o.operation, o.passcode.as_deref(), o.ttl),
            (OtpOp::Put, Some("ABC123"), None)
        );
        let o = otp("otp:PUT:abc_123xyz:TTL:5");
        assert_eq!(
            (o.passcode.as_deref(), o.ttl),
            (Some("abc_123xyz"), Some(5))
        );
        let o = otp("otp:put");
        assert_eq!((o.operation, o.passcode), (OtpOp::Put, None));
        let o = otp("otp:put:ttl:5");
        assert_eq!((o.passcode, o.ttl), (None, Some(5)), "ttl, not a passcode");
    }

    #[test]
    fn what_the_regex_refuses_is_at0003_with_the_usage() {
        let long = format!("otp:put:{}", "a".repeat(MAX_PASSCODE_CHARS + 1));
        for line in [
            "otp:",
            "otp:set",
            "otp:get:ABC123",
            "otp:put:abc",
            "otp:put:abc-123456",
            "otp:get:ttl:",
            "otp:get:ttl:-1",
            "otp:get:ttl:99999999999999999999999",
            long.as_str(),
        ] {
            let error = Command::parse(line).unwrap_err();
            assert_eq!(error.code(), ErrorCode::InvalidSyntax, "{line}");
            assert_eq!(
                error.message(),
                "Invalid syntax. otp:get or otp:validate:<otp>",
                "{line}"
            );
        }
    }

    #[test]
    fn display_then_parse_is_the_identity_and_debug_hides_the_passcode() {
        for line in [
            "otp:get",
            "otp:get:ttl:5",
            "otp:put:ABC123",
            "otp:put:ABC123:ttl:9",
        ] {
            let o = otp(line);
            assert_eq!(Command::Otp(o.clone()).to_string(), line);
        }
        assert!(!format!("{:?}", otp("otp:put:SECRET1")).contains("SECRET1"));
    }
}
