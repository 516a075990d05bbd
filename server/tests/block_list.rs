//! The owner's block list (`config:block`) over real TLS, against the real binary: the
//! reference's exact replies, persistence, and `from` by a blocked atSign refused with AT0013
//! and a close.

mod support;

use std::time::Duration;

use support::*;

const CLOSE_WAIT: Duration = Duration::from_secs(5);

fn block_add_remove_and_show_reply_the_reference_bytes(backend: Backend) {
    let node = Node::start(backend);
    let mut owner = cram_in(&node);
    owner.send(b"stats:3\n");
    let last_commit = owner.read_until(b"\n@alice@");
    owner.ask("config:block:show\n", "data:null\n@alice@");
    owner.ask("config:block:add:@bob @carol\n", "data:success\n@alice@");
    owner.ask("config:block:show\n", "data:[\"@bob\",\"@carol\"]\n@alice@");
    owner.ask("config:block:remove:@bob\n", "data:success\n@alice@");
    owner.ask("config:block:show\n", "data:[\"@carol\"]\n@alice@");
    // The owner's own atSign is never blocked.
    owner.ask("config:block:add:@alice\n", "data:success\n@alice@");
    owner.ask("config:block:show\n", "data:[\"@carol\"]\n@alice@");
    owner.ask("config:block:remove:@carol\n", "data:success\n@alice@");
    owner.ask("config:block:show\n", "data:null\n@alice@");
    // Kept under a `private:` key: not in the owner's scan, not committed.
    owner.send(b"scan\n");
    let scan = owner.read_until(b"\n@alice@");
    assert!(!scan.contains("blocklist"), "{scan}");
    owner.ask("stats:3\n", &last_commit);
}

fn the_block_list_survives_reconnects_and_restarts(backend: Backend) {
    let mut node = Node::start(backend);
    let mut owner = cram_in(&node);
    owner.ask("config:block:add:@bob\n", "data:success\n@alice@");
    drop(owner);

    let mut again = pkam_in_after_cram(&node);
    again.ask("config:block:show\n", "data:[\"@bob\"]\n@alice@");
    drop(again);

    node.restart();
    let mut after_restart = cram_in(&node);
    after_restart.ask("config:block:show\n", "data:[\"@bob\"]\n@alice@");
    let mut bob = node.client();
    bob.ask(
        "from:@bob\n",
        "error:AT0013-Exception: Unable to connect\n@",
    );
    bob.expect_closed(CLOSE_WAIT);
}

fn from_by_a_blocked_atsign_is_at0013_and_the_connection_closes(backend: Backend) {
    let node = Node::start(backend);
    let mut owner = cram_in(&node);
    owner.ask("config:block:add:@bob\n", "data:success\n@alice@");

    let mut bob = node.client();
    bob.ask(
        "from:@bob\n",
        "error:AT0013-Exception: Unable to connect\n@",
    );
    bob.expect_closed(CLOSE_WAIT);

    // The atSign is matched case-folded, and a client announcing its version gets JSON.
    let mut bob = node.client();
    bob.ask(
        "from:@BOB:clientConfig:{\"version\":\"3.0.57\"}\n",
        "error:{\"errorCode\":\"AT0013\",\"errorDescription\":\"Exception: Unable to connect\"}\n@",
    );
    bob.expect_closed(CLOSE_WAIT);

    // Others are not affected, and the owner's own from still works.
    let mut carol = node.client();
    from_peer(&mut carol, "@carol");
    carol.expect_silence(Duration::from_millis(200));
    let mut again = node.client();
    from_alice(&mut again);

    // Unblocked, @bob gets its challenge again.
    owner.ask("config:block:remove:@bob\n", "data:success\n@alice@");
    let mut bob = node.client();
    from_peer(&mut bob, "@bob");
}

fn config_is_for_the_owner_only(backend: Backend) {
    let node = Node::start(backend);
    let refused = "error:AT0401-Exception: Command cannot be executed without auth\n@";
    let mut anyone = node.client();
    anyone.ask("config:block:show\n", refused);
    anyone.ask("config:block:add:@bob\n", refused);
    // Claiming to be the owner is not enough, nor is being another atSign's server.
    from_alice(&mut anyone);
    anyone.ask("config:block:remove:@bob\n", refused);
    let mut peer = node.client();
    from_peer(&mut peer, "@bob");
    peer.ask("config:block:add:@carol\n", refused);

    let mut owner = cram_in(&node);
    owner.ask("config:block:show\n", "data:null\n@alice@");
}

fn settings_are_refused_as_by_a_reference_server_outside_testing_mode(backend: Backend) {
    let node = Node::start(backend);
    let mut owner = cram_in(&node);
    owner.ask(
        "config:set:inboundMaxLimit=10\n",
        "data:testing mode disabled by default\n@alice@",
    );
    owner.ask(
        "config:print:inboundMaxLimit\n",
        "data:testing mode disabled by default\n@alice@",
    );
    owner.ask(
        "config:reset:autoNotify\n",
        "data:testing mode disabled by default\n@alice@",
    );
    owner.ask(
        "config:print:nothing\n",
        "error:AT0010-Internal server error : Invalid argument (name): No enum value with that name: \"nothing\"\n@alice@",
    );
    owner.ask("config:block:show\n", "data:null\n@alice@");
}

/// Installs the test pkam key with a cram connection, then logs in again with pkam.
fn pkam_in_after_cram(node: &Node) -> at_tests::client::Client {
    let mut owner = cram_in(node);
    owner.ask(
        &format!(
            "update:privatekey:at_pkam_publickey {}\n",
            PKAM_PUBLIC.trim()
        ),
        "data:-1\n@alice@",
    );
    pkam_in(node)
}

both_backends! {
    block_add_remove_and_show_reply_the_reference_bytes,
    the_block_list_survives_reconnects_and_restarts,
    from_by_a_blocked_atsign_is_at0013_and_the_connection_closes,
    config_is_for_the_owner_only,
    settings_are_refused_as_by_a_reference_server_outside_testing_mode,
}
