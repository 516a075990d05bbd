//! `enroll`: APKAM enrollment of an app or device, and the owner's management of enrollments.
//!
//! # Format
//! ```text
//! enroll:request:{"appName":"wavi","deviceName":"pixel","namespaces":{"wavi":"rw"},"apkamPublicKey":"<key>",…}
//! enroll:approve:{"enrollmentId":"<id>","encryptedDefaultEncryptionPrivateKey":…,"encryptedDefaultSelfEncryptionKey":…}
//! enroll:deny:{"enrollmentId":"<id>"}        enroll:revoke[:force]:{"enrollmentId":"<id>"}
//! enroll:unrevoke:{"enrollmentId":"<id>"}    enroll:fetch:{"enrollmentId":"<id>"}
//! enroll:list[:{"enrollmentStatusFilter":["pending","approved"]}]     enroll:delete:{…}
//! ^enroll:(?<operation>request|approve|deny|revoke|list|fetch|unrevoke|delete)(:(?<force>force))?(?::)?
//!         ((?<enrollParams>.+)|(<=list:)<enrollParams>.?)?$
//! ```
//! The grammar only splits the line: the parameters stay JSON text until the handler reads them
//! with [`EnrollParams::from_json`], after its authentication check, as the reference does (an
//! unauthenticated `enroll:list:{bad` is refused for its missing authentication, not its JSON).
//! The `:` before the parameters is optional (`enroll:request{…}` is the same command), and
//! `:force` is only recognised right after the operation.
//!
//! The JSON is the reference's `EnrollParams` (at_commons): unknown fields are ignored, `null`
//! means absent, and `namespaces` keeps the order it was sent in (it is echoed back in that
//! order by `enroll:list` and `enroll:fetch`).

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::rest_of_line;
use crate::error::AtError;
use crate::key::strip_prefix_ci;

/// The reference's `Enroll.usage()`; a line that does not parse answers
/// `Invalid syntax. <usage>` (this verb's usage has no `e.g`).
const USAGE: &str = r#"enroll:request:{"appName":"wavi","deviceName":"iPhone","namespaces":{"wavi":"rw"},"otp":"<otp>":"apkamPublicKey":"<public_key>"}"#;

keyword_enum!(
    /// What an `enroll` command does.
    EnrollOp {
        Request => "request",
        Approve => "approve",
        Deny => "deny",
        Revoke => "revoke",
        List => "list",
        Fetch => "fetch",
        Unrevoke => "unrevoke",
        Delete => "delete",
    }
);

/// `enroll:<operation>[:force][:<params>]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Enroll {
    pub operation: EnrollOp,
    /// `:force`: lets `revoke` take the enrollment the connection itself authenticated with.
    pub force: bool,
    /// The JSON parameters as sent; `None` when the line has none.
    pub params: Option<String>,
}

impl Enroll {
    /// Parses the text after `enroll:`.
    pub fn parse(rest: &str) -> Result<Enroll, AtError> {
        let usage = || AtError::syntax(format!("Invalid syntax. {USAGE}"));
        let (operation, mut s) = EnrollOp::strip(rest).ok_or_else(usage)?;
        let mut force = false;
        if let Some(after) = strip_prefix_ci(s, ":force") {
            force = true;
            s = after;
        }
        // `(?::)?` then `.+`: the colon is taken when what follows it is a valid `.+` or nothing.
        let params = match s.strip_prefix(':').unwrap_or(s) {
            "" => None,
            after_colon => match rest_of_line(after_colon) {
                Some(params) => Some(params.to_string()),
                None => return Err(usage()),
            },
        };
        Ok(Enroll {
            operation,
            force,
            params,
        })
    }

    /// The parameters, read as the reference's `EnrollParams`; `Ok(None)` when there are none.
    ///
    /// # Errors
    /// The JSON's error (not JSON, not an object, a field of the wrong type), as text.
    pub fn read_params(&self) -> Result<Option<EnrollParams>, String> {
        self.params
            .as_deref()
            .map(EnrollParams::from_json)
            .transpose()
    }
}

/// The parameters may carry an OTP and encrypted keys: logs get their length only.
impl fmt::Debug for Enroll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enroll")
            .field("operation", &self.operation)
            .field("force", &self.force)
            .field("params_len", &self.params.as_ref().map(String::len))
            .finish()
    }
}

impl fmt::Display for Enroll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "enroll:{}", self.operation)?;
        if self.force {
            f.write_str(":force")?;
        }
        if let Some(params) = &self.params {
            // Parameters that start with `force` follow the operation without a colon, so that
            // they are not read back as the `:force` flag.
            if self.force || strip_prefix_ci(params, "force").is_none() {
                f.write_str(":")?;
            }
            f.write_str(params)?;
        }
        Ok(())
    }
}

/// The state of an enrollment, as the reference names it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnrollmentStatus {
    Pending,
    Approved,
    Denied,
    Revoked,
    /// A pending request that was not acted on in time (its record expired).
    Expired,
}

impl EnrollmentStatus {
    /// Every status, in the reference's order.
    pub const ALL: [EnrollmentStatus; 5] = [
        EnrollmentStatus::Pending,
        EnrollmentStatus::Approved,
        EnrollmentStatus::Denied,
        EnrollmentStatus::Revoked,
        EnrollmentStatus::Expired,
    ];

    /// The wire name: `pending`, `approved`, `denied`, `revoked`, `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollmentStatus::Pending => "pending",
            EnrollmentStatus::Approved => "approved",
            EnrollmentStatus::Denied => "denied",
            EnrollmentStatus::Revoked => "revoked",
            EnrollmentStatus::Expired => "expired",
        }
    }

    /// The status named exactly `name`.
    pub fn from_name(name: &str) -> Option<EnrollmentStatus> {
        EnrollmentStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

impl fmt::Display for EnrollmentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EnrollmentStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        EnrollmentStatus::from_name(&name).ok_or_else(|| {
            de::Error::custom(format!("`{name}` is not one of the enrollment statuses"))
        })
    }
}

/// The namespaces of an enrollment and their access (`r` or `rw`), in the order they were sent.
/// A name sent twice keeps its first place and its last access, as a Dart map decodes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces(pub Vec<(String, String)>);

impl Namespaces {
    /// Sets `name` to `access`, in place when it is there, last otherwise.
    pub fn set(&mut self, name: &str, access: &str) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = access.to_string(),
            None => self.0.push((name.to_string(), access.to_string())),
        }
    }

    /// The access granted to `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The JSON object, in order: `{"wavi":"rw","__manage":"rw"}`.
    pub fn to_json(&self) -> String {
        let entries: Vec<String> = self
            .0
            .iter()
            .map(|(name, access)| format!("{}:{}", json_string(name), json_string(access)))
            .collect();
        format!("{{{}}}", entries.join(","))
    }
}

impl<'de> Deserialize<'de> for Namespaces {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;

        impl<'de> Visitor<'de> for InOrder {
            type Value = Namespaces;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of namespace to access")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Namespaces, A::Error> {
                let mut namespaces = Namespaces::default();
                while let Some((name, access)) = map.next_entry::<String, String>()? {
                    namespaces.set(&name, &access);
                }
                Ok(namespaces)
            }
        }

        deserializer.deserialize_map(InOrder)
    }
}

/// The reference's `EnrollParams`: every field optional; which ones an operation needs is the
/// handler's check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollParams {
    pub enrollment_id: Option<String>,
    pub app_name: Option<String>,
    pub device_name: Option<String>,
    pub namespaces: Option<Namespaces>,
    /// The OTP (or semi-permanent passcode) of an unauthenticated request.
    pub otp: Option<String>,
    pub encrypted_default_encryption_private_key: Option<String>,
    pub encrypted_default_self_encryption_key: Option<String>,
    #[serde(rename = "encryptedAPKAMSymmetricKey")]
    pub encrypted_apkam_symmetric_key: Option<String>,
    /// The new app's public key, base64 SPKI (RSA) or hex point (ECC), as `pkam` expects.
    pub apkam_public_key: Option<String>,
    /// `enroll:list`: which statuses to list (all when absent).
    pub enrollment_status_filter: Option<Vec<EnrollmentStatus>>,
    /// How long the APKAM keys are good for once approved; 0 or absent: no limit.
    pub apkam_keys_expiry_in_millis: Option<i64>,
}

impl EnrollParams {
    /// Reads the JSON parameters of an `enroll` command.
    ///
    /// # Errors
    /// What is wrong with the JSON, as text.
    pub fn from_json(text: &str) -> Result<EnrollParams, String> {
        let params: EnrollParams = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if let Some(id) = params.enrollment_id.as_deref() {
            if !crate::limits::id_fits(id) {
                return Err(format!(
                    "enrollmentId is at most {} characters",
                    crate::limits::MAX_ID_CHARS
                ));
            }
        }
        Ok(params)
    }
}

/// `text` as a JSON string literal, escaped as Dart's `jsonEncode` does.
pub fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::verb::Command;

    fn enroll(line: &str) -> Enroll {
        match Command::parse(line) {
            Ok(Command::Enroll(e)) => e,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    const REQUEST: &str = r#"{"appName":"wavi","deviceName":"pixel","namespaces":{"wavi":"rw","__manage":"r"},"apkamPublicKey":"MIIB"}"#;

    #[test]
    fn request_keeps_its_json_as_sent() {
        let e = enroll(&format!("enroll:request:{REQUEST}"));
        assert_eq!(e.operation, EnrollOp::Request);
        assert!(!e.force);
        assert_eq!(e.params.as_deref(), Some(REQUEST));
    }

    #[test]
    fn every_operation_parses_in_any_case() {
        for (text, op) in [
            ("request", EnrollOp::Request),
            ("APPROVE", EnrollOp::Approve),
            ("deny", EnrollOp::Deny),
            ("revoke", EnrollOp::Revoke),
            ("List", EnrollOp::List),
            ("fetch", EnrollOp::Fetch),
            ("unrevoke", EnrollOp::Unrevoke),
            ("delete", EnrollOp::Delete),
        ] {
            let e = enroll(&format!(r#"enroll:{text}:{{"enrollmentId":"1"}}"#));
            assert_eq!(e.operation, op, "{text}");
            assert_eq!(e.params.as_deref(), Some(r#"{"enrollmentId":"1"}"#));
        }
    }

    #[test]
    fn list_without_parameters_and_with_a_bare_colon() {
        for line in ["enroll:list", "enroll:list:", "ENROLL:list"] {
            let e = enroll(line);
            assert_eq!(
                (e.operation, e.force, e.params),
                (EnrollOp::List, false, None)
            );
        }
    }

    #[test]
    fn force_only_right_after_the_operation() {
        let e = enroll(r#"enroll:revoke:force:{"enrollmentId":"1"}"#);
        assert!(e.force);
        assert_eq!(e.params.as_deref(), Some(r#"{"enrollmentId":"1"}"#));
        let e = enroll("enroll:revoke:FORCE");
        assert!(e.force && e.params.is_none());
        // Without its colon `force` is the parameters, as the reference regex reads it.
        let e = enroll("enroll:revokeforce");
        assert!(!e.force);
        assert_eq!(e.params.as_deref(), Some("force"));
    }

    #[test]
    fn the_colon_before_the_parameters_is_optional() {
        let e = enroll(r#"enroll:request{"appName":"a"}"#);
        assert_eq!(e.params.as_deref(), Some(r#"{"appName":"a"}"#));
        let e = enroll("enroll:list::x");
        assert_eq!(e.params.as_deref(), Some(":x"));
    }

    #[test]
    fn unknown_operations_are_at0003_with_the_reference_usage() {
        for line in ["enroll:foo", "enroll:", "enroll:request:a\rb"] {
            let error = Command::parse(line).unwrap_err();
            assert_eq!(error.code(), ErrorCode::InvalidSyntax, "{line:?}");
            assert_eq!(
                error.message(),
                r#"Invalid syntax. enroll:request:{"appName":"wavi","deviceName":"iPhone","namespaces":{"wavi":"rw"},"otp":"<otp>":"apkamPublicKey":"<public_key>"}"#
            );
        }
        // Without its colon it is no enroll command at all.
        assert_eq!(
            Command::parse("enroll").unwrap_err().message(),
            "invalid command"
        );
    }

    #[test]
    fn display_then_parse_is_the_identity() {
        for line in [
            "enroll:list",
            "enroll:revoke:force",
            r#"enroll:request:{"appName":"a"}"#,
            r#"enroll:revoke:force:{"enrollmentId":"1"}"#,
            "enroll:revokeforce",
            "enroll:list::x",
            "enroll:revoke:force:forcex",
        ] {
            let e = enroll(line);
            let shown = Command::Enroll(e.clone()).to_string();
            assert_eq!(shown, line);
            assert_eq!(enroll(&shown), e, "{line}");
        }
    }

    #[test]
    fn debug_leaves_the_parameters_out() {
        let e = enroll(r#"enroll:request:{"otp":"SECRET1"}"#);
        assert!(!format!("{e:?}").contains("SECRET1"));
    }

    #[test]
    fn params_read_as_the_reference_enroll_params() {
        let text = r#"{"enrollmentId":null,"appName":"wavi","deviceName":"pixel",
            "namespaces":{"wavi":"rw","buzz":"r","wavi":"r"},"otp":"ABC123",
            "encryptedDefaultEncryptionPrivateKey":"p","encryptedDefaultSelfEncryptionKey":"s",
            "encryptedAPKAMSymmetricKey":"k","apkamPublicKey":"MIIB",
            "enrollmentStatusFilter":["pending","approved"],"apkamKeysExpiryInMillis":5,
            "unknownField":[1,2]}"#;
        let p = EnrollParams::from_json(text).unwrap();
        assert_eq!(p.enrollment_id, None);
        assert_eq!(p.app_name.as_deref(), Some("wavi"));
        assert_eq!(p.device_name.as_deref(), Some("pixel"));
        let namespaces = p.namespaces.unwrap();
        assert_eq!(namespaces.to_json(), r#"{"wavi":"r","buzz":"r"}"#);
        assert_eq!(p.otp.as_deref(), Some("ABC123"));
        assert_eq!(
            p.encrypted_default_encryption_private_key.as_deref(),
            Some("p")
        );
        assert_eq!(
            p.encrypted_default_self_encryption_key.as_deref(),
            Some("s")
        );
        assert_eq!(p.encrypted_apkam_symmetric_key.as_deref(), Some("k"));
        assert_eq!(p.apkam_public_key.as_deref(), Some("MIIB"));
        assert_eq!(
            p.enrollment_status_filter,
            Some(vec![EnrollmentStatus::Pending, EnrollmentStatus::Approved])
        );
        assert_eq!(p.apkam_keys_expiry_in_millis, Some(5));
    }

    #[test]
    fn bad_params_are_errors_not_panics() {
        for text in [
            "{bad",
            "[1]",
            r#"{"appName":5}"#,
            r#"{"namespaces":{"wavi":1}}"#,
            r#"{"enrollmentStatusFilter":["maybe"]}"#,
        ] {
            assert!(EnrollParams::from_json(text).is_err(), "{text}");
        }
        assert_eq!(
            EnrollParams::from_json("{}").unwrap(),
            EnrollParams::default()
        );
    }

    #[test]
    fn namespaces_keep_their_order_and_escape_as_json() {
        let mut ns = Namespaces::default();
        ns.set("wavi", "rw");
        ns.set("__manage", "rw");
        ns.set("*", "rw");
        ns.set("wavi", "r");
        assert_eq!(ns.to_json(), r#"{"wavi":"r","__manage":"rw","*":"rw"}"#);
        assert_eq!(ns.get("__manage"), Some("rw"));
        assert_eq!(json_string("a\"b\\c\n"), r#""a\"b\\c\n""#);
    }
}
