//! A longer campaign of the protocol's property tests: the same generators and checks as
//! `common/tests/properties.rs` and `directory/tests/properties.rs` (included from their
//! files), run for as long as the time given instead of a few thousand cases each.
//!
//! `cargo run --release -p at-tests --bin fuzz-grammar -- [--seconds N] [--seed S]`
//!
//! The time (default 60 s) is shared equally between the properties. Each one runs in
//! batches of fresh seeds; a failure is shrunk by proptest and printed with its seed, and the
//! process exits 1. The output is one line per property: cases tried, failures, time.

#[path = "../../../common/tests/support/grammar.rs"]
#[allow(dead_code)]
mod grammar;
#[path = "../../../directory/tests/properties/lookup.rs"]
#[allow(dead_code)]
mod lookup;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::fmt::Debug;
use std::time::{Duration, Instant};

/// Cases per batch: small enough that the time budget is kept to within a batch's length,
/// large enough that seeding a runner is noise.
const BATCH: u32 = 2_000;

struct Options {
    seconds: u64,
    seed: u64,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        seconds: 60,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--seconds" => options.seconds = value("--seconds")?.clamp(1, 24 * 3600),
            "--seed" => options.seed = value("--seed")?,
            "--help" | "-h" => return Err(
                "usage: fuzz-grammar [--seconds N (default 60)] [--seed S (default: the clock)]"
                    .to_string(),
            ),
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(options)
}

/// What one property's share of the campaign did.
struct Outcome {
    cases: u64,
    failure: Option<String>,
    took: Duration,
}

/// Runs `check` over values of `strategy` in batches until `budget` is spent or a case fails.
/// Batch `i` is seeded from `seed` and `i` alone, so the same `--seed` draws the same cases.
fn campaign<S>(
    strategy: S,
    check: impl Fn(&S::Value) -> Result<(), String>,
    seed: u64,
    budget: Duration,
) -> Outcome
where
    S: Strategy,
    S::Value: Debug,
{
    let started = Instant::now();
    let mut cases = 0u64;
    let mut batch = 0u64;
    while started.elapsed() < budget {
        let batch_seed = seed ^ batch.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&batch_seed.to_le_bytes());
        bytes[8..].copy_from_slice(&(!batch_seed).to_le_bytes());
        let config = Config {
            cases: BATCH,
            failure_persistence: None,
            rng_algorithm: RngAlgorithm::XorShift,
            ..Config::default()
        };
        let rng = TestRng::from_seed(RngAlgorithm::XorShift, &bytes);
        let mut runner = TestRunner::new_with_rng(config, rng);
        let result = runner.run(&strategy, |value| {
            check(&value).map_err(TestCaseError::fail)
        });
        if let Err(error) = result {
            return Outcome {
                cases: cases + u64::from(BATCH),
                failure: Some(format!("in batch {batch}: {error}")),
                took: started.elapsed(),
            };
        }
        cases += u64::from(BATCH);
        batch += 1;
    }
    Outcome {
        cases,
        failure: None,
        took: started.elapsed(),
    }
}

fn main() {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    type Run = Box<dyn Fn(u64, Duration) -> Outcome>;
    let properties: Vec<(&str, Run)> = vec![
        (
            "line codec: documented lines however cut",
            Box::new(|s, b| campaign(grammar::codec_case(), grammar::check_codec, s, b)),
        ),
        (
            "Command::parse never panics (arbitrary Unicode)",
            Box::new(|s, b| {
                campaign(
                    grammar::arbitrary_line(),
                    |l| grammar::check_parse_returns(l),
                    s,
                    b,
                )
            }),
        ),
        (
            "Command::parse never panics (grammar vocabulary)",
            Box::new(|s, b| {
                campaign(
                    grammar::grammar_line(),
                    |l| grammar::check_parse_returns(l),
                    s,
                    b,
                )
            }),
        ),
        (
            "every command renders to a line that parses back equal",
            Box::new(|s, b| {
                campaign(
                    grammar::command_line(),
                    |l| grammar::check_round_trip(l),
                    s,
                    b,
                )
            }),
        ),
        (
            "every command is within the protocol limits",
            Box::new(|s, b| {
                campaign(
                    grammar::command_line(),
                    |l| grammar::check_within_limits(l),
                    s,
                    b,
                )
            }),
        ),
        (
            "error replies: one line, then the prompt",
            Box::new(|s, b| campaign(grammar::error_case(), grammar::check_error_reply, s, b)),
        ),
        (
            "instant_after: exact sum in range, None outside",
            Box::new(|s, b| campaign(grammar::instant_case(), grammar::check_instant_after, s, b)),
        ),
        (
            "metadata fragments: no panic, render back",
            Box::new(|s, b| {
                campaign(
                    grammar::fragment_line(),
                    |l| grammar::check_fragment(l),
                    s,
                    b,
                )
            }),
        ),
        (
            "timestamps format and parse back",
            Box::new(|s, b| campaign(grammar::edgy_i64(), grammar::check_timestamp, s, b)),
        ),
        (
            "atDirectory request lines read as documented",
            Box::new(|s, b| campaign(lookup::directory_line(), |l| lookup::check_request(l), s, b)),
        ),
    ];
    let share = Duration::from_secs(options.seconds) / properties.len() as u32;
    println!(
        "fuzz-grammar: seed {}, {} s, {} properties",
        options.seed,
        options.seconds,
        properties.len()
    );
    let mut total = 0u64;
    let mut failed = 0usize;
    for (i, (name, run)) in properties.iter().enumerate() {
        let outcome = run(options.seed.wrapping_add(i as u64), share);
        total += outcome.cases;
        let status = match &outcome.failure {
            None => "ok".to_string(),
            Some(failure) => {
                failed += 1;
                format!(
                    "FAILED (--seed {} gives the same cases)\n    {failure}",
                    options.seed
                )
            }
        };
        println!(
            "{:>10} cases  {:>5.1} s  {name}: {status}",
            outcome.cases,
            outcome.took.as_secs_f64()
        );
    }
    println!("{total} cases in all, {failed} properties failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
