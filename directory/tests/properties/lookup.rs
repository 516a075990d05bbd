//! Generators and checks of the atDirectory's one request: how `Request::parse` classifies a
//! line.
//!
//! Shared by `directory/tests/properties.rs` (under `cargo test`) and the `fuzz-grammar`
//! campaign of `at-tests`, which both include this file. [`check_request`] returns
//! `Err(<what is wrong>)` instead of panicking, so that a driver can report the input.

use at_common::atsign::MAX_LEN;
use at_directory::lookup::Request;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

/// Arbitrary Unicode, up to 64 characters.
pub fn arbitrary_line() -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..64).prop_map(|chars| chars.into_iter().collect())
}

/// Lines shaped like requests: whitespace (Unicode's too) around, zero to two `@`, then a name
/// of characters atSigns may and may not hold, around the 55-character bound, or `exit` in
/// any case.
pub fn request_line() -> impl Strategy<Value = String> {
    let space = select(
        &[
            "", "", "", " ", "\t", "\r", "\u{a0}", "\u{2028}", "\u{85}", "\u{feff}", "\u{0}",
        ][..],
    );
    let at = select(&["", "@", "@", "@@"][..]);
    let unit = select(
        &[
            "a", "Z", "7", "_", "-", "é", "É", "İ", "\u{212a}", "ß", "🛠", "🦄", "Σ", ":", ".", " ",
            "@", "\u{0}", "\u{200b}", "\u{301}", "exit", "EXIT", "Exit",
        ][..],
    );
    let name = prop_oneof![
        // A pattern of one to three units repeated to a length around the bound.
        (
            vec(unit.clone(), 1..=3),
            prop_oneof![1usize..=8, 20usize..=60]
        )
            .prop_map(|(units, n)| units
                .iter()
                .cycle()
                .take(n)
                .copied()
                .collect::<String>()),
        vec(unit, 0..12).prop_map(|units| units.concat()),
    ];
    (space.clone(), at, name, space)
        .prop_map(|(before, at, name, after)| format!("{before}{at}{name}{after}"))
}

/// Any line of either kind.
pub fn directory_line() -> impl Strategy<Value = String> {
    prop_oneof![1 => arbitrary_line(), 3 => request_line()]
}

/// A request as the documentation describes it, the atSign as its normalised text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Class {
    Empty,
    Exit,
    Lookup(String),
    Invalid,
}

impl Class {
    fn of(request: &Request) -> Class {
        match request {
            Request::Empty => Class::Empty,
            Request::Exit => Class::Exit,
            Request::Lookup(atsign) => Class::Lookup(atsign.as_str().to_string()),
            Request::Invalid => Class::Invalid,
        }
    }
}

/// How the module docs of `lookup.rs` and `atsign.rs` say a line is read: surrounding
/// whitespace ignored; nothing left is `Empty`; `@exit` in any case is `Exit`; an atSign (an
/// optional `@`, then 1 to 55 characters, each an ASCII letter, digit, `_` or `-`, or a
/// non-ASCII character that is neither whitespace nor a control, and still at most 55 once
/// lower-cased) is a lookup of `@` and the name lower-cased; anything else is `Invalid`.
fn documented(line: &str) -> Class {
    let text = line.trim();
    if text.is_empty() {
        return Class::Empty;
    }
    if text.eq_ignore_ascii_case("@exit") {
        return Class::Exit;
    }
    let name = text.strip_prefix('@').unwrap_or(text);
    let allowed = |c: char| {
        if c.is_ascii() {
            c.is_ascii_alphanumeric() || c == '_' || c == '-'
        } else {
            !c.is_whitespace() && !c.is_control()
        }
    };
    let length = name.chars().count();
    if length == 0 || length > MAX_LEN || !name.chars().all(allowed) {
        return Class::Invalid;
    }
    let lower: String = name.chars().flat_map(char::to_lowercase).collect();
    if lower.chars().count() > MAX_LEN {
        return Class::Invalid;
    }
    Class::Lookup(format!("@{lower}"))
}

/// `Request::parse` never panics and classifies every line as documented; a lookup is of the
/// lower-cased name, and asking again with either of its forms (`@name`, `name`; only `exit`
/// for `@exit`, which is the command), or with the line's ASCII letters in the other case, is
/// the same request.
pub fn check_request(line: &str) -> Result<(), String> {
    let got = Request::parse(line);
    let expected = documented(line);
    if Class::of(&got) != expected {
        return Err(format!(
            "{line:?} is read as {got:?}, documented as {expected:?}"
        ));
    }
    let flipped: String = line
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    let again = Request::parse(&flipped);
    if again != got {
        return Err(format!(
            "{line:?} is read as {got:?}, but {flipped:?} as {again:?}"
        ));
    }
    if let Request::Lookup(atsign) = &got {
        // By design `@exit` is the command, so the atSign `@exit` is only asked for as `exit`.
        let forms = if atsign.as_str() == "@exit" {
            vec![atsign.name()]
        } else {
            vec![atsign.as_str(), atsign.name()]
        };
        for form in forms {
            let again = Request::parse(form);
            if again != got {
                return Err(format!(
                    "{line:?} is a lookup of {atsign}, but {form:?} is read as {again:?}"
                ));
            }
        }
    }
    Ok(())
}
