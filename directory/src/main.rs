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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AT_DIRECTORY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
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
    let config = match DirectoryConfig::load(cli.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("at-directory: configuration: {error}");
            return ExitCode::from(2);
        }
    };
    let outcome = actix_rt::System::new().block_on(async move {
        match cli.command {
            Command::Serve { .. } => at_directory::serve(config).await.map(|()| String::new()),
            Command::Register { atsign, address } => {
                at_directory::register(&config, &atsign, &address).await
            }
            Command::Unregister { atsign } => at_directory::unregister(&config, &atsign).await,
            Command::List => at_directory::list(&config).await,
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
