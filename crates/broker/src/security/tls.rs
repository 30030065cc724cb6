//! TLS listeners (SSL, SASL_SSL) with rustls: the server config built from
//! Kafka's `ssl.*` settings (PEM, PKCS12 and JKS key stores and trust stores
//! through `keystore`, `ssl.client.auth`),
//! and the subject DN of a client certificate (as Java prints it; the
//! principal is made from it by `ssl.principal.mapping.rules`).

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::WebPkiClientVerifier;

use crate::config::BrokerConfig;
use crate::security::keystore::{self, StoreType};

/// A TLS listener's rustls config (the acceptor of its connections, or the
/// connector this broker reaches other brokers with), rebuilt when its key
/// store or trust store file changes on disk (a renewed certificate is used
/// without a restart; Kafka reloads through a dynamic config update, Runnel
/// also by watching the files). New connections get the new certificates;
/// open ones keep theirs. A rewrite that cannot be used is logged and the
/// previous certificates stay.
pub struct Reloading<T> {
    listener: String,
    /// The settings it was built from (only its `ssl.*` ones are read again).
    config: BrokerConfig,
    build: fn(&BrokerConfig, &str) -> Result<T, String>,
    /// The key store and trust store files (none when the PEM is given inline).
    files: Vec<std::path::PathBuf>,
    /// When the files were last looked at, their modification times then, and what was built from them.
    current: parking_lot::Mutex<(std::time::Instant, Vec<Option<std::time::SystemTime>>, T)>,
}

/// A TLS listener's acceptor.
pub type ReloadingAcceptor = Reloading<tokio_rustls::TlsAcceptor>;
/// The client side of a TLS listener's settings (see [`client_config`]).
pub type ReloadingConnector = Reloading<tokio_rustls::TlsConnector>;

/// How often the files are looked at (a stat each, at most once per this).
const RELOAD_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ReloadingAcceptor {
    pub fn new(config: &BrokerConfig, listener: &str) -> Result<ReloadingAcceptor, String> {
        Reloading::build_with(config, listener, |config, listener| server_config(config, listener).map(tokio_rustls::TlsAcceptor::from))
    }

    /// The acceptor for a new connection: rebuilt first if a file changed.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.current()
    }
}

impl ReloadingAcceptor {
    /// An acceptor that asks every client for a certificate (see [`server_config_requiring_client_certificates`]).
    pub fn requiring_client_certificates(config: &BrokerConfig, listener: &str) -> Result<ReloadingAcceptor, String> {
        Reloading::build_with(config, listener, |config, listener| {
            server_config_requiring_client_certificates(config, listener).map(tokio_rustls::TlsAcceptor::from)
        })
    }
}

impl ReloadingConnector {
    pub fn new(config: &BrokerConfig, listener: &str) -> Result<ReloadingConnector, String> {
        Reloading::build_with(config, listener, |config, listener| client_config(config, listener).map(tokio_rustls::TlsConnector::from))
    }

    /// The connector for a new connection: rebuilt first if a file changed.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        self.current()
    }
}

impl<T: Clone> Reloading<T> {
    fn build_with(config: &BrokerConfig, listener: &str, build: fn(&BrokerConfig, &str) -> Result<T, String>) -> Result<Reloading<T>, String> {
        let built = build(config, listener)?;
        let files: Vec<std::path::PathBuf> =
            ["ssl.keystore.location", "ssl.truststore.location"].iter().filter_map(|key| config.listener_setting(listener, key)).map(std::path::PathBuf::from).collect();
        let times = files.iter().map(|path| modified(path)).collect();
        Ok(Reloading {
            listener: listener.to_string(),
            config: config.clone(),
            build,
            files,
            current: parking_lot::Mutex::new((std::time::Instant::now(), times, built)),
        })
    }

    fn current(&self) -> T {
        let mut current = self.current.lock();
        if self.files.is_empty() || current.0.elapsed() < RELOAD_CHECK_INTERVAL {
            return current.2.clone();
        }
        current.0 = std::time::Instant::now();
        let times: Vec<_> = self.files.iter().map(|path| modified(path)).collect();
        if times != current.1 {
            current.1 = times;
            match (self.build)(&self.config, &self.listener) {
                Ok(built) => {
                    tracing::info!(listener = %self.listener, "TLS key store or trust store changed on disk; new connections use the new certificates");
                    current.2 = built;
                }
                Err(reason) => tracing::warn!(listener = %self.listener, %reason, "TLS files changed but cannot be used; keeping the certificates loaded before"),
            }
        }
        current.2.clone()
    }
}

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

/// Builds a TLS listener's server config from its `ssl.*` settings
/// (`listener.name.<name>.ssl.*` first, then `ssl.*`). Errors name the setting.
pub fn server_config(config: &BrokerConfig, listener: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    build_server_config(config, listener, None)
}

/// As [`server_config`], always asking for a client certificate the trust
/// store vouches for (the controller listener: only controllers may connect).
pub fn server_config_requiring_client_certificates(config: &BrokerConfig, listener: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    build_server_config(config, listener, Some(ClientAuth::Required))
}

fn build_server_config(config: &BrokerConfig, listener: &str, client_auth: Option<ClientAuth>) -> Result<Arc<rustls::ServerConfig>, String> {
    let setting = |key: &str| config.listener_setting(listener, key);
    let Some(material) = key_material(config, listener)? else {
        return Err(format!("listener {listener}: a TLS listener needs a key store: ssl.keystore.location (a PEM, PKCS12 or JKS file with the key and the certificate chain), or ssl.keystore.certificate.chain and ssl.keystore.key"));
    };
    let (chain, key) = (material.chain, material.key);
    let client_auth = match (client_auth, setting("ssl.client.auth").unwrap_or("none").to_ascii_lowercase().as_str()) {
        (Some(forced), _) => forced,
        (None, "none") => ClientAuth::None,
        (None, "requested") => ClientAuth::Requested,
        (None, "required") => ClientAuth::Required,
        (None, other) => return Err(format!("listener {listener}: ssl.client.auth={other} is not one of required, requested, none")),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("listener {listener}: TLS versions: {e}"))?;
    let builder = if client_auth == ClientAuth::None {
        builder.with_no_client_auth()
    } else {
        let roots = trust_store(config, listener, "ssl.client.auth asks for client certificates")?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        let verifier = if client_auth == ClientAuth::Requested { verifier.allow_unauthenticated() } else { verifier };
        let verifier = verifier.build().map_err(|e| format!("listener {listener}: ssl.truststore: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("listener {listener}: the key store's key does not fit its certificate chain: {e}"))?;
    // No TLS 1.3 session tickets: they reach the client after the handshake,
    // unasked, and kafka-python closes a connection that is readable with no
    // request in flight ("Socket EVENT_READ without in-flight-requests").
    server.send_tls13_tickets = 0;
    Ok(Arc::new(server))
}

/// The client side of a TLS listener's settings, for this broker connecting
/// to the same listener of another broker (replication, transaction markers)
/// or to another controller: the trust store verifies the other side (and,
/// with `ssl.endpoint.identification.algorithm=https`, its names against
/// `host`); the key store, when there is one, is this broker's client
/// certificate (needed where `ssl.client.auth=required`).
pub fn client_config(config: &BrokerConfig, listener: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let setting = |key: &str| config.listener_setting(listener, key);
    let roots = Arc::new(trust_store(config, listener, "brokers verify each other's certificates over TLS")?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| format!("listener {listener}: ssl.truststore: {e}"))?;
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> =
        match setting("ssl.endpoint.identification.algorithm").unwrap_or("https").trim().to_ascii_lowercase().as_str() {
            "https" => webpki,
            "" => Arc::new(ChainOnlyVerifier(webpki)),
            other => return Err(format!("listener {listener}: ssl.endpoint.identification.algorithm={other} is not https or empty")),
        };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("listener {listener}: TLS versions: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let client = match key_material(config, listener)? {
        Some(material) => builder
            .with_client_auth_cert(material.chain, material.key)
            .map_err(|e| format!("listener {listener}: the key store's key does not fit its certificate chain: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(client))
}

/// `ssl.endpoint.identification.algorithm=` (empty): the chain is verified,
/// the names in the certificate are not.
#[derive(Debug)]
struct ChainOnlyVerifier(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for ChainOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A listener's key store (`ssl.keystore.*`), or None when none is configured.
fn key_material(config: &BrokerConfig, listener: &str) -> Result<Option<keystore::KeyMaterial>, String> {
    let setting = |key: &str| config.listener_setting(listener, key);
    let keystore_type = StoreType::parse("ssl.keystore.type", setting("ssl.keystore.type")).map_err(|e| format!("listener {listener}: {e}"))?;
    let (store_password, key_password) = (setting("ssl.keystore.password"), setting("ssl.key.password"));
    let material = match (setting("ssl.keystore.location"), setting("ssl.keystore.certificate.chain"), setting("ssl.keystore.key")) {
        (Some(location), None, None) => {
            let bytes = std::fs::read(location).map_err(|e| format!("listener {listener}: ssl.keystore.location {location}: {e}"))?;
            let what = format!("listener {listener}: ssl.keystore.location {location}");
            keystore::read_key_store(keystore_type, &what, &bytes, store_password, key_password)?
        }
        (None, Some(chain), Some(key)) => {
            if keystore_type != StoreType::Pem {
                return Err(format!("listener {listener}: ssl.keystore.certificate.chain and ssl.keystore.key are PEM; set ssl.keystore.type=PEM"));
            }
            keystore::KeyMaterial {
                chain: keystore::read_trust_store(StoreType::Pem, &format!("listener {listener}: ssl.keystore.certificate.chain"), chain.as_bytes(), None)?,
                key: keystore::pem_private_key(&format!("listener {listener}: ssl.keystore.key"), key.as_bytes(), key_password)?,
            }
        }
        (None, None, None) => return Ok(None),
        _ => {
            return Err(format!("listener {listener}: give either ssl.keystore.location or both ssl.keystore.certificate.chain and ssl.keystore.key"))
        }
    };
    Ok(Some(material))
}

/// The certificates client certificates are verified against:
/// `ssl.truststore.location` (PEM file) or `ssl.truststore.certificates` (inline PEM).
/// `why` says what needs it, for the error when none is configured.
fn trust_store(config: &BrokerConfig, listener: &str, why: &str) -> Result<rustls::RootCertStore, String> {
    let setting = |key: &str| config.listener_setting(listener, key);
    let truststore_type = StoreType::parse("ssl.truststore.type", setting("ssl.truststore.type")).map_err(|e| format!("listener {listener}: {e}"))?;
    let certs = match (setting("ssl.truststore.location"), setting("ssl.truststore.certificates")) {
        (Some(location), _) => {
            let bytes = std::fs::read(location).map_err(|e| format!("listener {listener}: ssl.truststore.location {location}: {e}"))?;
            let what = format!("listener {listener}: ssl.truststore.location {location}");
            keystore::read_trust_store(truststore_type, &what, &bytes, setting("ssl.truststore.password"))?
        }
        (None, Some(inline)) => {
            keystore::read_trust_store(StoreType::Pem, &format!("listener {listener}: ssl.truststore.certificates"), inline.as_bytes(), None)?
        }
        (None, None) => {
            return Err(format!("listener {listener}: {why}, so a trust store is needed: ssl.truststore.location (PEM, PKCS12 or JKS file of CA certificates)"))
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| format!("listener {listener}: a trust store certificate is not usable: {e}"))?;
    }
    Ok(roots)
}

/// The subject distinguished name as Java's `X500Principal.getName()` prints
/// it, which is what Kafka's mapping rules see (RFC 2253: most specific
/// first, `CN=client,OU=eng,O=Example,C=US`).
pub fn subject_dn(cert: &CertificateDer<'_>) -> Result<String, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| format!("unreadable client certificate: {e}"))?;
    let mut rdns = Vec::new();
    for rdn in parsed.subject().iter() {
        let mut parts = Vec::new();
        for attr in rdn.iter() {
            let oid = attr.attr_type().to_id_string();
            let key = match oid.as_str() {
                "2.5.4.3" => "CN".to_string(),
                "2.5.4.6" => "C".to_string(),
                "2.5.4.7" => "L".to_string(),
                "2.5.4.8" => "ST".to_string(),
                "2.5.4.9" => "STREET".to_string(),
                "2.5.4.10" => "O".to_string(),
                "2.5.4.11" => "OU".to_string(),
                "0.9.2342.19200300.100.1.1" => "UID".to_string(),
                "0.9.2342.19200300.100.1.25" => "DC".to_string(),
                _ => oid,
            };
            let value = attr.as_str().map_err(|_| format!("client certificate subject attribute {key} is not a string"))?;
            parts.push(format!("{key}={}", escape_rfc2253(value)));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let leading = i == 0 && (c == ' ' || c == '#');
        let trailing = i + 1 == value.chars().count() && c == ' ';
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') || leading || trailing {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2253_escapes_what_java_escapes() {
        assert_eq!(escape_rfc2253("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape_rfc2253(" x "), "\\ x\\ ");
        assert_eq!(escape_rfc2253("#1"), "\\#1");
        assert_eq!(escape_rfc2253("plain"), "plain");
    }

    #[test]
    fn settings_are_checked_with_their_names() {
        let mut c = BrokerConfig::default();
        let err = server_config(&c, "SSL").unwrap_err();
        assert!(err.contains("needs a key store"), "Kafka's default type JKS is read: {err}");
        c.set("ssl.keystore.type", "BCFKS").unwrap();
        let err = server_config(&c, "SSL").unwrap_err();
        assert!(err.contains("ssl.keystore.type=BCFKS"), "{err}");
        c.set("ssl.keystore.type", "PEM").unwrap();
        let err = server_config(&c, "SSL").unwrap_err();
        assert!(err.contains("needs a key store"), "{err}");
        c.set("listener.name.ssl.ssl.keystore.location", "/nonexistent/keystore.pem").unwrap();
        let err = server_config(&c, "SSL").unwrap_err();
        assert!(err.contains("/nonexistent/keystore.pem"), "{err}");
        // The override is per listener: another listener does not see it.
        assert!(server_config(&c, "SASL_SSL").unwrap_err().contains("needs a key store"));
        c.set("ssl.keystore.key", "-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n").unwrap();
        c.set("ssl.keystore.certificate.chain", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        let err = server_config(&c, "SASL_SSL").unwrap_err();
        assert!(!err.contains("not base64"), "a key's text never appears in an error: {err}");
    }
}
