//! `at-server`: serve the atSigns hosted on this node, and administer them.

use std::path::PathBuf;
use std::process::ExitCode;

use at_common::AtSign;
use at_server::config::ServerConfig;
use at_server::provision;
use at_server::store::{self, AtSignStatus};
use clap::{Parser, Subcommand};

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
        /// The demo atSign.
        #[arg(long, default_value = "@alice")]
        atsign: String,
        /// The directory's port on 127.0.0.1.
        #[arg(long, default_value_t = 6464)]
        directory_port: u16,
        /// First port of the atSigns' own ports (one each).
        #[arg(long, default_value_t = 25000)]
        first_port: u16,
    },
    /// Create atSigns on this node, register them in the directory, print their CRAM secrets.
    Provision {
        #[arg(required = true)]
        atsigns: Vec<String>,
    },
    /// Remove an atSign and all its data from this node and from the directory.
    Deprovision { atsign: String },
    /// Print every hosted atSign: `@atsign status host:port`.
    List,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AT_SERVER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let mut overrides = Vec::new();
    if let Command::Serve {
        listen: Some(listen),
    } = &cli.command
    {
        overrides.push(("listen", listen.clone()));
    }
    if let Some(dir) = &cli.data_dir {
        overrides.push(("data_dir", dir.display().to_string()));
    }
    if let Command::Dev {
        atsign,
        directory_port,
        first_port,
    } = &cli.command
    {
        let data_dir = cli
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("data/dev"));
        let dev = at_server::dev::Dev {
            atsign: atsign.clone(),
            data_dir,
            directory_port: *directory_port,
            first_port: *first_port,
        };
        return match actix_rt::System::new().block_on(dev.run()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("at-server dev: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match ServerConfig::load(cli.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("at-server: configuration: {error}");
            return ExitCode::from(2);
        }
    };
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

async fn run(command: Command, config: ServerConfig) -> Result<String, String> {
    let store = store::open(&config.store, &config.data_dir)
        .await
        .map_err(|e| e.to_string())?;
    let directory = || async {
        at_directory::store::open(&config.directory_store, &config.directory_data_dir)
            .await
            .map_err(|e| format!("directory: {e}"))
    };
    let atsign = |text: &str| AtSign::parse(text).map_err(|e| format!("{text:?}: {e}"));
    match command {
        Command::Dev { .. } => unreachable!("handled before the configuration is loaded"),
        Command::Serve { .. } => at_server::listener::run(config, store)
            .await
            .map(|()| String::new())
            .map_err(|e| e.to_string()),
        Command::Provision { atsigns } => {
            let directory = directory().await?;
            let mut out = String::new();
            for text in atsigns {
                let done = provision::provision(&config, &store, &directory, &atsign(&text)?)
                    .await
                    .map_err(|e| format!("{out}{e}"))?;
                out.push_str(&format!(
                    "provisioned {} at {}\ncram secret: {}\n",
                    done.atsign, done.address, done.cram_secret
                ));
            }
            Ok(out)
        }
        Command::Deprovision { atsign: text } => {
            let atsign = atsign(&text)?;
            provision::deprovision(&store, &directory().await?, &atsign)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("deprovisioned {atsign}\n"))
        }
        Command::List => {
            let mut out = String::new();
            for atsign in store.list_atsigns().await.map_err(|e| e.to_string())? {
                let Some(info) = store.get_atsign(&atsign).await.map_err(|e| e.to_string())? else {
                    continue;
                };
                let status = match info.status {
                    AtSignStatus::New => "teapot",
                    AtSignStatus::Active => "activated",
                    AtSignStatus::Suspended => "suspended",
                };
                let address = provision::address_of(&config, &info);
                out.push_str(&format!("{atsign} {status} {address}\n"));
            }
            Ok(out)
        }
    }
}
