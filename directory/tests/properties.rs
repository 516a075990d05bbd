//! Property tests of the atDirectory's request line: `Request::parse` never panics and reads
//! every line as its documentation says.
//!
//! The generators and the check are in `properties/lookup.rs`, shared with the longer
//! campaign `cargo run --release -p at-tests --bin fuzz-grammar`. `PROPTEST_CASES=<n>`
//! overrides the case count. The bug the property found is kept as a regression test.

#[path = "properties/lookup.rs"]
mod lookup;

use at_directory::lookup::Request;
use lookup::*;
use proptest::prelude::*;
use proptest::test_runner::RngAlgorithm;

/// `cases` cases (unless `PROPTEST_CASES` says otherwise), drawn with XorShift, faster than
/// the default ChaCha in a debug build.
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
    #![proptest_config(cases(4_000))]

    /// Empty, exit, a lookup of the lower-cased atSign, or invalid, exactly as documented;
    /// the same whatever the ASCII case, and a lookup's own forms are the same lookup.
    #[test]
    fn request_parse_classifies_every_line_as_documented(line in directory_line()) {
        check_request(&line).map_err(TestCaseError::fail)?;
    }
}

/// Found by `request_parse_classifies_every_line_as_documented`: `AtSign::parse` bounded a
/// name at 55 characters before lower-casing it, and `İ` lower-cases to two characters, so a
/// request for 28 × `İ` looked up an atSign of 56 characters that was refused when asked for
/// in its own form. Now such a name is refused in every form.
#[test]
fn a_name_that_lengthens_past_the_bound_when_lower_cased_is_refused() {
    assert_eq!(Request::parse(&"İ".repeat(28)), Request::Invalid);
    let request = Request::parse(&"İ".repeat(27));
    let Request::Lookup(atsign) = &request else {
        panic!("27 × İ (54 characters lower-cased) is an atSign, not {request:?}");
    };
    assert_eq!(atsign.name().chars().count(), 54);
    assert_eq!(Request::parse(atsign.as_str()), request);
}
