//! Nodes on one Redis learn of atSigns provisioned or deprovisioned through another node from
//! Redis pub/sub, and "after a reconnect each node rereads the whole list, since messages sent
//! meanwhile are lost" (README, nodes on Redis).
//!
//! Node A (on 127.0.0.1) reaches Redis directly; node B (on 127.0.0.2, the same per-atSign
//! ports) through a TCP proxy the test cuts (`at_tests::proxy`). While B is cut off, @carol is
//! provisioned and @alice deprovisioned through A: B misses both messages, and still serves
//! @alice and not @carol. Once the proxy lets B through again, B serves @carol on her port and
//! no longer serves @alice, without any further message.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use at_tests::client::Client;
use at_tests::process::{run, workspace_binary, Running};
use at_tests::proxy::TcpProxy;
use at_tests::redis::RedisServer;
use at_tests::TempDir;

/// How long B may take to catch up once it reaches Redis again (its resubscription backs off
/// to 5 s at most).
const CATCH_UP: Duration = Duration::from_secs(20);

/// Ports for three atSigns, free on both nodes' addresses.
fn port_range() -> u16 {
    for _ in 0..50 {
        let first = at_tests::free_ports(3);
        let free = (first..first + 3).all(|port| TcpListener::bind(("127.0.0.2", port)).is_ok());
        if free {
            return first;
        }
    }
    panic!("no three ports free on 127.0.0.1 and 127.0.0.2")
}

/// Node `name` listening on `ip`, on the Redis at `redis_url`; its config file and process.
fn node(dir: &Path, name: &str, ip: &str, ports: u16, redis_url: &str) -> (PathBuf, Running) {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    let config = data.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\ndirectory_data_dir = {:?}\nlisten = \"{ip}:0\"\n\
             public_host = \"{ip}\"\nport_range_start = {ports}\nport_range_len = 3\n\
             [store]\nbackend = \"redis\"\nredis_url = \"{redis_url}\"\n\
             [directory_store]\nbackend = \"redis\"\nredis_url = \"{redis_url}\"\n",
            data.display().to_string(),
            dir.join("directory").display().to_string(),
        ),
    )
    .unwrap();
    let running = Running::start(
        &workspace_binary("at-server"),
        &["--config", &config.display().to_string(), "serve"],
        &[("AT_SERVER_LOG", "error")],
        false,
    );
    (config, running)
}

/// Runs an admin command through the node configured by `config`; what it printed.
fn admin(config: &Path, args: &[&str]) -> String {
    let config = config.display().to_string();
    let mut all = vec!["--config", config.as_str()];
    all.extend_from_slice(args);
    let out = run(&workspace_binary("at-server"), &all, &[]);
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Whether `addr` serves an atSign: TLS (trusting `ca`) and the `@` prompt.
fn serves(addr: SocketAddr, ca: &Path) -> bool {
    if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
        return false;
    }
    Client::try_tls_named(addr, ca, &addr.ip().to_string())
        .and_then(|mut client| client.try_expect(b"@", Duration::from_secs(5)))
        .is_ok()
}

/// Waits (at most `within`) until `addr` is served, or not, as `wanted`.
fn until_served(addr: SocketAddr, ca: &Path, wanted: bool, within: Duration) {
    let deadline = Instant::now() + within;
    while serves(addr, ca) != wanted {
        assert!(
            Instant::now() < deadline,
            "{addr} {} within {within:?}",
            if wanted { "not served" } else { "still served" }
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_node_that_lost_redis_rereads_the_atsign_list_when_it_is_back() {
    let dir = TempDir::new("redis-resync");
    let redis = RedisServer::start();
    let proxy = TcpProxy::start(SocketAddr::from(([127, 0, 0, 1], redis.port())));
    let ports = port_range();
    let (a_config, _a) = node(dir.path(), "a", "127.0.0.1", ports, &redis.url());
    let (_, _b) = node(
        dir.path(),
        "b",
        "127.0.0.2",
        ports,
        &format!("redis://{}", proxy.addr),
    );
    let (a_ca, b_ca) = (
        dir.path().join("a/tls/ca.pem"),
        dir.path().join("b/tls/ca.pem"),
    );
    let on_b = |port: u16| SocketAddr::from(([127, 0, 0, 2], port));

    // Provisioned through A: B serves it too, told by pub/sub.
    let alice = admin(&a_config, &["provision", "@alice"]);
    assert!(
        alice.starts_with(&format!("provisioned @alice at 127.0.0.1:{ports}\n")),
        "{alice}"
    );
    until_served(on_b(ports), &b_ca, true, CATCH_UP);

    // B loses Redis; meanwhile @carol comes and @alice goes, through A.
    proxy.cut();
    let carol = admin(&a_config, &["provision", "@carol"]);
    let (_, carol_secret) = at_tests::servers::provisioned(&carol, "@carol");
    let carol_port = ports + 1;
    assert!(
        carol.starts_with(&format!("provisioned @carol at 127.0.0.1:{carol_port}\n")),
        "{carol}"
    );
    admin(&a_config, &["deprovision", "@alice"]);
    until_served(
        SocketAddr::from(([127, 0, 0, 1], carol_port)),
        &a_ca,
        true,
        CATCH_UP,
    );
    // B missed both messages (it has not caught up by other means either).
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        !serves(on_b(carol_port), &b_ca),
        "B learned of @carol while cut off"
    );
    assert!(serves(on_b(ports), &b_ca), "B dropped @alice while cut off");

    // Back: B rereads the list.
    proxy.restore();
    until_served(on_b(carol_port), &b_ca, true, CATCH_UP);
    until_served(on_b(ports), &b_ca, false, CATCH_UP);
    let mut carol = Client::tls_named(on_b(carol_port), &b_ca, "127.0.0.2");
    carol.expect(b"@");
    carol.cram_in("@carol", &carol_secret);
}
