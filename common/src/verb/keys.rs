//! `keys`: the security keys an enrolled device keeps on its atServer (its public key, its
//! private keys encrypted for it, the encrypted default keys an approver left for it).
//!
//! # Format
//! ```text
//! keys:put:public:namespace:__global:keyType:rsa2048:keyName:encryption_<id> <public key>
//! keys:put:self:namespace:__global:appName:wavi:deviceName:pixel:keyType:aes256:encryptionKeyName:<k>:keyName:<n> <value>
//! keys:get:private            keys:get:keyName:<key>            keys:delete:keyName:<key>
//! ^keys:((?<operation>put|get|delete):?)(?:(?<visibility>public|private|self):?)?
//!   (?:namespace:(?<namespace>[a-zA-Z0-9_]+):?)?(?:appName:(?<appName>[a-zA-Z0-9_]+):?)?
//!   (?:deviceName:(?<deviceName>[a-zA-Z0-9_]+):?)?(?:keyType:(?<keyType>[a-zA-Z0-9_-]+):?)?
//!   (?:encryptionKeyName:(?<encryptionKeyName>[a-zA-Z0-9_\-]+):?)?(?:keyName:(?<keyName>\S+) ?)?
//!   (?<keyValue>.*)?$
//! ```
//! Every part after the operation is optional and the value takes whatever is left, so the
//! regex matches by taking each part in turn when it is there; this parser does the same.

use std::fmt;

use crate::error::AtError;
use crate::key::strip_prefix_ci;

/// The reference's usage text (`Keys.usage()`), after `Invalid syntax. `.
const USAGE: &str =
    "e.g. keys:put:public:keyName:encryptionPublicKey:namespace:__global:keyType:rsa2048:<public_key>";

keyword_enum!(
    /// What a `keys` command does.
    KeysOp { Put => "put", Get => "get", Delete => "delete" }
);

keyword_enum!(
    /// Which kind of security key.
    KeyVisibility { Public => "public", Private => "private", SelfKey => "self" }
);

/// `keys:<op>[:<visibility>][:namespace:…][:appName:…][:deviceName:…][:keyType:…]`
/// `[:encryptionKeyName:…][:keyName:<name>][ ]<value>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    pub operation: KeysOp,
    pub visibility: Option<KeyVisibility>,
    pub namespace: Option<String>,
    pub app_name: Option<String>,
    pub device_name: Option<String>,
    pub key_type: Option<String>,
    pub encryption_key_name: Option<String>,
    pub key_name: Option<String>,
    /// What is left of the line (the key itself, for `put`); empty when nothing is.
    pub value: String,
}

impl Keys {
    /// Parses the text after `keys:`.
    pub fn parse(rest: &str) -> Result<Keys, AtError> {
        let usage = || AtError::syntax(format!("Invalid syntax. {USAGE}"));
        let (operation, s) = KeysOp::strip(rest).ok_or_else(usage)?;
        let mut s = s.strip_prefix(':').unwrap_or(s);
        let visibility = KeyVisibility::strip(s).map(|(v, after)| {
            s = after.strip_prefix(':').unwrap_or(after);
            v
        });
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let dashed = |c: char| word(c) || c == '-';
        let namespace = part(&mut s, "namespace:", word);
        let app_name = part(&mut s, "appName:", word);
        let device_name = part(&mut s, "deviceName:", word);
        let key_type = part(&mut s, "keyType:", dashed);
        let encryption_key_name = part(&mut s, "encryptionKeyName:", dashed);
        let key_name = strip_prefix_ci(s, "keyName:").and_then(|after| {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (end > 0).then(|| {
                let (name, tail) = after.split_at(end);
                s = tail.strip_prefix(' ').unwrap_or(tail);
                name.to_string()
            })
        });
        if s.contains(['\n', '\r']) {
            return Err(usage());
        }
        Ok(Keys {
            operation,
            visibility,
            namespace,
            app_name,
            device_name,
            key_type,
            encryption_key_name,
            key_name,
            value: s.to_string(),
        })
    }
}

/// `<label><chars>+[:]` at the front of `s`: the chars, and `s` moved past them.
fn part(s: &mut &str, label: &str, allowed: impl Fn(char) -> bool) -> Option<String> {
    let after = strip_prefix_ci(s, label)?;
    let end = after.find(|c: char| !allowed(c)).unwrap_or(after.len());
    if end == 0 {
        return None;
    }
    let (found, tail) = after.split_at(end);
    *s = tail.strip_prefix(':').unwrap_or(tail);
    Some(found.to_string())
}

/// The value may be a key: logs get its length.
impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("operation", &self.operation)
            .field("visibility", &self.visibility)
            .field("namespace", &self.namespace)
            .field("key_name", &self.key_name)
            .field("value_len", &self.value.len())
            .finish()
    }
}

impl fmt::Display for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "keys:{}", self.operation)?;
        if let Some(visibility) = self.visibility {
            write!(f, ":{visibility}")?;
        }
        for (label, part) in [
            ("namespace", &self.namespace),
            ("appName", &self.app_name),
            ("deviceName", &self.device_name),
            ("keyType", &self.key_type),
            ("encryptionKeyName", &self.encryption_key_name),
            ("keyName", &self.key_name),
        ] {
            if let Some(part) = part {
                write!(f, ":{label}:{part}")?;
            }
        }
        if !self.value.is_empty() {
            write!(f, " {}", self.value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verb::Command;

    fn keys(line: &str) -> Keys {
        match Command::parse(line) {
            Ok(Command::Keys(k)) => k,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn the_reference_functional_tests_lines_parse_part_by_part() {
        let k = keys(
            "keys:put:public:namespace:__global:keyType:rsa2048:keyName:encryption_e1 MIIBpub",
        );
        assert_eq!(k.operation, KeysOp::Put);
        assert_eq!(k.visibility, Some(KeyVisibility::Public));
        assert_eq!(k.namespace.as_deref(), Some("__global"));
        assert_eq!(k.key_type.as_deref(), Some("rsa2048"));
        assert_eq!(k.key_name.as_deref(), Some("encryption_e1"));
        assert_eq!(k.value, "MIIBpub");
        let k = keys("keys:put:self:namespace:__global:appName:wavi:deviceName:pixel:keyType:aes256:encryptionKeyName:encryption_e1:keyName:myAESkey c2VjcmV0");
        assert_eq!(
            (
                k.app_name.as_deref(),
                k.device_name.as_deref(),
                k.encryption_key_name.as_deref(),
                k.key_name.as_deref(),
                k.value.as_str()
            ),
            (
                Some("wavi"),
                Some("pixel"),
                Some("encryption_e1"),
                Some("myAESkey"),
                "c2VjcmV0"
            )
        );
        let k = keys("keys:get:private");
        assert_eq!(
            (k.operation, k.visibility, k.key_name),
            (KeysOp::Get, Some(KeyVisibility::Private), None)
        );
        let k = keys("keys:get:keyName:e1.default_enc_private_key.__manage@alice");
        assert_eq!(
            k.key_name.as_deref(),
            Some("e1.default_enc_private_key.__manage@alice")
        );
        assert_eq!(k.value, "");
        let k = keys("keys:DELETE:keyName:public:x.__public_keys.__global@alice");
        assert_eq!(k.operation, KeysOp::Delete);
    }

    #[test]
    fn only_the_operation_is_required() {
        assert!(Command::parse("keys:").is_err());
        assert!(Command::parse("keys:fetch").is_err());
        let k = keys("keys:get");
        assert_eq!(
            (k.visibility, k.key_name, k.value.as_str()),
            (None, None, "")
        );
        // What is not a part is the value.
        assert_eq!(keys("keys:put:whatever else").value, "whatever else");
    }

    #[test]
    fn display_then_parse_is_the_identity() {
        for line in [
            "keys:get:private",
            "keys:put:public:namespace:__global:keyType:rsa2048:keyName:encryption_e1 MIIB",
            "keys:get:keyName:e1.default_self_enc_key.__manage@alice",
        ] {
            let k = keys(line);
            assert_eq!(Command::Keys(k.clone()).to_string(), line);
        }
    }
}
