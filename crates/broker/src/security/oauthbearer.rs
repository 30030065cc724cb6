//! SASL/OAUTHBEARER (RFC 7628, KIP-255, KIP-768): the client sends a JWT and
//! the broker validates it, as Kafka's `OAuthBearerSaslServer` with
//! `OAuthBearerValidatorCallbackHandler` does: the signature against a JWKS
//! (`sasl.oauthbearer.jwks.endpoint.url`, a `file:` URL), `exp` (required),
//! `nbf`, the expected issuer and audience, with `clock.skew.seconds` of
//! leeway; the principal is the `sub.claim.name` claim. The JWKS file is read
//! again when it changes (key rotation without a restart). Without a JWKS the
//! listener uses Kafka's default, the unsecured validator: unsigned tokens
//! (`alg: none`) for development only, logged as such at start.
//!
//! A token that fails validation is answered, as Kafka does, with the error
//! challenge `{"status":"invalid_token"}`; the client acknowledges it with
//! 0x01 and then gets SASL_AUTHENTICATION_FAILED.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::config::BrokerConfig;

/// Kafka's error challenge for a token that does not validate.
pub const INVALID_TOKEN_CHALLENGE: &str = r#"{"status":"invalid_token"}"#;

/// The settings, with Kafka's names (also per listener and mechanism:
/// `listener.name.<l>.oauthbearer.sasl.oauthbearer.…`, as Kafka's lookup).
pub const SETTINGS: &[&str] = &[
    "sasl.oauthbearer.jwks.endpoint.url",
    "sasl.oauthbearer.expected.audience",
    "sasl.oauthbearer.expected.issuer",
    "sasl.oauthbearer.sub.claim.name",
    "sasl.oauthbearer.scope.claim.name",
    "sasl.oauthbearer.clock.skew.seconds",
    "sasl.server.callback.handler.class",
];

/// The asymmetric algorithms a JWKS key may sign with (Kafka accepts these through jose4j).
const SIGNED_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// How a listener checks the tokens it is given.
#[derive(Clone)]
pub struct OAuthBearerValidator {
    keys: Option<Arc<JwksFile>>,
    expected_audience: Vec<String>,
    expected_issuer: Option<String>,
    sub_claim: String,
    scope_claim: String,
    clock_skew: Duration,
}

impl std::fmt::Debug for OAuthBearerValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthBearerValidator")
            .field("jwks", &self.keys.as_ref().map(|k| k.path.clone()))
            .field("expected_audience", &self.expected_audience)
            .field("expected_issuer", &self.expected_issuer)
            .finish()
    }
}

/// A token that validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidToken {
    pub principal: String,
    /// When the token expires (ms since the epoch): a session ends then (KIP-368).
    pub expires_at_ms: i64,
    pub scopes: Vec<String>,
}

/// The client's first message (RFC 7628 §3.1): `gs2-header kvsep *kvpair kvsep`,
/// e.g. `n,,\x01auth=Bearer <jwt>\x01\x01`.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientInitialResponse {
    pub token: String,
    pub authorization_id: String,
    pub extensions: BTreeMap<String, String>,
}

impl ClientInitialResponse {
    /// Parses the message; errors are Kafka's wording (they go to the log, not the client).
    pub fn parse(bytes: &[u8]) -> Result<ClientInitialResponse, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "Invalid OAUTHBEARER client first message: not UTF-8".to_string())?;
        let invalid = || "Invalid OAUTHBEARER client first message".to_string();
        // gs2-header: "n," (Kafka accepts no channel binding flag but n), then "a=<authzid>" or nothing, then ",".
        let rest = text.strip_prefix("n,").ok_or_else(invalid)?;
        let (authzid, rest) = rest.split_once(',').ok_or_else(invalid)?;
        let authorization_id = match authzid {
            "" => String::new(),
            // Compared as sent (Kafka does not unescape =2C and =3D either).
            a => a.strip_prefix("a=").filter(|a| !a.is_empty()).ok_or_else(invalid)?.to_string(),
        };
        let pairs = rest.strip_prefix('\u{1}').and_then(|r| r.strip_suffix("\u{1}\u{1}")).ok_or_else(invalid)?;
        let mut token = None;
        let mut extensions = BTreeMap::new();
        for pair in pairs.split('\u{1}') {
            let (key, value) = pair.split_once('=').ok_or_else(invalid)?;
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err(format!("Invalid OAUTHBEARER client first message: invalid key {key:?}"));
            }
            if key == "auth" {
                let (scheme, value) = value.split_once(' ').ok_or_else(invalid)?;
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return Err(invalid());
                }
                token = Some(value.trim().to_string());
            } else {
                extensions.insert(key.to_string(), value.to_string());
            }
        }
        let token = token.filter(|t| !t.is_empty()).ok_or_else(|| "Invalid OAUTHBEARER client first message: no auth=Bearer token".to_string())?;
        Ok(ClientInitialResponse { token, authorization_id, extensions })
    }
}

impl OAuthBearerValidator {
    /// Reads a listener's OAUTHBEARER settings; errors name the setting.
    pub fn new(config: &BrokerConfig, listener: &str) -> Result<OAuthBearerValidator, String> {
        // Kafka's lookup: `listener.name.<l>.oauthbearer.<key>`, then `listener.name.<l>.<key>`, then `<key>`.
        let setting = |key: &str| config.listener_setting(listener, &format!("oauthbearer.{key}")).or_else(|| config.listener_setting(listener, key));
        let error = |key: &str, reason: String| format!("listener {listener}: {key}: {reason}");
        let keys = match setting("sasl.oauthbearer.jwks.endpoint.url").map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => Some(Arc::new(JwksFile::open(url).map_err(|reason| error("sasl.oauthbearer.jwks.endpoint.url", reason))?)),
            None => {
                if let Some(handler) = setting("sasl.server.callback.handler.class").filter(|c| c.ends_with("OAuthBearerValidatorCallbackHandler")) {
                    return Err(error("sasl.oauthbearer.jwks.endpoint.url", format!("{handler} validates tokens against a JWKS: set sasl.oauthbearer.jwks.endpoint.url=file:/path/to/jwks.json")));
                }
                None
            }
        };
        let list = |key: &str| setting(key).map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()).unwrap_or_default();
        let clock_skew = match setting("sasl.oauthbearer.clock.skew.seconds") {
            None => 30,
            Some(v) => v.trim().parse::<u64>().map_err(|_| error("sasl.oauthbearer.clock.skew.seconds", format!("{v} is not a number of seconds")))?,
        };
        Ok(OAuthBearerValidator {
            keys,
            expected_audience: list("sasl.oauthbearer.expected.audience"),
            expected_issuer: setting("sasl.oauthbearer.expected.issuer").map(str::trim).filter(|s| !s.is_empty()).map(String::from),
            sub_claim: setting("sasl.oauthbearer.sub.claim.name").unwrap_or("sub").trim().to_string(),
            scope_claim: setting("sasl.oauthbearer.scope.claim.name").unwrap_or("scope").trim().to_string(),
            clock_skew: Duration::from_secs(clock_skew),
        })
    }

    /// Does this listener accept unsigned tokens (Kafka's unsecured default)?
    pub fn is_unsecured(&self) -> bool {
        self.keys.is_none()
    }

    /// Validates a token. Err: why, for the log (never the token itself).
    pub fn validate(&self, token: &str, now: SystemTime) -> Result<ValidToken, String> {
        let claims = match &self.keys {
            Some(keys) => self.verified_claims(&keys.current(), token)?,
            None => unsecured_claims(token)?,
        };
        let now_s = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        // Kafka's unsecured validator allows no clock skew unless told to.
        let skew = if self.keys.is_some() { self.clock_skew.as_secs_f64() } else { 0.0 };
        let number = |name: &str| -> Result<Option<f64>, String> {
            match claims.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => v.as_f64().map(Some).ok_or_else(|| format!("the {name} claim is not a number")),
            }
        };
        let exp = number("exp")?.ok_or("the token has no exp claim")?;
        if now_s - skew >= exp {
            return Err(format!("the token expired at {exp} (now {now_s:.0}, clock skew {skew}s)"));
        }
        if let Some(nbf) = number("nbf")? {
            if now_s + skew < nbf {
                return Err(format!("the token is not valid before {nbf} (now {now_s:.0})"));
            }
        }
        match number("iat")? {
            // A signed token must say when it was issued (Kafka's BrokerJwtValidator).
            None if self.keys.is_some() => return Err("the token has no iat claim".into()),
            Some(iat) if self.keys.is_none() && iat > now_s + skew => return Err(format!("the token is issued in the future ({iat})")),
            Some(iat) if exp <= iat => return Err(format!("the token expires ({exp}) before it is issued ({iat})")),
            _ => {}
        }
        if let Some(issuer) = &self.expected_issuer {
            if claims.get("iss").and_then(|v| v.as_str()) != Some(issuer.as_str()) {
                return Err(format!("the iss claim {:?} is not the expected issuer {issuer:?}", claims.get("iss")));
            }
        }
        let audience: Vec<&str> = match claims.get("aud") {
            Some(serde_json::Value::String(a)) => vec![a.as_str()],
            Some(serde_json::Value::Array(list)) => list.iter().filter_map(|a| a.as_str()).collect(),
            _ => Vec::new(),
        };
        if !self.expected_audience.is_empty() {
            if !audience.iter().any(|a| self.expected_audience.iter().any(|e| e == a)) {
                return Err(format!("the aud claim {audience:?} holds none of the expected audience {:?}", self.expected_audience));
            }
        } else if self.keys.is_some() && claims.contains_key("aud") {
            // As Kafka (jose4j): an audience the broker was not told to expect is refused.
            return Err("the token has an aud claim but sasl.oauthbearer.expected.audience is not set".into());
        }
        let principal = match claims.get(&self.sub_claim) {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            _ => return Err(format!("the token has no {} claim (sasl.oauthbearer.sub.claim.name)", self.sub_claim)),
        };
        let scopes = match claims.get(&self.scope_claim) {
            // Kafka reads a string as one scope (it does not split it).
            Some(serde_json::Value::String(s)) => vec![s.trim().to_string()],
            Some(serde_json::Value::Array(list)) => list.iter().filter_map(|s| s.as_str()).map(String::from).collect(),
            _ => Vec::new(),
        };
        let expires_at_ms = (exp * 1000.0).min(i64::MAX as f64) as i64;
        Ok(ValidToken { principal, expires_at_ms, scopes })
    }

    /// Checks the signature with the JWKS key the header's `kid` names.
    fn verified_claims(&self, keys: &JwkSet, token: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("the token is not a signed JWT: {e}"))?;
        if !SIGNED_ALGORITHMS.contains(&header.alg) {
            return Err(format!("the token's algorithm {:?} is not accepted (an asymmetric signature is required)", header.alg));
        }
        let jwk = match &header.kid {
            Some(kid) => keys.find(kid).ok_or_else(|| format!("no key with kid {kid:?} in the JWKS"))?,
            // Without a kid: the first key of the algorithm's type (as jose4j picks it).
            None => keys.keys.iter().find(|jwk| key_fits(jwk, header.alg)).ok_or_else(|| format!("the JWKS holds no key for {:?}", header.alg))?,
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("JWKS key {:?} is unusable: {e}", jwk.common.key_id))?;
        let mut validation = Validation::new(header.alg);
        // Claims are checked by `validate` (Kafka's rules); here only the signature.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::new();
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &validation).map_err(|e| format!("the token's signature does not verify: {e}"))?;
        Ok(data.claims)
    }
}

/// Kafka's unsecured validator: `alg` must be `none` and the token unsigned (`header.payload.`).
fn unsecured_claims(token: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("the token is not a JWT (three dot-separated parts)".into());
    };
    if !signature.is_empty() {
        return Err("the unsecured validator accepts only unsigned tokens (configure sasl.oauthbearer.jwks.endpoint.url to validate signed ones)".into());
    }
    let decode = |part: &str, what: &str| -> Result<serde_json::Map<String, serde_json::Value>, String> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).map_err(|_| format!("the token's {what} is not base64url"))?;
        serde_json::from_slice(&bytes).map_err(|_| format!("the token's {what} is not a JSON object"))
    };
    let header = decode(header, "header")?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("none") {
        return Err("the unsecured validator accepts only alg \"none\"".into());
    }
    decode(payload, "payload")
}

/// Can `jwk` verify a signature made with `alg`?
fn key_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => matches!(alg, Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512),
        AlgorithmParameters::EllipticCurve(_) => matches!(alg, Algorithm::ES256 | Algorithm::ES384),
        AlgorithmParameters::OctetKeyPair(_) => alg == Algorithm::EdDSA,
        AlgorithmParameters::OctetKey(_) => false,
    }
}

/// A JWKS file, read again when its modification time changes (as Kafka's
/// file resolver does), so keys rotate without a restart. A rewrite that
/// cannot be read keeps the keys read last (and says so in the log).
struct JwksFile {
    path: PathBuf,
    loaded: parking_lot::Mutex<(Option<SystemTime>, Arc<JwkSet>)>,
}

impl JwksFile {
    /// Reads a JWKS from a `file:` URL (or a plain path). Kafka also fetches
    /// `https:` ones; Runnel refuses them by name rather than ignore them.
    fn open(url: &str) -> Result<JwksFile, String> {
        let path = if let Some(rest) = url.strip_prefix("file://") {
            rest.to_string()
        } else if let Some(rest) = url.strip_prefix("file:") {
            rest.to_string()
        } else if url.starts_with("http://") || url.starts_with("https://") {
            return Err(format!("{url}: Runnel reads the JWKS from a file (file:/path/to/jwks.json); fetching it over HTTP is not supported yet"));
        } else {
            url.to_string()
        };
        let path = PathBuf::from(path);
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let keys = read_jwks(&path)?;
        Ok(JwksFile { path, loaded: parking_lot::Mutex::new((modified, Arc::new(keys))) })
    }

    /// The keys, re-read first if the file changed.
    fn current(&self) -> Arc<JwkSet> {
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        let mut loaded = self.loaded.lock();
        if modified.is_some() && modified != loaded.0 {
            match read_jwks(&self.path) {
                Ok(keys) => {
                    tracing::info!(path = %self.path.display(), keys = keys.keys.len(), "OAUTHBEARER JWKS changed; using its new keys");
                    *loaded = (modified, Arc::new(keys));
                }
                Err(reason) => {
                    tracing::warn!(%reason, "OAUTHBEARER JWKS changed but cannot be used; keeping the keys read before");
                    loaded.0 = modified;
                }
            }
        }
        loaded.1.clone()
    }
}

fn read_jwks(path: &std::path::Path) -> Result<JwkSet, String> {
    let path = path.display();
    let text = std::fs::read_to_string(path.to_string()).map_err(|e| format!("cannot read the JWKS {path}: {e}"))?;
    let keys: JwkSet = serde_json::from_str(&text).map_err(|e| format!("{path} is not a JWKS ({{\"keys\": [...]}}): {e}"))?;
    if keys.keys.is_empty() {
        return Err(format!("{path} holds no key"));
    }
    for jwk in &keys.keys {
        DecodingKey::from_jwk(jwk).map_err(|e| format!("{path}: key {:?} is unusable: {e}", jwk.common.key_id))?;
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(json: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    fn unsigned(claims: &str) -> String {
        format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(claims))
    }

    const NOW: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn the_client_first_message_is_read_as_rfc_7628_writes_it() {
        let m = ClientInitialResponse::parse(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01").unwrap();
        assert_eq!((m.token.as_str(), m.authorization_id.as_str()), ("abc.def.ghi", ""));
        let m = ClientInitialResponse::parse(b"n,a=alice,\x01traceId=123\x01auth=Bearer t\x01\x01").unwrap();
        assert_eq!(m.authorization_id, "alice");
        assert_eq!(m.extensions.get("traceId").map(String::as_str), Some("123"));
        for bad in [&b"auth=Bearer t"[..], b"y,,\x01auth=Bearer t\x01\x01", b"n,a=,\x01auth=Bearer t\x01\x01", b"n,,\x01auth=Bearer t\x01", b"n,,\x01\x01", b"n,,\x01auth=Basic t\x01\x01", b"n,,\x01a b=c\x01auth=Bearer t\x01\x01", b"\xff"] {
            assert!(ClientInitialResponse::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_unsecured_default_checks_exp_nbf_and_the_subject() {
        let mut c = BrokerConfig::default();
        let v = OAuthBearerValidator::new(&c, "SASL_PLAINTEXT").unwrap();
        assert!(v.is_unsecured());
        let ok = unsigned(&format!(r#"{{"sub":"alice","exp":{},"iat":{NOW},"scope":"read write"}}"#, NOW + 60));
        let token = v.validate(&ok, at(NOW)).unwrap();
        assert_eq!(token.principal, "alice");
        assert_eq!(token.expires_at_ms, (NOW as i64 + 60) * 1000);
        assert!(v.validate(&ok, at(NOW + 60)).unwrap_err().contains("expired"), "no clock skew for unsigned tokens");
        assert!(v.validate(&ok, at(NOW + 59)).is_ok());
        assert_eq!(v.validate(&ok, at(NOW)).unwrap().scopes, vec!["read write".to_string()], "Kafka reads a string as one scope");
        assert!(v.validate(&unsigned(&format!(r#"{{"sub":"a","exp":{},"iat":{}}}"#, NOW + 600, NOW + 100)), at(NOW)).unwrap_err().contains("future"));
        assert!(v.validate(&unsigned(&format!(r#"{{"sub":"a","exp":{},"nbf":{}}}"#, NOW + 600, NOW + 100)), at(NOW)).unwrap_err().contains("not valid before"));
        assert!(v.validate(&unsigned(r#"{"sub":"a"}"#), at(NOW)).unwrap_err().contains("no exp"));
        assert!(v.validate(&unsigned(&format!(r#"{{"exp":{}}}"#, NOW + 60)), at(NOW)).unwrap_err().contains("no sub"));
        let signed = format!("{}.{}.c2ln", b64(r#"{"alg":"RS256"}"#), b64(r#"{"sub":"a"}"#));
        assert!(v.validate(&signed, at(NOW)).unwrap_err().contains("only unsigned"));
        c.set("listener.name.sasl_plaintext.oauthbearer.sasl.oauthbearer.sub.claim.name", "client_id").unwrap();
        c.set("sasl.oauthbearer.expected.audience", "runnel, other").unwrap();
        c.set("sasl.oauthbearer.expected.issuer", "https://issuer.example").unwrap();
        let v = OAuthBearerValidator::new(&c, "SASL_PLAINTEXT").unwrap();
        let claims = |aud: &str, iss: &str| unsigned(&format!(r#"{{"client_id":"svc","exp":{},"aud":{aud},"iss":"{iss}"}}"#, NOW + 60));
        assert_eq!(v.validate(&claims(r#"["x","runnel"]"#, "https://issuer.example"), at(NOW)).unwrap().principal, "svc");
        assert!(v.validate(&claims(r#""other""#, "https://issuer.example"), at(NOW)).is_ok());
        assert!(v.validate(&claims(r#""elsewhere""#, "https://issuer.example"), at(NOW)).unwrap_err().contains("aud"));
        assert!(v.validate(&claims(r#""runnel""#, "https://evil.example"), at(NOW)).unwrap_err().contains("iss"));
    }

    #[test]
    fn signed_tokens_verify_against_the_jwks_key_their_kid_names() {
        use ring::signature::KeyPair;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let other = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let other_pair = ring::signature::Ed25519KeyPair::from_pkcs8(other.as_ref()).unwrap();
        let jwk = |kid: &str, pair: &ring::signature::Ed25519KeyPair| {
            format!(r#"{{"kty":"OKP","crv":"Ed25519","kid":"{kid}","use":"sig","x":"{}"}}"#, base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()))
        };
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, format!(r#"{{"keys":[{},{}]}}"#, jwk("k1", &pair), jwk("k2", &other_pair))).unwrap();
        let mut c = BrokerConfig::default();
        c.set("sasl.oauthbearer.jwks.endpoint.url", &format!("file://{}", jwks.display())).unwrap();
        c.set("sasl.oauthbearer.expected.audience", "runnel").unwrap();
        let v = OAuthBearerValidator::new(&c, "SASL_SSL").unwrap();
        assert!(!v.is_unsecured());
        let sign = |kid: Option<&str>, der: &[u8], claims: &str| {
            let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
            header.kid = kid.map(String::from);
            let claims: serde_json::Value = serde_json::from_str(claims).unwrap();
            jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ed_der(der)).unwrap()
        };
        let claims = format!(r#"{{"sub":"svc-billing","aud":"runnel","iat":{NOW},"exp":{}}}"#, NOW + 300);
        assert_eq!(v.validate(&sign(Some("k1"), pkcs8.as_ref(), &claims), at(NOW)).unwrap().principal, "svc-billing");
        assert_eq!(v.validate(&sign(Some("k2"), other.as_ref(), &claims), at(NOW)).unwrap().principal, "svc-billing");
        assert!(v.validate(&sign(Some("k2"), pkcs8.as_ref(), &claims), at(NOW)).unwrap_err().contains("signature"), "signed by another key");
        assert!(v.validate(&sign(Some("k9"), pkcs8.as_ref(), &claims), at(NOW)).unwrap_err().contains("no key with kid"));
        // Without a kid the first key of the type verifies: k1 here.
        assert!(v.validate(&sign(None, pkcs8.as_ref(), &claims), at(NOW)).is_ok());
        assert!(v.validate(&sign(None, other.as_ref(), &claims), at(NOW)).unwrap_err().contains("signature"));
        assert!(v.validate(&sign(Some("k1"), pkcs8.as_ref(), &claims), at(NOW + 300 + 29)).is_ok(), "30 s of clock skew");
        let no_iat = format!(r#"{{"sub":"svc","aud":"runnel","exp":{}}}"#, NOW + 300);
        assert!(v.validate(&sign(Some("k1"), pkcs8.as_ref(), &no_iat), at(NOW)).unwrap_err().contains("iat"));
        let wrong_audience = format!(r#"{{"sub":"svc","aud":"elsewhere","iat":{NOW},"exp":{}}}"#, NOW + 300);
        assert!(v.validate(&sign(Some("k1"), pkcs8.as_ref(), &wrong_audience), at(NOW)).unwrap_err().contains("aud"));
        assert!(v.validate(&sign(Some("k1"), pkcs8.as_ref(), &claims), at(NOW + 400)).unwrap_err().contains("expired"));
        assert!(v.validate(&unsigned(&claims), at(NOW)).is_err(), "alg none with a JWKS");
        // A tampered payload with the original signature.
        let token = sign(Some("k1"), pkcs8.as_ref(), &claims);
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], b64(&claims.replace("svc-billing", "admin")), parts[2]);
        assert!(v.validate(&forged, at(NOW)).unwrap_err().contains("signature"));
        // A JWKS rewritten with only k2: k1's tokens stop validating without a restart.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&jwks, format!(r#"{{"keys":[{}]}}"#, jwk("k2", &other_pair))).unwrap();
        let file = std::fs::File::options().append(true).open(&jwks).unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(5)).unwrap();
        assert!(v.validate(&sign(Some("k1"), pkcs8.as_ref(), &claims), at(NOW)).unwrap_err().contains("no key with kid"));
        assert!(v.validate(&sign(Some("k2"), other.as_ref(), &claims), at(NOW)).is_ok());
        // Without an expected audience a token naming one is refused (as Kafka).
        c.set("sasl.oauthbearer.expected.audience", "").unwrap();
        let v = OAuthBearerValidator::new(&c, "SASL_SSL").unwrap();
        assert!(v.validate(&sign(Some("k2"), other.as_ref(), &claims), at(NOW)).unwrap_err().contains("expected.audience"));
    }

    #[test]
    fn a_validating_handler_without_a_jwks_is_refused_at_start() {
        let mut c = BrokerConfig::default();
        c.set(
            "listener.name.sasl_ssl.oauthbearer.sasl.server.callback.handler.class",
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
        )
        .unwrap();
        let err = OAuthBearerValidator::new(&c, "SASL_SSL").unwrap_err();
        assert!(err.contains("sasl.oauthbearer.jwks.endpoint.url"), "{err}");
        c.set("sasl.oauthbearer.jwks.endpoint.url", "https://idp.example/jwks").unwrap();
        assert!(OAuthBearerValidator::new(&c, "SASL_SSL").unwrap_err().contains("file:"));
        c.set("sasl.oauthbearer.jwks.endpoint.url", "file:/nonexistent/jwks.json").unwrap();
        assert!(OAuthBearerValidator::new(&c, "SASL_SSL").unwrap_err().contains("cannot read"));
    }
}
