//! `at-server`: serve the atSigns hosted on this node, and administer them.

use std::path::PathBuf;
use std::process::ExitCode;

use at_server::admin::{self, Request};
use at_server::config::ServerConfig;
use at_server::provision;
use at_server::store;
use clap::{Parser, Subcommand};

/// jemalloc rather than glibc's malloc: connections allocate on actix threads what the store's
/// writer frees on its own, which glibc's arenas handle slowly (measured in the README's
/// benchmark section: about 6% of all CPU under updates).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The atServer: hosts many atSigns on one node.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "AT_SERVER_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (the node's store and generated TLS files).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Keep the atSigns' data in the Redis at this URL (shared by every node) instead of the
    /// embedded store: `redis://[:password@]host:port[/db]`.
    #[arg(long, global = true, env = "AT_SERVER_REDIS_URL")]
    redis: Option<String>,
    /// Keep them in a Redis Cluster instead: the URLs of some of its nodes, comma-separated
    /// (`redis://h1:6379,redis://h2:6379`; `store.redis_cluster`).
    #[arg(
        long,
        global = true,
        env = "AT_SERVER_REDIS_CLUSTER",
        value_name = "URLS",
        conflicts_with = "redis"
    )]
    redis_cluster: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every hosted atSign until SIGINT/SIGTERM.
    Serve {
        /// Shared listen address (port 0 picks a free port).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Everything on one machine for development: a directory and an atServer in this process,
    /// on the embedded store with generated TLS, and a demo atSign provisioned.
    Dev {
        /// Shared (SNI) listen address; by default `listen` of the configuration if set there
        /// (or in `AT_SERVER__LISTEN`), else a free port on 127.0.0.1.
        #[arg(long)]
        listen: Option<String>,
        /// The demo atSign; repeat it to host several (they reach each other as atSigns on
        /// separate servers do).
        #[arg(long = "atsign", default_value = "@alice")]
        atsigns: Vec<String>,
        /// The directory's port on 127.0.0.1.
        #[arg(long, default_value_t = 6464)]
        directory_port: u16,
        /// First port of the atSigns' own ports (one each).
        #[arg(long, default_value_t = 25000)]
        first_port: u16,
        /// The directory's HTTP port on 127.0.0.1: the status API and /metrics; 0 turns it off.
        #[arg(long, default_value_t = 9464)]
        http_port: u16,
    },
    /// Create atSigns on this node, register them in the directory, print their CRAM secrets.
    Provision {
        #[arg(required_unless_present = "from_file")]
        atsigns: Vec<String>,
        /// Provision every atSign listed in this file (one per line; blank lines and `#`
        /// comments skipped; `-` reads standard input), going on past failures: progress on
        /// a terminal, one result per atSign, and a failure exit if any failed.
        #[arg(long, conflicts_with = "atsigns")]
        from_file: Option<PathBuf>,
        /// Print results as JSON: one object per line, `{"atSign","address","cramSecret"}`
        /// or `{"atSign","error"}`.
        #[arg(long)]
        json: bool,
    },
    /// Remove an atSign and all its data from this node and from the directory.
    Deprovision { atsign: String },
    /// Suspend an atSign: its data is kept, logins and every command are refused (AT0024, its
    /// open connections closed), the status API says `stopped`, until `resume`.
    Suspend { atsign: String },
    /// Serve a suspended atSign again.
    Resume { atsign: String },
    /// Print every hosted atSign: `@atsign status host:port` (status `teapot`, `activated` or
    /// `suspended`).
    List {
        /// Also what each holds (keys, bytes, notifications received and sent) and its open
        /// connections on the serving node.
        #[arg(long)]
        usage: bool,
        /// Print a JSON array instead.
        #[arg(long)]
        json: bool,
    },
    /// Make a cluster CA in `--out`: `ca.pem` and `ca-key.pem`. Nodes configured with them
    /// (`tls.ca_file`, `tls.ca_key_file`) issue their own certificates from it, and trust each
    /// other with `peer_ca_files = ["…/ca.pem"]`.
    CaCreate {
        #[arg(long)]
        out: PathBuf,
    },
    /// Copy atSigns (all when none are named) with all their data from this node's store to
    /// another store: `--to redis://host:6379`, `--to <data dir of an embedded store>` or
    /// `--to-redis-cluster redis://h1:6379,redis://h2:6379`. The source is this node's
    /// `store` (`--config`, `--redis`, `--redis-cluster`). Run with the node stopped.
    Migrate {
        /// The target store: a `redis://`/`rediss://` URL (one Redis) or an embedded store's
        /// data directory.
        #[arg(
            long,
            required_unless_present = "to_redis_cluster",
            conflicts_with = "to_redis_cluster"
        )]
        to: Option<String>,
        /// The target is a Redis Cluster: the URLs of some of its nodes, comma-separated or
        /// the option repeated, all `redis://` or all `rediss://` (its `store.redis_cluster`).
        #[arg(long, value_delimiter = ',', value_name = "URLS")]
        to_redis_cluster: Vec<String>,
        /// Key prefix in a Redis or Redis Cluster target (its `store.key_prefix`).
        #[arg(long, default_value = "")]
        to_key_prefix: String,
        /// For a `rediss://` target (or cluster): the CA certificates (PEM) its certificates
        /// chain to (default: the system's roots).
        #[arg(long)]
        to_redis_ca_file: Option<PathBuf>,
        /// For a Redis target that asks for a client certificate: ours (PEM) and its key.
        #[arg(long, requires = "to_redis_client_key_file")]
        to_redis_client_cert_file: Option<PathBuf>,
        #[arg(long, requires = "to_redis_client_cert_file")]
        to_redis_client_key_file: Option<PathBuf>,
        /// A file holding the Redis target's password (instead of one in the URL).
        #[arg(long)]
        to_redis_password_file: Option<PathBuf>,
        atsigns: Vec<String>,
    },
}

/// The log filter without configuration: fjall and its LSM tree log every table they open at
/// info.
const DEFAULT_LOG: &str = "info,fjall=warn,lsm_tree=warn";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut overrides = Vec::new();
    if let Command::Serve {
        listen: Some(listen),
    }
    | Command::Dev {
        listen: Some(listen),
        ..
    } = &cli.command
    {
        overrides.push(("listen", listen.clone()));
    }
    if let Some(dir) = &cli.data_dir {
        overrides.push(("data_dir", dir.display().to_string()));
    }
    if let Some(url) = &cli.redis {
        overrides.push(("store.backend", "redis".to_string()));
        overrides.push(("store.redis_url", url.clone()));
    }
    if let Some(seeds) = &cli.redis_cluster {
        overrides.push(("store.backend", "redis".to_string()));
        overrides.push(("store.redis_cluster", seeds.clone()));
    }
    if matches!(cli.command, Command::Dev { .. } | Command::CaCreate { .. }) {
        at_common::config::LogConfig::default().init("AT_SERVER_LOG", DEFAULT_LOG);
    }
    if let Command::CaCreate { out } = &cli.command {
        return match at_common::tls::create_ca(out) {
            Ok((ca, key)) => {
                println!("{}\n{}", ca.display(), key.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("at-server ca-create: {error}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Dev {
        atsigns,
        directory_port,
        first_port,
        http_port,
        ..
    } = &cli.command
    {
        let data_dir = cli
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("data/dev"));
        let base = match ServerConfig::load_unchecked(cli.config.as_deref(), &overrides) {
            Ok(base) => base,
            Err(error) => {
                eprintln!("at-server dev: configuration: {error}");
                return ExitCode::from(2);
            }
        };
        let dev = at_server::dev::Dev {
            base,
            atsigns: atsigns.clone(),
            data_dir,
            directory_port: *directory_port,
            first_port: *first_port,
            http_port: *http_port,
        };
        return match actix_rt::System::new().block_on(dev.run()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("at-server dev: {error}");
                ExitCode::FAILURE
            }
        };
    }
    // A data directory made by `dev` carries the settings dev serves it with, so admin commands
    // given only `--data-dir data/dev` reach the same node and stores.
    let config_file = cli.config.clone().or_else(|| {
        let settings = cli.data_dir.as_ref()?.join(at_server::dev::SETTINGS_FILE);
        settings.is_file().then_some(settings)
    });
    let config = match ServerConfig::load(config_file.as_deref(), &overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("at-server: configuration: {error}");
            return ExitCode::from(2);
        }
    };
    config.log.init("AT_SERVER_LOG", DEFAULT_LOG);
    match actix_rt::System::new().block_on(run(cli.command, config)) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("at-server: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `provision --from-file`: the list sent in batches of [`provision::BATCH_MAX`] (each atSign
/// provisioned or failing on its own), a result per atSign on standard output and, on a
/// terminal, progress per batch.
async fn provision_from_file(
    admin: &admin::Admin,
    file: &std::path::Path,
    json: bool,
) -> Result<String, String> {
    use std::io::{IsTerminal, Write};
    let text = match file.as_os_str() == "-" {
        true => std::io::read_to_string(std::io::stdin()),
        false => std::fs::read_to_string(file),
    }
    .map_err(|e| format!("{}: {e}", file.display()))?;
    let atsigns: Vec<&str> = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .collect();
    let progress = std::io::stderr().is_terminal();
    let mut failed = 0;
    let mut sent = 0;
    for batch in atsigns.chunks(provision::BATCH_MAX) {
        if progress {
            eprint!(
                "\r\x1b[Kprovisioning {}–{} of {}",
                sent + 1,
                sent + batch.len(),
                atsigns.len()
            );
        }
        sent += batch.len();
        let request = Request::Provision {
            atsigns: batch.iter().map(|a| a.to_string()).collect(),
        };
        let response = admin.ask(&request).await;
        let results = match &response {
            Ok(admin::Response {
                json: Some(serde_json::Value::Array(results)),
                ..
            }) => results.clone(),
            // The whole batch failed (the node or its directory could not be reached).
            whole => {
                let error = match whole {
                    Ok(answer) => answer.error.clone().unwrap_or_else(|| "no results".into()),
                    Err(error) => error.clone(),
                };
                batch
                    .iter()
                    .map(|a| serde_json::json!({"atSign": a, "error": error}))
                    .collect()
            }
        };
        failed += results.iter().filter(|r| r.get("error").is_some()).count();
        let lines = match json {
            true => results.iter().map(|r| format!("{r}\n")).collect(),
            false => {
                let answered = response.as_ref().ok().filter(|r| r.json.is_some());
                let output = answered.map_or("", |r| r.output.as_str());
                // The node's text names each failure of a batch of several; a batch of one,
                // or a batch that failed whole, says why only in its error.
                let unnamed = results
                    .iter()
                    .filter(|_| batch.len() == 1 || answered.is_none())
                    .filter_map(|r| Some((r["atSign"].as_str()?, r["error"].as_str()?)))
                    .map(|(atsign, error)| format!("{atsign}: not provisioned: {error}\n"));
                std::iter::once(output.to_string())
                    .chain(unnamed)
                    .collect::<String>()
            }
        };
        let mut out = std::io::stdout().lock();
        out.write_all(lines.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| format!("writing the results: {e}"))?;
    }
    if progress {
        eprintln!();
    }
    let done = atsigns.len() - failed;
    match failed {
        0 => {
            eprintln!("provisioned {done} of {}", atsigns.len());
            Ok(String::new())
        }
        _ => Err(format!(
            "provisioned {done} of {}; {failed} failed",
            atsigns.len()
        )),
    }
}

async fn run(command: Command, config: ServerConfig) -> Result<String, String> {
    at_common::config::private_dir(&config.data_dir)
        .map_err(|e| format!("data_dir {}: {e}", config.data_dir.display()))?;
    let (request, json) = match command {
        Command::Dev { .. } | Command::CaCreate { .. } => {
            unreachable!("handled before the configuration is loaded")
        }
        Command::Serve { .. } => {
            let store = store::open_when_reachable(&config.store, &config.data_dir)
                .await
                .map_err(|e| e.to_string())?;
            return at_server::listener::run(config, store)
                .await
                .map(|()| String::new())
                .map_err(|e| e.to_string());
        }
        Command::Migrate {
            to,
            to_redis_cluster,
            to_key_prefix,
            to_redis_ca_file,
            to_redis_client_cert_file,
            to_redis_client_key_file,
            to_redis_password_file,
            atsigns,
        } => {
            let atsigns = atsigns
                .iter()
                .map(|a| at_common::AtSign::parse(a).map_err(|e| format!("{a:?}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            let from = at_server::migrate::open(&config.store, &config.data_dir)
                .await
                .map_err(|e| format!("the migration source: {e}"))?;
            let target = match to {
                Some(to) => at_server::migrate::Target::named(&to),
                None => at_server::migrate::Target::RedisCluster(
                    to_redis_cluster
                        .into_iter()
                        .map(at_common::config::Secret::new)
                        .collect(),
                ),
            };
            let redis = at_common::config::StoreConfig {
                key_prefix: to_key_prefix,
                redis_ca_file: to_redis_ca_file,
                redis_client_cert_file: to_redis_client_cert_file,
                redis_client_key_file: to_redis_client_key_file,
                redis_password_file: to_redis_password_file,
                ..Default::default()
            };
            let target = at_server::migrate::open_target(target, redis)
                .await
                // Not the URL in the message: it may hold a password.
                .map_err(|e| format!("the migration target: {e}"))?;
            return at_server::migrate::migrate(&from, &target, &atsigns).await;
        }
        Command::Provision {
            from_file: Some(file),
            json,
            ..
        } => return provision_from_file(&admin::Admin::new(config), &file, json).await,
        Command::Provision { atsigns, json, .. } => (Request::Provision { atsigns }, json),
        Command::Deprovision { atsign } => (Request::Deprovision { atsign }, false),
        Command::Suspend { atsign } => (Request::Suspend { atsign }, false),
        Command::Resume { atsign } => (Request::Resume { atsign }, false),
        Command::List { usage, json } => (Request::List { usage }, json),
    };
    // A serving node runs it (it holds the store); otherwise this process opens the store.
    let response = admin::Admin::new(config).ask(&request).await?;
    let output = if json {
        let results = response.json.unwrap_or_else(|| serde_json::json!([]));
        format!("{results:#}\n")
    } else if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        // On a terminal, each CRAM secret also as a QR code; piped output stays plain.
        admin::with_qr_codes(&response.output)
    } else {
        response.output
    };
    match response.error {
        None => Ok(output),
        Some(error) => {
            // What was done before or beside the failure (a batch's other atSigns, with their
            // secrets) is a result like any other: standard output.
            print!("{output}");
            Err(error)
        }
    }
}
