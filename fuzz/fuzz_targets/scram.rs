#![no_main]
//! SASL messages as SaslAuthenticate delivers them to the broker's parsers,
//! and the answers another broker sends to this broker's own SCRAM login.
//! Input: one selector byte, then the peer's bytes. Selector % 5:
//! 0 = PLAIN: `SaslSettings::authenticate_plain` on the rest;
//! 1 = SCRAM-SHA-256, 2 = SCRAM-SHA-512: the rest is the client-first message,
//! 0xFF (never in UTF-8), the client-final message. `scram::server_first` reads
//! the first; when it is accepted, `scram::server_final` reads the final one, in
//! which `@NONCE@` becomes the exchange's nonce (the server's half is random) and
//! `@PROOF@` the right proof for user `alice`, so that whole exchanges, not only
//! rejections, are explored.
//! 3 = OAUTHBEARER: `ClientInitialResponse::parse`, and its token through
//! Kafka's unsecured validator (an unsigned JWT's base64url JSON claims).
//! 4 = the client side (`ScramClient`, an inter-broker or CLI login): the rest
//! is the server-first message (`@NONCE@` becomes the client's nonce), 0xFF,
//! the server-final message.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use ring::{digest, hmac};
use runnel_broker::security::oauthbearer::{ClientInitialResponse, OAuthBearerValidator};
use runnel_broker::security::sasl::SaslSettings;
use runnel_broker::security::scram::{self, ScramMechanism};
use runnel_broker::BrokerConfig;
use runnel_controller::image::ScramCredential;

const PASSWORD: &[u8] = b"alice-secret";
const SALT: &[u8] = b"fuzzing-salt";
const ITERATIONS: u32 = 4096;

fn unsecured_oauthbearer() -> &'static OAuthBearerValidator {
    static VALIDATOR: OnceLock<OAuthBearerValidator> = OnceLock::new();
    VALIDATOR.get_or_init(|| OAuthBearerValidator::new(&BrokerConfig::default(), "SASL_PLAINTEXT").expect("unsecured validator"))
}

fn plain() -> &'static SaslSettings {
    static PLAIN: OnceLock<SaslSettings> = OnceLock::new();
    PLAIN.get_or_init(|| {
        let mut config = BrokerConfig::default();
        config.set("listener.name.sasl_plaintext.sasl.enabled.mechanisms", "PLAIN").expect("setting");
        config
            .set(
                "listener.name.sasl_plaintext.plain.sasl.jaas.config",
                "org.apache.kafka.common.security.plain.PlainLoginModule required user_alice=\"alice-secret\";",
            )
            .expect("setting");
        SaslSettings::new(&config, "SASL_PLAINTEXT").expect("PLAIN settings")
    })
}

/// Alice's salted password and credential (PBKDF2 once per mechanism, not per input).
fn alice(mechanism: ScramMechanism) -> &'static (Vec<u8>, ScramCredential) {
    static SHA256: OnceLock<(Vec<u8>, ScramCredential)> = OnceLock::new();
    static SHA512: OnceLock<(Vec<u8>, ScramCredential)> = OnceLock::new();
    let cell = match mechanism {
        ScramMechanism::Sha256 => &SHA256,
        ScramMechanism::Sha512 => &SHA512,
    };
    cell.get_or_init(|| {
        let salted = mechanism.salted_password(PASSWORD, SALT, ITERATIONS);
        let (stored_key, server_key) = mechanism.stored_and_server_keys(&salted);
        let credential = ScramCredential { salt: SALT.to_vec(), stored_key, server_key, iterations: ITERATIONS as i32 };
        (salted, credential)
    })
}

/// The client's proof (RFC 5802): ClientKey XOR HMAC(StoredKey, AuthMessage).
fn proof(mechanism: ScramMechanism, salted: &[u8], auth_message: &str) -> String {
    let (h, d) = match mechanism {
        ScramMechanism::Sha256 => (hmac::HMAC_SHA256, &digest::SHA256),
        ScramMechanism::Sha512 => (hmac::HMAC_SHA512, &digest::SHA512),
    };
    let client_key = hmac::sign(&hmac::Key::new(h, salted), b"Client Key");
    let stored_key = digest::digest(d, client_key.as_ref());
    let signature = hmac::sign(&hmac::Key::new(h, stored_key.as_ref()), auth_message.as_bytes());
    let proof: Vec<u8> = client_key.as_ref().iter().zip(signature.as_ref()).map(|(k, s)| k ^ s).collect();
    BASE64.encode(proof)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (first, last) = match rest.iter().position(|&b| b == 0xff) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let mechanism = match selector % 5 {
        0 => {
            if let Ok(user) = plain().authenticate_plain(rest) {
                assert_eq!(user, "alice");
            }
            return;
        }
        1 => ScramMechanism::Sha256,
        2 => ScramMechanism::Sha512,
        3 => {
            if let Ok(message) = ClientInitialResponse::parse(rest) {
                assert!(!message.token.is_empty());
                // A fixed clock: the same input always takes the same path.
                let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
                let _ = unsecured_oauthbearer().validate(&message.token, now);
            }
            return;
        }
        _ => {
            let Ok(mut client) = scram::ScramClient::new(ScramMechanism::Sha256, "alice", "alice-secret") else { return };
            let server_first = match std::str::from_utf8(first) {
                Ok(text) => text.replace("@NONCE@", client.client_nonce()).into_bytes(),
                Err(_) => first.to_vec(),
            };
            if client.client_final(&server_first).is_ok() {
                let _ = client.verify_server_final(last);
            }
            return;
        }
    };
    let (salted, credential) = alice(mechanism);
    let Ok((exchange, server_first)) =
        scram::server_first(mechanism, first, |user| (user == "alice").then(|| credential.clone()))
    else {
        return;
    };
    assert_eq!(exchange.user(), "alice");
    let server_first = String::from_utf8(server_first).expect("the server-first message is text");
    let nonce = server_first.strip_prefix("r=").and_then(|s| s.split(',').next()).expect("server-first starts with r=");
    let mut final_message = match std::str::from_utf8(last) {
        Ok(text) => text.replace("@NONCE@", nonce).into_bytes(),
        Err(_) => last.to_vec(),
    };
    if let Some(at) = final_message.windows(9).position(|w| w == b",p=@PROOF") {
        // The proof covers client-first-bare, server-first and the final message up to ",p=".
        let text = String::from_utf8_lossy(&final_message[..at]).into_owned();
        let first_text = std::str::from_utf8(first).expect("accepted, so UTF-8");
        let bare = first_text.splitn(3, ',').nth(2).unwrap_or("");
        let p = proof(mechanism, salted, &format!("{bare},{server_first},{text}"));
        final_message.truncate(at);
        final_message.extend_from_slice(format!(",p={p}").as_bytes());
    }
    if let Ok((user, server_final)) = scram::server_final(exchange, &final_message) {
        assert_eq!(user, "alice");
        assert!(server_final.starts_with(b"v="));
    }
});
