//! Table-driven tests of the whole grammar: spec and reference examples parse to the expected
//! typed command, malformed lines give AT0003, `Display` then `parse` is the identity, and no
//! input makes the parser panic.

use super::*;
use crate::error::ErrorCode;
use crate::key::KeyKind;
use crate::metadata::MetadataUpdate;

fn sign(s: &str) -> AtSign {
    AtSign::parse(s).unwrap()
}
fn key(s: &str) -> AtKey {
    AtKey::parse(s).unwrap()
}
fn parse(line: &str) -> Command {
    Command::parse(line).unwrap_or_else(|e| panic!("{line:?} should parse: {e}"))
}

/// Every example line of the spec's verb sections, and lines the reference and the SDKs send
/// (docs/protocol.md, docs/clients.md), with the command each must become.
fn examples() -> Vec<(&'static str, Command)> {
    vec![
        ("from:@bob", Command::From(From { atsign: sign("@bob"), client_config: None })),
        ("from:alice", Command::From(From { atsign: sign("@alice"), client_config: None })),
        (
            r#"from:@alice:clientConfig:{"version":"3.0.57"}"#,
            Command::From(From {
                atsign: sign("@alice"),
                client_config: Some(ClientConfig {
                    raw: r#"{"version":"3.0.57"}"#.into(),
                    version: Some("3.0.57".into()),
                }),
            }),
        ),
        ("cram:abc123", Command::Cram(Cram { digest: "abc123".into() })),
        (
            "pkam:c2lnbmF0dXJl==",
            Command::Pkam(Pkam {
                signing_algo: None,
                hashing_algo: None,
                enrollment_id: None,
                signature: "c2lnbmF0dXJl==".into(),
            }),
        ),
        (
            "pkam:signingAlgo:rsa2048:hashingAlgo:sha256:enrollmentId:e1-2:c2ln",
            Command::Pkam(Pkam {
                signing_algo: Some(SigningAlgo::Rsa2048),
                hashing_algo: Some(HashingAlgo::Sha256),
                enrollment_id: Some("e1-2".into()),
                signature: "c2ln".into(),
            }),
        ),
        ("pol", Command::Pol),
        ("scan", Command::Scan(Scan::default())),
        (
            "scan:showhidden:true",
            Command::Scan(Scan { show_hidden: Some(true), ..Scan::default() }),
        ),
        (
            "scan .*wavi",
            Command::Scan(Scan { regex: Some(".*wavi".into()), ..Scan::default() }),
        ),
        (
            "scan:showHidden:true myapp",
            Command::Scan(Scan {
                show_hidden: Some(true),
                regex: Some("myapp".into()),
                ..Scan::default()
            }),
        ),
        (
            "scan:@bob:page:2",
            Command::Scan(Scan { for_atsign: Some(sign("@bob")), page: Some(2), ..Scan::default() }),
        ),
        (
            "lookup:phone@alice",
            Command::Lookup(Lookup { bypass_cache: None, op: None, key: "phone".into(), owner: sign("@alice") }),
        ),
        (
            "lookup:meta:phone@alice",
            Command::Lookup(Lookup { bypass_cache: None, op: Some(LookupOp::Meta), key: "phone".into(), owner: sign("@alice") }),
        ),
        (
            "lookup:all:phone@alice",
            Command::Lookup(Lookup { bypass_cache: None, op: Some(LookupOp::All), key: "phone".into(), owner: sign("@alice") }),
        ),
        (
            "lookup:bypassCache:true:all:shared_key@alice",
            Command::Lookup(Lookup { bypass_cache: Some(true), op: Some(LookupOp::All), key: "shared_key".into(), owner: sign("@alice") }),
        ),
        (
            "plookup:publickey@alice",
            Command::Plookup(Plookup { bypass_cache: None, op: None, key: "publickey".into(), owner: sign("@alice") }),
        ),
        (
            "plookup:meta:publickey@alice",
            Command::Plookup(Plookup { bypass_cache: None, op: Some(LookupOp::Meta), key: "publickey".into(), owner: sign("@alice") }),
        ),
        (
            "plookup:all:publickey@alice",
            Command::Plookup(Plookup { bypass_cache: None, op: Some(LookupOp::All), key: "publickey".into(), owner: sign("@alice") }),
        ),
        (
            "plookup:bypassCache:true:all:publickey@alice",
            Command::Plookup(Plookup { bypass_cache: Some(true), op: Some(LookupOp::All), key: "publickey".into(), owner: sign("@alice") }),
        ),
        (
            "llookup:public:publickey@alice",
            Command::Llookup(Llookup { op: None, key: key("public:publickey@alice") }),
        ),
        (
            "llookup:all:phone@alice",
            Command::Llookup(Llookup { op: Some(LookupOp::All), key: key("phone@alice") }),
        ),
        (
            "llookup:all:@bob:phone@alice",
            Command::Llookup(Llookup { op: Some(LookupOp::All), key: key("@bob:phone@alice") }),
        ),
        (
            "llookup:cached:public:publickey@bob",
            Command::Llookup(Llookup { op: None, key: key("cached:public:publickey@bob") }),
        ),
        (
            "llookup:meta:shared_key.bob@alice",
            Command::Llookup(Llookup { op: Some(LookupOp::Meta), key: key("shared_key.bob@alice") }),
        ),
        (
            "llookup:privatekey:at_secret@alice",
            Command::Llookup(Llookup { op: None, key: key("privatekey:at_secret@alice") }),
        ),
        (
            "update:location@bob bob's location value",
            Command::Update(Update { meta: MetadataUpdate::default(), key: key("location@bob"), value: "bob's location value".into() }),
        ),
        (
            "update:ttl:600000:location@bob bob's location value but key expires in 10 minutes",
            Command::Update(Update {
                meta: MetadataUpdate { ttl: Some(600000), ..MetadataUpdate::default() },
                key: key("location@bob"),
                value: "bob's location value but key expires in 10 minutes".into(),
            }),
        ),
        (
            "update:@alice:phone@bob bob's phone number shared to @alice",
            Command::Update(Update { meta: MetadataUpdate::default(), key: key("@alice:phone@bob"), value: "bob's phone number shared to @alice".into() }),
        ),
        (
            "update:public:location.myapp@alice public value with spaces",
            Command::Update(Update { meta: MetadataUpdate::default(), key: key("public:location.myapp@alice"), value: "public value with spaces".into() }),
        ),
        (
            "update:privatekey:at_pkam_publickey MIIBIjAN",
            Command::Update(Update { meta: MetadataUpdate::default(), key: key("privatekey:at_pkam_publickey"), value: "MIIBIjAN".into() }),
        ),
        (
            "update:isEncrypted:true:ivNonce:MkUg/ltf6aibsw==:@bob:phone.myapp@alice Q2lwaGVy",
            Command::Update(Update {
                meta: MetadataUpdate { is_encrypted: Some(true), iv_nonce: Some("MkUg/ltf6aibsw==".into()), ..MetadataUpdate::default() },
                key: key("@bob:phone.myapp@alice"),
                value: "Q2lwaGVy".into(),
            }),
        ),
        (
            "update:ttr:86400000:@bob:shared_key@alice a2V5",
            Command::Update(Update {
                meta: MetadataUpdate { ttr: Some(86400000), ..MetadataUpdate::default() },
                key: key("@bob:shared_key@alice"),
                value: "a2V5".into(),
            }),
        ),
        (
            r#"update:json:{"atKey":"phone","value":"1","sharedBy":"@alice"}"#,
            Command::UpdateJson(UpdateJson {
                at_key: "phone".into(),
                value: serde_json::json!("1"),
                shared_by: Some("@alice".into()),
                shared_with: None,
                metadata: None,
                raw: r#"{"atKey":"phone","value":"1","sharedBy":"@alice"}"#.into(),
            }),
        ),
        (
            "update:meta:phone@bob:isBinary:true",
            Command::UpdateMeta(UpdateMeta { key: key("phone@bob"), meta: MetadataUpdate { is_binary: Some(true), ..MetadataUpdate::default() } }),
        ),
        (
            "update:meta:@alice:phone@bob:ttl:600000:isBinary:true:isEncrypted:true",
            Command::UpdateMeta(UpdateMeta {
                key: key("@alice:phone@bob"),
                meta: MetadataUpdate { ttl: Some(600000), is_binary: Some(true), is_encrypted: Some(true), ..MetadataUpdate::default() },
            }),
        ),
        ("delete:phone@alice", Command::Delete(Delete { priority: None, key: key("phone@alice") })),
        ("delete:privatekey:at_secret", Command::Delete(Delete { priority: None, key: key("privatekey:at_secret") })),
        (
            "delete:priority:high:cached:@alice:phone@bob",
            Command::Delete(Delete { priority: Some(Priority::High), key: key("cached:@alice:phone@bob") }),
        ),
        ("stats", Command::Stats(Stats::default())),
        ("stats:1", Command::Stats(Stats { ids: vec![1], regex: None })),
        ("stats:1,3,15", Command::Stats(Stats { ids: vec![1, 3, 15], regex: None })),
        ("stats:3:.*wavi", Command::Stats(Stats { ids: vec![3], regex: Some(".*wavi".into()) })),
        ("sync:10", Command::Sync(Sync { from_commit: 10, limit: None, regex: None })),
        ("sync:-1", Command::Sync(Sync { from_commit: -1, limit: None, regex: None })),
        (
            "sync:from:-1:limit:10:.*wavi",
            Command::Sync(Sync { from_commit: -1, limit: Some(10), regex: Some(".*wavi".into()) }),
        ),
        (
            "notify:update:@alice:test@bob",
            Command::Notify(Notify {
                operation: Some(Operation::Update),
                scope: Some(NotifyScope::To(sign("@alice"))),
                key: "test".into(),
                owner: Some(sign("@bob")),
                ..Notify::default()
            }),
        ),
        (
            "notify:delete:@alice:test@bob",
            Command::Notify(Notify {
                operation: Some(Operation::Delete),
                scope: Some(NotifyScope::To(sign("@alice"))),
                key: "test".into(),
                owner: Some(sign("@bob")),
                ..Notify::default()
            }),
        ),
        (
            "notify:messageType:text:@bob:my sample message to bob",
            Command::Notify(Notify {
                message_type: Some(MessageType::Text),
                scope: Some(NotifyScope::To(sign("@bob"))),
                key: "my sample message to bob".into(),
                ..Notify::default()
            }),
        ),
        (
            "notify:update:messageType:key:notifier:system:ttr:-1:@bob:email@alice:alice@yahoo.com",
            Command::Notify(Notify {
                operation: Some(Operation::Update),
                message_type: Some(MessageType::Key),
                notifier: Some("system".into()),
                meta: MetadataUpdate { ttr: Some(-1), ..MetadataUpdate::default() },
                scope: Some(NotifyScope::To(sign("@bob"))),
                key: "email".into(),
                owner: Some(sign("@alice")),
                value: Some("alice@yahoo.com".into()),
                ..Notify::default()
            }),
        ),
        (
            "notify:id:b67c5a7b-7beb-4178-9f11-8792564ddac3:update:isEncrypted:true:ivNonce:0FGj472sM6I/oRusH9FEZw==:@bob:message.myapp@alice:Q2lw",
            Command::Notify(Notify {
                id: Some("b67c5a7b-7beb-4178-9f11-8792564ddac3".into()),
                operation: Some(Operation::Update),
                meta: MetadataUpdate { is_encrypted: Some(true), iv_nonce: Some("0FGj472sM6I/oRusH9FEZw==".into()), ..MetadataUpdate::default() },
                scope: Some(NotifyScope::To(sign("@bob"))),
                key: "message.myapp".into(),
                owner: Some(sign("@alice")),
                value: Some("Q2lw".into()),
                ..Notify::default()
            }),
        ),
        (
            "notify:id:x1:delete:messageType:key:notifier:system:ttln:900000:@bob:phone@alice",
            Command::Notify(Notify {
                id: Some("x1".into()),
                operation: Some(Operation::Delete),
                message_type: Some(MessageType::Key),
                notifier: Some("system".into()),
                ttln: Some(900000),
                scope: Some(NotifyScope::To(sign("@bob"))),
                key: "phone".into(),
                owner: Some(sign("@alice")),
                ..Notify::default()
            }),
        ),
        (
            "notify:update:public:phone@alice:123",
            Command::Notify(Notify {
                operation: Some(Operation::Update),
                scope: Some(NotifyScope::Public),
                key: "phone".into(),
                owner: Some(sign("@alice")),
                value: Some("123".into()),
                ..Notify::default()
            }),
        ),
        ("notify:list", Command::NotifyList(NotifyList::default())),
        (
            "notify:list:2024-10-01:2024-10-24:wavi",
            Command::NotifyList(NotifyList { from_date: Some("2024-10-01".into()), to_date: Some("2024-10-24".into()), regex: Some("wavi".into()) }),
        ),
        (
            "notify:remove:0e5e9e89-c9cb-423b-8972-8c5487215990",
            Command::NotifyRemove(NotifyRemove { id: "0e5e9e89-c9cb-423b-8972-8c5487215990".into() }),
        ),
        (
            "notify:status:0e5e9e89-c9cb-423b-8972-8c5487215990",
            Command::NotifyStatus(NotifyStatus { id: "0e5e9e89-c9cb-423b-8972-8c5487215990".into() }),
        ),
        ("notify:fetch:abc-1", Command::NotifyFetch(NotifyFetch { id: "abc-1".into() })),
        (
            "notify:all:update:@bob,@carol:phone@alice:123",
            Command::NotifyAll(NotifyAll {
                operation: Some(Operation::Update),
                recipients: vec![sign("@bob"), sign("@carol")],
                key: "phone".into(),
                owner: Some(sign("@alice")),
                value: Some("123".into()),
                ..NotifyAll::default()
            }),
        ),
        (
            "notify:all:messageType:key:ttl:5:ttr:-1:ccd:true:@bob:phone@alice",
            Command::NotifyAll(NotifyAll {
                message_type: Some(MessageType::Key),
                ttl: Some(5),
                ttr: Some(-1),
                ccd: Some(true),
                recipients: vec![sign("@bob")],
                key: "phone".into(),
                owner: Some(sign("@alice")),
                ..NotifyAll::default()
            }),
        ),
        ("monitor", Command::Monitor(Monitor::default())),
        (
            "monitor:0 .*",
            Command::Monitor(Monitor { epoch_millis: Some(0), regex: Some(".*".into()), ..Monitor::default() }),
        ),
        (
            "monitor:strict:selfNotifications:multiplexed:1700000000000 wavi",
            Command::Monitor(Monitor {
                strict: true,
                self_notifications: true,
                multiplexed: true,
                epoch_millis: Some(1700000000000),
                regex: Some("wavi".into()),
            }),
        ),
        ("config:block:add:@bob @carol", Command::Config(Config::BlockAdd(vec![sign("@bob"), sign("@carol")]))),
        ("config:block:remove:@bob", Command::Config(Config::BlockRemove(vec![sign("@bob")]))),
        ("config:block:show", Command::Config(Config::BlockShow)),
        ("config:set:inboundMaxLimit=10", Command::Config(Config::Set("inboundMaxLimit=10".into()))),
        ("config:reset:inboundMaxLimit", Command::Config(Config::Reset("inboundMaxLimit".into()))),
        ("config:print:inboundMaxLimit", Command::Config(Config::Print("inboundMaxLimit".into()))),
        ("info", Command::Info(Info { brief: false })),
        ("info:brief", Command::Info(Info { brief: true })),
        ("noop:0", Command::Noop(Noop { delay_millis: 0 })),
        (
            r#"batch:[{"id":1,"command":"update:public:a@alice 1"},{"id":2,"command":"llookup:public:a@alice"}]"#,
            Command::Batch(Batch {
                requests: vec![
                    BatchRequest { id: 1, command: "update:public:a@alice 1".into() },
                    BatchRequest { id: 2, command: "llookup:public:a@alice".into() },
                ],
            }),
        ),
        ("@exit", Command::Exit),
    ]
}

#[test]
fn every_example_parses_to_its_typed_command() {
    for (line, expected) in examples() {
        assert_eq!(parse(line), expected, "{line}");
    }
}

#[test]
fn display_then_parse_is_the_identity_for_every_example() {
    for (line, _) in examples() {
        let command = parse(line);
        let wire = command.to_string();
        assert_eq!(parse(&wire), command, "{line} -> {wire}");
    }
}

#[test]
fn canonical_examples_display_exactly_as_sent() {
    for line in [
        "from:@bob",
        "pkam:signingAlgo:rsa2048:hashingAlgo:sha256:enrollmentId:e1-2:c2ln",
        "lookup:bypassCache:true:all:shared_key@alice",
        "llookup:all:@bob:phone@alice",
        "update:ttl:600000:location@bob bob's location value",
        "update:meta:@alice:phone@bob:ttl:600000:isBinary:true:isEncrypted:true",
        "delete:priority:high:cached:@alice:phone@bob",
        "stats:1,3,15",
        "sync:from:-1:limit:10:.*wavi",
        "notify:id:x1:delete:messageType:key:notifier:system:ttln:900000:@bob:phone@alice",
        "notify:all:update:@bob,@carol:phone@alice:123",
        "monitor:strict:selfNotifications:multiplexed:1700000000000 wavi",
        "config:block:add:@bob @carol",
    ] {
        assert_eq!(parse(line).to_string(), line);
    }
}

#[test]
fn verb_is_case_insensitive_and_keywords_match_in_any_case() {
    assert_eq!(
        parse("LOOKUP:ALL:Phone@Alice"),
        parse("lookup:all:phone@alice")
    );
    assert_eq!(
        parse("  Update:Public:X@alice V  "),
        parse("update:public:x@alice V")
    );
    assert_eq!(parse("PoL"), Command::Pol);
    // With no `:` the whole line is lower-cased, regex included, as the reference does.
    assert_eq!(
        parse("SCAN Foo"),
        Command::Scan(Scan {
            regex: Some("foo".into()),
            ..Scan::default()
        })
    );
}

#[test]
fn update_value_keeps_case_and_spaces_key_is_lowercased() {
    let Command::Update(update) = parse("update:Phone@alice Hello  World") else {
        panic!("not an update");
    };
    assert_eq!(update.key.to_string(), "phone@alice");
    assert_eq!(update.value, "Hello  World");
    assert_eq!(update.key.kind, KeyKind::SelfKey);
}

#[test]
fn notify_key_gives_characters_back_when_the_owner_cannot_end_the_line() {
    let Command::Notify(n) = parse("notify:@bob:ab:c@x y") else {
        panic!("not a notify");
    };
    assert_eq!(n.key, "ab");
    assert_eq!(n.owner, None);
    assert_eq!(n.value.as_deref(), Some("c@x y"));
}

#[test]
fn unknown_verb_is_invalid_command() {
    for line in [
        "",
        "hello",
        "lookupx",
        "enroll",
        "from",
        "@exit now",
        "sync:fromx",
    ] {
        let err = Command::parse(line).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidSyntax, "{line:?}");
    }
    assert_eq!(
        Command::parse("hello").unwrap_err().message(),
        "invalid command"
    );
    assert_eq!(
        Command::parse("lookup:nope").unwrap_err().message(),
        "Invalid syntax. e.g lookup:location@bob"
    );
}

#[test]
fn malformed_lines_of_every_verb_are_invalid_syntax() {
    let malformed = [
        "from:",
        "from:@",
        "from:@al:ice",
        "from:@alice:clientConfig:{",
        "from:@alice:clientConfig:{nojson}",
        "from:@a b",
        "cram:",
        "pkam:",
        "pol:x",
        "scan:showhidden:maybe",
        "scan a b",
        "scan:page:x",
        "lookup:",
        "lookup:phone",
        "lookup:p@",
        "lookup::x@alice",
        "lookup:x@al ice",
        "plookup:",
        "plookup:a b@alice",
        "plookup:phone",
        "llookup:",
        "llookup:k@alice",
        "llookup:a::b@alice",
        "llookup:phone@",
        "llookup:all:",
        "update:",
        "update:phone@alice",
        "update:phone@alice ",
        "update:ttl:-1:phone@alice v",
        "update:ttb:-5:phone@alice v",
        "update:ttr:-2:phone@alice v",
        "update:local:k@alice v",
        "update:a:b@alice v",
        "update:json:",
        "update:json:{bad",
        "update:meta:phone@bob:isBinary:maybe",
        "update:meta:k@bob",
        "update:meta:phone",
        "update:meta:phone@bob:ttl:5:ttl:6",
        "update:metadata@alice v",
        "delete:",
        "delete:a b",
        "delete:priority:urgent:k@a:x",
        "delete:cached:k@alice",
        "stats:0",
        "stats:-1",
        "stats:1:x",
        "stats:1,3:x",
        "statsx",
        "sync:",
        "sync:x",
        "sync:-2",
        "sync:from:1",
        "sync:from:1:limit:",
        "sync:1:",
        "notify:",
        "notify:@bob",
        "notify:@bob:",
        "notify:@bob::x",
        "notify:bob:k",
        "notify:update:@bob:k",
        "notify:@bob:k@al ice",
        "notify:status:",
        "notify:status:a b",
        "notify:fetch:",
        "notify:remove:",
        "notify:remove:!x",
        "notify:all:",
        "notify:all:@bob",
        "notify:all:@bob:k k",
        "monitor:",
        "monitor:x",
        "monitor:strict:",
        "config:",
        "config:block:",
        "config:block:add:",
        "config:block:add:bob",
        "config:block:add:@bob  @carol",
        "config:block:showx",
        "config:set:",
        "info:",
        "info:full",
        "noop:",
        "noop:x",
        "noop:-1",
        "noop:99999999999999999999999",
        "batch:",
        "batch:{}",
        "batch:[1]",
    ];
    let accepted: Vec<String> = malformed
        .iter()
        .filter_map(|line| match Command::parse(line) {
            Err(err) if err.code() == ErrorCode::InvalidSyntax => None,
            other => Some(format!("{line:?} -> {other:?}")),
        })
        .collect();
    assert!(accepted.is_empty(), "should be AT0003: {accepted:#?}");
}

#[test]
fn negative_ttl_gives_the_reference_message() {
    let err = Command::parse("update:ttl:-1:phone@alice v").unwrap_err();
    assert_eq!(
        err.message(),
        "Valid value for TTL should be greater than or equal to 0"
    );
}

/// A tiny deterministic PRNG (xorshift), so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn garbage_and_mutated_lines_never_panic_and_what_parses_round_trips() {
    let mut rng = Rng(0x0dd_ba11_cafe_f00d);
    let pieces = [
        ":",
        "@",
        " ",
        "::",
        "public",
        "cached",
        "@bob",
        "alice",
        "ttl",
        ":ttl:",
        "-1",
        "0",
        "99",
        "true",
        "false",
        "update",
        "notify",
        "lookup",
        "llookup",
        "meta",
        "all",
        "id",
        ".",
        "{",
        "}",
        "\"",
        ",",
        "é",
        "🛠",
        "\t",
        "\r",
        "\u{2028}",
        "data:",
        "scan",
        "stats",
        "sync",
        "from",
        "config:block:",
        "monitor",
        "privatekey:",
        "json:",
        "9999999999999999999999",
    ];
    let examples: Vec<&str> = examples().into_iter().map(|(line, _)| line).collect();
    let mut round_trips = 0;
    for _ in 0..30_000 {
        let line: String = match rng.below(3) {
            0 => (0..rng.below(12))
                .map(|_| pieces[rng.below(pieces.len())])
                .collect(),
            1 => (0..rng.below(40))
                .map(|_| char::from_u32(rng.below(0x2_0000) as u32).unwrap_or('?'))
                .collect(),
            _ => {
                let mut chars: Vec<char> = examples[rng.below(examples.len())].chars().collect();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(chars.len() + 1);
                    match rng.below(3) {
                        0 if at < chars.len() => {
                            chars.remove(at);
                        }
                        1 => chars.insert(
                            at,
                            pieces[rng.below(pieces.len())]
                                .chars()
                                .next()
                                .unwrap_or(':'),
                        ),
                        _ => chars.insert(at, ':'),
                    }
                }
                chars.into_iter().collect()
            }
        };
        if let Ok(command) = Command::parse(&line) {
            // Whatever parses renders to a line that parses back to the same command, and
            // renders the same again: what a server forwards is what it was sent.
            let wire = command.to_string();
            match Command::parse(&wire) {
                Ok(again) => {
                    assert_eq!(again, command, "{line:?} -> {wire:?}");
                    assert_eq!(again.to_string(), wire, "{line:?}");
                }
                Err(e) => panic!("{line:?} parsed, but its rendering {wire:?} does not: {e}"),
            }
            round_trips += 1;
        }
    }
    // The mutations are near enough to real lines that many still parse: the check above ran.
    assert!(round_trips > 1_000, "only {round_trips} lines parsed");
}

/// The fastest of `runs` parses of `line`.
fn fastest_parse(line: &str, runs: usize) -> std::time::Duration {
    (0..runs)
        .map(|_| {
            let start = std::time::Instant::now();
            let _ = std::hint::black_box(Command::parse(std::hint::black_box(line)));
            start.elapsed()
        })
        .min()
        .expect("at least one run")
}

/// Lines of every shape that could make a parser backtrack or rescan, at `n` and at `10 n`
/// repetitions: the time for 10 n must stay far below the 100× of a quadratic parser (10× is
/// linear; 30× leaves room for cache effects and a loaded machine, and the fastest of several
/// runs is compared, so one preempted run does not count).
#[test]
fn huge_lines_parse_in_linear_time() {
    type Shape = (&'static str, fn(usize) -> String);
    let shapes: [Shape; 7] = [
        ("a long notify key", |n| {
            format!("notify:@bob:{}", "a".repeat(n))
        }),
        ("a notify key of colons", |n| {
            format!("notify:@bob:{}", "a:".repeat(n / 2))
        }),
        ("a long update key", |n| {
            format!("update:{}@alice v", "a".repeat(n))
        }),
        ("a long llookup key", |n| {
            format!("llookup:{}@alice", "a".repeat(n))
        }),
        ("a long notify:all key", |n| {
            format!("notify:all:{}", "a".repeat(n))
        }),
        ("a lookup of @s", |n| {
            format!("lookup:{}", "@".repeat(n / 2))
        }),
        ("repeated ttl options", |n| {
            format!("update{}:k v", ":ttl:1".repeat(n / 6))
        }),
    ];
    const N: usize = 20_000;
    for (shape, line) in shapes {
        let (small, large) = (line(N), line(10 * N));
        // Warm up (allocator, caches), then measure.
        fastest_parse(&large, 2);
        let small_time = fastest_parse(&small, 9).max(std::time::Duration::from_micros(1));
        let large_time = fastest_parse(&large, 9);
        let ratio = large_time.as_secs_f64() / small_time.as_secs_f64();
        assert!(
            ratio < 30.0,
            "{shape}: {} bytes parsed in {small_time:?}, {} bytes in {large_time:?} ({ratio:.0}×)",
            small.len(),
            large.len()
        );
    }
}
