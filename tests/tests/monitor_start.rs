//! A monitor gets every notification sent after it started, whichever node sends it: with
//! each atSign's notifications on a channel of its own that a node subscribes to only while it
//! holds something of the atSign, a monitor counts as started (a command after `monitor` is
//! answered) only once its node hears the channel.
//!
//! Two nodes, on one Redis and on a Redis Cluster: @alice on node 0 notifies @bob right after
//! @bob's new monitor on node 1 answered its `noop:0`, round after round, with only @bob's
//! plain owner connection open on node 1 in between (no reason to follow @bob there), so each
//! round subscribes anew.

use std::time::Duration;

use at_tests::scenes::{Scene, AT_ALICE};

/// Rounds per topology.
const ROUNDS: usize = 20;

fn every_round_hears_its_notification(mut scene: Scene) {
    for round in 0..ROUNDS {
        let mut monitor = scene.monitor("@bob");
        let id = format!("start-{round}");
        let reply = scene.alice.reply_to(
            &format!("notify:id:{id}:update:@bob:phone{round}@alice:v"),
            AT_ALICE,
        );
        assert_eq!(reply, format!("data:{id}"), "round {round}");
        let wanted = format!("notification: {{\"id\":\"{id}\"");
        let line = monitor.find(Duration::from_secs(10), |line| line.starts_with(&wanted));
        assert!(
            line.is_some(),
            "round {round}: {id} never reached the monitor"
        );
    }
}

#[test]
fn on_two_nodes_on_one_redis_a_monitor_hears_what_is_sent_right_after_it_started() {
    every_round_hears_its_notification(Scene::two_nodes_on_one_redis());
}

#[test]
fn on_two_nodes_on_one_redis_cluster_a_monitor_hears_what_is_sent_right_after_it_started() {
    every_round_hears_its_notification(Scene::two_nodes_on_one_redis_cluster());
}
