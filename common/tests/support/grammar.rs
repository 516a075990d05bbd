//! Generators and checks of the protocol's properties: the line codec, the verb grammar, error
//! replies, metadata arithmetic and timestamps.
//!
//! Shared by `common/tests/properties.rs` (a few thousand cases per property, under
//! `cargo test`) and the `fuzz-grammar` campaign of `at-tests` (as many as fit in its time),
//! which both include this file, so the two drive the same generators through the same checks.
//! Every `check_*` returns `Err(<what is wrong>)` instead of panicking, so that a driver can
//! report the input with it; a panic inside the code under test is caught by proptest's
//! runner and reported (and shrunk) as a failure too.

use at_common::codec::{CodecError, LineCodec};
use at_common::error::{AtError, ErrorCode};
use at_common::key::{AtKey, KeyKind};
use at_common::limits::{instant_after, MAX_CACHED_KEY_CHARS, MAX_DATE_MS, MAX_ID_CHARS};
use at_common::metadata::{format_timestamp, parse_timestamp, MetadataUpdate};
use at_common::reply::{ErrorStyle, Prompt, Reply};
use at_common::verb::{Command, Config, NotifyScope};
use at_common::AtSign;
use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use tokio_util::codec::Decoder;

// ---------------------------------------------------------------------------------------------
// The line codec

/// Bytes for the codec, cut into reads at arbitrary points, and the codec's limit.
#[derive(Debug, Clone)]
pub struct CodecCase {
    pub max_line: usize,
    pub input: Vec<u8>,
    /// Where reads end (indexes into `input`, any order, repeats allowed).
    pub cuts: Vec<Index>,
}

/// Small limits, so that lines over the limit are as common as lines under it; bytes that are
/// mostly terminators, ASCII, multi-byte characters (which a cut may split), lone or invalid
/// UTF-8 bytes and anything else.
pub fn codec_case() -> impl Strategy<Value = CodecCase> {
    // Indexes into this table are cheaper to generate than a union of strategies; the empty
    // piece stands for an arbitrary byte. A failure shrinks towards index 0, `a`.
    const PIECES: [&[u8]; 14] = [
        b"a",
        b"\n",
        b"\n",
        b"\r",
        b"\r\n",
        b"a",
        b"a",
        b"scan",
        "é".as_bytes(),
        "🛠".as_bytes(),
        b"\xff",
        b"\xc3",
        b"\x80",
        b"",
    ];
    (
        prop_oneof![3 => 0usize..=16, 1 => 0usize..=300],
        vec((0..PIECES.len(), any::<u8>()), 0..160),
        vec(any::<Index>(), 0..16),
    )
        .prop_map(|(max_line, pieces, cuts)| CodecCase {
            max_line,
            input: pieces
                .into_iter()
                .flat_map(|(i, byte)| match PIECES[i] {
                    b"" => vec![byte],
                    piece => piece.to_vec(),
                })
                .collect(),
            cuts,
        })
}

/// What a codec hands its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Framed {
    Line(String),
    TooLong,
    InvalidUtf8,
}

/// The codec's documented rules, applied to the whole input at once: lines end at `\n`, one
/// `\r` before it is dropped; a line (or the unterminated rest, not counting a last `\r` that
/// may precede a `\n` still to come) longer than the limit is `TooLong`; a complete line that
/// is not UTF-8 is `InvalidUtf8`; nothing is read after an error; an unterminated last line
/// within the limit is dropped at the end of input.
fn documented_lines(max_line: usize, input: &[u8]) -> Vec<Framed> {
    let mut out = Vec::new();
    let mut rest = input;
    while let Some(end) = rest.iter().position(|b| *b == b'\n') {
        let mut line = &rest[..end];
        if let Some(without) = line.strip_suffix(b"\r") {
            line = without;
        }
        if line.len() > max_line {
            out.push(Framed::TooLong);
            return out;
        }
        match std::str::from_utf8(line) {
            Ok(text) => out.push(Framed::Line(text.to_string())),
            Err(_) => {
                out.push(Framed::InvalidUtf8);
                return out;
            }
        }
        rest = &rest[end + 1..];
    }
    let pending = rest.len() - usize::from(rest.last() == Some(&b'\r'));
    if pending > max_line {
        out.push(Framed::TooLong);
    }
    out
}

/// Feeds `case.input` to a [`LineCodec`] read by read, decoding after each read until it wants
/// more, then at the end of input as `FramedRead` does; checks that what comes out is exactly
/// [`documented_lines`], and that between reads no more than the limit (plus one `\r`) stays
/// buffered.
pub fn check_codec(case: &CodecCase) -> Result<(), String> {
    let CodecCase {
        max_line, input, ..
    } = case;
    let max_line = *max_line;
    let mut cuts: Vec<usize> = case.cuts.iter().map(|i| i.index(input.len() + 1)).collect();
    cuts.push(input.len());
    cuts.sort_unstable();
    cuts.dedup();

    let mut codec = LineCodec::new(max_line);
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    let mut start = 0;
    let framed = |result: Result<Option<String>, CodecError>| -> Result<Option<Framed>, String> {
        match result {
            Ok(None) => Ok(None),
            Ok(Some(line)) if line.len() > max_line || line.contains('\n') => Err(format!(
                "decoded {line:?}: over the limit of {max_line} bytes or holding a newline"
            )),
            Ok(Some(line)) => Ok(Some(Framed::Line(line))),
            Err(CodecError::TooLong { limit }) if limit == max_line => Ok(Some(Framed::TooLong)),
            Err(CodecError::InvalidUtf8) => Ok(Some(Framed::InvalidUtf8)),
            Err(other) => Err(format!("unexpected error {other:?}")),
        }
    };
    'reads: for &end in &cuts {
        buf.extend_from_slice(&input[start..end]);
        start = end;
        loop {
            match framed(codec.decode(&mut buf))? {
                None => break,
                Some(Framed::Line(line)) => got.push(Framed::Line(line)),
                Some(error) => {
                    got.push(error);
                    break 'reads;
                }
            }
        }
        if buf.len() > max_line + 1 {
            return Err(format!(
                "{} bytes buffered after a read, limit {max_line}",
                buf.len()
            ));
        }
    }
    if !matches!(got.last(), Some(Framed::TooLong | Framed::InvalidUtf8)) {
        loop {
            match framed(codec.decode_eof(&mut buf))? {
                None => {
                    if !buf.is_empty() {
                        return Err(format!("{} bytes left at the end of input", buf.len()));
                    }
                    break;
                }
                Some(Framed::Line(line)) => got.push(Framed::Line(line)),
                Some(error) => {
                    got.push(error);
                    break;
                }
            }
        }
    }
    let expected = documented_lines(max_line, input);
    if got != expected {
        return Err(format!(
            "reads ending at {cuts:?}: decoded {got:?}, documented {expected:?}"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The verb grammar

/// The start of a line: every verb, and some that only look like one.
#[rustfmt::skip]
const VERBS: &[&str] = &[
    "", "from:", "from:@", "cram:", "pkam:", "pol", "scan", "scan:", "lookup:", "plookup:",
    "llookup:", "update:", "update:meta:", "update:json:", "delete:", "stats", "stats:", "sync:",
    "sync:from:", "notify:", "notify:list", "notify:list:", "notify:status:", "notify:all:",
    "notify:remove:", "notify:fetch:", "notify:id:", "monitor", "monitor:", "config:",
    "config:block:add:", "config:block:remove:", "config:block:show", "config:set:", "info",
    "info:", "noop:", "batch:", "enroll:", "enroll:request:", "enroll:list", "enroll:revoke:",
    "@exit", "UPDATE:", "Lookup:", "NOTIFY:", "up date:",
];

/// The grammar's vocabulary: separators, key prefixes, option names, keywords, numbers at and
/// past every bound, atSigns, characters whose case mapping changes their length, line and
/// control characters, JSON.
#[rustfmt::skip]
const PIECES: &[&str] = &[
    ":", ":", ":", "@", "@", " ", "::", ",", ".", "-", "=", "public", "public:", "cached:",
    "private:", "privatekey:", "local:", "@bob:", "ttl", "ttb", "ttr", "ccd", ":ttl:", ":ttb:",
    ":ttr:", ":ccd:", ":ttln:", "isBinary", "isEncrypted", "sharedKeyEnc", "pubKeyCS",
    "sharedKeyStatus", "encoding", "encKeyName", "encAlgo", "ivNonce", "skeEncKeyName",
    "skeEncAlgo", "dataSignature", "true", "false", "TRUE", "meta", "all", "bypassCache", "id",
    "update", "delete", "messageType", "text", "key", "priority", "low", "high", "strategy",
    "latest", "latestN", "notifier", "ttln", "showHidden", "page", "limit", "from", "strict",
    "selfNotifications", "multiplexed", "clientConfig", "signingAlgo", "rsa2048", "hashingAlgo",
    "sha256", "enrollmentId", "force", "block", "add", "show", "brief", "-1", "-2", "0", "1", "5",
    "99", "-0", "007", "4294967295", "4294967296", "9223372036854775807", "9223372036854775808",
    "-9223372036854775808", "18446744073709551616", "8640000000000000", "8640000000000001",
    "8640000000000", "2592000000", "99999999999999999999999", "@alice", "@bob", "alice", "bob",
    "@carol", "phone", "phone@alice", "k@alice", "wavi", ".*", "é", "🛠", "İ", "ß", "Σ", "\u{212a}",
    "ﬃ", "\t", "\r", "\n", "\u{2028}", "\u{85}", "\u{0}", "{", "}", "\"", "[", "]",
    r#"{"version":"3.0.57"}"#, r#"{"version":"3.0.37"}"#,
    r#"{"atKey":"phone","value":"1","sharedBy":"@alice"}"#, r#"[{"id":1,"command":"scan"}]"#,
    r#"{"enrollmentId":"e1"}"#, r#"{"appName":"a","deviceName":"d","namespaces":{"wavi":"rw"}}"#,
];

/// Valid lines of every verb, from the spec and the reference, for mutation.
const EXAMPLES: &[&str] = &[
    "from:@bob",
    r#"from:@alice:clientConfig:{"version":"3.0.57"}"#,
    "cram:abc123",
    "pkam:c2lnbmF0dXJl==",
    "pkam:signingAlgo:rsa2048:hashingAlgo:sha256:enrollmentId:e1-2:c2ln",
    "pol",
    "scan",
    "scan:showHidden:true myapp",
    "scan:@bob:page:2",
    "scan .*wavi",
    "lookup:phone@alice",
    "lookup:bypassCache:true:all:shared_key@alice",
    "plookup:meta:publickey@alice",
    "llookup:public:publickey@alice",
    "llookup:all:@bob:phone@alice",
    "llookup:cached:public:publickey@bob",
    "llookup:privatekey:at_secret@alice",
    "update:location@bob bob's location value",
    "update:ttl:600000:location@bob value",
    "update:@alice:phone@bob shared value",
    "update:public:location.myapp@alice public value",
    "update:privatekey:at_pkam_publickey MIIBIjAN",
    "update:isEncrypted:true:ivNonce:MkUg/ltf6aibsw==:@bob:phone.myapp@alice Q2lwaGVy",
    "update:ttr:86400000:ccd:true:@bob:shared_key@alice a2V5",
    r#"update:json:{"atKey":"phone","value":"1","sharedBy":"@alice"}"#,
    "update:meta:phone@bob:isBinary:true",
    "update:meta:@alice:phone@bob:ttl:600000:isBinary:true:isEncrypted:true",
    "delete:phone@alice",
    "delete:privatekey:at_secret",
    "delete:priority:high:cached:@alice:phone@bob",
    "stats",
    "stats:1,3,15",
    "stats:3:.*wavi",
    "sync:10",
    "sync:from:-1:limit:10:.*wavi",
    "notify:update:@alice:test@bob",
    "notify:messageType:text:@bob:my sample message to bob",
    "notify:update:messageType:key:notifier:system:ttr:-1:@bob:email@alice:alice@yahoo.com",
    "notify:id:b67c5a7b-7beb-4178:update:isEncrypted:true:ivNonce:0FGj472sM6I==:@bob:m.app@alice:Q2lw",
    "notify:id:x1:delete:messageType:key:notifier:system:ttln:900000:@bob:phone@alice",
    "notify:update:priority:high:strategy:latest:latestN:3:@bob:phone@alice",
    "notify:update:public:phone@alice:123",
    "notify:list",
    "notify:list:2024-10-01:2024-10-24:wavi",
    "notify:remove:0e5e9e89-c9cb-423b-8972-8c5487215990",
    "notify:status:0e5e9e89-c9cb-423b-8972-8c5487215990",
    "notify:fetch:abc-1",
    "notify:all:update:@bob,@carol:phone@alice:123",
    "notify:all:messageType:key:ttl:5:ttr:-1:ccd:true:@bob:phone@alice",
    "monitor",
    "monitor:0 .*",
    "monitor:strict:selfNotifications:multiplexed:1700000000000 wavi",
    "config:block:add:@bob @carol",
    "config:block:remove:@bob",
    "config:block:show",
    "config:set:inboundMaxLimit=10",
    "config:print:inboundMaxLimit",
    "info",
    "info:brief",
    "noop:0",
    r#"batch:[{"id":1,"command":"update:public:a@alice 1"},{"id":2,"command":"llookup:public:a@alice"}]"#,
    r#"enroll:request:{"appName":"wavi","deviceName":"pixel","namespaces":{"wavi":"rw"}}"#,
    r#"enroll:revoke:force:{"enrollmentId":"1"}"#,
    "enroll:list",
    "@exit",
];

/// A run of one unit, at and around the bounds: keys (248/255), ids (255), and far past them.
fn long_run() -> impl Strategy<Value = String> {
    (
        select(
            &[
                "k", "a", "é", "İ", "🛠", "\u{212a}", "ß", "a:", "@", "1", "-",
            ][..],
        ),
        prop_oneof![240usize..=262, 500usize..=520, Just(5000)],
    )
        .prop_map(|(unit, n)| unit.repeat(n))
}

/// A name of 20 to 60 characters around the bound of an atSign name (55), repeating a pattern
/// of one to three characters, some of which change length when lower-cased (`İ` becomes two
/// characters) or become ASCII (the Kelvin sign becomes `k`).
fn name_run() -> impl Strategy<Value = String> {
    let unit = select(&['a', 'z', '7', '_', '-', 'é', 'İ', '\u{212a}', 'ß', 'Σ', '🛠'][..]);
    (vec(unit, 1..=3), 20usize..=60).prop_map(|(units, n)| units.iter().cycle().take(n).collect())
}

/// One piece of a line built from the vocabulary.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => select(PIECES).prop_map(str::to_string),
        2 => long_run(),
        3 => name_run(),
        1 => "[0-9]{10,30}",
        1 => any::<char>().prop_map(String::from),
    ]
}

/// Arbitrary Unicode: any characters (proptest favours the awkward ones), up to 64.
pub fn arbitrary_line() -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..64).prop_map(|chars| chars.into_iter().collect())
}

/// A verb (or something like one) followed by pieces of the vocabulary; sometimes all upper
/// case or surrounded by whitespace.
pub fn grammar_line() -> impl Strategy<Value = String> {
    (select(VERBS), vec(piece(), 0..14), 0u8..8).prop_map(|(verb, pieces, form)| {
        let line = format!("{verb}{}", pieces.concat());
        match form {
            0 => line.to_uppercase(),
            1 => format!("  {line}\t"),
            _ => line,
        }
    })
}

/// A valid example with up to four edits: a piece inserted, a character removed, a character
/// replaced by a piece, or the word (run of characters other than `:`, `@` and whitespace)
/// around a character replaced by a piece: an atSign, a key, an id, a number.
pub fn mutated_example() -> impl Strategy<Value = String> {
    let edit = (0u8..4, any::<Index>(), piece());
    (select(EXAMPLES), vec(edit, 0..5)).prop_map(|(example, edits)| {
        let mut chars: Vec<char> = example.chars().collect();
        for (kind, at, piece) in edits {
            let at = at.index(chars.len() + 1);
            if at == chars.len() {
                chars.extend(piece.chars());
                continue;
            }
            match kind {
                0 => {
                    chars.splice(at..at, piece.chars());
                }
                1 => {
                    chars.remove(at);
                }
                2 => {
                    chars.splice(at..=at, piece.chars());
                }
                _ => {
                    let plain = |c: &char| !matches!(c, ':' | '@') && !c.is_whitespace();
                    let start = chars[..at]
                        .iter()
                        .rposition(|c| !plain(c))
                        .map_or(0, |i| i + 1);
                    let end = chars[at..]
                        .iter()
                        .position(|c| !plain(c))
                        .map_or(chars.len(), |i| at + i);
                    chars.splice(start..end, piece.chars());
                }
            }
        }
        chars.into_iter().collect()
    })
}

/// Any of the three kinds of line.
pub fn command_line() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => arbitrary_line(),
        2 => grammar_line(),
        3 => mutated_example(),
    ]
}

/// Shortens a line for a message.
fn shown(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 300 {
        return format!("{text:?}");
    }
    let head: String = chars[..200].iter().collect();
    format!("{head:?}… ({} characters)", chars.len())
}

/// `Command::parse` returns (never panics) on any line; this only calls it.
pub fn check_parse_returns(line: &str) -> Result<(), String> {
    let _ = Command::parse(line);
    Ok(())
}

/// Verbs whose rendering is not expected to parse back to an equal command. None: `Display`
/// is documented as "the wire form a peer link would send" and the grammar's own tests claim
/// `Display` then `parse` is the identity for every verb (verb/tests.rs), so every verb is
/// held to it. Kept as a list so that an exception, if one is ever made by design, is named.
const NOT_ROUND_TRIPPING: &[&str] = &[];

/// Whatever parses renders (`Display`) to one line that parses back to an equal command, and
/// renders the same again: what a server forwards is what it was sent.
pub fn check_round_trip(line: &str) -> Result<(), String> {
    let Ok(command) = Command::parse(line) else {
        return Ok(());
    };
    if NOT_ROUND_TRIPPING.contains(&command.verb()) {
        return Ok(());
    }
    let wire = command.to_string();
    if wire.contains('\n') && !line.contains('\n') {
        return Err(format!(
            "{} renders to {} across lines",
            shown(line),
            shown(&wire)
        ));
    }
    match Command::parse(&wire) {
        Ok(again) if again == command => {
            let rendered = again.to_string();
            if rendered == wire {
                Ok(())
            } else {
                Err(format!(
                    "{} renders to {}, which renders to {}",
                    shown(line),
                    shown(&wire),
                    shown(&rendered)
                ))
            }
        }
        Ok(again) => Err(format!(
            "{} parses to {command:?} and renders to {}, which parses to {again:?}",
            shown(line),
            shown(&wire)
        )),
        Err(error) => Err(format!(
            "{} parses to a {} and renders to {}, which is refused: {error}",
            shown(line),
            command.verb(),
            shown(&wire)
        )),
    }
}

/// Every atSign a command names.
fn atsigns(command: &Command) -> Vec<&AtSign> {
    fn of_key(key: &AtKey) -> Vec<&AtSign> {
        let mut out: Vec<&AtSign> = key.owner.iter().collect();
        if let KeyKind::Shared(with) = &key.kind {
            out.push(with);
        }
        out
    }
    match command {
        Command::From(c) => vec![&c.atsign],
        Command::Scan(c) => c.for_atsign.iter().collect(),
        Command::Lookup(c) => vec![&c.owner],
        Command::Plookup(c) => vec![&c.owner],
        Command::Llookup(c) => of_key(&c.key),
        Command::Update(c) => of_key(&c.key),
        Command::UpdateMeta(c) => of_key(&c.key),
        Command::Delete(c) => of_key(&c.key),
        Command::Notify(c) => {
            let mut out: Vec<&AtSign> = c.owner.iter().collect();
            if let Some(NotifyScope::To(to)) = &c.scope {
                out.push(to);
            }
            out
        }
        Command::NotifyAll(c) => c.recipients.iter().chain(&c.owner).collect(),
        Command::Config(Config::BlockAdd(signs) | Config::BlockRemove(signs)) => {
            signs.iter().collect()
        }
        _ => Vec::new(),
    }
}

/// The keys (as the limits count them: the wire form, with the owner) and ids a command holds.
fn keys_and_ids(command: &Command) -> (Vec<String>, Vec<&str>) {
    let with_owner = |key: &str, owner: Option<&AtSign>| match owner {
        Some(owner) => format!("{key}{owner}"),
        None => key.to_string(),
    };
    match command {
        Command::Update(c) => (vec![c.key.to_string()], vec![]),
        Command::UpdateMeta(c) => (vec![c.key.to_string()], vec![]),
        Command::Delete(c) => (vec![c.key.to_string()], vec![]),
        Command::Llookup(c) => (vec![c.key.to_string()], vec![]),
        Command::UpdateJson(c) => (vec![c.at_key.clone()], vec![]),
        Command::Lookup(c) => (vec![with_owner(&c.key, Some(&c.owner))], vec![]),
        Command::Plookup(c) => (vec![with_owner(&c.key, Some(&c.owner))], vec![]),
        Command::Notify(c) => (
            vec![with_owner(&c.key, c.owner.as_ref())],
            c.id.iter().map(String::as_str).collect(),
        ),
        Command::NotifyAll(c) => (vec![with_owner(&c.key, c.owner.as_ref())], vec![]),
        Command::NotifyRemove(c) => (vec![], vec![&c.id]),
        Command::NotifyStatus(c) => (vec![], vec![&c.id]),
        Command::NotifyFetch(c) => (vec![], vec![&c.id]),
        Command::Pkam(c) => (vec![], c.enrollment_id.iter().map(String::as_str).collect()),
        _ => (vec![], vec![]),
    }
}

/// Nothing over-long gets through the grammar: every key a parsed command holds is at most
/// 255 characters ([`MAX_CACHED_KEY_CHARS`]), every id at most 255 ([`MAX_ID_CHARS`]), every
/// atSign name at most 55 ([`at_common::atsign::MAX_LEN`]).
pub fn check_within_limits(line: &str) -> Result<(), String> {
    let Ok(command) = Command::parse(line) else {
        return Ok(());
    };
    let (keys, ids) = keys_and_ids(&command);
    for key in keys {
        let n = key.chars().count();
        if n > MAX_CACHED_KEY_CHARS {
            return Err(format!(
                "{} parses to a {} with a key of {n} characters: {}",
                shown(line),
                command.verb(),
                shown(&key)
            ));
        }
    }
    for id in ids {
        let n = id.chars().count();
        if n > MAX_ID_CHARS {
            return Err(format!(
                "{} parses to a {} with an id of {n} characters",
                shown(line),
                command.verb()
            ));
        }
    }
    for atsign in atsigns(&command) {
        let n = atsign.name().chars().count();
        if n > at_common::atsign::MAX_LEN {
            return Err(format!(
                "{} parses to a {} naming an atSign of {n} characters",
                shown(line),
                command.verb()
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Error replies

/// An error, the prompt of the connection it goes to, its style, and whether it is thrown
/// (`Reply::Error`) or set by a handler (`AtError::set_by_handler`).
#[derive(Debug, Clone)]
pub struct ErrorCase {
    pub error: AtError,
    pub prompt: Prompt,
    pub style: ErrorStyle,
    pub handler: bool,
}

/// A valid atSign, from plain names to the longest and to emoji.
fn valid_atsign() -> impl Strategy<Value = AtSign> {
    prop_oneof![
        select(&["alice", "bob", "emoji🦄🛠", "a_b-c9"][..]).prop_map(str::to_string),
        "[a-z0-9_-]{1,55}",
        "[\u{a1}-\u{2fff}]{1,55}",
    ]
    .prop_filter_map("not an atSign", |name| AtSign::parse(&name).ok())
}

/// Any message: arbitrary characters with control characters, line breaks and `data:` mixed
/// in, or none (the code's description is the message then).
fn error_message() -> impl Strategy<Value = Option<String>> {
    let part = prop_oneof![
        4 => any::<char>().prop_map(String::from),
        2 => select(&["\n", "\r", "\r\n", "\n@", "\u{0}", "\u{1b}[31m", "\u{7f}", "\u{85}",
            "\u{9b}", "\u{2028}", "\u{2029}", "\t", "data:", "DATA:", "dat", "a:", "\"", "\\",
            "error:", "@alice@", " "][..])
            .prop_map(str::to_string),
    ];
    prop::option::weighted(0.9, vec(part, 0..24).prop_map(|parts| parts.concat()))
}

pub fn error_case() -> impl Strategy<Value = ErrorCase> {
    let prompt = prop_oneof![
        Just(Prompt::Unauthenticated),
        valid_atsign().prop_map(Prompt::Owner),
        valid_atsign().prop_map(Prompt::Peer),
        valid_atsign().prop_map(Prompt::Monitor),
    ];
    (
        select(ErrorCode::ALL.to_vec()),
        error_message(),
        prompt,
        prop_oneof![Just(ErrorStyle::Legacy), Just(ErrorStyle::Json)],
        any::<bool>(),
    )
        .prop_map(|(code, message, prompt, style, handler)| ErrorCase {
            error: match message {
                Some(message) => AtError::with_detail(code, message),
                None => AtError::new(code),
            },
            prompt,
            style,
            handler,
        })
}

/// An error reply is `error:…`, one line with no control character (no byte below 0x20, no
/// DEL, no C1 control) and no `data:` (which the Python SDK looks for first), then exactly one
/// `\n`, then the prompt an error gets: the owner's own after an owner error, none on a
/// monitor connection, `@` otherwise (a pol-authenticated peer included). In the JSON style
/// the line is `error:` then a JSON object naming the code; in the legacy style
/// `error:<code>-` (thrown) or `error:<code>:` (set by a handler).
pub fn check_error_reply(case: &ErrorCase) -> Result<(), String> {
    let ErrorCase {
        error,
        prompt,
        style,
        handler,
    } = case;
    let reply = if *handler {
        Reply::Error(AtError::set_by_handler(error.code(), error.message()))
    } else {
        Reply::Error(error.clone())
    };
    let bytes = reply.render(prompt, *style);
    let fail = |what: &str| {
        Err(format!(
            "{what}: rendered {:?}",
            String::from_utf8_lossy(&bytes)
        ))
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return fail("not UTF-8");
    };
    let after_error = match prompt {
        Prompt::Owner(_) | Prompt::Monitor(_) => prompt.as_text(),
        Prompt::Unauthenticated | Prompt::Peer(_) => "@".to_string(),
    };
    let Some((line, rest)) = text.split_once('\n') else {
        return fail("no newline");
    };
    if rest != after_error {
        return fail(&format!(
            "{rest:?} after the newline, not the prompt {after_error:?}"
        ));
    }
    if let Some(bad) = line.chars().find(|c| c.is_control()) {
        return fail(&format!("control character {bad:?} in the error line"));
    }
    if line.contains("data:") {
        return fail("`data:` in the error line");
    }
    let code = error.code().code();
    let Some(body) = line.strip_prefix("error:") else {
        return fail("does not start with `error:`");
    };
    match (style, handler) {
        (_, true) => {
            if !body.starts_with(&format!("{code}:")) {
                return fail("handler error not `error:<code>:`");
            }
        }
        (ErrorStyle::Legacy, false) => {
            if !body.starts_with(&format!("{code}-")) {
                return fail("legacy error not `error:<code>-`");
            }
        }
        (ErrorStyle::Json, false) => {
            let json: serde_json::Value = match serde_json::from_str(body) {
                Ok(json) => json,
                Err(e) => return fail(&format!("JSON error is not JSON ({e})")),
            };
            if json["errorCode"] != code || !json["errorDescription"].is_string() {
                return fail("JSON error without its code and description");
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Metadata arithmetic and timestamps

/// Any `i64`, favouring the edges: 0, ±1, the ends of `i64`, and the neighbourhood of
/// ±[`MAX_DATE_MS`].
pub fn edgy_i64() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => any::<i64>(),
        1 => select(vec![0, 1, -1, i64::MAX, i64::MIN, MAX_DATE_MS, -MAX_DATE_MS]),
        2 => (-3i64..=3, select(vec![MAX_DATE_MS, -MAX_DATE_MS, i64::MAX, i64::MIN, 0]))
            .prop_map(|(delta, base)| base.saturating_add(delta)),
        1 => -100_000_000_000_000i64..100_000_000_000_000,
    ]
}

/// Any instant and duration, with the sums near the date bounds common.
pub fn instant_case() -> impl Strategy<Value = (i64, i64)> {
    prop_oneof![
        (edgy_i64(), edgy_i64()),
        // `now` near the bound from either side, `ms` bringing the sum across it or not.
        (edgy_i64(), -3i64..=3, any::<bool>()).prop_map(|(now, delta, negative)| {
            let bound = if negative { -MAX_DATE_MS } else { MAX_DATE_MS };
            (now, bound.wrapping_sub(now).wrapping_add(delta))
        }),
    ]
}

/// `instant_after(now, ms)` never panics, and is `now + ms` exactly when that sum (taken
/// without overflow) is within ±[`MAX_DATE_MS`], and `None` otherwise.
pub fn check_instant_after(&(now, ms): &(i64, i64)) -> Result<(), String> {
    let sum = i128::from(now) + i128::from(ms);
    let expected = (-i128::from(MAX_DATE_MS)..=i128::from(MAX_DATE_MS))
        .contains(&sum)
        .then_some(sum as i64);
    let got = instant_after(now, ms);
    if got == expected {
        Ok(())
    } else {
        Err(format!(
            "instant_after({now}, {ms}) = {got:?}, expected {expected:?}"
        ))
    }
}

/// Fragments of `:name:value` pairs: names in any case (known, unknown, repeated), values of
/// every kind (numbers at every bound, booleans, text, empty), and what a key or a value after
/// them looks like.
pub fn fragment_line() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        4 => select(&["ttl", "ttb", "ttr", "ccd", "dataSignature", "sharedKeyStatus",
            "isBinary", "isEncrypted", "sharedKeyEnc", "pubKeyCS", "encoding", "encKeyName",
            "encAlgo", "ivNonce", "skeEncKeyName", "skeEncAlgo", "TTL", "IsBinary", "ttln",
            "x", ""][..])
            .prop_map(str::to_string),
        1 => any::<char>().prop_map(String::from),
    ];
    let value = prop_oneof![
        4 => select(&["0", "1", "-1", "-2", "-0", "600000", "true", "false", "TRUE", "null",
            "abc==", "", "@", " ", "x y", "9223372036854775807", "9223372036854775808",
            "-9223372036854775808", "8640000000000000", "8640000000000001", "8640000000000",
            "8640000000001", "99999999999999999999999", "é", "🛠", "\u{2028}", ":"][..])
            .prop_map(str::to_string),
        1 => "-?[0-9]{1,25}",
        1 => any::<char>().prop_map(String::from),
    ];
    let pair = (name, value, any::<bool>())
        .prop_map(|(name, value, colon)| format!("{}{name}:{value}", if colon { ":" } else { "" }));
    (
        vec(pair, 0..8),
        select(&["", ":phone@bob v", "@alice", " v", ":@bob:k", ":", "::"][..]),
    )
        .prop_map(|(pairs, tail)| format!("{}{tail}", pairs.concat()))
}

/// `MetadataUpdate::parse_prefix` never panics; what it accepts is valid, leaves a suffix of
/// the input, and renders to a fragment that parses back to the same update with nothing left.
pub fn check_fragment(input: &str) -> Result<(), String> {
    let Ok((update, rest)) = MetadataUpdate::parse_prefix(input) else {
        return Ok(());
    };
    if !input.ends_with(rest) {
        return Err(format!("{input:?}: the rest {rest:?} is not a suffix"));
    }
    if let Err(error) = update.validate() {
        return Err(format!(
            "{input:?}: parsed {update:?}, which is invalid: {error}"
        ));
    }
    let wire = update.to_string();
    match MetadataUpdate::parse_prefix(&wire) {
        Ok((again, "")) if again == update => Ok(()),
        other => Err(format!(
            "{input:?}: parsed {update:?}, rendered {wire:?}, which parses to {other:?}"
        )),
    }
}

/// `parse_timestamp(format_timestamp(t)) == Some(t)` for every `i64`.
pub fn check_timestamp(&t: &i64) -> Result<(), String> {
    let text = format_timestamp(t);
    match parse_timestamp(&text) {
        Some(back) if back == t => Ok(()),
        other => Err(format!(
            "{t} formats as {text:?}, which parses to {other:?}"
        )),
    }
}
