//! Administering a node: `at-server provision | deprovision | list`, whether or not the node is
//! serving.
//!
//! The embedded store is one process's (its directory is locked while `serve` runs), so an
//! operator's command cannot open it beside a running server. A serving node therefore listens on
//! a Unix socket, `<data_dir>/admin.sock` (mode 0600: whoever may read the data may administer
//! it), and runs the commands itself; the CLI tries that socket first and opens the store
//! directly only when no server answers on it. Either way the same [`execute`] runs, so the
//! output is the same. In Kubernetes: `kubectl exec <pod> -- at-server provision @alice`.
//!
//! Protocol: one JSON [`Request`] line in, one JSON [`Response`] line out, then close.

use std::path::{Path, PathBuf};

use at_common::AtSign;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::config::ServerConfig;
use crate::connection::admission::Admission;
use crate::provision;
use crate::store::{AtSignStatus, Store};

/// The socket's file name in the data directory.
pub const SOCKET_NAME: &str = "admin.sock";

/// Longest request line accepted (a provision of many atSigns fits easily).
const MAX_REQUEST: usize = 1 << 20;

/// An administrative command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Request {
    /// atSigns as typed, at most [`provision::BATCH_MAX`]; each is provisioned or fails on
    /// its own, with a result each (`--from-file` sends a longer list in batches).
    Provision {
        atsigns: Vec<String>,
    },
    Deprovision {
        atsign: String,
    },
    /// Keep the atSign's data but serve nothing of it (AT0024) until `resume`.
    Suspend {
        atsign: String,
    },
    Resume {
        atsign: String,
    },
    List {
        /// With what each atSign holds and its open connections on the answering node.
        #[serde(default)]
        usage: bool,
    },
}

/// What a command printed, or why it failed (after printing `output` for what was done), and
/// the same result for programs (`--json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub output: String,
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
}

/// What a command changed, for a serving node to act on (start or stop an atSign's port, drop
/// its key store, close a suspended atSign's connections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added { atsign: AtSign, port: Option<u16> },
    Removed(AtSign),
    Suspension { atsign: AtSign, suspended: bool },
}

/// The socket of the node whose data directory is `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// Runs `request` against `store`, returning what to print and what changed. `admission` is
/// the serving node's (its connections are counted in `list --usage`); `None` when the CLI
/// opened the store itself.
pub async fn execute(
    request: Request,
    config: &ServerConfig,
    store: &Store,
    admission: Option<&Admission>,
) -> (Response, Vec<Change>) {
    let mut out = Out::default();
    let mut changes = Vec::new();
    let result = run(request, config, store, admission, &mut out, &mut changes).await;
    let response = Response {
        output: out.text,
        error: result.err(),
        json: (!out.json.is_empty()).then_some(serde_json::Value::Array(out.json)),
    };
    (response, changes)
}

/// What a command prints: text for people and one JSON object per result for programs.
#[derive(Default)]
struct Out {
    text: String,
    json: Vec<serde_json::Value>,
}

async fn run(
    request: Request,
    config: &ServerConfig,
    store: &Store,
    admission: Option<&Admission>,
    out: &mut Out,
    changes: &mut Vec<Change>,
) -> Result<(), String> {
    match request {
        Request::Provision { atsigns } => provision(config, store, &atsigns, out, changes).await?,
        Request::Deprovision { atsign } => {
            let atsign = parse(&atsign)?;
            provision::deprovision(store, &directory(config).await?, &atsign)
                .await
                .map_err(|e| e.to_string())?;
            out.text.push_str(&format!("deprovisioned {atsign}\n"));
            changes.push(Change::Removed(atsign));
        }
        Request::Suspend { atsign } => suspend(store, &parse(&atsign)?, true, out, changes).await?,
        Request::Resume { atsign } => suspend(store, &parse(&atsign)?, false, out, changes).await?,
        Request::List { usage } => {
            for atsign in store.list_atsigns().await.map_err(|e| e.to_string())? {
                let Some(info) = store.get_atsign(&atsign).await.map_err(|e| e.to_string())? else {
                    continue;
                };
                // As the status check says it: activated once its public encryption key is
                // there, even before onboarding deletes the CRAM secret.
                let public_key = crate::reserved::encryption_public_key(&atsign);
                let activated = info.status == AtSignStatus::Active
                    || store
                        .get(&atsign, &public_key)
                        .await
                        .map_err(|e| e.to_string())?
                        .is_some();
                let status = if activated { "activated" } else { "teapot" };
                let address = provision::address_of(config, &info);
                // The status column says `suspended` for a suspended atSign: what matters first.
                let shown = if info.suspended { "suspended" } else { status };
                out.text.push_str(&format!("{atsign} {shown} {address}"));
                let mut json = serde_json::json!({
                    "atSign": atsign.as_str(),
                    "status": status,
                    "suspended": info.suspended,
                    "address": address.to_string(),
                });
                if usage {
                    let used = provision::usage(store, &atsign)
                        .await
                        .map_err(|e| e.to_string())?;
                    let (owner, peers) = admission.map_or((0, 0), |a| a.held_by(&atsign));
                    out.text.push_str(&format!(
                        " keys={} bytes={} received={} sent={} connections={owner} peers={peers}",
                        used.keys, used.bytes, used.notifications_received, used.notifications_sent
                    ));
                    json["usage"] = serde_json::to_value(&used).map_err(|e| e.to_string())?;
                    json["usage"]["connections"] = owner.into();
                    json["usage"]["peerConnections"] = peers.into();
                }
                out.text.push('\n');
                out.json.push(json);
            }
        }
    }
    Ok(())
}

/// `provision`: one result per atSign, in the order asked. Text: the successes' address and
/// secret, and `<atSign>: not provisioned: <why>` for each failure; JSON: `{"atSign",
/// "address","cramSecret"}` or `{"atSign","error"}`. The request fails when any atSign did,
/// with that atSign's reason when it was the only one asked.
async fn provision(
    config: &ServerConfig,
    store: &Store,
    asked: &[String],
    out: &mut Out,
    changes: &mut Vec<Change>,
) -> Result<(), String> {
    if asked.len() > provision::BATCH_MAX {
        return Err(format!(
            "at most {} atSigns per request ({} asked)",
            provision::BATCH_MAX,
            asked.len()
        ));
    }
    let parsed: Vec<Result<AtSign, String>> = asked.iter().map(|text| parse(text)).collect();
    let valid: Vec<AtSign> = parsed.iter().flatten().cloned().collect();
    let mut done = provision::provision_many(config, store, &directory(config).await?, &valid)
        .await
        .into_iter();
    let mut failures = Vec::new();
    for (text, parsed) in asked.iter().zip(parsed) {
        let result = parsed.and_then(|_| {
            done.next()
                .expect("one result per valid atSign")
                .map_err(|e| e.to_string())
        });
        match result {
            Ok(done) => {
                out.text.push_str(&format!(
                    "provisioned {} at {}\ncram secret: {}\n",
                    done.atsign, done.address, done.cram_secret
                ));
                out.json.push(serde_json::json!({
                    "atSign": done.atsign.as_str(),
                    "address": done.address.to_string(),
                    "cramSecret": done.cram_secret,
                }));
                changes.push(Change::Added {
                    atsign: done.atsign,
                    port: done.port,
                });
            }
            Err(error) => {
                if asked.len() > 1 {
                    out.text
                        .push_str(&format!("{text}: not provisioned: {error}\n"));
                }
                out.json
                    .push(serde_json::json!({"atSign": text, "error": error}));
                failures.push(error);
            }
        }
    }
    match (failures.len(), asked.len()) {
        (0, _) => Ok(()),
        (_, 1) => Err(failures.remove(0)),
        (failed, all) => Err(format!(
            "provisioned {} of {all}; {failed} failed",
            all - failed
        )),
    }
}

/// An atSign as the operator typed it, or why it is not one.
fn parse(text: &str) -> Result<AtSign, String> {
    AtSign::parse(text).map_err(|e| format!("{text:?}: {e}"))
}

/// The directory the node registers its atSigns in.
async fn directory(config: &ServerConfig) -> Result<at_directory::store::Store, String> {
    at_directory::store::open(&config.directory_store, &config.directory_data_dir)
        .await
        .map_err(|e| format!("directory: {e}"))
}

/// `suspend` (`suspended`) or `resume` one atSign.
async fn suspend(
    store: &Store,
    atsign: &AtSign,
    suspended: bool,
    out: &mut Out,
    changes: &mut Vec<Change>,
) -> Result<(), String> {
    provision::set_suspended(store, atsign, suspended)
        .await
        .map_err(|e| e.to_string())?;
    let done = if suspended { "suspended" } else { "resumed" };
    out.text.push_str(&format!("{done} {atsign}\n"));
    out.json
        .push(serde_json::json!({"atSign": atsign.as_str(), "suspended": suspended}));
    changes.push(Change::Suspension {
        atsign: atsign.clone(),
        suspended,
    });
    Ok(())
}

/// `output` with a QR code of `<atSign>:<secret>` (the form onboarding apps scan) below each
/// `cram secret:` line, so the owner can onboard from a phone.
pub fn with_qr_codes(output: &str) -> String {
    let mut out = String::new();
    let mut atsign = "";
    for line in output.lines() {
        out.push_str(line);
        out.push('\n');
        if let Some(rest) = line.strip_prefix("provisioned ") {
            atsign = rest.split(' ').next().unwrap_or_default();
        }
        if let Some(secret) = line.strip_prefix("cram secret: ") {
            if let Ok(code) = qrcode::QrCode::new(format!("{atsign}:{secret}")) {
                out.push_str(&code.render::<qrcode::render::unicode::Dense1x2>().build());
                out.push('\n');
            }
        }
    }
    out
}

impl Response {
    fn failed(error: String) -> Response {
        Response {
            output: String::new(),
            error: Some(error),
            json: None,
        }
    }
}

/// Sends `request` to the node serving `data_dir`. `Ok(None)` when no server is listening
/// there (no socket, a stale one left by a killed server, or a path too long for a socket):
/// the caller may open the store.
pub async fn send(data_dir: &Path, request: &Request) -> Result<Option<Response>, String> {
    let path = socket_path(data_dir);
    let stream = match UnixStream::connect(&path).await {
        Ok(stream) => stream,
        // No socket, a stale one, or a path too long for one (then no server could bind it).
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::InvalidInput
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    line.push(b'\n');
    write
        .write_all(&line)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut answer = String::new();
    BufReader::new(read)
        .read_line(&mut answer)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&answer)
        .map(Some)
        .map_err(|e| format!("{}: unreadable answer ({e})", path.display()))
}

/// Where the CLI's admin commands run: on the node serving the data directory (through its
/// socket) or, with none serving, in this process on the store it opens once.
pub struct Admin {
    config: ServerConfig,
    local: tokio::sync::OnceCell<Store>,
}

impl Admin {
    pub fn new(config: ServerConfig) -> Admin {
        Admin {
            config,
            local: tokio::sync::OnceCell::new(),
        }
    }

    pub async fn ask(&self, request: &Request) -> Result<Response, String> {
        if self.local.get().is_none() {
            if let Some(response) = send(&self.config.data_dir, request).await? {
                return Ok(response);
            }
        }
        let store = self
            .local
            .get_or_try_init(|| crate::store::open(&self.config.store, &self.config.data_dir))
            .await
            .map_err(|e| e.to_string())?;
        Ok(execute(request.clone(), &self.config, store, None).await.0)
    }
}

/// Binds the node's admin socket (replacing a stale one: the store's lock already guarantees
/// no other server uses this data directory), readable by the owner only.
pub fn bind(data_dir: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(data_dir);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers admin requests on `listener` one at a time (they are rare, and one at a time keeps
/// two provisions from picking the same port), telling `on_change` what each one changed.
pub async fn serve(
    listener: UnixListener,
    config: ServerConfig,
    store: Store,
    admission: Admission,
    on_change: impl Fn(Change),
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "admin socket accept failed");
                actix_rt::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        let mut reader = BufReader::new(read).take(MAX_REQUEST as u64);
        let response = match reader.read_line(&mut line).await {
            Ok(_) => match serde_json::from_str::<Request>(&line) {
                Ok(request) => {
                    tracing::info!(?request, "admin request");
                    let (response, changes) =
                        execute(request, &config, &store, Some(&admission)).await;
                    changes.into_iter().for_each(&on_change);
                    response
                }
                Err(e) => Response::failed(format!("bad request: {e}")),
            },
            Err(e) => Response::failed(format!("reading the request: {e}")),
        };
        let mut answer = serde_json::to_vec(&response).unwrap_or_default();
        answer.push(b'\n');
        let _ = write.write_all(&answer).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cram_secret_gets_a_qr_code_below_it() {
        let output =
            "provisioned @a at h:1\ncram secret: 00ff\nprovisioned @b at h:2\ncram secret: 11ee\n";
        let shown = with_qr_codes(output);
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines[0..2], ["provisioned @a at h:1", "cram secret: 00ff"]);
        let second = lines
            .iter()
            .position(|l| *l == "provisioned @b at h:2")
            .unwrap();
        let code = &lines[2..second];
        // Dense1x2: two module rows per line, in block characters, with a quiet zone.
        assert!(code.len() > 10, "{shown}");
        assert!(code.iter().any(|l| l.contains('█')), "{shown}");
        let expected = qrcode::QrCode::new("@a:00ff")
            .unwrap()
            .render::<qrcode::render::unicode::Dense1x2>()
            .build();
        assert_eq!(code.join("\n"), expected, "it encodes <atSign>:<secret>");
        assert_eq!(
            lines.last().unwrap().trim(),
            "",
            "the last code ends the output"
        );
    }

    #[test]
    fn requests_are_tagged_json() {
        let request = Request::Provision {
            atsigns: vec!["@alice".into()],
        };
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(json, r#"{"command":"provision","atsigns":["@alice"]}"#);
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), request);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"command":"list"}"#).unwrap(),
            Request::List { usage: false },
            "a list request from an older CLI"
        );
    }
}
