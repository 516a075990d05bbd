//! A running `at-directory` with its data dir and backend, for the wire tests.
// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use at_tests::client::Client;
use at_tests::process::{self, Running};
use at_tests::redis::RedisServer;
use at_tests::TempDir;

/// Which store the directory under test uses.
#[derive(Clone)]
pub enum Backend {
    Embedded,
    Redis(Arc<RedisServer>),
}

impl Backend {
    pub fn embedded() -> Backend {
        Backend::Embedded
    }

    pub fn redis() -> Backend {
        Backend::Redis(Arc::new(RedisServer::start()))
    }
}

/// Test settings: fast throttling so tests stay short; everything else as shipped.
pub const TEST_CONFIG: &str = "miss_delay_ms = 400\n";

/// One directory process (restartable) over one data dir and one backend.
pub struct Directory {
    pub backend: Backend,
    pub data: TempDir,
    config_file: PathBuf,
    pub running: Option<Running>,
}

impl Directory {
    /// Starts a directory with [`TEST_CONFIG`] plus `extra` TOML, after registering `registrations`.
    pub fn start(backend: Backend, extra: &str, registrations: &[(&str, &str)]) -> Directory {
        let data = TempDir::new("directory");
        let config_file = data.path().join("directory.toml");
        std::fs::write(&config_file, format!("{TEST_CONFIG}{extra}")).expect("write config");
        let mut directory = Directory {
            backend,
            data,
            config_file,
            running: None,
        };
        for (atsign, address) in registrations {
            let out = directory.admin(&["register", atsign, address]);
            assert!(out.status.success(), "register failed: {out:?}");
        }
        directory.restart();
        directory
    }

    fn common_args(&self) -> Vec<String> {
        let mut args = vec![
            "--config".to_string(),
            self.config_file.display().to_string(),
            "--data-dir".to_string(),
            self.data.path().join("data").display().to_string(),
        ];
        if let Backend::Redis(redis) = &self.backend {
            args.extend(["--redis".to_string(), redis.url()]);
        }
        args
    }

    /// Runs an admin sub-command (`register`, `unregister`, `list`) against the same store.
    pub fn admin(&self, args: &[&str]) -> Output {
        let mut all = self.common_args();
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        process::run(Path::new(env!("CARGO_BIN_EXE_at-directory")), &all, &[])
    }

    /// Stops the running process (if any) and starts a new one on a fresh port.
    pub fn restart(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop();
        }
        let mut args = self.common_args();
        args.extend(
            [
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ]
            .map(String::from),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.running = Some(Running::start(
            Path::new(env!("CARGO_BIN_EXE_at-directory")),
            &args,
            &[("AT_DIRECTORY_LOG", "warn")],
            true,
        ));
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("directory running")
    }

    /// The CA clients trust: the one generated under the data dir.
    pub fn ca_file(&self) -> PathBuf {
        self.data.path().join("data/tls/ca.pem")
    }

    /// A TLS client that has already read the `@` prompt.
    pub fn client(&self) -> Client {
        let mut client = Client::tls(self.running().addr, &self.ca_file());
        client.expect(b"@");
        client
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let addr = self.running().metrics.expect("metrics address");
        let mut http = std::net::TcpStream::connect(addr).expect("metrics connect");
        http.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        http.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .expect("metrics request");
        let mut body = String::new();
        http.read_to_string(&mut body).expect("metrics response");
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        body
    }
}

/// The value of one sample line (`name{labels} value`) in a metrics text.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no {series} in metrics:\n{metrics}"))
        .trim()
        .parse()
        .expect("numeric sample")
}

/// Runs each named test function once per backend, as `embedded::<name>` and `redis::<name>`.
#[macro_export]
macro_rules! for_each_backend {
    ($($name:ident),+ $(,)?) => {
        mod embedded {
            $(#[test] fn $name() { super::$name(super::support::Backend::embedded()) })+
        }
        mod redis {
            $(#[test] fn $name() { super::$name(super::support::Backend::redis()) })+
        }
    };
}
