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

/// The client side of a SCRAM exchange (a broker logging in to another
/// broker, `sasl.mechanism.inter.broker.protocol=SCRAM-SHA-*`).
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: String,
    client_first_bare: String,
    nonce: String,
    /// The ServerSignature expected in server-final, once client-final is made.
    expected_server_signature: Option<Vec<u8>>,
}

/// Kafka brokers refuse credentials above this many iterations (ScramMechanism's
/// maximum); a server asking for more is not a Kafka broker to wait on.
const MAX_ITERATIONS: u32 = 16_384;

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient").field("mechanism", &self.mechanism).finish_non_exhaustive()
    }
}

impl ScramClient {
    pub fn new(mechanism: ScramMechanism, user: &str, password: &str) -> Result<ScramClient, String> {
        let nonce = server_nonce().map_err(|()| "no randomness for a SCRAM nonce".to_string())?;
        let user = user.replace('=', "=3D").replace(',', "=2C");
        Ok(ScramClient {
            mechanism,
            password: password.to_string(),
            client_first_bare: format!("n={user},r={nonce}"),
            nonce,
            expected_server_signature: None,
        })
    }

    /// The client's nonce (the server's nonce must extend it).
    pub fn client_nonce(&self) -> &str {
        &self.nonce
    }

    /// client-first-message (no channel binding, no authorization id).
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// client-final-message from the server's first message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let server_first = std::str::from_utf8(server_first).map_err(|_| "server-first-message is not UTF-8".to_string())?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for field in server_first.split(',') {
            match field.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(BASE64.decode(v).map_err(|_| "server-first-message: salt is not base64".to_string())?),
                Some(("i", v)) => iterations = Some(v.parse::<u32>().map_err(|_| "server-first-message: bad iteration count".to_string())?),
                Some(("e", v)) => return Err(format!("the server refused: {v}")),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err("server-first-message lacks r=, s= or i=".into());
        };
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err("server-first-message: the nonce does not extend the client's".into());
        }
        if iterations == 0 || iterations > MAX_ITERATIONS {
            return Err(format!("server-first-message: {iterations} iterations (at most {MAX_ITERATIONS})"));
        }
        let salted = self.mechanism.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = self.mechanism.hmac(&salted, b"Client Key");
        let stored_key = self.mechanism.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = self.mechanism.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
        let server_key = self.mechanism.hmac(&salted, b"Server Key");
        self.expected_server_signature = Some(self.mechanism.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Checks server-final-message: the server proves it knows the credential too.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(server_final).map_err(|_| "server-final-message is not UTF-8".to_string())?;
        if let Some(error) = text.strip_prefix("e=") {
            return Err(format!("the server refused: {error}"));
        }
        let signature = text
            .split(',')
            .find_map(|f| f.strip_prefix("v="))
            .and_then(|v| BASE64.decode(v).ok())
            .ok_or_else(|| "server-final-message has no verifier".to_string())?;
        let expected = self.expected_server_signature.as_deref().ok_or_else(|| "server-final-message before client-final".to_string())?;
        if bool::from(signature.ct_eq(expected)) {
            Ok(())
        } else {
            Err("the server's signature does not match: it does not hold this user's credential".into())
        }
    }
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
    fn the_client_logs_in_to_the_server_side_and_checks_its_signature() {
        for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let stored = credential(mechanism, "broker-secret");
            for (password, ok) in [("broker-secret", true), ("wrong", false)] {
                let mut client = ScramClient::new(mechanism, "broker,1", password).unwrap();
                let lookup = |user: &str| (user == "broker,1").then(|| stored.clone());
                let (exchange, server_first) = server_first(mechanism, &client.client_first(), lookup).unwrap();
                let client_final = client.client_final(&server_first).unwrap();
                match super::server_final(exchange, &client_final) {
                    Ok((user, server_final)) => {
                        assert!(ok, "{password}");
                        assert_eq!(user, "broker,1");
                        client.verify_server_final(&server_final).unwrap();
                        assert!(client.verify_server_final(b"v=AAAA").is_err(), "a wrong signature is refused");
                    }
                    Err(_) => assert!(!ok, "{password}"),
                }
            }
        }
        let mut client = ScramClient::new(ScramMechanism::Sha256, "u", "p").unwrap();
        assert!(client.client_final(b"r=other,s=AAAA,i=4096").is_err(), "a nonce that is not ours");
        assert!(client.client_final(b"e=unknown-user").is_err());
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
