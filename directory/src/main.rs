//! `at-directory`: serve lookups, or administer registrations in the same store.

use std::path::PathBuf;
use std::process::ExitCode;

use at_directory::{DirectoryConfig, Overrides};
use clap::{Parser, Subcommand};

/// The atDirectory (root server): answers "where does @alice's atServer live?" over TLS.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// TOML configuration file (every option is listed in the README).
    #[arg(long, global = true, env = "AT_DIRECTORY_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (embedded store, generated TLS certificate).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Use the Redis store at this URL instead of the embedded one.
    #[arg(long, global = true)]
    redis: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve lookups until SIGINT/SIGTERM.
    Serve {
        /// Listen address, e.g. 0.0.0.0:64 (port 0 picks a free port).
        #[arg(long)]
        listen: Option<String>,
        /// Metrics address, e.g. 0.0.0.0:9464; an empty string disables metrics.
        #[arg(long)]
        metrics_listen: Option<String>,
        /// Serve plain TCP instead of TLS (development only).
        #[arg(long)]
        plain: bool,
    },
    /// Register an atSign (or move it): `register @alice host:port`.
    Register { atsign: String, address: String },
    /// Forget an atSign.
    Unregister { atsign: String },
    /// Print every registration, one `@atsign host:port` a line.
    List,
    /// Check an atSign's lifecycle state as a client sees it and print it as JSON. Exit code:
    /// 0 activated, 3 teapot, 4 notFound, 5 unavailable, 6 error.
    Status {
        atsign: String,
        /// The directory to ask (host:port); default: `status.directory`, or this directory's
        /// own store (`--data-dir`, `--redis`) when that is empty.
        #[arg(long)]
        directory: Option<String>,
        /// A PEM CA file to trust for the directory and the atServer (repeatable).
        #[arg(long = "ca-file")]
        ca_files: Vec<PathBuf>,
        /// Bound of each step (directory lookup, atServer), milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut overrides = Overrides {
        data_dir: cli.data_dir,
        redis_url: cli.redis,
        ..Overrides::default()
    };
    if let Command::Serve {
        listen,
        metrics_listen,
        plain,
    } = &cli.command
    {
        overrides.listen = listen.clone();
        overrides.metrics_listen = metrics_listen.clone();
        overrides.plain = *plain;
    }
    let mut config = match DirectoryConfig::load(cli.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("at-directory: configuration: {error}");
            return ExitCode::from(2);
        }
    };
    config.log.init("AT_DIRECTORY_LOG", "info");
    let command = match cli.command {
        Command::Status {
            atsign,
            directory,
            ca_files,
            timeout_ms,
        } => {
            if let Some(directory) = directory {
                config.status.directory = directory;
            }
            config.status.ca_files.extend(ca_files);
            if let Some(timeout_ms) = timeout_ms {
                config.status.timeout_ms = timeout_ms;
            }
            if let Err(error) = config.status.validate() {
                eprintln!("at-directory: {error}");
                return ExitCode::from(2);
            }
            return status(&config, &atsign);
        }
        other => other,
    };
    if let Err(error) = at_common::config::private_dir(&config.data_dir) {
        eprintln!(
            "at-directory: data_dir {}: {error}",
            config.data_dir.display()
        );
        return ExitCode::FAILURE;
    }
    let outcome = actix_rt::System::new().block_on(async move {
        match command {
            Command::Serve { .. } => at_directory::serve(config).await.map(|()| String::new()),
            Command::Register { atsign, address } => {
                at_directory::register(&config, &atsign, &address).await
            }
            Command::Unregister { atsign } => at_directory::unregister(&config, &atsign).await,
            Command::List => at_directory::list(&config).await,
            Command::Status { .. } => Err(at_directory::Error::Usage("status runs alone".into())),
        }
    });
    match outcome {
        Ok(output) => {
            print!("{output}");
            if !output.is_empty() && !output.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("at-directory: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `status`: the JSON on stdout, the state in the exit code.
fn status(config: &DirectoryConfig, atsign: &str) -> ExitCode {
    let checked = actix_rt::System::new().block_on(at_directory::status(config, atsign));
    match checked {
        Ok(status) => {
            println!("{}", status.to_json());
            ExitCode::from(at_directory::status::exit_code(status.status()))
        }
        Err(at_directory::Error::Usage(error)) => {
            eprintln!("at-directory: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("at-directory: {error}");
            ExitCode::FAILURE
        }
    }
}
