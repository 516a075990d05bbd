//! Property tests of the protocol's pure parts: the line codec, `Command::parse` and
//! `Display`, the limits, error replies, metadata arithmetic and timestamps.
//!
//! The generators and checks are in `support/grammar.rs`, shared with the longer campaign
//! `cargo run --release -p at-tests --bin fuzz-grammar`. Case counts are kept modest so that
//! this file runs in a few seconds in a debug build; `PROPTEST_CASES=<n>` overrides them all.
//! Bugs the properties found are pinned as `#[ignore]`d tests at the end, with what is wrong.

#[path = "support/grammar.rs"]
mod grammar;

use at_common::atsign::{AtSign, MAX_LEN};
use at_common::verb::Command;
use grammar::*;
use proptest::prelude::*;
use proptest::test_runner::RngAlgorithm;

/// `cases` cases (unless `PROPTEST_CASES` says otherwise), drawn with XorShift: several times
/// faster than the default ChaCha in a debug build, and as reproducible from a seed.
fn cases(cases: u32) -> ProptestConfig {
    let from_env = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            from_env.cases
        } else {
            cases
        },
        rng_algorithm: RngAlgorithm::XorShift,
        ..from_env
    }
}

proptest! {
    #![proptest_config(cases(1_000))]

    /// Arbitrary bytes cut into reads anywhere: the codec never panics, yields exactly the
    /// lines its documentation says (terminators, `\r` dropped, the limit, UTF-8, the
    /// unterminated last line dropped) whatever the cuts, and never buffers past its limit.
    #[test]
    fn line_codec_yields_the_documented_lines_however_the_input_is_cut(case in codec_case()) {
        check_codec(&case).map_err(TestCaseError::fail)?;
    }
}

proptest! {
    #![proptest_config(cases(3_000))]

    #[test]
    fn command_parse_never_panics_on_arbitrary_unicode(line in arbitrary_line()) {
        check_parse_returns(&line).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn command_parse_never_panics_on_lines_built_from_the_grammar(line in grammar_line()) {
        check_parse_returns(&line).map_err(TestCaseError::fail)?;
    }
}

proptest! {
    #![proptest_config(cases(4_000))]

    /// The grammar's own claim (verb/tests.rs): `Display` then `parse` is the identity.
    #[test]
    fn every_parsed_command_renders_to_a_line_that_parses_back_equal(line in command_line()) {
        check_round_trip(&line).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn every_parsed_command_is_within_the_protocol_limits(line in command_line()) {
        check_within_limits(&line).map_err(TestCaseError::fail)?;
    }
}

proptest! {
    #![proptest_config(cases(2_000))]

    #[test]
    fn error_replies_are_one_line_then_the_prompt_in_every_style_and_prompt(case in error_case()) {
        check_error_reply(&case).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn instant_after_is_the_exact_sum_within_the_date_range_and_none_outside(
        case in instant_case()
    ) {
        check_instant_after(&case).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn metadata_fragment_parse_never_panics_and_what_it_reads_renders_back(
        line in fragment_line()
    ) {
        check_fragment(&line).map_err(TestCaseError::fail)?;
    }
}

proptest! {
    #![proptest_config(cases(5_000))]

    #[test]
    fn every_i64_timestamp_formats_and_parses_back_to_itself(t in edgy_i64()) {
        check_timestamp(&t).map_err(TestCaseError::fail)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Bugs found by the properties above, pinned until they are fixed.

/// Found by `every_parsed_command_renders_to_a_line_that_parses_back_equal` and
/// `every_parsed_command_is_within_the_protocol_limits` (which count it as
/// [`LONG_ATSIGN_BUG`] meanwhile). `AtSign::parse` (common/src/atsign.rs) counts the name's
/// characters, then lower-cases it with `char::to_lowercase`, which can give more than one
/// character: `İ` (U+0130) becomes `i` and U+0307. So 28 × `İ` (28 characters, within the 55
/// of `MAX_LEN`) becomes a name of 56 characters: over the bound the type promises, and refused
/// when parsed again. A `from:` (or any verb naming an atSign: lookup's owner, notify's
/// recipient, a shared key's `@bob:`) then renders to a line that does not parse. Expected:
/// either such a name is refused, or its lower-cased form is within 55 characters and parses
/// back to itself.
#[test]
#[ignore = "AtSign::parse checks the length before lower-casing: 28 × `İ` becomes an atSign of 56 characters whose rendering is refused"]
fn atsign_lowercasing_can_lengthen_a_name_past_55_characters() {
    let name = "İ".repeat(28);
    if let Ok(atsign) = AtSign::parse(&name) {
        assert!(
            atsign.name().chars().count() <= MAX_LEN,
            "{name:?} parses to an atSign of {} characters",
            atsign.name().chars().count()
        );
        assert_eq!(AtSign::parse(atsign.as_str()), Ok(atsign));
    }
    let line = format!("from:@{name}");
    if let Ok(command) = Command::parse(&line) {
        let wire = command.to_string();
        assert_eq!(Command::parse(&wire).ok(), Some(command), "{wire:?}");
    }
}

/// Found by `every_parsed_command_renders_to_a_line_that_parses_back_equal` (which counts it as
/// [`NOTIFY_LIST_REGEX_BUG`] meanwhile); shrunk from `notify:list: :2024-10-24:wavi`.
/// `notify:list`'s regex is the grammar's `(:(?<regex>[^:]+))?` with no `$`, so in
/// `notify:list:a :b` it is `a ` (with its space) and `:b` is ignored. `NotifyList`'s
/// `Display` (common/src/verb/notify_list.rs) writes the regex last: `notify:list:a `, whose
/// trailing space `Command::parse` trims away, so it parses back with the regex `a` (and a
/// regex of only whitespace comes back as no regex at all). Expected: the rendering parses back
/// to the same command (e.g. by writing a `:` after a regex that ends in whitespace).
#[test]
#[ignore = "NotifyList's Display writes a regex ending in whitespace last, where the parser's trim removes it: `notify:list:a :b` renders `notify:list:a `, which parses to the regex `a`"]
fn notify_list_regex_ending_in_whitespace_does_not_survive_its_rendering() {
    let command = Command::parse("notify:list:a :b").unwrap();
    let wire = command.to_string();
    assert_eq!(Command::parse(&wire).ok(), Some(command), "{wire:?}");
}
