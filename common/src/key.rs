//! `AtKey`: a key of the keystore, parsed from and rendered to its wire form.
//!
//! # Format
//! ```text
//! public:<name>@<owner>           KeyKind::Public     readable by anyone
//! @<with>:<name>@<owner>          KeyKind::Shared     readable by <with>
//! <name>@<owner>                  KeyKind::SelfKey    the owner's own data
//! private:<name>@<owner>          KeyKind::Private    never leaves the atServer
//! privatekey:<name>               KeyKind::PrivateKey e.g. privatekey:at_secret
//! local:<name>@<owner>            KeyKind::Local      never synced
//! cached:public:<name>@<owner>    cached copy of another atSign's public key
//! cached:@<with>:<name>@<owner>   cached copy of a key shared with us
//! ```
//! The `@<owner>` part is optional on input (verbs such as `update` and `delete` let it be
//! left out, the handler then uses the server's atSign). A name starting with `_` is internal
//! (hidden from `scan`); its namespace is the text after the last `.` of the name.
//!
//! A name may hold any character except `@`, `:`, whitespace and control characters (spec,
//! "Key"). Names are lower-cased when parsed, as the reference keystore lower-cases every key;
//! atSigns are lower-cased by [`AtSign::parse`]. Hence `parse(k.to_string()) == k`.
//!
//! Which kinds a verb may write, and the length limits of the store, are the server's business.

use std::fmt;
use std::str::FromStr;

use crate::atsign::{AtSign, AtSignError};

/// The visibility of a key: the part before its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// `public:name@owner`.
    Public,
    /// `@with:name@owner`.
    Shared(AtSign),
    /// `name@owner`.
    SelfKey,
    /// `private:name@owner`.
    Private,
    /// `privatekey:name`.
    PrivateKey,
    /// `local:name@owner`.
    Local,
}

/// A parsed, lower-cased key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AtKey {
    /// Who may read it.
    pub kind: KeyKind,
    /// Whether this is a cached copy of another atSign's key (`cached:` prefix); only public and
    /// shared keys can be cached.
    pub cached: bool,
    /// The name, lower-cased; no `@`, `:` or whitespace.
    pub name: String,
    /// The atSign that owns the key, when the wire form names it.
    pub owner: Option<AtSign>,
}

/// Why a string is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a key needs a name")]
    EmptyName,
    #[error("a key name may not contain {0:?}")]
    BadChar(char),
    #[error("invalid atSign in key: {0}")]
    BadAtSign(#[from] AtSignError),
    #[error("only public and shared keys can be cached")]
    CannotBeCached,
}

impl AtKey {
    /// A key with the given kind, name and owner, checking the name's characters.
    pub fn new(kind: KeyKind, name: &str, owner: Option<AtSign>) -> Result<AtKey, KeyError> {
        Ok(AtKey {
            kind,
            cached: false,
            name: check_name(name)?,
            owner,
        })
    }

    /// Parses the wire form (see the module docs).
    pub fn parse(input: &str) -> Result<AtKey, KeyError> {
        let (cached, rest) = match strip_prefix_ci(input, "cached:") {
            Some(rest) => (true, rest),
            None => (false, input),
        };
        let (kind, rest) = split_kind(rest)?;
        if cached && !matches!(kind, KeyKind::Public | KeyKind::Shared(_)) {
            return Err(KeyError::CannotBeCached);
        }
        let (name, owner) = match rest.split_once('@') {
            Some((name, owner)) => (name, Some(AtSign::parse(owner)?)),
            None => (rest, None),
        };
        Ok(AtKey {
            kind,
            cached,
            name: check_name(name)?,
            owner,
        })
    }

    /// The namespace: the text after the last `.` of the name (`phone.wavi` → `wavi`).
    pub fn namespace(&self) -> Option<&str> {
        self.name
            .rsplit_once('.')
            .map(|(_, ns)| ns)
            .filter(|ns| !ns.is_empty())
    }

    /// Internal keys start with `_` and are left out of `scan` results.
    pub fn is_hidden(&self) -> bool {
        self.name.starts_with('_')
    }

    /// The atSign this key is shared with, for shared keys.
    pub fn shared_with(&self) -> Option<&AtSign> {
        match &self.kind {
            KeyKind::Shared(with) => Some(with),
            _ => None,
        }
    }

    /// This key with the given owner, e.g. the server's atSign when the command left it out.
    pub fn with_owner(mut self, owner: AtSign) -> AtKey {
        self.owner = Some(owner);
        self
    }
}

/// Splits off the visibility prefix.
fn split_kind(input: &str) -> Result<(KeyKind, &str), KeyError> {
    for (prefix, kind) in [
        ("public:", KeyKind::Public),
        ("privatekey:", KeyKind::PrivateKey),
        ("private:", KeyKind::Private),
        ("local:", KeyKind::Local),
    ] {
        if let Some(rest) = strip_prefix_ci(input, prefix) {
            return Ok((kind, rest));
        }
    }
    if input.starts_with('@') {
        if let Some((with, rest)) = input.split_once(':') {
            return Ok((KeyKind::Shared(AtSign::parse(with)?), rest));
        }
    }
    Ok((KeyKind::SelfKey, input))
}

fn check_name(name: &str) -> Result<String, KeyError> {
    if name.is_empty() {
        return Err(KeyError::EmptyName);
    }
    if let Some(bad) = name
        .chars()
        .find(|c| matches!(c, '@' | ':') || c.is_whitespace() || c.is_control())
    {
        return Err(KeyError::BadChar(bad));
    }
    Ok(name.to_lowercase())
}

/// `strip_prefix`, ignoring ASCII case, as the reference's case-insensitive regexes do.
pub(crate) fn strip_prefix_ci<'a>(input: &'a str, prefix: &str) -> Option<&'a str> {
    let head = input.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &input[prefix.len()..])
}

impl fmt::Display for AtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cached {
            f.write_str("cached:")?;
        }
        match &self.kind {
            KeyKind::Public => f.write_str("public:")?,
            KeyKind::Shared(with) => write!(f, "{with}:")?,
            KeyKind::SelfKey => {}
            KeyKind::Private => f.write_str("private:")?,
            KeyKind::PrivateKey => f.write_str("privatekey:")?,
            KeyKind::Local => f.write_str("local:")?,
        }
        f.write_str(&self.name)?;
        if let Some(owner) = &self.owner {
            write!(f, "{owner}")?;
        }
        Ok(())
    }
}

impl FromStr for AtKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AtKey::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(s: &str) -> AtSign {
        AtSign::parse(s).unwrap()
    }

    #[test]
    fn every_kind_of_the_spec_parses() {
        let alice = Some(sign("@alice"));
        let cases: Vec<(&str, KeyKind, bool, &str, Option<AtSign>)> = vec![
            (
                "public:location@alice",
                KeyKind::Public,
                false,
                "location",
                alice.clone(),
            ),
            ("privatekey:pk1", KeyKind::PrivateKey, false, "pk1", None),
            (
                "privatekey:pk1@alice",
                KeyKind::PrivateKey,
                false,
                "pk1",
                alice.clone(),
            ),
            (
                "private:k@alice",
                KeyKind::Private,
                false,
                "k",
                alice.clone(),
            ),
            (
                "@bob:phone@alice",
                KeyKind::Shared(sign("@bob")),
                false,
                "phone",
                alice.clone(),
            ),
            (
                "phone@alice",
                KeyKind::SelfKey,
                false,
                "phone",
                alice.clone(),
            ),
            (
                "_secret@alice",
                KeyKind::SelfKey,
                false,
                "_secret",
                alice.clone(),
            ),
            (
                "cached:@bob:phone@alice",
                KeyKind::Shared(sign("@bob")),
                true,
                "phone",
                alice.clone(),
            ),
            (
                "cached:public:k@alice",
                KeyKind::Public,
                true,
                "k",
                alice.clone(),
            ),
            ("local:k@alice", KeyKind::Local, false, "k", alice.clone()),
            ("phone", KeyKind::SelfKey, false, "phone", None),
        ];
        for (input, kind, cached, name, owner) in cases {
            let key = AtKey::parse(input).expect(input);
            assert_eq!(key.kind, kind, "{input}");
            assert_eq!(key.cached, cached, "{input}");
            assert_eq!(key.name, name, "{input}");
            assert_eq!(key.owner, owner, "{input}");
            assert_eq!(key.to_string(), input, "canonical form of {input}");
        }
    }

    #[test]
    fn keys_are_lower_cased_like_the_reference_keystore() {
        let key = AtKey::parse("Public:Phone.WAVI@Alice").unwrap();
        assert_eq!(key.to_string(), "public:phone.wavi@alice");
        let key = AtKey::parse("CACHED:@Bob:X@alice").unwrap();
        assert_eq!(key.to_string(), "cached:@bob:x@alice");
    }

    #[test]
    fn namespace_is_text_after_the_last_dot() {
        assert_eq!(
            AtKey::parse("k.app@alice").unwrap().namespace(),
            Some("app")
        );
        assert_eq!(
            AtKey::parse("a.b.wavi@alice").unwrap().namespace(),
            Some("wavi")
        );
        assert_eq!(AtKey::parse("k@alice").unwrap().namespace(), None);
        assert!(AtKey::parse("_k@alice").unwrap().is_hidden());
    }

    #[test]
    fn bad_keys_are_refused() {
        for bad in [
            "",
            "@alice",
            "public:@alice",
            "a b@alice",
            "a:b@alice",
            "k@al@ice",
            "k@",
            "cached:k@alice",
            "cached:private:k@alice",
            "@:k@alice",
            "a\tb",
        ] {
            assert!(AtKey::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    /// A tiny deterministic PRNG (xorshift), so the generated cases are the same every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<T: Clone>(&mut self, items: &[T]) -> T {
            items[(self.next() % items.len() as u64) as usize].clone()
        }
    }

    #[test]
    fn display_then_parse_is_the_identity_over_generated_keys() {
        let mut rng = Rng(0x5eed_1234_abcd_ef01);
        let chars = [
            'a', 'z', 'K', '0', '9', '.', '_', '-', '\'', '*', '"', '🛠', 'é', '#', '/',
        ];
        let signs = [sign("@alice"), sign("@bob🛠"), sign("@x_y-z")];
        for _ in 0..2000 {
            let len = 1 + (rng.next() % 12) as usize;
            let name: String = (0..len).map(|_| rng.pick(&chars)).collect();
            let kind = match rng.next() % 6 {
                0 => KeyKind::Public,
                1 => KeyKind::Shared(rng.pick(&signs)),
                2 => KeyKind::SelfKey,
                3 => KeyKind::Private,
                4 => KeyKind::PrivateKey,
                _ => KeyKind::Local,
            };
            let cached = matches!(kind, KeyKind::Public | KeyKind::Shared(_))
                && rng.next().is_multiple_of(2);
            let owner = (!rng.next().is_multiple_of(4)).then(|| rng.pick(&signs));
            let mut key = AtKey::new(kind, &name, owner).unwrap();
            key.cached = cached;
            let wire = key.to_string();
            assert_eq!(AtKey::parse(&wire), Ok(key), "{wire}");
        }
    }
}
