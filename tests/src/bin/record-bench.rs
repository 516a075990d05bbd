//! `record-bench`: what one stored record costs in bytes and in CPU, in the stored form
//! (MessagePack behind a marker byte) beside the legacy JSON form, in one process.
//!
//! What it does (no I/O, no server: the store's own encoder and decoder,
//! `at_server::store::encoding`):
//! 1. builds three typical records with their metadata as the server stamps it on `update`:
//!    a public key with a short value; a key shared with another atSign (ttl, ttr, encrypted,
//!    the shared key's fields, its IV); a big value (8 KiB of base64, binary and encrypted);
//! 2. checks that each decodes back to itself from both forms, and prints both sizes;
//! 3. times, for `--rounds` rounds, `--iterations` encodes then as many decodes of each record
//!    in each form (a tenth of that for the big record), the forms taking turns at going first
//!    from one round to the next, so drift of the machine hits both alike;
//! 4. prints nanoseconds per encode and per decode: the median over the rounds and the range
//!    `[min–max]`, and MessagePack's median as a fraction of JSON's.
//!
//! Decoding JSON goes through `decode_record`, as the store reads a legacy record.
//!
//! `cargo run --release -p at-tests --bin record-bench`

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use at_common::metadata::{Metadata, MetadataUpdate};
use at_common::AtSign;
use at_server::store::encoding::{decode_record, encode_record, encode_record_json};
use at_server::store::Record;
use at_tests::bench::{load_average, number_arg};

const USAGE: &str = "\
record-bench: bytes and ns per encode/decode of a stored record, MessagePack against JSON

USAGE: record-bench [OPTIONS]

OPTIONS (defaults in brackets):
  --rounds R        rounds, the formats taking turns at going first [7]
  --iterations N    encodes (then decodes) per record, form and round; the big record
                    does a tenth [50000]
  --help            this text";

const MAX_ROUNDS: usize = 100;
const MAX_ITERATIONS: usize = 10_000_000;

struct Options {
    rounds: usize,
    iterations: usize,
}

fn parse(mut args: std::iter::Skip<std::env::Args>) -> Result<Option<Options>, String> {
    let mut options = Options {
        rounds: 7,
        iterations: 50_000,
    };
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--rounds" => options.rounds = number_arg(&flag, args.next(), 1, MAX_ROUNDS)?,
            "--iterations" => {
                options.iterations = number_arg(&flag, args.next(), 10, MAX_ITERATIONS)?
            }
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unknown option {other}\n\n{USAGE}")),
        }
    }
    Ok(Some(options))
}

fn main() -> ExitCode {
    at_tests::bench::main("record-bench", USAGE, parse, run)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Json,
    MessagePack,
}

impl Form {
    fn encode(self, record: &Record) -> Vec<u8> {
        match self {
            Form::Json => encode_record_json(record),
            Form::MessagePack => encode_record(record),
        }
        .expect("a record encodes")
    }
}

/// One record under test, its two encodings, and the rounds' timings per form.
struct Case {
    name: &'static str,
    record: Record,
    iterations: usize,
    /// ns per encode, per decode; one entry per round, [JSON, MessagePack].
    encode: [Vec<f64>; 2],
    decode: [Vec<f64>; 2],
}

fn run(options: &Options) -> Result<(), String> {
    println!(
        "record-bench: {} rounds of {} encodes and decodes per record and form (big: {}), \
         {} CPU(s), load {}",
        options.rounds,
        options.iterations,
        options.iterations / 10,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average()
    );
    let mut cases = records()?
        .into_iter()
        .map(|(name, record, big)| Case {
            name,
            record,
            iterations: if big {
                options.iterations / 10
            } else {
                options.iterations
            },
            encode: [Vec::new(), Vec::new()],
            decode: [Vec::new(), Vec::new()],
        })
        .collect::<Vec<_>>();

    println!("\nbytes per record (the stored value; Redis and fjall add their own per entry):");
    println!(
        "  {:<16} {:>10} {:>12} {:>8}",
        "record", "JSON", "MessagePack", "ratio"
    );
    for case in &cases {
        let (json, msgpack) = (
            Form::Json.encode(&case.record),
            Form::MessagePack.encode(&case.record),
        );
        for bytes in [&json, &msgpack] {
            let back = decode_record(bytes).map_err(|e| format!("{}: {e}", case.name))?;
            if back != case.record {
                return Err(format!("{}: does not decode to itself", case.name));
            }
        }
        println!(
            "  {:<16} {:>10} {:>12} {:>8.2}",
            case.name,
            json.len(),
            msgpack.len(),
            msgpack.len() as f64 / json.len() as f64
        );
    }

    for round in 0..options.rounds {
        let order = match round % 2 {
            0 => [Form::Json, Form::MessagePack],
            _ => [Form::MessagePack, Form::Json],
        };
        for case in &mut cases {
            for form in order {
                let (encode, decode) = time(form, &case.record, case.iterations);
                case.encode[form as usize].push(encode);
                case.decode[form as usize].push(decode);
            }
        }
    }

    for (what, pick) in [
        (
            "encode",
            (|c: &Case| &c.encode) as fn(&Case) -> &[Vec<f64>; 2],
        ),
        ("decode", |c: &Case| &c.decode),
    ] {
        println!(
            "\nns per {what}: median [min–max] over {} rounds",
            options.rounds
        );
        println!(
            "  {:<16} {:>24} {:>24} {:>8}",
            "record", "JSON", "MessagePack", "ratio"
        );
        for case in &cases {
            let [json, msgpack] = pick(case);
            let (json, msgpack) = (Spread::of(json), Spread::of(msgpack));
            println!(
                "  {:<16} {:>24} {:>24} {:>8.2}",
                case.name,
                json.to_string(),
                msgpack.to_string(),
                msgpack.median / json.median
            );
        }
    }
    Ok(())
}

/// ns per encode and per decode of `record` in `form`, over `iterations` of each.
fn time(form: Form, record: &Record, iterations: usize) -> (f64, f64) {
    let began = Instant::now();
    let mut bytes = Vec::new();
    for _ in 0..iterations {
        bytes = form.encode(black_box(record));
        black_box(&bytes);
    }
    let encode = began.elapsed().as_nanos() as f64 / iterations as f64;
    let began = Instant::now();
    for _ in 0..iterations {
        black_box(decode_record(black_box(&bytes)).expect("decodes"));
    }
    let decode = began.elapsed().as_nanos() as f64 / iterations as f64;
    (encode, decode)
}

/// The median and range of one form's per-round figures.
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Spread {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Spread {
            median: sorted[sorted.len() / 2],
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{:.0} [{:.0}–{:.0}]", self.median, self.min, self.max)
    }
}

/// The records measured: (name, record, big).
fn records() -> Result<Vec<(&'static str, Record, bool)>, String> {
    let alice = AtSign::parse("@alice").map_err(|e| e.to_string())?;
    // A fixed instant (2024-10-24), as the server stamps it; a second update moves updatedAt
    // and the version, as most stored keys have been written more than once.
    let now = 1_729_733_702_123;
    let stamped = |fragment: &str| -> Result<Metadata, String> {
        let update = match fragment {
            "" => MetadataUpdate::default(),
            _ => {
                MetadataUpdate::parse_prefix(fragment)
                    .map_err(|e| format!("{fragment}: {e:?}"))?
                    .0
            }
        };
        let first = Metadata::updated(None, &update, &alice, now).map_err(|e| e.to_string())?;
        Metadata::updated(Some(first), &update, &alice, now + 60_123).map_err(|e| e.to_string())
    };
    let base64 = |len: usize| -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        (0..len)
            .map(|i| ALPHABET[(i * 7 + i / 3) % 64] as char)
            .collect()
    };
    let shared = format!(
        ":ttl:86400000:ttr:3600:isEncrypted:true:sharedKeyEnc:{}:pubKeyCS:{}:encKeyName:\
         shared_key.bob:encAlgo:AES/SIC/PKCS7Padding:ivNonce:{}",
        base64(344),
        base64(64),
        base64(24)
    );
    Ok(vec![
        (
            "public small",
            Record {
                value: Some("v123".into()),
                metadata: stamped("")?,
            },
            false,
        ),
        (
            "shared ttl/ttr",
            Record {
                value: Some(base64(88)),
                metadata: stamped(&shared)?,
            },
            false,
        ),
        (
            "big 8 KiB",
            Record {
                value: Some(base64(8192)),
                metadata: stamped(":isBinary:true:isEncrypted:true")?,
            },
            true,
        ),
    ])
}
