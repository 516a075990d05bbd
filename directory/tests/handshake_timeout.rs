//! `handshake_timeout_secs` ("time a client has to finish the TLS handshake", README,
//! "Configuring the atDirectory"): with it at 1 s, a connection that never starts TLS, and one
//! that stops halfway through its ClientHello, are closed after about 1 s (not before it, and
//! long before the 10 s default), while a client that finished its handshake keeps its
//! connection past that second and is answered.
//!
//! On the embedded store only: the handshake happens before any store is asked.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{Backend, Directory};

const TIMEOUT: Duration = Duration::from_secs(1);

/// Reads `tcp` until the directory closes it (at most 15 s); how long that took from `since`.
fn closed_after(mut tcp: TcpStream, since: Instant) -> Duration {
    tcp.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let deadline = since + Duration::from_secs(15);
    let mut chunk = [0u8; 1024];
    loop {
        match tcp.read(&mut chunk) {
            Ok(0) => return since.elapsed(),
            // Whatever TLS says to a broken handshake (an alert) before closing.
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return since.elapsed(),
        }
        assert!(Instant::now() < deadline, "still open after 15 s");
    }
}

#[test]
fn a_client_that_does_not_finish_its_tls_handshake_in_time_is_closed() {
    let directory = Directory::start(
        Backend::embedded(),
        &format!("handshake_timeout_secs = {}\n", TIMEOUT.as_secs()),
        &[("@alice", "alice.example.com:25000")],
    );
    let addr = directory.running().addr;

    // Silent after connecting, and stopped after the first bytes of a ClientHello (a TLS
    // handshake record header announcing more than is sent).
    let silent = TcpStream::connect(addr).unwrap();
    let silent_since = Instant::now();
    let mut partial = TcpStream::connect(addr).unwrap();
    let partial_since = Instant::now();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    // Meanwhile a client that finished its handshake, idle for longer than the timeout.
    let mut client = directory.client();
    let client_since = Instant::now();

    let silent = closed_after(silent, silent_since);
    let partial = closed_after(partial, partial_since);
    for (what, took) in [("silent", silent), ("partial ClientHello", partial)] {
        eprintln!("{what}: closed after {took:?}");
        assert!(
            took + Duration::from_millis(50) >= TIMEOUT && took < Duration::from_secs(8),
            "{what}: closed after {took:?} with a {TIMEOUT:?} handshake timeout"
        );
    }
    let idle = TIMEOUT + Duration::from_millis(300);
    std::thread::sleep(idle.saturating_sub(client_since.elapsed()));
    client.ask("alice\n", "alice.example.com:25000\r\n@");
}
