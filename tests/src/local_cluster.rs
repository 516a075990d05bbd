//! `deploy/local-cluster.sh` driven from Rust: one Redis, one directory and three atServer nodes
//! on it, one cluster CA, each process on ports of its own. What the script's test and
//! `conn-bench --nodes 3` share.
//!
//! Node `n` (1 to 3) listens on its own loopback address, `127.0.0.n`, at `base + n` (its shared,
//! SNI-routed port); the directory on `127.0.0.1:base`; their HTTP ports from `metrics`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use crate::process::workspace_binary;
use crate::TempDir;

/// Node `n`'s loopback address (as the script assigns them).
pub fn node_ip(n: u16) -> String {
    format!("127.0.0.{n}")
}

/// `count` consecutive ports, from `first` on, that each of `ips` can bind right now.
fn bindable(first: u16, count: u16, ips: &[String]) -> bool {
    (0..count).all(|i| {
        first.checked_add(i).is_some_and(|port| {
            ips.iter()
                .all(|ip| TcpListener::bind((ip.as_str(), port)).is_ok())
        })
    })
}

/// Ports each cluster gets besides its atSigns': 4 for the directory and nodes, 4 HTTP,
/// Redis, and room for the script's defaults.
const BLOCK: u16 = 16;

/// The first of `len` consecutive loopback ports free on all three nodes' addresses, and never
/// handed out before in this process (tests run in parallel). Taken below the kernel's
/// ephemeral range, from a random start, as [`crate::free_port`] takes its ports.
fn free_block(len: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    let stride = u32::from(len.max(BLOCK));
    let blocks = (32_768 - FIRST) / stride;
    static NEXT: std::sync::OnceLock<AtomicU32> = std::sync::OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicU32::new(u32::from(crate::free_port())));
    let ips: Vec<String> = (1..=3).map(node_ip).collect();
    for _ in 0..blocks {
        let block = next.fetch_add(1, Ordering::Relaxed) % blocks;
        let first = (FIRST + block * stride) as u16;
        if bindable(first, len, &ips) {
            return first;
        }
    }
    panic!("no {len} consecutive free loopback ports");
}

/// A cluster made by the script in a temp dir; `down` when dropped, even after a failure.
pub struct LocalCluster {
    dir: TempDir,
    env: Vec<(String, String)>,
    base: u16,
    metrics: u16,
}

impl LocalCluster {
    /// Runs `up` with ports of its own, room for `atsign_ports` atSigns' ports, and `extra`
    /// environment (e.g. `LOCAL_CLUSTER_SNI_DOMAIN`); returns once every process is ready, or
    /// what `up` said when it failed.
    pub fn up(
        label: &str,
        atsign_ports: u16,
        extra: &[(&str, &str)],
    ) -> Result<LocalCluster, String> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            return Err("redis-server is not installed (apt-get install redis-server)".into());
        }
        // Directory on 127.0.0.1:base, node n on 127.0.0.n:base+n; their HTTP ports on
        // 127.0.0.1 from base+4; Redis on base+8; the atSigns' ports from base+9.
        let base = free_block(atsign_ports.saturating_add(9));
        let (metrics, redis_port, atsigns) = (base + 4, base + 8, base + 9);
        let mut env: Vec<(String, String)> = [
            (
                "AT_SERVER_BIN",
                workspace_binary("at-server").display().to_string(),
            ),
            (
                "AT_DIRECTORY_BIN",
                workspace_binary("at-directory").display().to_string(),
            ),
            ("LOCAL_CLUSTER_BASE_PORT", base.to_string()),
            ("LOCAL_CLUSTER_METRICS_BASE_PORT", metrics.to_string()),
            ("LOCAL_CLUSTER_REDIS_PORT", redis_port.to_string()),
            ("LOCAL_CLUSTER_ATSIGN_PORT", atsigns.to_string()),
            ("LOCAL_CLUSTER_ATSIGN_PORTS", atsign_ports.to_string()),
            ("LOCAL_CLUSTER_LOG", "warn".to_string()),
            ("LOCAL_CLUSTER_START_TIMEOUT", "30".to_string()),
            ("LOCAL_CLUSTER_STOP_TIMEOUT", "25".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let cluster = LocalCluster {
            dir: TempDir::new(label),
            env,
            base,
            metrics,
        };
        let started = Instant::now();
        let out = cluster.script("up");
        if !out.status.success() {
            return Err(format!(
                "up failed: {}\n{}",
                text(&out.stdout),
                text(&out.stderr)
            ));
        }
        eprintln!("{label}: up in {:?}", started.elapsed());
        Ok(cluster)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The directory's port, the first of the cluster's block.
    pub fn base(&self) -> u16 {
        self.base
    }

    /// `bash deploy/local-cluster.sh <command> <dir>`, from the repository root.
    pub fn script(&self, command: &str) -> Output {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        Command::new("bash")
            .arg(root.join("deploy/local-cluster.sh"))
            .arg(command)
            .arg(self.path())
            .current_dir(&root)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
            .expect("run deploy/local-cluster.sh")
    }

    pub fn ca(&self) -> PathBuf {
        self.path().join("ca/ca.pem")
    }

    pub fn directory(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base))
    }

    /// Node `n`'s shared (SNI) port.
    pub fn node(&self, n: u16) -> SocketAddr {
        format!("{}:{}", node_ip(n), self.base + n)
            .parse()
            .expect("a loopback address")
    }

    /// Node `n`'s configuration file.
    pub fn node_config(&self, n: u16) -> PathBuf {
        self.path().join(format!("node{n}.toml"))
    }

    /// The HTTP port of the directory (0) or of node `n`.
    pub fn metrics(&self, n: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.metrics + n))
    }

    /// The pid the script recorded for `component` (`redis`, `directory`, `node1`…).
    pub fn pid(&self, component: &str) -> Result<u32, String> {
        let file = self.path().join(format!("run/{component}.pid"));
        let pid = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        pid.trim()
            .parse()
            .map_err(|e| format!("{}: {e}", file.display()))
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // After a failed assertion too: no process outlives its test or bench.
        let _ = self.script("down");
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
