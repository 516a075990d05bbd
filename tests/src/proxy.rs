//! A loopback TCP proxy that a test can cut: while cut, every connection through it is closed
//! and every new one is accepted and closed at once, as if the server behind it were gone for
//! this one client only (one node's Redis connections, while other nodes keep theirs).
//!
//! A thread accepts (polling, so it stops when the proxy is dropped) and two threads per
//! connection copy bytes each way until either side closes.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A proxy from a loopback port to `target`.
pub struct TcpProxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// Both ends of every connection made, to shut them down when cut.
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl TcpProxy {
    pub fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let proxy = TcpProxy {
            addr: listener.local_addr().unwrap(),
            cut: Arc::default(),
            stop: Arc::default(),
            open: Arc::default(),
        };
        let (cut, stop, open) = (proxy.cut.clone(), proxy.stop.clone(), proxy.open.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                if cut.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let (Ok(client_copy), Ok(server_copy)) = (client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                {
                    let mut open = open.lock().unwrap();
                    for stream in [&client, &server] {
                        if let Ok(clone) = stream.try_clone() {
                            open.push(clone);
                        }
                    }
                }
                std::thread::spawn(move || pump(client, server_copy));
                std::thread::spawn(move || pump(server, client_copy));
            }
        });
        proxy
    }

    /// Closes every connection through it, and every new one until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
    }
}

/// Copies `from` to `to` until either ends, then shuts both down.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
