//! HTTPS and WSS on the server's one port: rustls with a certificate that can change while the
//! server runs. [`Certificates`] answers every handshake with the pair it holds, and
//! [`watch`] replaces the pair on SIGHUP and when either file changes (checked every
//! [`CHECK_EVERY`]); a pair that fails to load or does not match is logged and the old one kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use actix_rt::signal::unix::Signal;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often the certificate files are checked for changes.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Why a certificate and key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain {path}: {source}")]
    Certificate { path: PathBuf, source: rustls::pki_types::pem::Error },
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("cannot read the private key {path}: {source}")]
    Key { path: PathBuf, source: rustls::pki_types::pem::Error },
    #[error("the private key {path} is of a kind TLS cannot use: {source}")]
    KeyKind { path: PathBuf, source: rustls::Error },
    #[error("the private key does not belong to the certificate: {0}")]
    Mismatch(rustls::Error),
}

/// The certificate chain and key the server presents, reloadable.
#[derive(Debug)]
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// When the presented certificate expires (Unix seconds; 0 if it could not be read).
    expires: std::sync::atomic::AtomicI64,
    /// The files' modification times when last loaded.
    loaded: Mutex<Option<(SystemTime, SystemTime)>>,
}

impl Certificates {
    /// Loads the PEM files `cert` (the chain, leaf first) and `key`; fails if either cannot be
    /// used or they do not belong together.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let stamps = stamps(cert, key);
        let current = read_pair(cert, key)?;
        Ok(Arc::new(Certificates {
            cert: cert.to_owned(),
            key: key.to_owned(),
            expires: std::sync::atomic::AtomicI64::new(expiry(&current)),
            current: RwLock::new(Arc::new(current)),
            loaded: Mutex::new(stamps),
        }))
    }

    /// Reads the files again and, if they are usable, presents them from the next handshake on.
    /// Connections already open keep the certificate they were made with.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamps = stamps(&self.cert, &self.key);
        let pair = read_pair(&self.cert, &self.key);
        // Remember these files either way, so a bad pair is reported once, not every check.
        *self.loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = stamps;
        let pair = pair?;
        self.expires.store(expiry(&pair), std::sync::atomic::Ordering::Relaxed);
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(pair);
        Ok(())
    }

    /// When the presented certificate expires, in Unix seconds (0 if unknown).
    pub fn expires(&self) -> i64 {
        self.expires.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether either file changed since it was last loaded.
    fn changed(&self) -> bool {
        let stamps = stamps(&self.cert, &self.key);
        stamps.is_some()
            && *self.loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner) != stamps
    }

    /// The TLS settings for a listener that presents these certificates.
    pub fn server_config(self: &Arc<Self>) -> rustls::ServerConfig {
        let mut config =
            rustls::ServerConfig::builder().with_no_client_auth().with_cert_resolver(self.clone());
        // actix-web here speaks HTTP/1.1 (the WebSocket upgrade is HTTP/1.1).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
    }
}

/// When the leaf certificate of `pair` expires, in Unix seconds (0 if it cannot be parsed).
fn expiry(pair: &CertifiedKey) -> i64 {
    pair.cert
        .first()
        .and_then(|leaf| x509_parser::parse_x509_certificate(leaf.as_ref()).ok())
        .map_or(0, |(_, leaf)| leaf.validity().not_after.timestamp())
}

/// Both files' modification times, if both can be read.
fn stamps(cert: &Path, key: &Path) -> Option<(SystemTime, SystemTime)> {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    Some((modified(cert)?, modified(key)?))
}

fn read_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Certificate { path: cert.to_owned(), source })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|source| TlsError::Key { path: key.to_owned(), source })?;
    let signing = any_supported_type(&der)
        .map_err(|source| TlsError::KeyKind { path: key.to_owned(), source })?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match().map_err(TlsError::Mismatch)?;
    Ok(pair)
}

/// Reloads `certificates` on SIGHUP and whenever their files change; without certificates,
/// only says that SIGHUP has nothing to reload (rather than letting it end the process, its
/// default). Runs until the server stops.
/// `hangup` comes from [`hangup_signal`], taken before the server says it listens, so that no
/// SIGHUP after that can end the process.
pub async fn watch(
    certificates: Option<Arc<Certificates>>,
    mut hangup: Option<Signal>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    if let Some(certificates) = &certificates {
        metrics.tls_expiry.set(certificates.expires());
    }
    let mut check = actix_rt::time::interval(CHECK_EVERY);
    loop {
        let why = next_trigger(&mut hangup, &mut check).await;
        let Some(certificates) = &certificates else {
            if why == Trigger::Hangup {
                tracing::info!("SIGHUP received: nothing to reload (no --tls-cert)");
            }
            continue;
        };
        if why == Trigger::Check && !certificates.changed() {
            continue;
        }
        match certificates.reload() {
            Ok(()) => {
                metrics.tls_expiry.set(certificates.expires());
                tracing::info!(
                    trigger = why.name(),
                    expires = certificates.expires(),
                    "TLS certificate reloaded"
                );
            }
            Err(error) => {
                metrics.tls_reload_failures.inc();
                tracing::error!(
                %error,
                trigger = why.name(),
                    "TLS certificate not reloaded; still presenting the previous one"
                );
            }
        }
    }
}

/// Starts catching SIGHUP (from now on it no longer ends the process); `None` if it cannot be.
/// Must be called within the actix system.
pub fn hangup_signal() -> Option<Signal> {
    use actix_rt::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGHUP");
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Hangup,
    Check,
}

impl Trigger {
    fn name(self) -> &'static str {
        match self {
            Trigger::Hangup => "SIGHUP",
            Trigger::Check => "file change",
        }
    }
}

/// Waits for SIGHUP (if watched) or the next check.
async fn next_trigger(
    hangup: &mut Option<Signal>,
    check: &mut actix_rt::time::Interval,
) -> Trigger {
    let tick = std::pin::pin!(check.tick());
    match hangup {
        Some(hangup) => {
            let signal = std::pin::pin!(hangup.recv());
            match futures::future::select(signal, tick).await {
                futures::future::Either::Left(_) => Trigger::Hangup,
                futures::future::Either::Right(_) => Trigger::Check,
            }
        }
        None => {
            tick.await;
            Trigger::Check
        }
    }
}
