//! Turning a [`TlsConfig`] into a rustls server configuration.
//!
//! With `cert_file`/`key_file` configured they are used as they are. Without them a private
//! CA and a leaf certificate signed by it are made on first start and kept under
//! `<data_dir>/tls/`: `ca.pem` is what a client trusts (`openssl s_client -CAfile`,
//! Python's `SSL_CERT_FILE`), `cert.pem`/`key.pem` are what the listener serves. Later starts
//! reuse them, so a client that trusted `ca.pem` once keeps working across restarts. A CA plus
//! a leaf, rather than one self-signed leaf, because strict verifiers (Python 3.13's
//! `VERIFY_X509_STRICT`) refuse a leaf that signs itself.
//!
//! With a cluster CA (`ca_file`/`ca_key_file`, made by [`create_ca`]) instead, the leaf is
//! issued by that CA at every start into `<data_dir>/tls/`, and `ca.pem` there is a copy of the
//! cluster CA: every node and directory of a cluster shares one root of trust, which is also
//! what atServers trust for each other (mutual TLS).
//!
//! The served certificate is read again when its files change ([`RELOAD_CHECK`]), so a
//! renewal (cert-manager) takes effect without a restart.
//!
//! This is the one place of `at-common` that touches the file system: both binaries need the
//! same behaviour, and it is policy-free (no sockets, no protocol).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("building the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("verifying client certificates: {0}")]
    ClientVerifier(String),
}

/// Where the served certificate came from; printed at start-up so an operator knows what to trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// The configured `cert_file`.
    Configured(PathBuf),
    /// Generated under the data directory; clients trust the CA at this path.
    SelfSigned { ca_file: PathBuf },
    /// Issued at start-up by the configured cluster CA; clients trust that CA.
    Issued { ca_file: PathBuf },
}

/// The acceptor for a listener, or `None` when `tls.plain` is set.
pub fn acceptor(
    config: &TlsConfig,
    data_dir: &Path,
) -> Result<Option<(TlsAcceptor, CertSource)>, TlsError> {
    Ok(server_config(config, data_dir, None)?
        .map(|(server, source)| (TlsAcceptor::from(server), source)))
}

/// The server configuration for a listener (or `None` when `tls.plain` is set) that also asks
/// clients for a certificate, verified against the system roots and `client_ca_files` when one
/// is given; clients without one (the SDKs) are served as usual. An atServer's listener: other
/// servers identify themselves this way (mutual TLS); [`peer_names`] reads the names of a
/// verified client certificate.
pub fn server_config_verifying_clients(
    config: &TlsConfig,
    data_dir: &Path,
    client_ca_files: &[PathBuf],
) -> Result<Option<(Arc<rustls::ServerConfig>, CertSource)>, TlsError> {
    server_config(config, data_dir, Some(client_ca_files))
}

/// The host names and IP addresses a (verified) certificate names: its DNS and IP subject
/// alternative names, then its common names. Empty when it cannot be parsed.
pub fn peer_names(certificate: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(certificate.as_ref()) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push(dns.to_ascii_lowercase()),
                GeneralName::IPAddress(&[a, b, c, d]) => {
                    names.push(std::net::Ipv4Addr::new(a, b, c, d).to_string());
                }
                GeneralName::IPAddress(bytes) if bytes.len() == 16 => {
                    let octets: [u8; 16] = (*bytes).try_into().unwrap_or([0; 16]);
                    names.push(std::net::Ipv6Addr::from(octets).to_string());
                }
                _ => {}
            }
        }
    }
    for common_name in cert.subject().iter_common_name() {
        if let Ok(text) = common_name.as_str() {
            names.push(text.to_ascii_lowercase());
        }
    }
    names
}

/// Whether `host` is one of `names`: equal, or under a wildcard `*.<domain>` that stands for
/// exactly one label (as browsers match).
pub fn names_host(names: &[String], host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    names.iter().any(|name| match name.strip_prefix("*.") {
        Some(domain) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == domain),
        None => *name == host,
    })
}

fn server_config(
    config: &TlsConfig,
    data_dir: &Path,
    client_ca_files: Option<&[PathBuf]>,
) -> Result<Option<(Arc<rustls::ServerConfig>, CertSource)>, TlsError> {
    if config.plain {
        return Ok(None);
    }
    let (cert_file, key_file, source) = match (&config.cert_file, &config.key_file) {
        (Some(cert), Some(key)) => (
            cert.clone(),
            key.clone(),
            CertSource::Configured(cert.clone()),
        ),
        _ => {
            let dir = data_dir.join("tls");
            let source = match (&config.ca_file, &config.ca_key_file) {
                (Some(ca), Some(ca_key)) => {
                    issue(&dir, &config.self_signed_names, ca, ca_key)?;
                    CertSource::Issued {
                        ca_file: ca.clone(),
                    }
                }
                _ => CertSource::SelfSigned {
                    ca_file: ensure_self_signed(&dir, &config.self_signed_names)?,
                },
            };
            (dir.join("cert.pem"), dir.join("key.pem"), source)
        }
    };
    let certificate = Arc::new(ReloadingCert::load(cert_file, key_file)?);
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let server = match client_ca_files {
        // Nothing to verify a client certificate against (no system roots, no CA files):
        // no client is asked for one, so none can speak for another atSign.
        Some(ca_files) if !roots(ca_files)?.is_empty() => {
            let roots = Arc::new(roots(ca_files)?);
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| TlsError::ClientVerifier(e.to_string()))?;
            builder
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(certificate)
        }
        _ => builder
            .with_no_client_auth()
            .with_cert_resolver(certificate),
    };
    Ok(Some((Arc::new(server), source)))
}

/// How often, at most, a handshake checks whether the certificate files changed.
pub const RELOAD_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves the certificate in `cert_file` with `key_file`, read again when either file changes
/// (checked at most every [`RELOAD_CHECK`], by the handshake that finds it due): cert-manager
/// renews certificates in place, and connections made after a renewal get the new one without
/// a restart. Files that do not load (half written, a key that does not match) keep the
/// certificate in use, and are tried again at the next check.
#[derive(Debug)]
struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    state: std::sync::RwLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<rustls::sign::CertifiedKey>,
    /// The files' modification times when `key` was read.
    stamp: Option<(std::time::SystemTime, std::time::SystemTime)>,
    checked: std::time::Instant,
}

impl ReloadingCert {
    fn load(cert_file: PathBuf, key_file: PathBuf) -> Result<ReloadingCert, TlsError> {
        let stamp = stamps(&cert_file, &key_file);
        let key = Arc::new(certified_key(&cert_file, &key_file)?);
        Ok(ReloadingCert {
            cert_file,
            key_file,
            state: std::sync::RwLock::new(Loaded {
                key,
                stamp,
                checked: std::time::Instant::now(),
            }),
        })
    }

    fn refresh(&self) {
        let stamp = stamps(&self.cert_file, &self.key_file);
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.checked = std::time::Instant::now();
        if stamp.is_none() || stamp == state.stamp {
            return;
        }
        if let Ok(key) = certified_key(&self.cert_file, &self.key_file) {
            state.key = Arc::new(key);
            state.stamp = stamp;
        }
    }
}

impl ReloadingCert {
    /// The certificate to present now, read again first if a check is due.
    fn current(&self) -> Arc<rustls::sign::CertifiedKey> {
        let due = {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            state.checked.elapsed() >= RELOAD_CHECK
        };
        if due {
            self.refresh();
        }
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        Arc::clone(&state.key)
    }
}

impl rustls::server::ResolvesServerCert for ReloadingCert {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current())
    }
}

/// The same renewal for the client certificate an atServer presents to others: a long-running
/// node keeps presenting a valid one after cert-manager renews it.
impl rustls::client::ResolvesClientCert for ReloadingCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The modification times of both files, `None` if either cannot be read.
fn stamps(
    cert_file: &Path,
    key_file: &Path,
) -> Option<(std::time::SystemTime, std::time::SystemTime)> {
    let modified = |path: &Path| fs::metadata(path).and_then(|m| m.modified()).ok();
    Some((modified(cert_file)?, modified(key_file)?))
}

/// The chain in `cert_file` with the key in `key_file`, which must match.
fn certified_key(
    cert_file: &Path,
    key_file: &Path,
) -> Result<rustls::sign::CertifiedKey, TlsError> {
    let certs = read_certs(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| pem_error(key_file, e))?;
    let signing = provider().key_provider.load_private_key(key)?;
    let certified = rustls::sign::CertifiedKey::new(certs, signing);
    certified.keys_match()?;
    Ok(certified)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client configuration trusting the system's roots (the platform store, as
/// `rustls-native-certs` finds it; unreadable entries are skipped) and every certificate in
/// `ca_files` (each must be readable). No client certificate.
pub fn client_config(ca_files: &[PathBuf]) -> Result<rustls::ClientConfig, TlsError> {
    Ok(client_builder(ca_files)?.with_no_client_auth())
}

/// As [`client_config`], presenting the chain in `cert_file` (key `key_file`) as the client
/// certificate: how an atServer connects to another, which may check it (mutual TLS). Read
/// again when the files change, as a served certificate is.
pub fn client_config_with_identity(
    ca_files: &[PathBuf],
    cert_file: &Path,
    key_file: &Path,
) -> Result<rustls::ClientConfig, TlsError> {
    let identity = ReloadingCert::load(cert_file.to_path_buf(), key_file.to_path_buf())?;
    Ok(client_builder(ca_files)?.with_client_cert_resolver(Arc::new(identity)))
}

/// The certificate and key a listener configured by `config` serves (the configured pair, or
/// the generated one under `data_dir`); `None` for plain TCP. Call after [`acceptor`], which
/// generates them.
pub fn identity_files(config: &TlsConfig, data_dir: &Path) -> Option<(PathBuf, PathBuf)> {
    if config.plain {
        return None;
    }
    Some(match (&config.cert_file, &config.key_file) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ => {
            let dir = data_dir.join("tls");
            (dir.join("cert.pem"), dir.join("key.pem"))
        }
    })
}

/// The system's roots (the platform store, unreadable entries skipped) and every certificate
/// in `ca_files` (each must be readable).
fn roots(ca_files: &[PathBuf]) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    for cert in system.certs {
        // A malformed system certificate only loses that root, as browsers do.
        let _ = roots.add(cert);
    }
    for path in ca_files {
        for cert in read_certs(path)? {
            roots.add(cert)?;
        }
    }
    Ok(roots)
}

fn client_builder(
    ca_files: &[PathBuf],
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, TlsError>
{
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_files)?))
}

/// Every certificate in a PEM file, in order; an empty file is an error.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            message: "no certificate found".into(),
        });
    }
    Ok(certs)
}

fn pem_error(path: &Path, error: rustls::pki_types::pem::Error) -> TlsError {
    match error {
        rustls::pki_types::pem::Error::Io(source) => TlsError::Read {
            path: path.to_path_buf(),
            source,
        },
        other => TlsError::Pem {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    }
}

/// How long a generated leaf certificate is valid (what browsers accept at most).
const LEAF_DAYS: i64 = 397;
/// How long a generated CA is valid.
const CA_DAYS: i64 = 10 * 365;
/// A generated certificate this close to its end is made anew at start.
const RENEW_BEFORE_DAYS: i64 = 30;

/// Makes `ca.pem` (with its key, `ca-key.pem`), `cert.pem` and `key.pem` in `dir` unless they
/// are there and good for more than [`RENEW_BEFORE_DAYS`]; returns `ca.pem`'s path. A leaf
/// near its end is issued anew from the kept CA, so clients that trust `ca.pem` go on
/// trusting; a CA near its end (or one whose key was not kept) is made anew with the leaf.
fn ensure_self_signed(dir: &Path, names: &[String]) -> Result<PathBuf, TlsError> {
    let (ca_path, ca_key_path, cert_path, key_path) = (
        dir.join("ca.pem"),
        dir.join("ca-key.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    let good = |path: &Path| days_left(path).is_some_and(|days| days > RENEW_BEFORE_DAYS);
    if good(&ca_path) && cert_path.exists() && key_path.exists() {
        if good(&cert_path) {
            return Ok(ca_path);
        }
        if ca_key_path.exists() {
            tracing::info!(dir = %dir.display(), "issuing the generated certificate anew");
            issue(dir, names, &ca_path, &ca_key_path)?;
            return Ok(ca_path);
        }
    }
    let generated = generate(names)?;
    crate::config::private_dir(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    // The keys first and the CA last: a crash in between leaves no `ca.pem`, so the next
    // start generates everything again instead of serving a half-written set.
    write_private(&key_path, &generated.key_pem)?;
    write_private(&ca_key_path, &generated.ca_key_pem)?;
    write_file(&cert_path, &generated.cert_pem)?;
    write_file(&ca_path, &generated.ca_pem)?;
    Ok(ca_path)
}

/// Whole days until the first certificate of the PEM file at `path` expires; `None` when it
/// cannot be read.
fn days_left(path: &Path) -> Option<i64> {
    let der = read_certs(path).ok()?.into_iter().next()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let end = cert.validity().not_after.timestamp();
    let now = crate::metadata::now_ms() / 1000;
    Some((end - now).div_euclid(86_400))
}

/// Sets `params` valid from yesterday for `days` days.
fn valid_for(params: &mut rcgen::CertificateParams, days: i64) -> Result<(), TlsError> {
    let day = 86_400_000;
    let date = |millis: i64| {
        let (y, m, d) = crate::metadata::civil_date(millis);
        let (y, m, d) = (i32::try_from(y), u8::try_from(m), u8::try_from(d));
        match (y, m, d) {
            (Ok(y), Ok(m), Ok(d)) => Ok(rcgen::date_time_ymd(y, m, d)),
            _ => Err(TlsError::Generate(rcgen::Error::Time)),
        }
    };
    let now = crate::metadata::now_ms();
    params.not_before = date(now - day)?;
    params.not_after = date(now + days * day)?;
    Ok(())
}

/// Makes a cluster CA in `dir`: `ca.pem` (give it to every node, directory and client) and
/// `ca-key.pem` (only to what issues certificates: the nodes, as `tls.ca_key_file`). Refuses to
/// replace an existing one. Returns both paths.
pub fn create_ca(dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let (ca_path, key_path) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    if ca_path.exists() || key_path.exists() {
        return Err(TlsError::Write {
            path: ca_path,
            source: io::Error::new(io::ErrorKind::AlreadyExists, "a CA is already there"),
        });
    }
    let key = rcgen::KeyPair::generate()?;
    let cert = ca_params("atProtocol cluster CA")?.self_signed(&key)?;
    crate::config::private_dir(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    write_private(&key_path, &key.serialize_pem())?;
    write_file(&ca_path, &cert.pem())?;
    Ok((ca_path, key_path))
}

/// Issues a leaf for `names` (DNS names or IP addresses; server and client use) from the CA
/// in `ca_file`/`ca_key_file` into `dir` (`cert.pem`, `key.pem`, and a copy of the CA as
/// `ca.pem`).
pub fn issue(
    dir: &Path,
    names: &[String],
    ca_file: &Path,
    ca_key_file: &Path,
) -> Result<(), TlsError> {
    let read = |path: &Path| {
        fs::read_to_string(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let ca_pem = read(ca_file)?;
    let ca_key = ca_key_pair(ca_key_file, &read(ca_key_file)?)?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
    let (cert_pem, key_pem) = leaf(names, &issuer)?;
    fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    write_private(&dir.join("key.pem"), &key_pem)?;
    write_file(&dir.join("cert.pem"), &cert_pem)?;
    write_file(&dir.join("ca.pem"), &ca_pem)
}

/// A CA's signing key from PEM: PKCS#8 (`PRIVATE KEY`, what `ca-create`, cert-manager and
/// openssl's `genpkey` write) or a SEC1 P-256 key (`EC PRIVATE KEY`, what Helm's `genPrivateKey
/// "ecdsa"` and `openssl ecparam -genkey` write), which ring cannot read as it is and so is
/// wrapped into PKCS#8 first.
fn ca_key_pair(path: &Path, pem: &str) -> Result<rcgen::KeyPair, TlsError> {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| pem_error(path, e))?;
    let key = match key {
        PrivateKeyDer::Sec1(sec1) => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            p256_sec1_to_pkcs8(sec1.secret_sec1_der()),
        )),
        other => other,
    };
    Ok(rcgen::KeyPair::try_from(&key)?)
}

/// PKCS#8's PrivateKeyInfo around a SEC1 ECPrivateKey, for P-256 (RFC 5208, RFC 5915):
/// SEQUENCE { INTEGER 0, SEQUENCE { id-ecPublicKey, prime256v1 }, OCTET STRING sec1 }. ring
/// then checks the key itself (and refuses another curve's).
fn p256_sec1_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    /// DER: tag, definite length, content.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        match len {
            0..=0x7f => out.push(len as u8),
            0x80..=0xff => out.extend([0x81, len as u8]),
            _ => out.extend([0x82, (len >> 8) as u8, len as u8]),
        }
        out.extend_from_slice(content);
        out
    }
    const ID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const PRIME256V1: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let mut info = vec![0x02, 0x01, 0x00];
    info.extend(tlv(0x30, &[ID_EC_PUBLIC_KEY, PRIME256V1].concat()));
    info.extend(tlv(0x04, sec1));
    tlv(0x30, &info)
}

fn ca_params(name: &str) -> Result<rcgen::CertificateParams, TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose};
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    valid_for(&mut params, CA_DAYS)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.distinguished_name.push(DnType::CommonName, name);
    Ok(params)
}

/// A leaf certificate for `names` signed by `issuer`, and its key, in PEM.
fn leaf<S: rcgen::SigningKey>(
    names: &[String],
    issuer: &rcgen::Issuer<'_, S>,
) -> Result<(String, String), TlsError> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
    let leaf_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    valid_for(&mut params, LEAF_DAYS)?;
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().map(String::as_str).unwrap_or("localhost"),
    );
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // clientAuth too: an atServer presents its certificate when it connects to a peer.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&leaf_key, issuer)?;
    Ok((cert.pem(), leaf_key.serialize_pem()))
}

struct Generated {
    ca_pem: String,
    ca_key_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn generate(names: &[String]) -> Result<Generated, TlsError> {
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_params = ca_params("atProtocol local CA")?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let (cert_pem, key_pem) = leaf(names, &issuer)?;
    Ok(Generated {
        ca_pem: ca_cert.pem(),
        ca_key_pem,
        cert_pem,
        key_pem,
    })
}

fn write_file(path: &Path, contents: &str) -> Result<(), TlsError> {
    fs::write(path, contents).map_err(|source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    use std::io::Write;
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    file.write_all(contents.as_bytes())
        .map_err(|source| TlsError::Write {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA made by openssl with a SEC1 P-256 key (`EC PRIVATE KEY`, the form Helm's
    /// `genPrivateKey "ecdsa"` writes) issues leaves as a PKCS#8 one does.
    #[test]
    fn a_sec1_p256_ca_key_issues_leaves() {
        let dir = std::env::temp_dir().join(format!("at-tls-sec1-{}", std::process::id()));
        let (ca, key) = (dir.join("given-ca.pem"), dir.join("given-ca-key.pem"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(&ca, include_str!("../testdata/tls/sec1-ca.pem")).unwrap();
        fs::write(&key, include_str!("../testdata/tls/sec1-ca-key.pem")).unwrap();
        assert!(fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN EC PRIVATE KEY-----"));
        issue(
            &dir.join("issued"),
            &["node.example".to_string()],
            &ca,
            &key,
        )
        .unwrap();
        let leaf = fs::read(dir.join("issued/cert.pem")).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(&leaf).unwrap();
        let cert = pem.parse_x509().unwrap();
        assert_eq!(
            cert.issuer().to_string(),
            "CN=Helm-style test CA",
            "issued by the given CA"
        );
        let (_, ca_pem) =
            x509_parser::pem::parse_x509_pem(include_bytes!("../testdata/tls/sec1-ca.pem"))
                .unwrap();
        let ca_cert = ca_pem.parse_x509().unwrap();
        cert.verify_signature(Some(ca_cert.public_key()))
            .expect("signed with the CA's key");
        // Another curve's key is refused, not misread.
        let p384 = dir.join("p384.pem");
        fs::write(&p384, include_str!("../testdata/tls/sec1-p384-key.pem")).unwrap();
        assert!(issue(&dir.join("other"), &["x.example".into()], &ca, &p384).is_err());
        let _ = fs::remove_dir_all(&dir);
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("at-common-tls-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn self_signed_material_is_made_once_and_reused() {
        let dir = temp_dir("reuse");
        let config = TlsConfig::default();
        let (_, source) = acceptor(&config, &dir).unwrap().unwrap();
        let ca_file = dir.join("tls/ca.pem");
        assert_eq!(
            source,
            CertSource::SelfSigned {
                ca_file: ca_file.clone()
            }
        );
        let first = fs::read_to_string(&ca_file).unwrap();
        acceptor(&config, &dir).unwrap().unwrap();
        assert_eq!(fs::read_to_string(&ca_file).unwrap(), first);
        assert_eq!(read_certs(&dir.join("tls/cert.pem")).unwrap().len(), 1);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn generated_certificates_are_valid_a_bounded_time_and_renewed_near_their_end() {
        let dir = temp_dir("renew");
        let names = vec!["localhost".to_string()];
        let ca = ensure_self_signed(&dir, &names).unwrap();
        let leaf_days = days_left(&dir.join("cert.pem")).unwrap();
        assert!((390..=397).contains(&leaf_days), "{leaf_days}");
        let ca_days = days_left(&ca).unwrap();
        assert!((3640..=3650).contains(&ca_days), "{ca_days}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join("ca-key.pem")), 0o600);
            assert_eq!(mode(&dir.join("key.pem")), 0o600);
        }
        // A leaf 5 days from its end, from the kept CA: issued anew, the CA kept.
        let ca_pem = fs::read_to_string(&ca).unwrap();
        let ca_key =
            rcgen::KeyPair::from_pem(&fs::read_to_string(dir.join("ca-key.pem")).unwrap()).unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(names.clone()).unwrap();
        valid_for(&mut params, 5).unwrap();
        let short = params.signed_by(&leaf_key, &issuer).unwrap();
        fs::write(dir.join("cert.pem"), short.pem()).unwrap();
        assert!(days_left(&dir.join("cert.pem")).unwrap() <= 5);
        ensure_self_signed(&dir, &names).unwrap();
        assert!(days_left(&dir.join("cert.pem")).unwrap() > 300);
        assert_eq!(fs::read_to_string(&ca).unwrap(), ca_pem);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn plain_mode_has_no_acceptor() {
        let config = TlsConfig {
            plain: true,
            ..TlsConfig::default()
        };
        assert!(acceptor(&config, Path::new("/nonexistent"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn missing_configured_cert_is_a_read_error() {
        let config = TlsConfig {
            cert_file: Some("/nonexistent/cert.pem".into()),
            key_file: Some("/nonexistent/key.pem".into()),
            ..TlsConfig::default()
        };
        assert!(matches!(
            acceptor(&config, Path::new("/tmp")),
            Err(TlsError::Read { .. })
        ));
    }

    #[test]
    fn a_certificate_names_its_hosts_and_wildcards_stand_for_one_label() {
        let dir = temp_dir("names");
        let names = vec![
            "*.atsign.test".to_string(),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ];
        let (ca, key) = create_ca(&dir.join("ca")).unwrap();
        assert!(
            create_ca(&dir.join("ca")).is_err(),
            "a CA is never replaced"
        );
        issue(&dir.join("tls"), &names, &ca, &key).unwrap();
        let leaf = read_certs(&dir.join("tls/cert.pem")).unwrap();
        let found = peer_names(&leaf[0]);
        assert_eq!(
            &found[..3],
            &names[..],
            "SANs, then the common name: {found:?}"
        );

        assert!(names_host(&found, "a1b2.atsign.test"));
        assert!(names_host(&found, "LOCALHOST"));
        assert!(names_host(&found, "127.0.0.1"));
        assert!(
            !names_host(&found, "atsign.test"),
            "the wildcard needs a label"
        );
        assert!(!names_host(&found, "a.b.atsign.test"), "and only one");
        assert!(!names_host(&found, "evil-atsign.test"));
        assert!(!names_host(&found, "127.0.0.2"));
        assert!(!names_host(&[], "localhost"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_renewed_client_certificate_is_presented_without_a_restart() {
        use rustls::client::ResolvesClientCert;
        let dir = temp_dir("reload-client");
        let (ca, ca_key) = create_ca(&dir.join("ca")).unwrap();
        let names = vec!["node.example".to_string()];
        let own = dir.join("own");
        issue(&own, &names, &ca, &ca_key).unwrap();
        let identity = ReloadingCert::load(own.join("cert.pem"), own.join("key.pem")).unwrap();
        let on_disk = || read_certs(&own.join("cert.pem")).unwrap()[0].clone();
        let presented = || identity.resolve(&[], &[]).unwrap().cert[0].clone();
        let first = presented();
        assert_eq!(first, on_disk());
        issue(&own, &names, &ca, &ca_key).unwrap();
        tokio::time::sleep(RELOAD_CHECK + std::time::Duration::from_millis(200)).await;
        assert_ne!(presented(), first);
        assert_eq!(presented(), on_disk());
        // And the client configuration built on it loads.
        client_config_with_identity(&[ca], &own.join("cert.pem"), &own.join("key.pem")).unwrap();
        let _ = fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_renewed_certificate_is_served_without_a_restart() {
        use rustls::pki_types::ServerName;
        let dir = temp_dir("reload");
        let (ca, ca_key) = create_ca(&dir.join("ca")).unwrap();
        let names = vec!["localhost".to_string()];
        let served_dir = dir.join("served");
        issue(&served_dir, &names, &ca, &ca_key).unwrap();
        let config = TlsConfig {
            cert_file: Some(served_dir.join("cert.pem")),
            key_file: Some(served_dir.join("key.pem")),
            ..TlsConfig::default()
        };
        let (acceptor, _) = acceptor(&config, &dir).unwrap().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(tcp).await;
                });
            }
        });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(
            client_config(std::slice::from_ref(&ca)).unwrap(),
        ));
        let served = || async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let tls = connector.connect(name, tcp).await.unwrap();
            tls.get_ref().1.peer_certificates().unwrap()[0].clone()
        };
        let on_disk = || read_certs(&served_dir.join("cert.pem")).unwrap()[0].clone();

        let first = served().await;
        assert_eq!(first, on_disk());
        // Renewed in place (new key, new certificate): served from the next check on.
        issue(&served_dir, &names, &ca, &ca_key).unwrap();
        tokio::time::sleep(RELOAD_CHECK + std::time::Duration::from_millis(200)).await;
        let second = served().await;
        assert_ne!(second, first);
        assert_eq!(second, on_disk());
        // A renewal that does not load keeps the certificate in use.
        fs::write(served_dir.join("cert.pem"), "not a certificate").unwrap();
        tokio::time::sleep(RELOAD_CHECK + std::time::Duration::from_millis(200)).await;
        assert_eq!(served().await, second);
        let _ = fs::remove_dir_all(&dir);
    }
}
