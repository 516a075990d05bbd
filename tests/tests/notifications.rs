//! Notifications between atSigns of one cluster and the monitor connections that stream them,
//! over real TLS, on the embedded store and on Redis, and across nodes on one Redis:
//!
//! - `notify` answers `data:<id>`; the recipient's monitor gets exactly one
//!   `notification: {json}\n` line (reference key order, `MessageType.key`, the sender's
//!   `ivNonce`), and never a prompt; `noop:0` there is answered `data:ok\n`;
//! - `monitor:<epochMillis>` replays what arrived while nobody watched, strictly after it, and
//!   the regex filters;
//! - `notify:status`, `notify:list` (regex, dates), `notify:fetch`, `notify:remove`,
//!   `notify:all`;
//! - the stats notification (`id` `-1`, the last commit id) after each of the owner's writes;
//! - autoNotify: updating or deleting a key shared with @bob tells @bob;
//! - a monitor on one node hears a notification sent through another;
//! - a node subscribes to an atSign's notification channel only while it holds a monitor of
//!   that atSign.

mod support;

use std::time::Duration;

use at_tests::client::line_without_time;
use at_tests::redis::RedisServer;
use at_tests::servers::eventually;
use at_tests::TempDir;
use support::Node;

/// `@alice` and `@bob` provisioned through `node`; their (host, secret).
fn alice_and_bob(node: &Node) -> ((String, String), (String, String)) {
    (node.provision("@alice"), node.provision("@bob"))
}

fn one_node(redis: Option<&RedisServer>) {
    let dir = TempDir::new("notifications");
    let node = Node::start(dir.path(), 0, redis);
    let ((alice_host, alice_secret), (bob_host, bob_secret)) = alice_and_bob(&node);
    let mut alice = node.owner("@alice", &alice_host, &alice_secret);

    // Sent while @bob does not watch: kept for his monitor's replay.
    let early = alice.reply_to("notify:id:early-1:update:@bob:early@alice:v0", "\n@alice@");
    assert_eq!(early, "data:early-1");

    let mut monitor = node.owner("@bob", &bob_host, &bob_secret);
    monitor.send(b"monitor:0 .*\n");
    assert_eq!(
        line_without_time(&monitor.next_line()),
        "notification: {\"id\":\"early-1\",\"from\":\"@alice\",\"to\":\"@bob\",\"key\":\"@bob:early@alice\",\
         \"value\":\"v0\",\"operation\":\"update\",\"epochMillis\":<time>,\"messageType\":\"MessageType.key\",\
         \"isEncrypted\":true,\"metadata\":{\"encKeyName\":null,\"encAlgo\":null,\"ivNonce\":null,\
         \"skeEncKeyName\":null,\"skeEncAlgo\":null,\"sharedKeyEnc\":null}}\n"
    );

    // Live, as the Python SDK sends it.
    let id = alice.reply_to(
        "notify:id:b67c5a7b-7beb-4178-9f11-8792564ddac3:update:isEncrypted:true:ivNonce:0FGj472sM6I/oRusH9FEZw==:@bob:message.myapp@alice:c2VjcmV0",
        "\n@alice@",
    );
    assert_eq!(id, "data:b67c5a7b-7beb-4178-9f11-8792564ddac3");
    assert_eq!(
        line_without_time(&monitor.next_line()),
        "notification: {\"id\":\"b67c5a7b-7beb-4178-9f11-8792564ddac3\",\"from\":\"@alice\",\"to\":\"@bob\",\
         \"key\":\"@bob:message.myapp@alice\",\"value\":\"c2VjcmV0\",\"operation\":\"update\",\"epochMillis\":<time>,\
         \"messageType\":\"MessageType.key\",\"isEncrypted\":true,\"metadata\":{\"encKeyName\":null,\
         \"encAlgo\":null,\"ivNonce\":\"0FGj472sM6I/oRusH9FEZw==\",\"skeEncKeyName\":null,\
         \"skeEncAlgo\":null,\"sharedKeyEnc\":null}}\n"
    );
    // A text message: no sender suffix on the key, not encrypted.
    alice.reply_to(
        "notify:id:t1:messageType:text:@bob:hello there",
        "\n@alice@",
    );
    let text = monitor.next_line();
    assert!(
        text.contains("\"key\":\"@bob:hello there\"")
            && text.contains("\"messageType\":\"MessageType.text\",\"isEncrypted\":false"),
        "{text}"
    );
    // Heartbeat on the monitor connection: `data:ok` and no prompt, before or after.
    monitor.send(b"noop:0\n");
    assert_eq!(monitor.next_line(), "data:ok\n");
    monitor.expect_silence(Duration::from_millis(300));

    // The sender asks how it went (delivered once @bob's server answered, a moment after his
    // monitor showed it); the recipient lists, filters and removes.
    eventually(|| alice.reply_to("notify:status:t1", "\n@alice@") == "data:delivered");
    assert_eq!(
        alice.reply_to("notify:status:no-such-id", "\n@alice@"),
        "data:null"
    );
    let mut bob = node.owner("@bob", &bob_host, &bob_secret);
    let listed = bob.reply_to("notify:list", "\n@bob@");
    for id in ["early-1", "b67c5a7b-7beb-4178-9f11-8792564ddac3", "t1"] {
        assert!(
            listed.contains(&format!("{{\"id\":\"{id}\",\"from\":\"@alice\"")),
            "{listed}"
        );
    }
    let myapp = bob.reply_to("notify:list:myapp", "\n@bob@");
    assert!(
        myapp.starts_with("data:[{\"id\":\"b67c5a7b") && !myapp.contains("early-1"),
        "{myapp}"
    );
    // Dates (UTC days, inclusive): today lists them, a day long past none.
    let today = &listed[listed.find("\"epochMillis\":").unwrap() + 14..][..13];
    let day = &at_common::metadata::format_timestamp(today.parse().unwrap())[..10];
    let today_list = bob.reply_to(&format!("notify:list:{day}:{day}"), "\n@bob@");
    assert_eq!(today_list, listed);
    assert_eq!(
        bob.reply_to("notify:list:2001-01-01:2001-01-02", "\n@bob@"),
        "data:null"
    );
    // One notification whole, every value a string, as the reference's notify:fetch.
    let fetched = bob.reply_to("notify:fetch:t1", "\n@bob@");
    assert!(
        fetched.starts_with(
            "data:{\"id\":\"t1\",\"fromAtSign\":\"@alice\",\"notificationDateTime\":\""
        ) && fetched.contains("\"toAtSign\":\"@bob\",\"notification\":\"@bob:")
            && fetched.contains(
                "\"type\":\"NotificationType.received\",\"opType\":\"OperationType.update\""
            )
            && fetched.contains(
                "\"notificationStatus\":\"NotificationStatus.delivered\",\"retryCount\":\"0\""
            ),
        "{fetched}"
    );
    assert_eq!(
        bob.reply_to("notify:fetch:nope", "\n@bob@"),
        "data:{\"id\":\"nope\",\"notificationStatus\":\"NotificationStatus.expired\"}"
    );
    assert_eq!(
        bob.reply_to("notify:remove:early-1", "\n@bob@"),
        "data:success"
    );
    assert!(!bob.reply_to("notify:list", "\n@bob@").contains("early-1"));

    // A monitor whose regex does not match hears nothing; a later epochMillis replays nothing.
    let mut picky = node.owner("@bob", &bob_host, &bob_secret);
    picky.send(format!("monitor:{} nomatch\n", i64::MAX / 2).as_bytes());
    alice.reply_to("notify:id:p1:update:@bob:other@alice:x", "\n@alice@");
    assert!(monitor.next_line().contains("\"id\":\"p1\""));
    picky.expect_silence(Duration::from_millis(500));

    // The owner's own write: the stats notification (id -1, last commit id) to every monitor,
    // whatever its regex, so clients know to sync.
    let commit = bob.reply_to("update:phone@bob 1", "\n@bob@");
    let commit = commit.strip_prefix("data:").unwrap();
    let stats = format!(
        "notification: {{\"id\":\"-1\",\"from\":\"@bob\",\"to\":\"@bob\",\
         \"key\":\"statsNotification.@bob\",\"value\":\"{commit}\",\"operation\":\"update\",\
         \"epochMillis\":<time>,\"messageType\":\"MessageType.key\",\"isEncrypted\":false,\
         \"metadata\":null}}\n"
    );
    assert_eq!(line_without_time(&monitor.next_line()), stats);
    assert_eq!(line_without_time(&picky.next_line()), stats);
    let deleted = bob.reply_to("delete:phone@bob", "\n@bob@");
    let deleted = deleted.strip_prefix("data:").unwrap();
    let line = monitor.next_line();
    assert!(
        line.contains(&format!("\"value\":\"{deleted}\",\"operation\":\"delete\"")),
        "{line}"
    );

    // notify:all: one notification per recipient, ids by recipient, `data: ` spaced.
    let all = alice.reply_to(
        "notify:all:update:@bob,@alice:greeting@alice:hi",
        "\n@alice@",
    );
    let ids = all.strip_prefix("data: {").unwrap();
    let to_bob = &ids[ids.find("\"@bob\":\"").unwrap() + 8..];
    let to_bob = &to_bob[..to_bob.find('"').unwrap()];
    assert!(ids.contains("\"@alice\":\""), "{all}");
    let line = monitor.next_line();
    assert!(
        line.contains(&format!("\"id\":\"{to_bob}\",\"from\":\"@alice\",\"to\":\"@bob\",\"key\":\"@bob:greeting@alice\",\"value\":\"hi\"")),
        "{line}"
    );

    // autoNotify: @alice updates a key shared with @bob, then deletes it; @bob is told both.
    alice.reply_to(
        "update:isEncrypted:true:ivNonce:IV1:@bob:shared.app@alice c2hhcmVk",
        "\n@alice@",
    );
    let update = line_without_time(&monitor.next_line());
    let id = &update["notification: {\"id\":\"".len()..update.find("\",\"from\"").unwrap()];
    assert_eq!(
        update,
        format!(
            "notification: {{\"id\":\"{id}\",\"from\":\"@alice\",\"to\":\"@bob\",\
             \"key\":\"@bob:shared.app@alice\",\"value\":\"c2hhcmVk\",\"operation\":\"update\",\
             \"epochMillis\":<time>,\"messageType\":\"MessageType.key\",\"isEncrypted\":true,\
             \"metadata\":{{\"encKeyName\":null,\"encAlgo\":null,\"ivNonce\":\"IV1\",\
             \"skeEncKeyName\":null,\"skeEncAlgo\":null,\"sharedKeyEnc\":null}}}}\n"
        )
    );
    // As the reference's receiver builds it: encrypted unless said otherwise, with metadata.
    alice.reply_to("delete:@bob:shared.app@alice", "\n@alice@");
    let delete = monitor.next_line();
    assert!(
        delete
            .contains("\"key\":\"@bob:shared.app@alice\",\"value\":null,\"operation\":\"delete\"")
            && delete.ends_with(
                "\"isEncrypted\":true,\"metadata\":{\"encKeyName\":null,\"encAlgo\":null,\
                 \"ivNonce\":null,\"skeEncKeyName\":null,\"skeEncAlgo\":null,\"sharedKeyEnc\":null}}\n"
            ),
        "{delete}"
    );
}

#[test]
fn monitors_stream_notifications_on_the_embedded_store() {
    one_node(None);
}

#[test]
fn monitors_stream_notifications_on_redis() {
    let redis = RedisServer::start();
    one_node(Some(&redis));
}

#[test]
fn a_monitor_on_one_node_hears_a_notification_sent_through_another() {
    let redis = RedisServer::start();
    let dir = TempDir::new("notifications-nodes");
    let nodes: Vec<Node> = (0..2)
        .map(|n| Node::start(dir.path(), n, Some(&redis)))
        .collect();
    monitor_hears_through_another_node(&nodes[0], &nodes[0], &nodes[1]);
}

/// The same on three nodes on a Redis Cluster: @bob's monitor on node 2, @alice writing
/// through node 0, provisioned through node 1.
#[test]
fn on_a_redis_cluster_a_monitor_on_one_node_hears_a_notification_sent_through_another() {
    let cluster = at_tests::redis_cluster::RedisCluster::start();
    let store = support::store_lines(&cluster);
    let dir = TempDir::new("notifications-redis-cluster");
    let nodes: Vec<Node> = (0..3)
        .map(|n| Node::start_on(dir.path(), n, &store))
        .collect();
    monitor_hears_through_another_node(&nodes[1], &nodes[0], &nodes[2]);
}

/// @alice and @bob provisioned through `provisioner`; @bob's monitor on `receiver` hears what
/// @alice notifies through `sender`.
fn monitor_hears_through_another_node(provisioner: &Node, sender: &Node, receiver: &Node) {
    let ((alice_host, alice_secret), (bob_host, bob_secret)) = alice_and_bob(provisioner);
    let mut monitor = receiver.owner("@bob", &bob_host, &bob_secret);
    // Its answer to the noop proves `monitor` was handled: the monitor is subscribed.
    monitor.send(b"monitor\nnoop:0\n");
    assert_eq!(monitor.next_line(), "data:ok\n");
    let mut alice = sender.owner("@alice", &alice_host, &alice_secret);
    alice.reply_to("notify:id:x1:update:@bob:phone@alice:v", "\n@alice@");
    let line = monitor.next_line();
    assert!(
        line.starts_with("notification: {\"id\":\"x1\",\"from\":\"@alice\""),
        "{line}"
    );
    eventually(|| alice.reply_to("notify:status:x1", "\n@alice@") == "data:delivered");
}

/// Subscribers of `channel` on `redis` (`PUBSUB NUMSUB`).
fn subscribers(redis: &RedisServer, channel: &str) -> usize {
    let out = std::process::Command::new("redis-cli")
        .args(["--raw", "-p", &redis.port().to_string()])
        .args(["pubsub", "numsub", channel])
        .output()
        .expect("redis-cli");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // `--raw`: the channel's name, then its count.
    text.lines()
        .nth(1)
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("PUBSUB NUMSUB answered {text:?}"))
}

/// Redis sends a node only the notifications of atSigns it holds monitors (or enrolled
/// sessions) of: @bob's channel has node 1 as its one subscriber while @bob monitors there, from
/// the moment `monitor` is answered; neither @bob's plain owner connection nor node 0's
/// in-process link delivering @alice's notification to @bob makes a node subscribe; and once
/// the monitor closes, nobody is.
#[test]
fn a_node_follows_an_atsigns_notifications_only_while_it_holds_a_monitor_of_it() {
    let redis = RedisServer::start();
    let dir = TempDir::new("notification-channels");
    let nodes: Vec<Node> = (0..2)
        .map(|n| Node::start(dir.path(), n, Some(&redis)))
        .collect();
    let ((alice_host, alice_secret), (bob_host, bob_secret)) = alice_and_bob(&nodes[0]);
    let (of_alice, of_bob) = (
        "atserver:{@alice}:notifications",
        "atserver:{@bob}:notifications",
    );
    let mut alice = nodes[0].owner("@alice", &alice_host, &alice_secret);
    let mut bob = nodes[1].owner("@bob", &bob_host, &bob_secret);
    bob.reply_to("noop:0", "\n@bob@");
    // A subscription takes about a millisecond: none came in this long.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(subscribers(&redis, of_bob), 0, "an owner connection alone");
    assert_eq!(subscribers(&redis, of_alice), 0);
    let mut monitor = nodes[1].owner("@bob", &bob_host, &bob_secret);
    monitor.send(b"monitor\nnoop:0\n");
    assert_eq!(monitor.next_line(), "data:ok\n");
    assert_eq!(
        subscribers(&redis, of_bob),
        1,
        "subscribed once `monitor` is answered"
    );
    alice.reply_to("notify:id:c1:update:@bob:phone@alice:v", "\n@alice@");
    let line = monitor.next_line();
    assert!(line.starts_with("notification: {\"id\":\"c1\""), "{line}");
    eventually(|| alice.reply_to("notify:status:c1", "\n@alice@") == "data:delivered");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        subscribers(&redis, of_bob),
        1,
        "node 0's link to @bob is no reason"
    );
    drop(monitor);
    eventually(|| subscribers(&redis, of_bob) == 0);
    // @bob's owner connection is still open there.
    bob.reply_to("noop:0", "\n@bob@");
}
