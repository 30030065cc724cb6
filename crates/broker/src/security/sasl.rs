//! SASL authentication (SASL_PLAINTEXT and SASL_SSL listeners): the enabled
//! mechanisms, the PLAIN users of the listener's JAAS config, and each
//! connection's progress through SaslHandshake and SaslAuthenticate. SCRAM's
//! users are the cluster metadata's (`scram.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use subtle::ConstantTimeEq;

use crate::config::BrokerConfig;
use crate::security::oauthbearer::OAuthBearerValidator;
use crate::security::scram::ScramMechanism;

/// KIP-368's setting (also as `<mechanism>.connections.max.reauth.ms`, and per listener).
pub const REAUTH_KEY: &str = "connections.max.reauth.ms";

/// Kafka's messages for a failed authentication (clients show them).
pub const PLAIN_FAILED: &str = "Authentication failed: Invalid username or password";

/// A SASL mechanism Runnel serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
    OAuthBearer,
}

impl Mechanism {
    pub fn parse(name: &str) -> Option<Mechanism> {
        match name {
            "PLAIN" => Some(Mechanism::Plain),
            "SCRAM-SHA-256" => Some(Mechanism::Scram(ScramMechanism::Sha256)),
            "SCRAM-SHA-512" => Some(Mechanism::Scram(ScramMechanism::Sha512)),
            "OAUTHBEARER" => Some(Mechanism::OAuthBearer),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(scram) => scram.name(),
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// A SASL listener's settings.
#[derive(Clone)]
pub struct SaslSettings {
    pub mechanisms: Vec<Mechanism>,
    /// PLAIN: user -> password, from `user_<name>="<password>"` in the JAAS config.
    plain_users: BTreeMap<String, String>,
    /// `connection.failed.authentication.delay.ms`: how long a failed
    /// authentication's answer waits, which slows password guessing.
    pub failed_authentication_delay: Duration,
    /// KIP-368 `connections.max.reauth.ms` per mechanism (positive values
    /// only): an authenticated session lasts this long, then the client must
    /// re-authenticate on its connection or lose it.
    session_lifetimes: Vec<(Mechanism, Duration)>,
    /// OAUTHBEARER: how tokens are validated.
    pub oauthbearer: Option<OAuthBearerValidator>,
}

impl std::fmt::Debug for SaslSettings {
    // The passwords are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslSettings")
            .field("mechanisms", &self.mechanisms)
            .field("plain_users", &self.plain_users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SaslSettings {
    /// Reads a SASL listener's `sasl.enabled.mechanisms` and, for PLAIN, its
    /// `listener.name.<name>.plain.sasl.jaas.config`. Errors name the setting, never a secret.
    pub fn new(config: &BrokerConfig, listener: &str) -> Result<SaslSettings, String> {
        let enabled = config.listener_setting(listener, "sasl.enabled.mechanisms").unwrap_or("GSSAPI");
        let mut mechanisms = Vec::new();
        for name in enabled.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let mechanism = Mechanism::parse(&name.to_ascii_uppercase()).ok_or_else(|| {
                format!("listener {listener}: sasl.enabled.mechanisms: {name} is not supported (Runnel serves PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER); set e.g. sasl.enabled.mechanisms=SCRAM-SHA-512")
            })?;
            if !mechanisms.contains(&mechanism) {
                mechanisms.push(mechanism);
            }
        }
        if mechanisms.is_empty() {
            return Err(format!("listener {listener}: sasl.enabled.mechanisms is empty"));
        }
        let mut plain_users = BTreeMap::new();
        if mechanisms.contains(&Mechanism::Plain) {
            let key = "plain.sasl.jaas.config";
            let jaas = config
                .listener_setting(listener, key)
                .or_else(|| config.listener_setting(listener, "sasl.jaas.config"))
                .ok_or_else(|| {
                    format!(
                        "listener {listener}: PLAIN needs its users: listener.name.{}.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_alice=\"alice-secret\";",
                        listener.to_ascii_lowercase()
                    )
                })?;
            let options = parse_jaas(jaas).map_err(|reason| format!("listener {listener}: {key}: {reason}"))?;
            plain_users = options
                .into_iter()
                .filter_map(|(k, v)| k.strip_prefix("user_").map(|user| (user.to_string(), v)))
                .collect();
            if plain_users.is_empty() {
                return Err(format!("listener {listener}: {key} defines no user (user_<name>=\"<password>\")"));
            }
        }
        // Kafka's lookup: `<mechanism>.connections.max.reauth.ms`, then
        // `connections.max.reauth.ms`, each first with the listener prefix.
        let mut session_lifetimes = Vec::new();
        for &mechanism in &mechanisms {
            let prefixed = format!("{}.{REAUTH_KEY}", mechanism.name().to_ascii_lowercase());
            let (key, value) = match config.listener_setting(listener, &prefixed) {
                Some(value) => (prefixed, value),
                None => match config.listener_setting(listener, REAUTH_KEY) {
                    Some(value) => (REAUTH_KEY.to_string(), value),
                    None => continue,
                },
            };
            let ms: i64 = value.trim().parse().map_err(|_| format!("listener {listener}: {key}={value} is not a number of milliseconds"))?;
            if ms > 0 {
                session_lifetimes.push((mechanism, Duration::from_millis(ms as u64)));
            }
        }
        let oauthbearer = if mechanisms.contains(&Mechanism::OAuthBearer) {
            let validator = OAuthBearerValidator::new(config, listener)?;
            if validator.is_unsecured() {
                tracing::warn!(
                    listener,
                    "OAUTHBEARER without sasl.oauthbearer.jwks.endpoint.url accepts unsigned tokens (Kafka's unsecured default): for development only"
                );
            }
            Some(validator)
        } else {
            None
        };
        Ok(SaslSettings {
            mechanisms,
            oauthbearer,
            plain_users,
            failed_authentication_delay: Duration::from_millis(config.connection_failed_authentication_delay_ms),
            session_lifetimes,
        })
    }

    /// How long a session authenticated with `mechanism` lasts (KIP-368), if it ends.
    pub fn session_lifetime(&self, mechanism: Mechanism) -> Option<Duration> {
        self.session_lifetimes.iter().find(|(m, _)| *m == mechanism).map(|(_, lifetime)| *lifetime)
    }

    pub fn mechanism_names(&self) -> Vec<&'static str> {
        self.mechanisms.iter().map(|m| m.name()).collect()
    }

    /// PLAIN (RFC 4616): `[authzid] NUL authcid NUL password`. Ok(user) or
    /// Kafka's failure message. Compared in constant time.
    pub fn authenticate_plain(&self, token: &[u8]) -> Result<String, &'static str> {
        let mut parts = token.split(|b| *b == 0);
        let (Some(authzid), Some(user), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err("Invalid SASL/PLAIN response: expected 3 tokens");
        };
        let user = std::str::from_utf8(user).map_err(|_| PLAIN_FAILED)?;
        if !authzid.is_empty() && authzid != user.as_bytes() {
            return Err("Authentication failed: Client requested an authorization id that is different from username");
        }
        let expected = self.plain_users.get(user).map(String::as_bytes);
        // Unknown users cost the same comparison as known ones.
        let matches = bool::from(expected.unwrap_or(b"\0no such user\0").ct_eq(password));
        if matches && expected.is_some() {
            Ok(user.to_string())
        } else {
            Err(PLAIN_FAILED)
        }
    }
}

/// Parses a JAAS config line: `<LoginModule class> <flag> key="value" ...;`
/// into its options.
pub(crate) fn parse_jaas(text: &str) -> Result<BTreeMap<String, String>, String> {
    let text = text.trim();
    let text = text.strip_suffix(';').ok_or("a JAAS config ends with ';'")?;
    let mut rest = text.trim_start();
    let mut words = 0;
    // The login module class and the control flag.
    while words < 2 {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        if end == 0 {
            return Err("expected `<LoginModule> required key=\"value\" ...;`".into());
        }
        rest = rest[end..].trim_start();
        words += 1;
    }
    let mut options = BTreeMap::new();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or("an option without '=' (expected key=\"value\")")?;
        let key = rest[..eq].trim().to_string();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err("an option without a key".into());
        }
        rest = rest[eq + 1..].trim_start();
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => value.push(c),
                }
            }
            // The option's name only: its value may be a password.
            let end = end.ok_or_else(|| format!("the value of {key} has no closing quote"))?;
            rest = quoted[end + 1..].trim_start();
            value
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let value = rest[..end].to_string();
            rest = rest[end..].trim_start();
            value
        };
        options.insert(key, value);
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAAS: &str = r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret" user_admin="admin-secret" user_alice="alice \"quoted\" secret";"#;

    #[test]
    fn jaas_options_are_read_as_kafka_writes_them() {
        let options = parse_jaas(JAAS).unwrap();
        assert_eq!(options["user_alice"], "alice \"quoted\" secret");
        assert_eq!(options["username"], "admin");
        assert!(parse_jaas("PlainLoginModule required user_a=\"x\"").is_err(), "no ';'");
        let err = parse_jaas("PlainLoginModule required user_a=\"hunter2;").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn plain_checks_user_and_password() {
        let mut c = BrokerConfig::default();
        c.set("listener.name.sasl_plaintext.sasl.enabled.mechanisms", "PLAIN").unwrap();
        c.set("listener.name.sasl_plaintext.plain.sasl.jaas.config", JAAS).unwrap();
        let sasl = SaslSettings::new(&c, "SASL_PLAINTEXT").unwrap();
        assert_eq!(sasl.authenticate_plain(b"\0admin\0admin-secret"), Ok("admin".into()));
        assert_eq!(sasl.authenticate_plain(b"admin\0admin\0admin-secret"), Ok("admin".into()));
        assert_eq!(sasl.authenticate_plain(b"\0admin\0wrong"), Err(PLAIN_FAILED));
        assert_eq!(sasl.authenticate_plain(b"\0mallory\0admin-secret"), Err(PLAIN_FAILED));
        assert!(sasl.authenticate_plain(b"admin-secret").is_err());
        assert!(!format!("{sasl:?}").contains("secret"));
        // Another listener without the setting: GSSAPI, Kafka's default, is refused by name.
        let err = SaslSettings::new(&c, "SASL_SSL").unwrap_err();
        assert!(err.contains("GSSAPI"), "{err}");
    }

    #[test]
    fn session_lifetimes_are_looked_up_as_kafka_does() {
        let mut c = BrokerConfig::default();
        c.set("listener.name.sasl_plaintext.sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-512").unwrap();
        c.set("listener.name.sasl_plaintext.plain.sasl.jaas.config", JAAS).unwrap();
        let sasl = SaslSettings::new(&c, "SASL_PLAINTEXT").unwrap();
        assert_eq!(sasl.session_lifetime(Mechanism::Plain), None, "Kafka's default 0: sessions never end");
        c.set("connections.max.reauth.ms", "60000").unwrap();
        c.set("listener.name.sasl_plaintext.scram-sha-512.connections.max.reauth.ms", "5000").unwrap();
        let sasl = SaslSettings::new(&c, "SASL_PLAINTEXT").unwrap();
        assert_eq!(sasl.session_lifetime(Mechanism::Plain), Some(Duration::from_secs(60)));
        assert_eq!(sasl.session_lifetime(Mechanism::Scram(ScramMechanism::Sha512)), Some(Duration::from_secs(5)));
        c.set("listener.name.sasl_plaintext.plain.connections.max.reauth.ms", "0").unwrap();
        assert_eq!(SaslSettings::new(&c, "SASL_PLAINTEXT").unwrap().session_lifetime(Mechanism::Plain), None);
        c.set("connections.max.reauth.ms", "soon").unwrap();
        c.set("listener.name.sasl_plaintext.plain.connections.max.reauth.ms", "soon").unwrap();
        let err = SaslSettings::new(&c, "SASL_PLAINTEXT").unwrap_err();
        assert!(err.contains("plain.connections.max.reauth.ms=soon"), "{err}");
    }

    #[test]
    fn scram_needs_no_jaas_users_and_mixes_with_plain() {
        let mut c = BrokerConfig::default();
        c.set("listener.name.sasl_plaintext.sasl.enabled.mechanisms", "SCRAM-SHA-256,SCRAM-SHA-512").unwrap();
        let sasl = SaslSettings::new(&c, "SASL_PLAINTEXT").unwrap();
        assert_eq!(sasl.mechanism_names(), vec!["SCRAM-SHA-256", "SCRAM-SHA-512"]);
        c.set("listener.name.sasl_ssl.sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-512").unwrap();
        c.set("listener.name.sasl_ssl.plain.sasl.jaas.config", JAAS).unwrap();
        let sasl = SaslSettings::new(&c, "SASL_SSL").unwrap();
        assert_eq!(sasl.mechanism_names(), vec!["PLAIN", "SCRAM-SHA-512"]);
        c.set("listener.name.sasl_ssl.sasl.enabled.mechanisms", "SCRAM-SHA-1").unwrap();
        assert!(SaslSettings::new(&c, "SASL_SSL").unwrap_err().contains("SCRAM-SHA-1"));
    }
}
