//! One suite every backend must pass (garage's `db/test.rs` pattern): each case is a function
//! over a fresh, empty store, and [`cases`] makes one test of each in a backend's test module,
//! so a failing case hides none of the others.

use std::time::Duration;

use at_common::metadata::Metadata;
use at_common::AtSign;

use super::{
    AccessKind, AtSignInfo, AtSignStatus, CommitEntry, CommitOp, Mutation, NotificationLog,
    NotificationRow, Record, Store, StoreError,
};

pub fn sign(s: &str) -> AtSign {
    AtSign::parse(s).expect("test atSign")
}

pub fn info(label: &str) -> AtSignInfo {
    AtSignInfo {
        status: AtSignStatus::New,
        created_ms: 1_700_000_000_123,
        sni_label: label.to_string(),
        cram_secret: Some(format!("secret-of-{label}")),
        port: Some(25000),
        suspended: false,
    }
}

/// A record with a value and a few metadata fields of each kind, to check they round-trip.
pub fn record(value: &str, version: i64) -> Record {
    Record {
        value: Some(value.to_string()),
        metadata: Metadata {
            created_by: Some(sign("alice")),
            created_at: Some(1_729_733_702_123),
            updated_at: Some(1_729_733_702_456),
            status: Some("active".into()),
            version: Some(version),
            ttl: Some(0),
            ccd: Some(false),
            is_encrypted: Some(true),
            shared_key_enc: Some("c2tl".into()),
            ..Metadata::default()
        },
    }
}

fn ids(entries: &[CommitEntry]) -> Vec<(u64, &str, &str)> {
    entries
        .iter()
        .map(|e| (e.commit_id, e.key.as_str(), e.op.symbol()))
        .collect()
}

/// One test per case of this suite, each on a fresh, empty store: `$open` is an expression
/// (evaluated in an async test) giving what must live as long as the store, and the store.
/// Used inside a backend's test module: `conformance::cases!({ … (guard, store) });`.
///
/// `cases!(in_one_test name, shared = setup, |case| open)` makes instead one test `name` that
/// evaluates `setup` once (a Redis Cluster, slow to start) and runs every case in turn on
/// the store `open` gives for it (`case` is the case's name, e.g. for a key prefix that
/// keeps the cases apart).
macro_rules! cases {
    (@names [in_one_test $test:ident, $shared:ident = $setup:expr, |$name:ident| $open:expr];
        $($case:ident),+) => {
        /// The backend conformance suite ([`crate::store::conformance`]), every case in turn.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let $shared = $setup;
            $({
                let $name = stringify!($case);
                let store = $open;
                $crate::store::conformance::$case(&store).await;
            })+
        }
    };
    (@names [$open:expr]; $($case:ident),+) => {
        /// The backend conformance suite ([`crate::store::conformance`]), one test per case.
        mod conformance_suite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (_alive, store) = $open;
                    $crate::store::conformance::$case(&store).await;
                }
            )+
        }
    };
    // Last: it would match the arms above too.
    ($($how:tt)+) => {
        $crate::store::conformance::cases!(@names [$($how)+];
            records,
            commit_ids,
            uncommitted_key_classes,
            latest_entry_per_key,
            keys_are_isolated_per_atsign,
            atsign_lifecycle,
            compaction,
            trimming,
            access_counters,
            concurrent_writers,
            concurrent_read_modify_writes,
            notification_logs,
            export_import_round_trip,
            leases);
    };
}
pub(crate) use cases;

/// A lease is held by one taker until dropped or expired, per atSign and name.
pub async fn leases(store: &Store) {
    let (a, b) = (sign("leased"), sign("leased2"));
    let long = std::time::Duration::from_secs(60);
    assert!(store.take_lease(&a, "delivery:1", long).await.unwrap());
    assert!(!store.take_lease(&a, "delivery:1", long).await.unwrap());
    assert!(store.take_lease(&a, "delivery:2", long).await.unwrap());
    assert!(store.take_lease(&b, "delivery:1", long).await.unwrap());
    store.drop_lease(&a, "delivery:1").await.unwrap();
    assert!(store.take_lease(&a, "delivery:1", long).await.unwrap());
    let short = std::time::Duration::from_millis(50);
    assert!(store.take_lease(&a, "brief", short).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert!(
        store.take_lease(&a, "brief", short).await.unwrap(),
        "expired"
    );
}

pub fn notification(id: &str, at_ms: i64, expires_ms: i64) -> NotificationRow {
    NotificationRow {
        id: id.to_string(),
        at_ms,
        expires_ms,
        body: format!("{{\"id\":\"{id}\"}}").into_bytes(),
    }
}

pub async fn notification_logs(store: &Store) {
    let a = sign("notified");
    let (received, sent) = (NotificationLog::Received, NotificationLog::Sent);
    let ids = |rows: Vec<NotificationRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        store.notifications(&a, received, None, 10).await.unwrap(),
        vec![]
    );
    // Out of order, with a tie at 200 (ordered by id then).
    for row in [
        notification("n3", 300, 10_000),
        notification("n1", 100, 150),
        notification("n2b", 200, 10_000),
        notification("n2a", 200, 10_000),
    ] {
        store.put_notification(&a, received, &row).await.unwrap();
    }
    store
        .put_notification(&a, sent, &notification("s1", 100, 10_000))
        .await
        .unwrap();
    assert_eq!(
        ids(store.notifications(&a, received, None, 10).await.unwrap()),
        ["n1", "n2a", "n2b", "n3"]
    );
    // Strictly after: `monitor:200` replays n3 only.
    assert_eq!(
        ids(store
            .notifications(&a, received, Some(200), 10)
            .await
            .unwrap()),
        ["n3"]
    );
    assert_eq!(
        ids(store.notifications(&a, received, Some(0), 2).await.unwrap()),
        ["n1", "n2a"]
    );
    assert_eq!(
        ids(store.notifications(&a, sent, None, 10).await.unwrap()),
        ["s1"]
    );
    assert_eq!(
        store.get_notification(&a, received, "n3").await.unwrap(),
        Some(notification("n3", 300, 10_000))
    );
    assert_eq!(store.get_notification(&a, sent, "n3").await.unwrap(), None);
    // The same id again replaces the row, moving it in the order.
    store
        .put_notification(&a, received, &notification("n1", 400, 10_000))
        .await
        .unwrap();
    assert_eq!(
        ids(store.notifications(&a, received, None, 10).await.unwrap()),
        ["n2a", "n2b", "n3", "n1"]
    );
    assert!(store
        .remove_notification(&a, received, "n2b")
        .await
        .unwrap());
    assert!(!store
        .remove_notification(&a, received, "n2b")
        .await
        .unwrap());
    assert_eq!(
        store.get_notification(&a, received, "n2b").await.unwrap(),
        None
    );
    // Expiry: n1 was replaced by a row that expires later; s1 and n3 expire at 10 000.
    store
        .put_notification(&a, received, &notification("old", 50, 60))
        .await
        .unwrap();
    assert_eq!(store.expire_notifications(&a, 1000, 100).await.unwrap(), 1);
    assert_eq!(store.expire_notifications(&a, 10_000, 1).await.unwrap(), 1);
    assert_eq!(
        store.expire_notifications(&a, 10_000, 100).await.unwrap(),
        3
    );
    for log in NotificationLog::BOTH {
        assert_eq!(
            store.notifications(&a, log, None, 10).await.unwrap(),
            vec![]
        );
    }
}

/// A populated atSign, for export/import tests: records (one uncommitted), a deleted key,
/// an overwritten key (one commit entry left of two), access counts.
pub async fn populate(store: &Store, a: &AtSign) {
    store.create_atsign(a, &info("dump")).await.unwrap();
    let name = a.as_str();
    for (key, value) in [
        ("phone", "1"),
        ("email", "2"),
        ("phone", "3"),
        ("gone", "4"),
    ] {
        let key = format!("{key}{name}");
        store
            .put(a, &key, &record(value, 0), CommitOp::UpdateAll)
            .await
            .unwrap();
    }
    store.remove(a, &format!("gone{name}")).await.unwrap();
    store
        .put_uncommitted(a, "privatekey:at_pkam_publickey", &record("pk", 0))
        .await
        .unwrap();
    for from in ["@bob", "@bob", "@carol"] {
        store
            .record_access(a, AccessKind::AtSign, from)
            .await
            .unwrap();
    }
    store
        .record_access(a, AccessKind::Key, &format!("phone{name}"))
        .await
        .unwrap();
    for (log, row) in [
        (NotificationLog::Received, notification("r1", 100, i64::MAX)),
        (NotificationLog::Sent, notification("s1", 200, i64::MAX)),
    ] {
        store.put_notification(a, log, &row).await.unwrap();
    }
}

/// Records as a store written before MessagePack holds them, to be written raw in the legacy
/// JSON form ([`super::encoding::encode_record_json`]): a value, metadata only, and text
/// beyond ASCII. Their keys are not those of [`populate`].
pub fn legacy_records(a: &AtSign) -> Vec<(String, Record)> {
    let name = a.as_str();
    let metadata_only = Record {
        value: None,
        metadata: Metadata {
            created_by: Some(a.clone()),
            ttr: Some(-1),
            ccd: Some(true),
            ..Metadata::default()
        },
    };
    vec![
        (format!("old{name}"), record("1", 0)),
        (format!("public:old-meta{name}"), metadata_only),
        (format!("@bob:old{name}"), record("é🛠 not ascii", 7)),
    ]
}

/// A store holding `a` (created) with [`legacy_records`] written raw, before anything read
/// them: it serves them, lists and exports them, and a read-modify-write of the first decides
/// on the legacy record and writes the new one (the caller checks the stored bytes).
pub async fn serves_legacy_records(store: &Store, a: &AtSign) {
    let mut legacy = legacy_records(a);
    for (key, record) in &legacy {
        assert_eq!(
            store.get(a, key).await.unwrap().as_ref(),
            Some(record),
            "{key}"
        );
    }
    legacy.sort_by(|x, y| x.0.cmp(&y.0));
    let keys: Vec<String> = legacy.iter().map(|(key, _)| key.clone()).collect();
    assert_eq!(store.keys(a, "").await.unwrap(), keys);
    let dump = store.export_atsign(a).await.unwrap().expect("provisioned");
    assert_eq!(dump.records, legacy);

    let (key, old) = legacy_records(a).swap_remove(0);
    let seen = old.clone();
    store
        .modify(a, &key, move |current| {
            let mut next = current.cloned().ok_or_else(|| {
                at_common::error::AtError::new(at_common::error::ErrorCode::KeyNotFound)
            })?;
            assert_eq!(next, seen, "the change is decided on the legacy record");
            next.value = Some("2".into());
            next.metadata.version = Some(1);
            Ok(Mutation::put(next, CommitOp::Update))
        })
        .await
        .unwrap();
    let written = store.get(a, &key).await.unwrap().expect("written");
    assert_eq!(written.value.as_deref(), Some("2"));
    assert_eq!(written.metadata.version, Some(1));
    assert_eq!(written.metadata.created_at, old.metadata.created_at);
}

pub async fn export_import_round_trip(store: &Store) {
    let a = sign("dump");
    populate(store, &a).await;
    let dump = store.export_atsign(&a).await.unwrap().expect("provisioned");
    assert_eq!(dump.records.len(), 3, "{:?}", dump.records);
    assert_eq!(dump.notifications.len(), 2);
    assert_eq!(
        ids(&dump.commits),
        vec![
            (1, "email@dump", "*"),
            (2, "phone@dump", "*"),
            (4, "gone@dump", "-")
        ],
        "only the latest entry per key, ids kept"
    );
    assert_eq!(dump.next_commit, 5);
    assert!(matches!(
        store.import_atsign(&dump).await,
        Err(StoreError::AtSignExists(_))
    ));
    assert!(store.remove_atsign(&a).await.unwrap());
    assert_eq!(store.export_atsign(&a).await.unwrap(), None);
    store.import_atsign(&dump).await.unwrap();
    assert_eq!(store.export_atsign(&a).await.unwrap(), Some(dump));
    // The counter goes on from where it was, not from the last surviving entry.
    let next = store
        .put(&a, "new@dump", &record("5", 0), CommitOp::Update)
        .await
        .unwrap();
    assert_eq!(next, Some(5));
}

pub async fn records(store: &Store) {
    let a = sign("rec");
    assert_eq!(store.get(&a, "phone@rec").await.unwrap(), None);

    store
        .put(&a, "phone@rec", &record("1", 0), CommitOp::UpdateAll)
        .await
        .unwrap();
    assert_eq!(
        store.get(&a, "phone@rec").await.unwrap(),
        Some(record("1", 0))
    );

    store
        .put(&a, "phone@rec", &record("2", 1), CommitOp::UpdateAll)
        .await
        .unwrap();
    assert_eq!(
        store.get(&a, "phone@rec").await.unwrap(),
        Some(record("2", 1))
    );

    let meta_only = Record {
        value: None,
        metadata: Metadata::default(),
    };
    store
        .put(&a, "empty@rec", &meta_only, CommitOp::UpdateMeta)
        .await
        .unwrap();
    assert_eq!(store.get(&a, "empty@rec").await.unwrap(), Some(meta_only));

    // Stored exactly as given: the caller canonicalises keys.
    store
        .put(&a, "Mixed@rec", &record("m", 0), CommitOp::Update)
        .await
        .unwrap();
    assert_eq!(store.get(&a, "mixed@rec").await.unwrap(), None);
    assert!(store.get(&a, "Mixed@rec").await.unwrap().is_some());

    assert!(store.remove(&a, "phone@rec").await.unwrap().is_some());
    assert_eq!(store.get(&a, "phone@rec").await.unwrap(), None);
}

pub async fn commit_ids(store: &Store) {
    let a = sign("ids1");
    let b = sign("ids2");
    assert_eq!(store.last_commit_id(&a).await.unwrap(), None);
    assert_eq!(store.commits_since(&a, None, 10).await.unwrap(), vec![]);

    for (n, key) in ["x@ids1", "y@ids1", "z@ids1"].iter().enumerate() {
        let id = store
            .put(&a, key, &record("v", 0), CommitOp::Update)
            .await
            .unwrap();
        assert_eq!(id, Some(n as u64), "ids start at 0 and increase by one");
    }
    // Independent per atSign.
    assert_eq!(
        store
            .put(&b, "x@ids2", &record("v", 0), CommitOp::Update)
            .await
            .unwrap(),
        Some(0)
    );
    assert_eq!(store.last_commit_id(&a).await.unwrap(), Some(2));
    assert_eq!(store.last_commit_id(&b).await.unwrap(), Some(0));

    // A delete of a key that never existed still gets an entry.
    assert_eq!(store.remove(&a, "ghost@ids1").await.unwrap(), Some(3));

    let all = store.commits_since(&a, None, 100).await.unwrap();
    assert_eq!(
        ids(&all),
        vec![
            (0, "x@ids1", "+"),
            (1, "y@ids1", "+"),
            (2, "z@ids1", "+"),
            (3, "ghost@ids1", "-")
        ]
    );
    assert!(all.iter().all(|e| e.op_time_ms > 1_700_000_000_000));
    assert_eq!(
        ids(&store.commits_since(&a, Some(0), 2).await.unwrap()),
        vec![(1, "y@ids1", "+"), (2, "z@ids1", "+")]
    );
    assert_eq!(
        ids(&store.commits_since(&a, Some(3), 10).await.unwrap()),
        vec![]
    );
    assert_eq!(
        ids(&store.commits_since(&a, Some(u64::MAX), 10).await.unwrap()),
        vec![]
    );
    assert_eq!(store.commits_since(&a, None, 0).await.unwrap(), vec![]);
}

pub async fn uncommitted_key_classes(store: &Store) {
    let a = sign("unc");
    for key in [
        "private:secret@unc",
        "privatekey:at_pkam_publickey",
        "public:_hidden@unc",
        "local:draft@unc",
    ] {
        assert_eq!(
            store
                .put(&a, key, &record("s", 0), CommitOp::UpdateAll)
                .await
                .unwrap(),
            None,
            "{key}"
        );
        assert!(store.get(&a, key).await.unwrap().is_some(), "{key} stored");
        assert_eq!(store.remove(&a, key).await.unwrap(), None, "{key}");
    }
    assert_eq!(store.commits_since(&a, None, 100).await.unwrap(), vec![]);
    assert_eq!(store.last_commit_id(&a).await.unwrap(), None);

    // public:__ is hidden but synced.
    assert_eq!(
        store
            .put(
                &a,
                "public:__shown@unc",
                &record("s", 0),
                CommitOp::UpdateAll
            )
            .await
            .unwrap(),
        Some(0)
    );
    // A skipCommit write of an otherwise committed key.
    store
        .put_uncommitted(&a, "otp@unc", &record("123", 0))
        .await
        .unwrap();
    assert!(store.get(&a, "otp@unc").await.unwrap().is_some());
    store.remove_uncommitted(&a, "otp@unc").await.unwrap();
    assert_eq!(store.get(&a, "otp@unc").await.unwrap(), None);
    assert_eq!(store.last_commit_id(&a).await.unwrap(), Some(0));
}

pub async fn latest_entry_per_key(store: &Store) {
    let a = sign("latest");
    for (key, op) in [
        ("k1@latest", CommitOp::Update),     // 0
        ("k2@latest", CommitOp::Update),     // 1
        ("k1@latest", CommitOp::UpdateAll),  // 2, replaces 0
        ("k1@latest", CommitOp::UpdateMeta), // 3, replaces 2
    ] {
        store.put(&a, key, &record("v", 0), op).await.unwrap();
    }
    store.remove(&a, "k2@latest").await.unwrap(); // 4, replaces 1
    assert_eq!(
        ids(&store.commits_since(&a, None, 100).await.unwrap()),
        vec![(3, "k1@latest", "#"), (4, "k2@latest", "-")]
    );
    assert_eq!(
        ids(&store.commits_since(&a, Some(0), 1).await.unwrap()),
        vec![(3, "k1@latest", "#")],
        "after= counts ids, not positions"
    );
    assert_eq!(store.last_commit_id(&a).await.unwrap(), Some(4));
}

pub async fn keys_are_isolated_per_atsign(store: &Store) {
    let al = sign("al");
    let alice = sign("alice");
    let bob = sign("bob");
    for key in ["public:b@al", "a@al"] {
        store
            .put(&al, key, &record("v", 0), CommitOp::Update)
            .await
            .unwrap();
    }
    for key in ["public:phone@alice", "@bob:x@alice", "public:a@alice"] {
        store
            .put(&alice, key, &record("v", 0), CommitOp::Update)
            .await
            .unwrap();
    }
    assert_eq!(
        store.keys(&al, "").await.unwrap(),
        vec!["a@al", "public:b@al"]
    );
    assert_eq!(
        store.keys(&alice, "").await.unwrap(),
        vec!["@bob:x@alice", "public:a@alice", "public:phone@alice"]
    );
    assert_eq!(
        store.keys(&alice, "public:").await.unwrap(),
        vec!["public:a@alice", "public:phone@alice"]
    );
    assert_eq!(
        store.keys(&alice, "public:zz").await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(store.keys(&bob, "").await.unwrap(), Vec::<String>::new());
    assert_eq!(store.get(&bob, "public:phone@alice").await.unwrap(), None);
    assert_eq!(store.commits_since(&al, None, 100).await.unwrap().len(), 2);
    assert_eq!(
        store.commits_since(&alice, None, 100).await.unwrap().len(),
        3
    );
}

pub async fn atsign_lifecycle(store: &Store) {
    let life = sign("life");
    let lifeline = sign("lifeline");
    assert_eq!(store.get_atsign(&life).await.unwrap(), None);
    assert!(matches!(
        store.set_atsign_info(&life, &info("life")).await,
        Err(StoreError::NoSuchAtSign(_))
    ));

    store.create_atsign(&life, &info("life")).await.unwrap();
    store
        .create_atsign(&lifeline, &info("lifeline"))
        .await
        .unwrap();
    assert!(matches!(
        store.create_atsign(&life, &info("again")).await,
        Err(StoreError::AtSignExists(_))
    ));
    assert_eq!(store.get_atsign(&life).await.unwrap(), Some(info("life")));

    let onboarded = AtSignInfo {
        status: AtSignStatus::Active,
        cram_secret: None,
        ..info("life")
    };
    store.set_atsign_info(&life, &onboarded).await.unwrap();
    assert_eq!(
        store.get_atsign(&life).await.unwrap(),
        Some(onboarded.clone())
    );
    let suspended = AtSignInfo {
        suspended: true,
        ..onboarded.clone()
    };
    store.set_atsign_info(&life, &suspended).await.unwrap();
    assert_eq!(store.get_atsign(&life).await.unwrap(), Some(suspended));
    store.set_atsign_info(&life, &onboarded).await.unwrap();
    let listed = store.list_atsigns().await.unwrap();
    assert!(listed.contains(&life) && listed.contains(&lifeline));
    // Its TLS name (`info(label).sni_label` is the label) finds it, and only it.
    assert_eq!(
        store.atsign_by_label("life").await.unwrap(),
        Some(life.clone())
    );
    assert_eq!(
        store.atsign_by_label("lifeline").await.unwrap(),
        Some(lifeline.clone())
    );
    assert_eq!(store.atsign_by_label("lif").await.unwrap(), None);

    for who in [&life, &lifeline] {
        store
            .put(who, "k@x", &record("v", 0), CommitOp::Update)
            .await
            .unwrap();
        store
            .put(who, "private:p@x", &record("v", 0), CommitOp::Update)
            .await
            .unwrap();
        store
            .record_access(who, AccessKind::AtSign, "@bob")
            .await
            .unwrap();
        store
            .record_access(who, AccessKind::Key, "k@x")
            .await
            .unwrap();
    }

    assert!(store.remove_atsign(&life).await.unwrap());
    assert!(!store.remove_atsign(&life).await.unwrap());
    assert_eq!(store.get_atsign(&life).await.unwrap(), None);
    assert_eq!(store.atsign_by_label("life").await.unwrap(), None);
    assert_eq!(
        store.atsign_by_label("lifeline").await.unwrap(),
        Some(lifeline.clone())
    );
    assert_eq!(store.keys(&life, "").await.unwrap(), Vec::<String>::new());
    assert_eq!(store.commits_since(&life, None, 100).await.unwrap(), vec![]);
    assert_eq!(store.last_commit_id(&life).await.unwrap(), None);
    for kind in [AccessKind::AtSign, AccessKind::Key] {
        assert_eq!(store.top_accesses(&life, kind, 10).await.unwrap(), vec![]);
    }
    assert!(!store.list_atsigns().await.unwrap().contains(&life));

    // Provisioned again, it starts empty: no record, no old commit entry, ids from 0 (a
    // backend that remembers what it last wrote must forget it with the atSign).
    store.create_atsign(&life, &info("life")).await.unwrap();
    let written = store
        .modify(&life, "k@x", |current| match current {
            None => Ok(Mutation::put(record("again", 0), CommitOp::Update)),
            Some(_) => Ok(Mutation::Keep),
        })
        .await
        .unwrap();
    assert!(written.changed, "the removed record is not seen");
    assert_eq!(written.commit_id, Some(0));
    assert_eq!(
        ids(&store.commits_since(&life, None, 100).await.unwrap()),
        vec![(0, "k@x", "+")]
    );
    assert!(store.remove_atsign(&life).await.unwrap());

    // The atSign whose name starts with the removed one keeps everything.
    assert!(store.get_atsign(&lifeline).await.unwrap().is_some());
    assert_eq!(
        store.keys(&lifeline, "").await.unwrap(),
        vec!["k@x", "private:p@x"]
    );
    assert_eq!(store.last_commit_id(&lifeline).await.unwrap(), Some(0));
    assert_eq!(
        store
            .top_accesses(&lifeline, AccessKind::AtSign, 10)
            .await
            .unwrap(),
        vec![("@bob".to_string(), 1)]
    );
}

pub async fn compaction(store: &Store) {
    let a = sign("compact");
    store
        .put(&a, "old@compact", &record("v", 0), CommitOp::Update)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let cut = store.commits_since(&a, None, 1).await.unwrap()[0].op_time_ms + 2;
    tokio::time::sleep(Duration::from_millis(5)).await;
    store
        .put(&a, "new@compact", &record("v", 0), CommitOp::Update)
        .await
        .unwrap();

    assert_eq!(
        store.compact_commits(&a, 0).await.unwrap(),
        0,
        "nothing old"
    );
    assert_eq!(
        store
            .compact_commits(&sign("nolog"), i64::MAX)
            .await
            .unwrap(),
        0,
        "an empty log"
    );
    assert_eq!(store.compact_commits(&a, cut).await.unwrap(), 1);
    assert_eq!(
        ids(&store.commits_since(&a, None, 100).await.unwrap()),
        vec![(1, "new@compact", "+")]
    );
    assert!(
        store.get(&a, "old@compact").await.unwrap().is_some(),
        "data kept"
    );

    // Everything compacted: the counter still never goes back.
    assert_eq!(store.compact_commits(&a, i64::MAX).await.unwrap(), 1);
    assert_eq!(store.commits_since(&a, None, 100).await.unwrap(), vec![]);
    assert_eq!(store.last_commit_id(&a).await.unwrap(), Some(1));
    assert_eq!(
        store
            .put(&a, "old@compact", &record("v", 1), CommitOp::UpdateAll)
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        ids(&store.commits_since(&a, None, 100).await.unwrap()),
        vec![(2, "old@compact", "*")]
    );
}

pub async fn trimming(store: &Store) {
    let a = sign("trim");
    let other = sign("trimmer");
    assert_eq!(store.trim_commits(&a, 10).await.unwrap(), 0, "an empty log");
    store
        .put(&other, "k@trimmer", &record("v", 0), CommitOp::Update)
        .await
        .unwrap();
    for key in ["k0@trim", "k1@trim", "k2@trim", "k3@trim"] {
        store
            .put(&a, key, &record("v", 0), CommitOp::Update)
            .await
            .unwrap();
    }
    // Replaces entry 0: the log holds 1, 2, 3, 4.
    store
        .put(&a, "k0@trim", &record("v", 1), CommitOp::UpdateAll)
        .await
        .unwrap();

    assert_eq!(
        store.trim_commits(&a, 4).await.unwrap(),
        0,
        "within the bound"
    );
    assert_eq!(store.trim_commits(&a, 2).await.unwrap(), 2);
    assert_eq!(
        ids(&store.commits_since(&a, None, 100).await.unwrap()),
        vec![(3, "k3@trim", "+"), (4, "k0@trim", "*")],
        "the newest kept"
    );
    assert!(
        store.get(&a, "k1@trim").await.unwrap().is_some(),
        "data kept"
    );

    // A trimmed key's next write gets a new entry; the counter never goes back.
    assert_eq!(
        store
            .put(&a, "k1@trim", &record("v", 1), CommitOp::UpdateAll)
            .await
            .unwrap(),
        Some(5)
    );
    assert_eq!(store.trim_commits(&a, 0).await.unwrap(), 3);
    assert_eq!(store.commits_since(&a, None, 100).await.unwrap(), vec![]);
    assert_eq!(store.last_commit_id(&a).await.unwrap(), Some(5));
    assert_eq!(
        store
            .put(&a, "k2@trim", &record("v", 1), CommitOp::UpdateAll)
            .await
            .unwrap(),
        Some(6)
    );
    assert_eq!(
        ids(&store.commits_since(&a, None, 100).await.unwrap()),
        vec![(6, "k2@trim", "*")]
    );
    assert_eq!(
        ids(&store.commits_since(&other, None, 100).await.unwrap()),
        vec![(0, "k@trimmer", "+")],
        "another atSign's log is untouched"
    );
}

pub async fn access_counters(store: &Store) {
    let a = sign("stats");
    let other = sign("stats2");
    assert_eq!(
        store.top_accesses(&a, AccessKind::AtSign, 3).await.unwrap(),
        vec![]
    );
    for (from, times) in [("@bob", 3), ("@carol", 1), ("@dave", 3), ("@erin", 2)] {
        for _ in 0..times {
            store
                .record_access(&a, AccessKind::AtSign, from)
                .await
                .unwrap();
        }
    }
    store
        .record_access(&a, AccessKind::Key, "public:phone@stats")
        .await
        .unwrap();
    store
        .record_access(&other, AccessKind::AtSign, "@zed")
        .await
        .unwrap();

    let top = store.top_accesses(&a, AccessKind::AtSign, 3).await.unwrap();
    let expected: Vec<(String, u64)> = [("@bob", 3), ("@dave", 3), ("@erin", 2)]
        .map(|(s, n)| (s.to_string(), n))
        .into();
    assert_eq!(top, expected, "largest first, ties by name, at most n");
    assert_eq!(
        store.top_accesses(&a, AccessKind::Key, 10).await.unwrap(),
        vec![("public:phone@stats".to_string(), 1)]
    );
    assert_eq!(
        store
            .top_accesses(&other, AccessKind::AtSign, 10)
            .await
            .unwrap(),
        vec![("@zed".to_string(), 1)]
    );
}

/// Read-modify-writes of one key on several tasks at once: none is lost (each sees the value
/// the one before it wrote), whatever a backend decides ahead of applying.
pub async fn concurrent_read_modify_writes(store: &Store) {
    let a = sign("counter");
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            let a = a.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    store
                        .modify(&a, "count@counter", |current| {
                            let n: u64 = current
                                .and_then(|r| r.value.as_deref())
                                .map_or(0, |v| v.parse().unwrap());
                            Ok(Mutation::put(
                                record(&(n + 1).to_string(), 0),
                                CommitOp::Update,
                            ))
                        })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stored = store.get(&a, "count@counter").await.unwrap().unwrap();
    assert_eq!(stored.value.as_deref(), Some("100"));
}

/// Writers on several tasks at once: every put gets its own id, none is skipped or repeated.
pub async fn concurrent_writers(store: &Store) {
    let a = sign("busy");
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            let a = a.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..25 {
                    let key = format!("t{t}k{i}@busy");
                    let id = store.put(&a, &key, &record("v", 0), CommitOp::Update).await;
                    ids.push(id.unwrap().unwrap());
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        let mine = task.await.unwrap();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "increasing per writer"
        );
        ids.extend(mine);
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..100).collect::<Vec<u64>>());
    assert_eq!(store.keys(&a, "").await.unwrap().len(), 100);
    assert_eq!(
        store.commits_since(&a, None, 1000).await.unwrap().len(),
        100
    );
}
