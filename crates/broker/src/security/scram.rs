//! SASL/SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), the server side,
//! with Kafka's SCRAM extensions (KIP-84/KIP-48: `tokenauth=true` asks for
//! delegation-token authentication, which Runnel refuses: it has no tokens).
//!
//! The credentials are the cluster metadata's (`MetadataImage::scram_credentials`,
//! written by AlterUserScramCredentials): salt, iterations, StoredKey and
//! ServerKey, never a password. The crypto is ring's (HMAC, SHA-2, PBKDF2, the
//! nonce's randomness); key comparisons are constant-time (`subtle`).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};
use runnel_controller::image::ScramCredential;
use subtle::ConstantTimeEq;

/// Kafka's ScramMechanism: its type code on the wire and in the metadata records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub fn from_type(code: i8) -> Option<ScramMechanism> {
        match code {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    pub fn type_code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            ScramMechanism::Sha256 => hmac::HMAC_SHA256,
            ScramMechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest_algorithm(self) -> &'static digest::Algorithm {
        match self {
            ScramMechanism::Sha256 => &digest::SHA256,
            ScramMechanism::Sha512 => &digest::SHA512,
        }
    }

    fn pbkdf2_algorithm(self) -> pbkdf2::Algorithm {
        match self {
            ScramMechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramMechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    /// The hash's output length: the length of every key and proof.
    pub fn key_len(self) -> usize {
        self.digest_algorithm().output_len()
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac_algorithm(), key), data).as_ref().to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest_algorithm(), data).as_ref().to_vec()
    }

    /// SaltedPassword := Hi(Normalize(password), salt, i), Hi being PBKDF2 with HMAC.
    /// (Used by tests; clients compute it and send it with AlterUserScramCredentials.)
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.key_len()];
        let iterations = std::num::NonZeroU32::new(iterations).unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(self.pbkdf2_algorithm(), iterations, salt, password, &mut out);
        out
    }

    /// (StoredKey, ServerKey) from a salted password, what the metadata keeps:
    /// StoredKey := H(HMAC(SaltedPassword, "Client Key")), ServerKey := HMAC(SaltedPassword, "Server Key").
    pub fn stored_and_server_keys(self, salted_password: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let client_key = self.hmac(salted_password, b"Client Key");
        (self.hash(&client_key), self.hmac(salted_password, b"Server Key"))
    }
}

/// Kafka's message for any failed SCRAM authentication (it does not tell the
/// client whether the user exists).
pub fn failed_message(mechanism: ScramMechanism) -> String {
    format!("Authentication failed during authentication due to invalid credentials with SASL mechanism {}", mechanism.name())
}

/// Why an exchange failed: what the client is told and what the log says (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramFailure {
    pub client_message: String,
    pub reason: String,
}

impl ScramFailure {
    fn new(mechanism: ScramMechanism, reason: impl Into<String>) -> ScramFailure {
        ScramFailure { client_message: failed_message(mechanism), reason: reason.into() }
    }
}

/// A connection between the client's first and final message.
#[derive(Clone)]
pub struct ScramExchange {
    mechanism: ScramMechanism,
    user: String,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    /// Client nonce + server nonce.
    nonce: String,
    credential: ScramCredential,
}

impl std::fmt::Debug for ScramExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramExchange").field("mechanism", &self.mechanism).field("user", &self.user).finish_non_exhaustive()
    }
}

impl ScramExchange {
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }
}

/// Reads the client-first-message and answers the server-first-message.
/// `credential_of(user)` looks the user's credential for this mechanism up.
pub fn server_first(
    mechanism: ScramMechanism,
    token: &[u8],
    credential_of: impl FnOnce(&str) -> Option<ScramCredential>,
) -> Result<(ScramExchange, Vec<u8>), ScramFailure> {
    let fail = |reason: &str| ScramFailure::new(mechanism, reason);
    let message = std::str::from_utf8(token).map_err(|_| fail("the client-first message is not UTF-8"))?;
    // gs2-header: "n," [ "a=" saslname ] "," — Kafka's clients never ask for channel binding.
    let rest = message.strip_prefix("n,").ok_or_else(|| fail("the client-first message must start with 'n,' (no channel binding)"))?;
    let comma = rest.find(',').ok_or_else(|| fail("invalid client-first message format"))?;
    let authzid = match &rest[..comma] {
        "" => None,
        a => Some(decode_saslname(a.strip_prefix("a=").ok_or_else(|| fail("invalid authorization id in the client-first message"))?).ok_or_else(|| fail("invalid authorization id"))?),
    };
    let gs2_header = message[..2 + comma + 1].to_string();
    let bare = &rest[comma + 1..];
    let mut attributes = bare.split(',');
    let user = attributes
        .next()
        .and_then(|a| a.strip_prefix("n="))
        .and_then(decode_saslname)
        .ok_or_else(|| fail("invalid or missing user name (n=) in the client-first message"))?;
    let client_nonce = attributes
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b)))
        .ok_or_else(|| fail("invalid or missing nonce (r=) in the client-first message"))?;
    // Kafka's extensions: key=value pairs after the nonce.
    let mut token_auth = false;
    for extension in attributes {
        let (key, value) = extension.split_once('=').ok_or_else(|| fail("invalid extension in the client-first message"))?;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) || value.is_empty() {
            return Err(fail("invalid extension in the client-first message"));
        }
        if key == "tokenauth" && value.eq_ignore_ascii_case("true") {
            token_auth = true;
        }
    }
    if token_auth {
        return Err(fail("delegation token authentication (tokenauth) is not supported"));
    }
    let credential = credential_of(&user).ok_or_else(|| fail(&format!("no {} credential for user {user:?}", mechanism.name())))?;
    if let Some(authzid) = authzid {
        if authzid != user {
            return Err(ScramFailure {
                client_message: "Authentication failed: Client requested an authorization id that is different from username".into(),
                reason: "the authorization id differs from the user name".into(),
            });
        }
    }
    let iterations = u32::try_from(credential.iterations).unwrap_or(0);
    if iterations < runnel_controller::controller::SCRAM_MIN_ITERATIONS as u32 {
        return Err(fail("the stored credential has too few iterations"));
    }
    let nonce = format!("{client_nonce}{}", server_nonce().map_err(|()| fail("no randomness for the server nonce"))?);
    let server_first = format!("r={nonce},s={},i={iterations}", BASE64.encode(&credential.salt));
    let answer = server_first.clone().into_bytes();
    let exchange =
        ScramExchange { mechanism, user, gs2_header, client_first_bare: bare.to_string(), server_first, nonce, credential };
    Ok((exchange, answer))
}

/// Checks the client-final-message's proof; answers the server-final-message
/// (the server's signature) and the authenticated user.
pub fn server_final(exchange: ScramExchange, token: &[u8]) -> Result<(String, Vec<u8>), ScramFailure> {
    let mechanism = exchange.mechanism;
    let fail = |reason: &str| ScramFailure::new(mechanism, reason);
    let message = std::str::from_utf8(token).map_err(|_| fail("the client-final message is not UTF-8"))?;
    let proof_at = message.rfind(",p=").ok_or_else(|| fail("no proof (p=) in the client-final message"))?;
    let without_proof = &message[..proof_at];
    let proof = BASE64.decode(&message[proof_at + 3..]).map_err(|_| fail("the proof is not base64"))?;
    let mut attributes = without_proof.split(',');
    let channel_binding = attributes
        .next()
        .and_then(|a| a.strip_prefix("c="))
        .and_then(|c| BASE64.decode(c).ok())
        .ok_or_else(|| fail("invalid channel binding (c=) in the client-final message"))?;
    if channel_binding != exchange.gs2_header.as_bytes() {
        return Err(fail("the channel binding does not repeat the client-first message's header"));
    }
    if attributes.next().and_then(|a| a.strip_prefix("r=")) != Some(exchange.nonce.as_str()) {
        return Err(fail("the client-final message's nonce is not the exchange's"));
    }
    if proof.len() != mechanism.key_len() {
        return Err(fail("the proof has the wrong length"));
    }
    let auth_message = format!("{},{},{}", exchange.client_first_bare, exchange.server_first, without_proof);
    let client_signature = mechanism.hmac(&exchange.credential.stored_key, auth_message.as_bytes());
    let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(p, s)| p ^ s).collect();
    let stored_key = mechanism.hash(&client_key);
    if !bool::from(stored_key.ct_eq(&exchange.credential.stored_key)) {
        return Err(fail("invalid client proof (wrong password)"));
    }
    let server_signature = mechanism.hmac(&exchange.credential.server_key, auth_message.as_bytes());
    Ok((exchange.user, format!("v={}", BASE64.encode(server_signature)).into_bytes()))
}

/// RFC 5802's saslname: `=2C` is ',' and `=3D` is '='; any other '=' or a ',' is invalid.
fn decode_saslname(name: &str) -> Option<String> {
    if name.is_empty() || name.contains(',') {
        return None;
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3)?;
        match escape {
            "=2C" => out.push(','),
            "=3D" => out.push('='),
            _ => return None,
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

fn server_nonce() -> Result<String, ()> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 24];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| ())?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's side of the exchange, as RFC 5802 computes it.
    fn client_final(mechanism: ScramMechanism, password: &str, client_first_bare: &str, server_first: &str, gs2: &str) -> String {
        let mut fields = server_first.split(',');
        let nonce = fields.next().unwrap().strip_prefix("r=").unwrap();
        let salt = BASE64.decode(fields.next().unwrap().strip_prefix("s=").unwrap()).unwrap();
        let iterations: u32 = fields.next().unwrap().strip_prefix("i=").unwrap().parse().unwrap();
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let stored_key = mechanism.hash(&client_key);
        let without_proof = format!("c={},r={nonce}", BASE64.encode(gs2));
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = mechanism.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
        format!("{without_proof},p={}", BASE64.encode(proof))
    }

    fn credential(mechanism: ScramMechanism, password: &str) -> ScramCredential {
        let salt = b"0123456789abcdef".to_vec();
        let salted = mechanism.salted_password(password.as_bytes(), &salt, 4096);
        let (stored_key, server_key) = mechanism.stored_and_server_keys(&salted);
        ScramCredential { salt, stored_key, server_key, iterations: 4096 }
    }

    #[test]
    fn rfc7677_test_vector_keys() {
        // RFC 7677 section 3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations.
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let mechanism = ScramMechanism::Sha256;
        let credential = {
            let salted = mechanism.salted_password(b"pencil", &salt, 4096);
            let (stored_key, server_key) = mechanism.stored_and_server_keys(&salted);
            ScramCredential { salt: salt.clone(), stored_key, server_key, iterations: 4096 }
        };
        let client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let exchange = ScramExchange {
            mechanism,
            user: "user".into(),
            gs2_header: "n,,".into(),
            client_first_bare: client_first_bare.into(),
            server_first: server_first.into(),
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
            credential,
        };
        let client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let (user, answer) = server_final(exchange, client_final.as_bytes()).unwrap();
        assert_eq!(user, "user");
        assert_eq!(answer, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn a_full_exchange_succeeds_only_with_the_password() {
        for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            for (password, ok) in [("alice-secret", true), ("wrong", false)] {
                let first = "n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL";
                let (exchange, answer) = server_first(mechanism, first.as_bytes(), |u| (u == "alice").then(|| credential(mechanism, "alice-secret"))).unwrap();
                let server_first_message = String::from_utf8(answer).unwrap();
                assert!(server_first_message.starts_with("r=fyko+d2lbbFgONRv9qkxdawL"), "{server_first_message}");
                let last = client_final(mechanism, password, "n=alice,r=fyko+d2lbbFgONRv9qkxdawL", &server_first_message, "n,,");
                let outcome = server_final(exchange, last.as_bytes());
                assert_eq!(outcome.is_ok(), ok, "{mechanism:?} {password}: {outcome:?}");
                if let Err(failure) = outcome {
                    assert_eq!(failure.client_message, failed_message(mechanism));
                    assert!(failure.client_message.ends_with(mechanism.name()));
                }
            }
        }
    }

    #[test]
    fn unknown_users_tokens_and_malformed_messages_fail_with_kafkas_message() {
        let mechanism = ScramMechanism::Sha512;
        let known = |u: &str| (u == "alice").then(|| credential(mechanism, "x"));
        let generic = failed_message(mechanism);
        for bad in [
            "n,,n=bob,r=abc",
            "n,,n=alice,r=abc,tokenauth=true",
            "y,,n=alice,r=abc",
            "n,,r=abc",
            "n,,n=alice",
            "n,,n=al=ice,r=abc",
            "garbage",
        ] {
            let failure = server_first(mechanism, bad.as_bytes(), known).unwrap_err();
            assert_eq!(failure.client_message, generic, "{bad}");
        }
        let failure = server_first(mechanism, b"n,a=bob,n=alice,r=abc", known).unwrap_err();
        assert!(failure.client_message.contains("authorization id"), "{failure:?}");
        // Another extension is accepted and ignored, as Kafka does; an escaped name is decoded.
        assert!(server_first(mechanism, b"n,,n=alice,r=abc,foo=bar", known).is_ok());
        assert!(server_first(mechanism, b"n,a=alice,n=alice,r=abc", known).is_ok());
        assert_eq!(decode_saslname("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        // A replayed final message against a new exchange (another server nonce) fails.
        let (exchange, answer) = server_first(mechanism, b"n,,n=alice,r=abc", known).unwrap();
        let last = client_final(mechanism, "x", "n=alice,r=abc", std::str::from_utf8(&answer).unwrap(), "n,,");
        let (replay_target, _) = server_first(mechanism, b"n,,n=alice,r=abc", known).unwrap();
        assert!(server_final(replay_target, last.as_bytes()).is_err());
        assert!(server_final(exchange, last.as_bytes()).is_ok());
    }
}
