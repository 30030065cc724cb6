//! How this broker connects to other brokers' inter-broker listener (replica
//! fetchers, transaction markers, AddPartitionsToTxn): TCP, then TLS on SSL
//! and SASL_SSL listeners (the listener's `ssl.*` settings from the client's
//! side), then a SASL login on SASL listeners with
//! `sasl.mechanism.inter.broker.protocol` and the `username`/`password` of
//! the listener's JAAS config for that mechanism, as a Kafka broker does.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::{BrokerConfig, SecurityProtocol};
use crate::inter_broker::{call_on, Failure};
use crate::security::sasl::{parse_jaas, Mechanism};
use crate::security::scram::ScramClient;
use crate::security::tls::ReloadingConnector;

/// A byte stream to another broker: plain TCP or TLS over it.
pub trait BrokerIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> BrokerIo for T {}

/// A connection to another broker, logged in when its listener asks for it.
pub struct BrokerConnection {
    pub stream: Box<dyn BrokerIo>,
    /// KIP-368: when the other broker ends the SASL session; the connection
    /// is replaced before then (a new connection logs in again).
    pub session_ends: Option<Instant>,
}

impl BrokerConnection {
    /// Whether the connection can carry a request that may take up to `within`.
    pub fn usable_for(&self, within: Duration) -> bool {
        self.session_ends.is_none_or(|ends| Instant::now() + within < ends)
    }
}

/// What this broker logs in with on a SASL inter-broker listener.
enum Login {
    Plain { user: String, password: String },
    Scram { mechanism: crate::security::scram::ScramMechanism, user: String, password: String },
}

/// The inter-broker listener's security, from the connecting side.
pub struct BrokerConnector {
    listener: String,
    tls: Option<ReloadingConnector>,
    login: Option<Login>,
}

impl std::fmt::Debug for BrokerConnector {
    // The password is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let login = self.login.as_ref().map(|l| match l {
            Login::Plain { user, .. } => format!("PLAIN {user}"),
            Login::Scram { mechanism, user, .. } => format!("{} {user}", mechanism.name()),
        });
        f.debug_struct("BrokerConnector").field("listener", &self.listener).field("tls", &self.tls.is_some()).field("login", &login).finish()
    }
}

/// In the errors of a refused login or TLS handshake (callers report these louder).
pub const LOGIN_FAILED: &str = "SASL login to";
pub const TLS_FAILED: &str = "TLS handshake with";

/// The SASL handshake and authenticate versions used (Kafka 1.0+ brokers serve them).
const SASL_HANDSHAKE_VERSION: i16 = 1;
const SASL_AUTHENTICATE_VERSION: i16 = 2;
/// Answers to the login are small; a longer one drops the connection.
const SASL_RESPONSE_MAX_BYTES: i32 = 1 << 20;

/// A client's security settings, in Kafka's names (`runnel`'s admin commands
/// map librdkafka's `-X` settings to these).
#[derive(Default)]
pub struct ClientSecurity {
    pub protocol: Option<SecurityProtocol>,
    /// Kafka `ssl.*` settings (`ssl.truststore.location`, `ssl.keystore.certificate.chain`, ...).
    pub ssl: Vec<(String, String)>,
    /// SASL mechanism, user and password.
    pub sasl: Option<(String, String, String)>,
}

impl BrokerConnector {
    /// A client's connector: TLS from `ssl` on SSL and SASL_SSL, a PLAIN or
    /// SCRAM login on SASL_PLAINTEXT and SASL_SSL.
    pub fn for_client(security: ClientSecurity) -> Result<BrokerConnector, String> {
        let protocol = security.protocol.unwrap_or(SecurityProtocol::Plaintext);
        const NAME: &str = "CLIENT";
        let tls = if protocol.uses_tls() {
            let mut config = BrokerConfig::default();
            for (key, value) in &security.ssl {
                config.set(&format!("listener.name.client.{key}"), value).map_err(|e| e.to_string())?;
            }
            Some(ReloadingConnector::new(&config, NAME)?)
        } else {
            None
        };
        let login = match (protocol.uses_sasl(), security.sasl) {
            (false, _) => None,
            (true, None) => return Err(format!("{} needs a SASL mechanism, user and password", protocol.name())),
            (true, Some((mechanism, user, password))) => Some(match Mechanism::parse(&mechanism.to_ascii_uppercase()) {
                Some(Mechanism::Plain) => Login::Plain { user, password },
                Some(Mechanism::Scram(mechanism)) => Login::Scram { mechanism, user, password },
                _ => return Err(format!("SASL mechanism {mechanism} is not supported here (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")),
            }),
        };
        Ok(BrokerConnector { listener: NAME.to_string(), tls, login })
    }

    /// As [`BrokerConnector::connect`], to `host:port` (resolved first).
    pub async fn connect_to(&self, addr: &str, client_id: &str, timeout: Duration) -> Result<BrokerConnection, String> {
        let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let address = tokio::time::timeout(timeout, tokio::net::lookup_host(addr))
            .await
            .map_err(|_| format!("resolving {addr} timed out"))?
            .map_err(|e| format!("resolving {addr}: {e}"))?
            .next()
            .ok_or_else(|| format!("{addr} resolves to no address"))?;
        self.connect(address, host, client_id, timeout).await
    }

    /// Plain TCP (a single node, tests).
    pub fn plaintext() -> BrokerConnector {
        BrokerConnector { listener: "PLAINTEXT".into(), tls: None, login: None }
    }

    /// From the inter-broker listener's settings. Errors name the setting, never a secret.
    pub fn from_config(config: &BrokerConfig) -> Result<BrokerConnector, String> {
        let inter_broker = config.inter_broker_listener().map_err(|e| e.to_string())?;
        let listener = inter_broker.listener.name.as_str();
        let tls = if inter_broker.protocol.uses_tls() { Some(ReloadingConnector::new(config, listener)?) } else { None };
        let login = if inter_broker.protocol.uses_sasl() { Some(login(config, listener, inter_broker.protocol)?) } else { None };
        Ok(BrokerConnector { listener: listener.to_string(), tls, login })
    }

    /// Connects to the broker at `address` (named `host` in its registration:
    /// the name its certificate is checked against), within `timeout`.
    pub async fn connect(&self, address: SocketAddr, host: &str, client_id: &str, timeout: Duration) -> Result<BrokerConnection, String> {
        tokio::time::timeout(timeout, self.connect_inner(address, host, client_id))
            .await
            .map_err(|_| format!("connecting to {address} on listener {} timed out", self.listener))?
    }

    async fn connect_inner(&self, address: SocketAddr, host: &str, client_id: &str) -> Result<BrokerConnection, String> {
        let tcp = TcpStream::connect(address).await.map_err(|e| format!("connect to {address}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let mut stream: Box<dyn BrokerIo> = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host:?} is not a host name for TLS: {e}"))?;
                let tls_stream = tls
                    .connector()
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("{TLS_FAILED} {host} ({address}) on listener {}: {e}", self.listener))?;
                Box::new(tls_stream)
            }
        };
        let session_ends = match &self.login {
            None => None,
            Some(login) => authenticate(&mut stream, login, client_id)
                .await
                .map_err(|e| format!("{LOGIN_FAILED} {host} ({address}) on listener {}: {e}", self.listener))?,
        };
        Ok(BrokerConnection { stream, session_ends })
    }
}

/// `sasl.mechanism.inter.broker.protocol` and its JAAS login (`username`, `password`).
fn login(config: &BrokerConfig, listener: &str, protocol: SecurityProtocol) -> Result<Login, String> {
    let key = "sasl.mechanism.inter.broker.protocol";
    let name = config.listener_setting(listener, key).unwrap_or("GSSAPI").trim().to_ascii_uppercase();
    let mechanism = match Mechanism::parse(&name) {
        Some(m @ (Mechanism::Plain | Mechanism::Scram(_))) => m,
        _ => {
            return Err(format!(
                "inter-broker listener {listener} ({}) : {key}={name} is not supported; brokers log in to each other with PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                protocol.name()
            ))
        }
    };
    let enabled = crate::security::sasl::SaslSettings::new(config, listener)?;
    if !enabled.mechanisms.contains(&mechanism) {
        return Err(format!("inter-broker listener {listener}: {key}={name} is not in its sasl.enabled.mechanisms"));
    }
    let jaas_key = format!("{}.sasl.jaas.config", name.to_ascii_lowercase());
    let jaas = config.listener_setting(listener, &jaas_key).or_else(|| config.listener_setting(listener, "sasl.jaas.config")).ok_or_else(|| {
        format!(
            "inter-broker listener {listener}: this broker's {name} login is missing: username=\"...\" password=\"...\" in listener.name.{}.{jaas_key}",
            listener.to_ascii_lowercase()
        )
    })?;
    let options = parse_jaas(jaas).map_err(|reason| format!("inter-broker listener {listener}: {jaas_key}: {reason}"))?;
    let (Some(user), Some(password)) = (options.get("username"), options.get("password")) else {
        return Err(format!(
            "inter-broker listener {listener}: {jaas_key} has no username and password options: the login this broker uses with other brokers"
        ));
    };
    let (user, password) = (user.clone(), password.clone());
    Ok(match mechanism {
        Mechanism::Scram(mechanism) => Login::Scram { mechanism, user, password },
        _ => Login::Plain { user, password },
    })
}

/// SaslHandshake, then SaslAuthenticate until the login is done; the session's
/// end when the other broker sets one (KIP-368).
async fn authenticate(stream: &mut Box<dyn BrokerIo>, login: &Login, client_id: &str) -> Result<Option<Instant>, String> {
    let mechanism = match login {
        Login::Plain { .. } => "PLAIN",
        Login::Scram { mechanism, .. } => mechanism.name(),
    };
    let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
    let answer = call_on(stream, client_id, 1, SASL_HANDSHAKE_VERSION, &handshake, SASL_RESPONSE_MAX_BYTES).await.map_err(Failure::into_message)?;
    if answer.error_code != 0 {
        let enabled: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(format!("the other broker does not accept {mechanism} (error {}; it accepts {})", answer.error_code, enabled.join(", ")));
    }
    let started = Instant::now();
    let lifetime_ms = match login {
        Login::Plain { user, password } => {
            let token = format!("\0{user}\0{password}");
            step(stream, client_id, 2, token.into_bytes()).await?.1
        }
        Login::Scram { mechanism, user, password } => {
            let mut scram = ScramClient::new(*mechanism, user, password)?;
            let (server_first, _) = step(stream, client_id, 2, scram.client_first()).await?;
            let client_final = scram.client_final(&server_first)?;
            let (server_final, lifetime) = step(stream, client_id, 3, client_final).await?;
            scram.verify_server_final(&server_final)?;
            lifetime
        }
    };
    Ok((lifetime_ms > 0).then(|| started + Duration::from_millis(lifetime_ms as u64)))
}

/// One SaslAuthenticate round: the server's token and session lifetime.
async fn step(stream: &mut Box<dyn BrokerIo>, client_id: &str, correlation_id: i32, token: Vec<u8>) -> Result<(Bytes, i64), String> {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
    let answer = call_on(stream, client_id, correlation_id, SASL_AUTHENTICATE_VERSION, &request, SASL_RESPONSE_MAX_BYTES)
        .await
        .map_err(Failure::into_message)?;
    if answer.error_code != 0 {
        let message = answer.error_message.as_ref().map(|m| m.as_str().to_string()).unwrap_or_default();
        return Err(format!("authentication failed (error {}): {message}", answer.error_code));
    }
    Ok((answer.auth_bytes, answer.session_lifetime_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl_config(mechanism: &str, jaas: Option<&str>) -> BrokerConfig {
        let mut c = BrokerConfig::default();
        c.set("listeners", "SASL_PLAINTEXT://127.0.0.1:0").unwrap();
        c.set("sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-512").unwrap();
        c.set("listener.name.sasl_plaintext.plain.sasl.jaas.config", "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"broker\" password=\"s3cret\" user_broker=\"s3cret\";").unwrap();
        if let Some(jaas) = jaas {
            c.set("listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config", jaas).unwrap();
        }
        if !mechanism.is_empty() {
            c.set("sasl.mechanism.inter.broker.protocol", mechanism).unwrap();
        }
        c
    }

    #[test]
    fn the_login_comes_from_the_listeners_jaas_config_and_errors_hide_the_password() {
        let connector = BrokerConnector::from_config(&sasl_config("PLAIN", None)).unwrap();
        assert!(matches!(&connector.login, Some(Login::Plain { user, .. }) if user == "broker"));
        assert!(!format!("{connector:?}").contains("s3cret"));
        let err = BrokerConnector::from_config(&sasl_config("", None)).unwrap_err();
        assert!(err.contains("GSSAPI"), "Kafka's default is refused by name: {err}");
        let err = BrokerConnector::from_config(&sasl_config("SCRAM-SHA-512", None)).unwrap_err();
        assert!(err.contains("scram-sha-512.sasl.jaas.config"), "{err}");
        let scram = "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"broker\" password=\"other-s3cret\";";
        let connector = BrokerConnector::from_config(&sasl_config("SCRAM-SHA-512", Some(scram))).unwrap();
        assert!(matches!(&connector.login, Some(Login::Scram { user, .. }) if user == "broker"));
        let err = BrokerConnector::from_config(&sasl_config("SCRAM-SHA-256", Some(scram))).unwrap_err();
        assert!(err.contains("not in its sasl.enabled.mechanisms"), "{err}");
        let err = BrokerConnector::from_config(&sasl_config("SCRAM-SHA-512", Some("org.apache.kafka.common.security.scram.ScramLoginModule required username=\"broker\";"))).unwrap_err();
        assert!(err.contains("no username and password"), "{err}");
    }
}
