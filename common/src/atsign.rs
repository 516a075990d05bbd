//! `AtSign`: an atSign such as `@alice`, parsed and normalised once.
//!
//! # Format
//! On input the leading `@` is optional (`alice`, `@alice`, `@Alice` are the same atSign).
//! The stored form always has exactly one leading `@` and is lower-cased, as the reference's
//! `AtUtils.fixAtSign` does. The name after the `@` is 1 to [`MAX_LEN`] characters, before and
//! after lower-casing (which can lengthen it: `İ` becomes two characters), each a
//! Unicode letter or digit, `_`, `-`, or a non-ASCII symbol (atSigns may carry emoji,
//! e.g. `@alice🛠`). `@`, `:`, whitespace, control characters and other ASCII punctuation
//! are refused, because each of them has a meaning in the verb grammar.

use std::fmt;
use std::str::FromStr;

/// The longest atSign name accepted, in characters, without the leading `@`
/// (the reference's `charsInAtSign{1,55}`).
pub const MAX_LEN: usize = 55;

/// A valid, normalised atSign. `Display` and [`AtSign::as_str`] give `@name`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AtSign(String);

/// Why a string is not an atSign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtSignError {
    #[error("an atSign needs a name after the '@'")]
    Empty,
    #[error("an atSign is at most {MAX_LEN} characters long, not {0}")]
    TooLong(usize),
    #[error("an atSign may not contain {0:?}")]
    BadChar(char),
}

impl AtSign {
    /// Parses `alice`, `@alice` or `@Alice` into `@alice`.
    pub fn parse(input: &str) -> Result<AtSign, AtSignError> {
        let name = input.strip_prefix('@').unwrap_or(input);
        if name.is_empty() {
            return Err(AtSignError::Empty);
        }
        if let Some(bad) = name.chars().find(|c| !allowed(*c)) {
            return Err(AtSignError::BadChar(bad));
        }
        let len = name.chars().count();
        if len > MAX_LEN {
            return Err(AtSignError::TooLong(len));
        }
        // Bounded again after lower-casing: a character can lower-case to two (`İ` to `i` and
        // a combining dot), and the bound is what the stored and rendered name promises.
        let mut normal = String::with_capacity(name.len() + 1);
        normal.push('@');
        normal.extend(name.chars().flat_map(char::to_lowercase));
        let len = normal.chars().count() - 1;
        if len > MAX_LEN {
            return Err(AtSignError::TooLong(len));
        }
        Ok(AtSign(normal))
    }

    /// The wire form, with the leading `@`: `@alice`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name without the `@`: `alice`. This is how the atDirectory stores and is asked for atSigns.
    pub fn name(&self) -> &str {
        &self.0[1..]
    }
}

fn allowed(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || c == '_' || c == '-'
    } else {
        !c.is_whitespace() && !c.is_control()
    }
}

impl FromStr for AtSign {
    type Err = AtSignError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AtSign::parse(s)
    }
}

impl fmt::Display for AtSign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AtSign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AtSign({})", self.0)
    }
}

/// As JSON text, `"@alice"`.
impl serde::Serialize for AtSign {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// From JSON text, checked as [`AtSign::parse`] checks it.
impl<'de> serde::Deserialize<'de> for AtSign {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<AtSign, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        AtSign::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl AsRef<str> for AtSign {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_at_is_optional_and_case_is_folded() {
        for input in ["alice", "@alice", "@Alice", "ALICE"] {
            let sign = AtSign::parse(input).expect(input);
            assert_eq!(sign.as_str(), "@alice");
            assert_eq!(sign.name(), "alice");
            assert_eq!(sign.to_string(), "@alice");
        }
    }

    #[test]
    fn emoji_and_underscores_and_dashes_are_allowed() {
        assert_eq!(AtSign::parse("alice🛠").unwrap().as_str(), "@alice🛠");
        assert_eq!(AtSign::parse("@emoji🦄🛠").unwrap().as_str(), "@emoji🦄🛠");
        assert_eq!(AtSign::parse("a_b-c9").unwrap().as_str(), "@a_b-c9");
    }

    #[test]
    fn grammar_characters_are_refused() {
        assert_eq!(AtSign::parse(""), Err(AtSignError::Empty));
        assert_eq!(AtSign::parse("@"), Err(AtSignError::Empty));
        assert_eq!(AtSign::parse("@@alice"), Err(AtSignError::BadChar('@')));
        assert_eq!(AtSign::parse("al:ice"), Err(AtSignError::BadChar(':')));
        assert_eq!(AtSign::parse("al ice"), Err(AtSignError::BadChar(' ')));
        assert_eq!(AtSign::parse("alice\t"), Err(AtSignError::BadChar('\t')));
        assert_eq!(AtSign::parse("a.b"), Err(AtSignError::BadChar('.')));
        assert_eq!(
            AtSign::parse("a\u{85}b"),
            Err(AtSignError::BadChar('\u{85}'))
        );
    }

    #[test]
    fn length_is_bounded_in_characters() {
        let longest = "a".repeat(MAX_LEN);
        assert!(AtSign::parse(&longest).is_ok());
        assert_eq!(
            AtSign::parse(&"a".repeat(MAX_LEN + 1)),
            Err(AtSignError::TooLong(MAX_LEN + 1))
        );
        // Emoji count as one character each, not as their UTF-8 length.
        assert!(AtSign::parse(&"🛠".repeat(MAX_LEN)).is_ok());
    }
}
