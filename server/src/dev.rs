//! `at-server dev`: a directory and an atServer in one process on this machine, for trying the
//! system out and for local development. Embedded stores and one generated CA under one data
//! dir, trusted by the atServer for its directory and its peers; a demo atSign provisioned on
//! first start. Not for production: nothing is reachable from another host unless `listen`
//! says so, and everything stops with the process.
//!
//! The atServer's other options come from the configuration (file and `AT_SERVER__*`
//! variables) as for `serve`; dev decides its store, TLS, directory, data dir and ports.

use std::path::PathBuf;

use at_common::config::TlsConfig;
use at_common::AtSign;
use at_directory::DirectoryConfig;

use crate::config::ServerConfig;
use crate::provision;

/// The file in dev's data directory with the settings it serves its atServer with
/// ([`write_admin_config`]); the CLI reads it when given that data directory and no `--config`.
pub const SETTINGS_FILE: &str = "server.toml";

/// What `dev` runs.
pub struct Dev {
    /// The configuration as loaded (file, environment), before dev's own settings.
    pub base: ServerConfig,
    /// The demo atSigns (at least one), provisioned on first start; the first is the one the
    /// printed examples use.
    pub atsigns: Vec<String>,
    pub data_dir: PathBuf,
    pub directory_port: u16,
    pub first_port: u16,
    /// The directory's HTTP listener (status API, metrics); 0 for none.
    pub http_port: u16,
}

impl Dev {
    /// Runs both servers until SIGINT/SIGTERM.
    pub async fn run(self) -> Result<(), String> {
        let atsigns = self
            .atsigns
            .iter()
            .map(|a| AtSign::parse(a).map_err(|e| format!("{a:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let first = atsigns.first().ok_or("no atSign to serve")?.clone();
        at_common::config::private_dir(&self.data_dir)
            .map_err(|e| format!("{}: {e}", self.data_dir.display()))?;
        let (directory, server, ca) = self.settings()?;
        write_admin_config(&server)?;

        let store = crate::store::open(&server.store, &server.data_dir)
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "at-server dev: directory on 127.0.0.1:{}",
            self.directory_port
        );
        provision_demo(&directory, &server, &store, &atsigns).await?;
        self.print_examples(&first, &ca);

        let directory = at_directory::serve(directory);
        let server = crate::listener::run(server, store);
        // Either one stopping (a signal, or a failure to bind) ends the other too.
        tokio::select! {
            done = directory => done.map_err(|e| format!("directory: {e}")),
            done = server => done.map_err(|e| format!("atServer: {e}")),
        }
    }

    /// The directory's and the atServer's settings, and the one CA (made here, before either
    /// server starts, so they do not race to make it) that signs both and that each trusts
    /// for the other and for peers.
    fn settings(&self) -> Result<(DirectoryConfig, ServerConfig, PathBuf), String> {
        let tls = TlsConfig::default();
        let (_, source) = at_common::tls::acceptor(&tls, &self.data_dir)
            .map_err(|e| e.to_string())?
            .ok_or("TLS is off")?;
        let ca = match source {
            at_common::tls::CertSource::SelfSigned { ca_file }
            | at_common::tls::CertSource::Issued { ca_file } => ca_file,
            at_common::tls::CertSource::Configured(cert) => cert,
        };
        let directory = DirectoryConfig {
            listen: ([127, 0, 0, 1], self.directory_port).into(),
            metrics_listen: (self.http_port != 0).then(|| ([127, 0, 0, 1], self.http_port).into()),
            data_dir: self.data_dir.clone(),
            tls: tls.clone(),
            ..DirectoryConfig::default()
        };
        // The shared (SNI) listener: where the configuration puts it, else a free local port
        // (the default's 6464 is the directory's here).
        let listen = match self.base.listen == ServerConfig::default().listen {
            true => ([127, 0, 0, 1], 0).into(),
            false => self.base.listen,
        };
        let server = ServerConfig {
            listen,
            public_host: "127.0.0.1".into(),
            port_range_start: self.first_port,
            port_range_len: 100,
            directory: format!("127.0.0.1:{}", self.directory_port),
            directory_ca_file: Some(ca.clone()),
            peer_ca_files: vec![ca.clone()],
            data_dir: self.data_dir.clone(),
            directory_data_dir: self.data_dir.clone(),
            tls,
            store: Default::default(),
            ..self.base.clone()
        };
        server.validate()?;
        Ok((directory, server, ca))
    }

    /// How to reach what runs: the CA to trust, a directory lookup, the status API, adding
    /// another atSign.
    fn print_examples(&self, first: &AtSign, ca: &std::path::Path) {
        println!(
            "  clients trust {} (Python: SSL_CERT_FILE={0})",
            ca.display()
        );
        println!(
            "  look up: printf '{}\\n' | openssl s_client -quiet -CAfile {} -connect 127.0.0.1:{}",
            first.name(),
            ca.display(),
            self.directory_port
        );
        if self.http_port != 0 {
            println!(
                "  status: curl -i http://127.0.0.1:{}/api/status/{first}",
                self.http_port
            );
        }
        let program = std::env::args()
            .next()
            .unwrap_or_else(|| "at-server".into());
        let another = ["@bob", "@carol", "@dave"]
            .into_iter()
            .find(|name| !self.atsigns.iter().any(|a| a.eq_ignore_ascii_case(name)))
            .unwrap_or("@erin");
        println!(
            "  another atSign, while this runs: {program} --data-dir {} provision {another}",
            self.data_dir.display()
        );
    }
}

/// Provisions each demo atSign not yet in the store (registering it with the directory), and
/// prints where each is served and its CRAM secret while it has one.
async fn provision_demo(
    directory: &DirectoryConfig,
    server: &ServerConfig,
    store: &crate::store::Store,
    atsigns: &[AtSign],
) -> Result<(), String> {
    let registry = at_directory::store::open(&directory.store, &directory.data_dir)
        .await
        .map_err(|e| e.to_string())?;
    for atsign in atsigns {
        let info = match store.get_atsign(atsign).await.map_err(|e| e.to_string())? {
            Some(info) => info,
            None => {
                provision::provision(server, store, &registry, atsign)
                    .await
                    .map_err(|e| e.to_string())?;
                store
                    .get_atsign(atsign)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("provisioned atSign vanished")?
            }
        };
        println!(
            "  {atsign} served at {}",
            provision::address_of(server, &info)
        );
        match &info.cram_secret {
            Some(secret) => println!("  {atsign} cram secret (until onboarded): {secret}"),
            None => println!("  {atsign} is onboarded (cram disabled)"),
        }
    }
    Ok(())
}

/// Writes `<data_dir>/server.toml` ([`SETTINGS_FILE`]): the settings dev runs its atServer
/// with, so that admin commands given that data directory (`provision`, `list`, …) reach the
/// running node through its admin socket, or, with dev stopped, open the same stores and hand
/// out the same ports. Without it a second atSign would need a configuration written by hand.
fn write_admin_config(server: &ServerConfig) -> Result<PathBuf, String> {
    let absolute = |path: &std::path::Path| {
        std::path::absolute(path)
            .map(|path| path.display().to_string())
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    // TOML basic strings take JSON's escapes.
    let quoted = |text: String| serde_json::to_string(&text).unwrap_or_default();
    let mut text = String::from(
        "# Written by `at-server dev` at each start: the atServer's settings, read by admin\n\
         # commands given this data directory (at-server --data-dir <it> provision @bob).\n\
         # Edits are overwritten.\n",
    );
    text.push_str(&format!(
        "data_dir = {}\ndirectory_data_dir = {}\npublic_host = {}\n\
         port_range_start = {}\nport_range_len = {}\ndirectory = {}\n",
        quoted(absolute(&server.data_dir)?),
        quoted(absolute(&server.directory_data_dir)?),
        quoted(server.public_host.clone()),
        server.port_range_start,
        server.port_range_len,
        quoted(server.directory.clone()),
    ));
    if let Some(ca) = &server.directory_ca_file {
        let ca = quoted(absolute(ca)?);
        text.push_str(&format!(
            "directory_ca_file = {ca}\npeer_ca_files = [{ca}]\n"
        ));
    }
    let path = server.data_dir.join(SETTINGS_FILE);
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}
