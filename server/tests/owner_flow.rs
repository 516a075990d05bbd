//! The owner's side of an atServer over real TLS, against the real binary: provision, connect
//! to the atSign's own port, authenticate, and the errors on the way. Digests are computed here
//! with `ring`, independently of the server's code.

mod support;

use std::path::Path;
use std::time::Duration;

use at_tests::client::Client;
use at_tests::process::{self, Running};
use at_tests::TempDir;
use support::*;

fn cram_with_the_provisioned_secret_authenticates_the_owner(backend: Backend) {
    let node = Node::start(backend);
    let mut client = node.client();
    let challenge = from_alice(&mut client);
    client.ask(
        &format!("cram:{}\n", cram_digest(&node.cram_secret, &challenge)),
        "data:success\n@alice@",
    );
}

fn wrong_cram_is_at0401_and_the_connection_stays_open(backend: Backend) {
    let node = Node::start(backend);
    let mut client = node.client();
    let challenge = from_alice(&mut client);
    client.ask(
        &format!("cram:{}\n", cram_digest("not-the-secret", &challenge)),
        "error:AT0401-Exception: Authentication Failed\n@",
    );
    // The challenge was spent: even the right digest for it now fails.
    client.ask(
        &format!("cram:{}\n", cram_digest(&node.cram_secret, &challenge)),
        "error:AT0401-Exception: Authentication Failed\n@",
    );
    let challenge = from_alice(&mut client);
    client.ask(
        &format!("cram:{}\n", cram_digest(&node.cram_secret, &challenge)),
        "data:success\n@alice@",
    );
}

fn owner_verbs_before_authentication_are_at0401(backend: Backend) {
    let node = Node::start(backend);
    let mut client = node.client();
    for line in [
        "llookup:public:phone@alice\n",
        "update:public:phone@alice 123\n",
        "stats\n",
        "sync:from:-1:limit:10\n",
    ] {
        client.ask(
            line,
            "error:AT0401-Exception: Command cannot be executed without auth\n@",
        );
    }
}

fn unknown_verbs_are_at0003_worded_by_authentication_state(backend: Backend) {
    let node = Node::start(backend);
    let mut client = node.client();
    client.ask("hello\n", "error:AT0003-Exception: invalid command\n@");
    let challenge = from_alice(&mut client);
    client.ask(
        &format!("cram:{}\n", cram_digest(&node.cram_secret, &challenge)),
        "data:success\n@alice@",
    );
    client.ask(
        "hello\n",
        "error:AT0003-Invalid syntax : invalid command\n@alice@",
    );
}

fn overlong_line_is_at0005_and_closes(backend: Backend) {
    let node = Node::start(backend);
    let mut client = node.client();
    client.send("x".repeat(1001).as_bytes());
    client.expect(b"error:AT0005-Exception: line longer than 1000 bytes\n@");
    client.expect_closed(Duration::from_secs(5));
}

fn invalid_utf8_is_at0003_and_closes(backend: Backend) {
    let node = Node::start(backend);
    let mut client = node.client();
    client.send(b"from:@\xff\xfe\n");
    client.expect(b"error:AT0003-Exception: command is not valid UTF-8\n@");
    client.expect_closed(Duration::from_secs(5));
}

fn exit_closes_without_a_reply(backend: Backend) {
    let node = Node::start(backend);
    let mut client = node.client();
    client.send(b"@exit\n");
    client.expect_closed(Duration::from_secs(5));
}

fn a_connection_for_an_unknown_server_name_is_closed(backend: Backend) {
    let node = Node::start(backend);
    let shared = node.running.as_ref().unwrap().addr;
    // The shared port routes by SNI; `localhost` names no hosted atSign.
    let mut client = Client::tls(shared, &node.ca_file());
    client.expect_closed(Duration::from_secs(5));
}

fn the_shared_port_routes_each_atsign_by_its_sni_name(backend: Backend) {
    let dir = TempDir::new("server-sni");
    let settings = format!(
        "data_dir = \"{0}/server\"\ndirectory_data_dir = \"{0}/directory\"\n\
         listen = \"127.0.0.1:0\"\npublic_port = 6464\nsni_domain = \"atsign.test\"\n",
        dir.path().display()
    );
    let config_file = write_config(dir.path(), &settings, &backend);
    let binary = Path::new(env!("CARGO_BIN_EXE_at-server"));
    for atsign in ["@alice", "@bob"] {
        assert!(process::run(
            binary,
            &["--config", &config_file, "provision", atsign],
            &[]
        )
        .status
        .success());
    }
    let list = process::run(binary, &["--config", &config_file, "list"], &[]);
    let list = String::from_utf8(list.stdout).unwrap();
    let running = Running::start(
        binary,
        &["--config", &config_file, "serve"],
        &[("AT_SERVER_LOG", "warn")],
        false,
    );
    let ca = dir.path().join("server/tls/ca.pem");
    for line in list.lines() {
        // `@alice teapot <label>.atsign.test:6464`: connect by that name to the shared port.
        let mut fields = line.split(' ');
        let (atsign, _, address) = (
            fields.next().unwrap(),
            fields.next(),
            fields.next().unwrap(),
        );
        let host = address.rsplit_once(':').unwrap().0;
        let mut client = Client::tls_named(running.addr, &ca, host);
        client.expect(b"@");
        client.send(format!("from:{atsign}\n").as_bytes());
        let reply = client.read_until(b"\n@");
        assert!(
            reply.starts_with("data:_") && reply.contains(&format!("{atsign}:")),
            "{reply}"
        );
    }
}

fn onboarding_as_real_clients_run_it_then_pkam_and_cram_disabled(backend: Backend) {
    let node = Node::start(backend);
    let mut owner = cram_in(&node);
    owner.ask(
        &format!(
            "update:privatekey:at_pkam_publickey {}\n",
            PKAM_PUBLIC.trim()
        ),
        "data:-1\n@alice@",
    );
    let mut owner = pkam_in(&node);
    owner.ask(
        "update:public:publickey@alice MIIBIjANBgkq-encryption-key\n",
        "data:0\n@alice@",
    );
    owner.ask("delete:privatekey:at_secret\n", "data:-1\n@alice@");

    // CRAM is gone for good; PKAM still works.
    let mut client = node.client();
    let challenge = from_alice(&mut client);
    client.ask(
        &format!("cram:{}\n", cram_digest(&node.cram_secret, &challenge)),
        "error:AT0401-Exception: Authentication Failed\n@",
    );
    pkam_in(&node);

    // What the status check of at_server_status looks at, unauthenticated.
    let mut anyone = node.client();
    anyone.ask(
        "scan\n",
        "data:[\"publickey@alice\",\"signing_publickey@alice\"]\n@",
    );
    anyone.ask(
        "lookup:publickey@alice\n",
        "data:MIIBIjANBgkq-encryption-key\n@",
    );
}

fn wrong_pkam_signature_is_at0401_and_the_connection_stays_open(backend: Backend) {
    let node = Node::start(backend);
    let mut owner = cram_in(&node);
    owner.ask(
        &format!(
            "update:privatekey:at_pkam_publickey {}\n",
            PKAM_PUBLIC.trim()
        ),
        "data:-1\n@alice@",
    );
    let mut client = node.client();
    let challenge = from_alice(&mut client);
    client.ask(
        &format!("pkam:{}\n", pkam_signature(&format!("{challenge}x"))),
        "error:AT0401-Exception: pkam authentication failed\n@",
    );
    let challenge = from_alice(&mut client);
    client.ask(
        &format!("pkam:{}\n", pkam_signature(&challenge)),
        "data:success\n@alice@",
    );
}

fn owner_keys_round_trip_and_missing_keys_are_at0015(backend: Backend) {
    let node = Node::start(backend);
    let mut owner = cram_in(&node);
    owner.ask("update:phone.wavi@alice +44 1234\n", "data:0\n@alice@");
    owner.ask(
        "update:public:location.wavi@alice London\n",
        "data:1\n@alice@",
    );
    owner.ask(
        "update:@bob:phone.wavi@alice encrypted-for-bob\n",
        "data:2\n@alice@",
    );
    owner.ask("llookup:phone.wavi@alice\n", "data:+44 1234\n@alice@");
    owner.ask(
        "llookup:public:location.wavi@alice\n",
        "data:London\n@alice@",
    );
    owner.ask(
        "llookup:@bob:phone.wavi@alice\n",
        "data:encrypted-for-bob\n@alice@",
    );
    owner.ask(
        "llookup:nothing.wavi@alice\n",
        "error:AT0015-key not found : nothing.wavi@alice does not exist in keystore\n@alice@",
    );
    owner.ask("delete:phone.wavi@alice\n", "data:3\n@alice@");
    owner.ask(
        "llookup:phone.wavi@alice\n",
        "error:AT0015-key not found : phone.wavi@alice does not exist in keystore\n@alice@",
    );
    // Anyone sees the public key only.
    let mut anyone = node.client();
    anyone.ask(
        "scan\n",
        "data:[\"location.wavi@alice\",\"signing_publickey@alice\"]\n@",
    );
    anyone.ask("lookup:location.wavi@alice\n", "data:London\n@");
}

fn an_acknowledged_write_survives_kill_9(backend: Backend) {
    let mut node = Node::start(backend);
    let mut owner = cram_in(&node);
    owner.ask(
        "update:public:durable@alice still-here\n",
        "data:0\n@alice@",
    );
    // SIGKILL, no shutdown of any kind, right after the acknowledgement.
    node.running.take().unwrap().stop();
    node.restart();
    let mut anyone = node.client();
    anyone.ask("lookup:durable@alice\n", "data:still-here\n@");
}

/// A connection quiet for longer than its atSign's key store may stay idle
/// (`keystore_idle_secs`) is still served: a key store with connections open stays.
fn a_connection_quieter_than_the_key_store_idle_time_is_still_served(backend: Backend) {
    let mut node = Node::start(backend);
    node.reconfigure("keystore_idle_secs = 1\n");
    let mut owner = cram_in(&node);
    owner.ask("update:public:quiet@alice here\n", "data:0\n@alice@");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    owner.ask("llookup:public:quiet@alice\n", "data:here\n@alice@");
    owner.ask("update:public:quiet@alice again\n", "data:1\n@alice@");
}

both_backends! {
    a_connection_quieter_than_the_key_store_idle_time_is_still_served,
    cram_with_the_provisioned_secret_authenticates_the_owner,
    wrong_cram_is_at0401_and_the_connection_stays_open,
    owner_verbs_before_authentication_are_at0401,
    unknown_verbs_are_at0003_worded_by_authentication_state,
    overlong_line_is_at0005_and_closes,
    invalid_utf8_is_at0003_and_closes,
    exit_closes_without_a_reply,
    a_connection_for_an_unknown_server_name_is_closed,
    the_shared_port_routes_each_atsign_by_its_sni_name,
    onboarding_as_real_clients_run_it_then_pkam_and_cram_disabled,
    wrong_pkam_signature_is_at0401_and_the_connection_stays_open,
    owner_keys_round_trip_and_missing_keys_are_at0015,
    an_acknowledged_write_survives_kill_9,
}
