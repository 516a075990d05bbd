//! Property tests of the protocol's pure parts: the line codec, `Command::parse` and
//! `Display`, the limits, error replies, metadata arithmetic and timestamps.
//!
//! The generators and checks are in `support/grammar.rs`, shared with the longer campaign
//! `cargo run --release -p at-tests --bin fuzz-grammar`. Case counts are kept modest so that
//! this file runs in a few seconds in a debug build; `PROPTEST_CASES=<n>` overrides them all.
//! Bugs the properties found are kept as regression tests at the end.

#[path = "support/grammar.rs"]
mod grammar;

use at_common::atsign::{AtSign, AtSignError, MAX_LEN};
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
// Bugs found by the properties above, kept as regression tests.

/// Found by the round-trip and limits properties: `AtSign::parse` counted a name's characters,
/// then lower-cased it with `char::to_lowercase`, which can give two characters (`İ`, U+0130,
/// becomes `i` and U+0307). 28 × `İ` became a name of 56 characters, over the bound, whose
/// rendering (`from:`, a lookup's owner, …) no longer parsed. Now it is refused.
#[test]
fn a_name_that_lengthens_past_the_bound_when_lower_cased_is_refused() {
    let name = "İ".repeat(28);
    assert_eq!(AtSign::parse(&name), Err(AtSignError::TooLong(MAX_LEN + 1)));
    assert!(Command::parse(&format!("from:@{name}")).is_err());
    let atsign = AtSign::parse(&"İ".repeat(27)).unwrap();
    assert_eq!(atsign.name().chars().count(), 54);
    assert_eq!(AtSign::parse(atsign.as_str()), Ok(atsign));
}

/// Found by the round-trip property, shrunk from `notify:list: :2024-10-24:wavi`: the grammar's
/// regex is `[^:]+` with no `$`, so in `notify:list:a :b` it is `a ` (with its space) and `:b`
/// is ignored. `Display` wrote the regex last, `notify:list:a `, whose trailing space the
/// line's trim removed. Now a `:` follows a regex that ends in whitespace.
#[test]
fn a_notify_list_regex_ending_in_whitespace_survives_its_rendering() {
    let command = Command::parse("notify:list:a :b").unwrap();
    let wire = command.to_string();
    assert_eq!(wire, "notify:list:a :");
    assert_eq!(Command::parse(&wire).ok(), Some(command));
    let plain = Command::parse("notify:list:2024-10-01:wavi").unwrap();
    assert_eq!(plain.to_string(), "notify:list:2024-10-01:wavi");
}

/// Found by the fuzz-grammar campaign (round trip): the lookup key's two-character minimum was
/// counted before lower-casing, so in `lookup:all:İ@alice` the key `İ` was too short, `all:`
/// became part of the key (`all:i̇`), and the rendering `lookup:all:i̇@alice` parsed as the
/// `all` op. The minimum now counts the key as kept, so the op is read the same both times.
#[test]
fn a_lookup_key_that_lengthens_when_lower_cased_keeps_its_op() {
    for line in ["lookup:bypassCache:true:all:İ@alice", "lookup:meta:İ@alice"] {
        let command = Command::parse(line).unwrap();
        let wire = command.to_string();
        assert_eq!(
            Command::parse(&wire).ok(),
            Some(command),
            "{line:?} renders {wire:?}"
        );
    }
}
