//! What the benchmark binaries (`directory-bench`, `server-bench`) share: a TLS client set-up
//! trusting one CA, readings of `/proc` to show what each process cost, running
//! `redis-benchmark` (the baseline) and reading its rates, and numeric flags.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A benchmark client's connection.
pub type Stream = TlsStream<TcpStream>;

/// A TLS connector trusting only the CA in `ca`.
pub fn connector(ca: &Path) -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS versions: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// TCP connect from `source` (any of 127.0.0.0/8 on loopback, so the server sees another
/// client address; the kernel's pick when `None`) with a fixed receive buffer of `window`
/// bytes if given, then the TLS handshake for `name`, all within `within`.
pub async fn connect_tls_from(
    connector: &TlsConnector,
    source: Option<std::net::IpAddr>,
    window: Option<u32>,
    addr: std::net::SocketAddr,
    name: &str,
    within: Duration,
) -> Result<Stream, String> {
    let handshake = async {
        let tcp = connect_tcp_from(source, window, addr).await?;
        let name = rustls::pki_types::ServerName::try_from(name.to_string())
            .map_err(|e| format!("server name {name:?}: {e}"))?;
        connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {addr}: {e}"))
    };
    tokio::time::timeout(within, handshake)
        .await
        .map_err(|_| format!("no TLS handshake with {addr} within {within:?}"))?
}

/// A plain TCP connection to `addr` from `source` (see [`connect_tls_from`]).
pub async fn connect_tcp_from(
    source: Option<std::net::IpAddr>,
    window: Option<u32>,
    addr: std::net::SocketAddr,
) -> Result<TcpStream, String> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(|e| format!("socket: {e}"))?;
    if let Some(window) = window {
        socket
            .set_recv_buffer_size(window)
            .map_err(|e| format!("receive buffer: {e}"))?;
    }
    if let Some(source) = source {
        socket
            .bind(std::net::SocketAddr::new(source, 0))
            .map_err(|e| format!("binding {source}: {e}"))?;
    }
    let tcp = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    Ok(tcp)
}

/// Reads from `stream` into `buf` (cleared first) until it ends with `suffix` (a prompt),
/// within `within`; an error if the connection closes, fails or stays silent, or if more
/// than `limit` bytes come without it.
pub async fn read_until_suffix<S>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    suffix: &[u8],
    limit: usize,
    within: Duration,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + Unpin,
{
    buf.clear();
    read_until(stream, buf, |got| got.ends_with(suffix), limit, within)
        .await
        .map_err(|e| format!("waiting for {:?}: {e}", String::from_utf8_lossy(suffix)))
}

/// Reads from `stream`, appending to `buf`, until `done(buf)` holds (checked first), within
/// `within`; an error if the connection closes, fails or stays silent, or past `limit` bytes.
pub async fn read_until<S>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> bool,
    limit: usize,
    within: Duration,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let read = async {
        let mut chunk = [0u8; 4096];
        while !done(buf) {
            if buf.len() > limit {
                return Err(format!("more than {limit} bytes"));
            }
            match stream.read(&mut chunk).await {
                Ok(0) => return Err("connection closed".to_string()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        Ok(())
    };
    let outcome = tokio::time::timeout(within, read)
        .await
        .unwrap_or_else(|_| Err(format!("nothing complete within {within:?}")));
    outcome.map_err(|e| format!("{e} (got {:?})", String::from_utf8_lossy(buf)))
}

/// Writes `bytes` and flushes, within `within`.
pub async fn write_within<S>(stream: &mut S, bytes: &[u8], within: Duration) -> Result<(), String>
where
    S: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    let io = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    match tokio::time::timeout(within, io).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write: {e}")),
        Err(_) => Err(format!("write not taken within {within:?}")),
    }
}

/// Logs in on a fresh `stream` (its `@` prompt not yet read) as `atsign` (with its `@`) with
/// CRAM: `from:`, then `cram:` with the SHA-512 of secret + challenge; each step within
/// `within`.
pub async fn cram_login<S>(
    stream: &mut S,
    atsign: &str,
    secret: &str,
    within: Duration,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(256);
    read_until_suffix(stream, &mut buf, b"@", 4096, within).await?;
    write_within(stream, format!("from:{atsign}\n").as_bytes(), within).await?;
    read_until_suffix(stream, &mut buf, b"\n@", 4096, within).await?;
    let reply = String::from_utf8_lossy(&buf).into_owned();
    let challenge = reply
        .strip_prefix("data:")
        .and_then(|r| r.strip_suffix("\n@"))
        .ok_or_else(|| format!("from:{atsign} answered {reply:?}"))?;
    let hex = crate::client::cram_digest(secret, challenge);
    write_within(stream, format!("cram:{hex}\n").as_bytes(), within).await?;
    let want = format!("data:success\n{atsign}@");
    buf.clear();
    // The answer: exactly that, or an error line and the bare prompt.
    let answered = |got: &[u8]| got == want.as_bytes() || got.ends_with(b"\n@");
    read_until(stream, &mut buf, answered, 4096, within).await?;
    match buf == want.as_bytes() {
        true => Ok(()),
        false => Err(format!(
            "cram for {atsign} answered {:?}",
            String::from_utf8_lossy(&buf)
        )),
    }
}

/// User + system CPU seconds of `pid` so far, from `/proc/<pid>/stat` (Linux; 100 ticks/s).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may contain spaces: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// User + system CPU seconds so far of this process's threads whose name starts with
/// `prefix` (`/proc/self/task/*/comm`; names are cut to 15 bytes), summed.
pub fn threads_cpu_seconds(prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end().starts_with(prefix))
        })
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) as f64 / 100.0)
        })
        .sum()
}

/// The resident memory of process `pid` now, in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse().ok())?;
    Some(kb * 1024)
}

/// `/proc/loadavg`'s one-minute figure, to show whether something else was using the CPUs.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// A latency in milliseconds, for the tables.
pub fn fmt_latency(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// A command-line flag's numeric value, within `min..=max`; the error names the flag.
pub fn number_arg<T>(flag: &str, value: Option<String>, min: T, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    let n: T = value
        .parse()
        .map_err(|_| format!("{flag}: {value:?} is not a number"))?;
    if n < min || n > max {
        return Err(format!("{flag}: {n} is outside {min}..={max}"));
    }
    Ok(n)
}

/// Longest `redis-benchmark` run before it is killed.
pub const REDIS_BENCHMARK_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `redis-benchmark -q -t <tests> -c <connections> -n <requests>` against the Redis on
/// loopback `port` (over TLS without verifying the certificate, with `tls`), bounded by
/// [`REDIS_BENCHMARK_TIMEOUT`]; returns what it printed.
pub fn run_redis_benchmark(
    port: u16,
    tests: &str,
    connections: usize,
    requests: u64,
    tls: bool,
) -> Result<String, String> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::time::Instant;
    let mut child = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            tests,
            "-q",
        ])
        .args(["-c", &connections.to_string()])
        .args(["-n", &requests.to_string()])
        .args(if tls {
            &["--tls", "--insecure"][..]
        } else {
            &[]
        })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting redis-benchmark (apt-get install -y redis-tools): {e}"))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + REDIS_BENCHMARK_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("redis-benchmark took too long; killed".into());
            }
            Err(e) => return Err(format!("waiting for redis-benchmark: {e}")),
        }
    };
    let text = reader
        .join()
        .map_err(|_| "reading redis-benchmark output")?;
    if !status.success() {
        return Err(format!("redis-benchmark failed ({status}): {text}"));
    }
    Ok(text)
}

/// Finds `<TEST>: 123456.79 requests per second` among the `\r`-separated progress lines of
/// `redis-benchmark -q`.
pub fn redis_benchmark_rate(text: &str, test: &str) -> Option<f64> {
    text.split(['\r', '\n'])
        .filter_map(|line| {
            let rest = line.trim().strip_prefix(test)?.strip_prefix(':')?;
            let (number, _) = rest.split_once("requests per second")?;
            number.trim().parse().ok()
        })
        .next_back()
}

/// A bench binary's `main`: its options parsed from the command line (`Ok(None)`: `--help`,
/// which prints `usage`), then `run`. Errors go to standard error as `<name>: <message>`; the
/// exit code is 2 for options that do not parse, 1 for a run that failed.
pub fn main<O>(
    name: &str,
    usage: &str,
    parse: impl FnOnce(std::iter::Skip<std::env::Args>) -> Result<Option<O>, String>,
    run: impl FnOnce(&O) -> Result<(), String>,
) -> std::process::ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{usage}");
            return std::process::ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{name}: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{name}: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One atSign `at-server provision --from-file --json` made: its address and CRAM secret.
pub struct Provisioned {
    /// Without the `@`.
    pub name: String,
    pub address: String,
    pub secret: String,
}

/// Provisions `@<name>` for each of `names` with one `at-server provision --from-file --json`
/// (the node not serving, or serving: the CLI finds it either way); the list is written to
/// `<dir>/provision.txt`. Fails on any atSign not provisioned.
pub fn provision_batch(
    server: &Path,
    config: &str,
    dir: &Path,
    names: &[String],
) -> Result<Vec<Provisioned>, String> {
    let list = dir.join("provision.txt");
    let text: String = names.iter().map(|name| format!("@{name}\n")).collect();
    std::fs::write(&list, text).map_err(|e| format!("writing {}: {e}", list.display()))?;
    let list = list.display().to_string();
    let out = crate::process::run(
        server,
        &[
            "--config",
            config,
            "provision",
            "--from-file",
            &list,
            "--json",
        ],
        &[("AT_SERVER_LOG", "warn")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "provision --from-file failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let results: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).map_err(|e| format!("{line:?}: {e}")))
        .collect::<Result<_, _>>()?;
    if results.len() != names.len() {
        return Err(format!(
            "provision --from-file: {} results for {} atSigns",
            results.len(),
            names.len()
        ));
    }
    names
        .iter()
        .zip(results)
        .map(|(name, result)| {
            let field = |key: &str| {
                result[key]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("provision --json: @{name} without {key}: {result}"))
            };
            if result["atSign"] != format!("@{name}").as_str() {
                return Err(format!(
                    "provision --json: {result} where @{name} was expected"
                ));
            }
            Ok(Provisioned {
                name: name.clone(),
                address: field("address")?,
                secret: field("cramSecret")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::RedisServer;
    use crate::TempDir;

    #[test]
    fn redis_benchmark_runs_over_the_harness_redis_tls_port() {
        let dir = TempDir::new("bench-redis-tls");
        let (cert, key) = at_common::tls::create_ca(dir.path()).expect("certificate");
        let redis = RedisServer::start_tls(&cert, &key);
        let tls_port = redis.tls_port().expect("a TLS port");
        assert_ne!(tls_port, redis.port());
        for (port, tls) in [(tls_port, true), (redis.port(), false)] {
            let text = run_redis_benchmark(port, "set", 2, 2000, tls).expect("redis-benchmark");
            let rate = redis_benchmark_rate(&text, "SET");
            assert!(rate.is_some_and(|r| r > 0.0), "tls {tls}: {text:?}");
        }
        // Without --tls the TLS port answers nothing redis-benchmark can read.
        let plain_on_tls = run_redis_benchmark(tls_port, "set", 1, 10, false);
        assert!(
            plain_on_tls.map_or(true, |t| redis_benchmark_rate(&t, "SET").is_none()),
            "plaintext spoken to the TLS port"
        );
    }

    #[test]
    fn redis_benchmark_quiet_output_is_parsed() {
        let text = "GET: rps=12345.0 (overall: 12000.0) avg_msec=1.2 (overall: 1.3)\r\
                    GET: 98765.43 requests per second, p50=0.271 msec                    \n\n";
        assert_eq!(redis_benchmark_rate(text, "GET"), Some(98765.43));
        assert_eq!(
            redis_benchmark_rate("GET: 80000.00 requests per second\n", "GET"),
            Some(80000.0)
        );
        assert_eq!(redis_benchmark_rate("nothing here", "GET"), None);
        let both = "SET: rps=1.0 (overall: 1.0) avg_msec=1.2 (overall: 1.3)\r\
                    SET: 91234.50 requests per second, p50=0.271 msec                    \n\
                    GET: 98765.43 requests per second, p50=0.271 msec                    \n\n";
        assert_eq!(redis_benchmark_rate(both, "SET"), Some(91234.5));
        assert_eq!(redis_benchmark_rate(both, "GET"), Some(98765.43));
    }
}
