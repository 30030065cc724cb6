//! SaslAuthenticate (key 36, v0-2): one SASL token each way.
//!
//! PLAIN takes one round; SCRAM two (client-first → server-first, client-final
//! → server-final), its credentials from this broker's cluster metadata image.
//! A failed authentication is answered SASL_AUTHENTICATION_FAILED with
//! Kafka's message after `connection.failed.authentication.delay.ms`, logged
//! with the peer address (never a secret), and the connection is closed.
//!
//! KIP-368: with `connections.max.reauth.ms` the answer (v1+) carries the
//! session's lifetime; a re-authentication must keep the mechanism and the
//! principal, or it fails and the connection closes.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Reply, RequestContext};
use crate::network::{ConnectionState, SaslProgress};
use crate::security::oauthbearer::{ClientInitialResponse, INVALID_TOKEN_CHALLENGE};
use crate::security::sasl::{Mechanism, SaslSettings};
use crate::security::scram;
use crate::Broker;

/// What one token did: authenticated the user, or asks for the next token.
enum Step {
    /// `credential_expires_at_ms`: when the credential itself ends (an OAUTHBEARER token's `exp`).
    Authenticated { user: String, answer: Vec<u8>, credential_expires_at_ms: Option<i64> },
    Continue { answer: Vec<u8> },
}

/// Kafka's message when a mechanism's exchange itself is malformed.
fn invalid_credentials(mechanism: Mechanism, reauthenticating: bool) -> String {
    let what = if reauthenticating { "re-authentication" } else { "authentication" };
    format!("Authentication failed during {what} due to invalid credentials with SASL mechanism {}", mechanism.name())
}

pub fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: SaslAuthenticateRequest, connection: &mut ConnectionState) -> Reply<SaslAuthenticateResponse> {
    let failed = |message: &str| {
        SaslAuthenticateResponse::default()
            .with_error_code(ResponseError::SaslAuthenticationFailed.code())
            .with_error_message(Some(StrBytes::from_string(message.to_string())))
    };
    let (Some(sasl), SaslProgress::AwaitingToken { mechanism, .. }) = (connection.listener.sasl.clone(), connection.sasl) else {
        // Kafka's answer to a SaslAuthenticate out of turn (no SASL here, no handshake yet, or already authenticated).
        let message = if matches!(connection.sasl, SaslProgress::Authenticated | SaslProgress::NotRequired) {
            "SaslAuthenticate request received after successful authentication"
        } else {
            "Unexpected SaslAuthenticate request"
        };
        return Reply::Now(failed(message).with_error_code(ResponseError::IllegalSaslState.code()));
    };
    // Err: (the client's message, the log's reason).
    let reauthentication = connection.session.reauthenticating_as.clone();
    let outcome: Result<Step, (String, String)> = match mechanism {
        // KIP-368: a re-authentication keeps the mechanism (Kafka's message).
        _ if reauthentication.is_some() && connection.session.mechanism != Some(mechanism) => {
            let message = format!(
                "SASL mechanism '{}' requested by client is not supported for re-authentication of mechanism '{}'",
                mechanism.name(),
                connection.session.mechanism.map_or("?", |m| m.name())
            );
            Err((message.clone(), message))
        }
        Mechanism::Plain => sasl
            .authenticate_plain(&req.auth_bytes)
            .map(|user| Step::Authenticated { user, answer: Vec::new(), credential_expires_at_ms: None })
            .map_err(|message| (message.to_string(), message.to_string())),
        Mechanism::Scram(scram_mechanism) => match connection.scram.take() {
            None => {
                let image = broker.cluster.image();
                scram::server_first(scram_mechanism, &req.auth_bytes, |user| {
                    image.scram_credentials.get(user).and_then(|by_mechanism| by_mechanism.get(&scram_mechanism.type_code())).cloned()
                })
                .map(|(exchange, answer)| {
                    connection.scram = Some(Box::new(exchange));
                    Step::Continue { answer }
                })
                .map_err(|f| (f.client_message, f.reason))
            }
            Some(exchange) => scram::server_final(*exchange, &req.auth_bytes)
                .map(|(user, answer)| Step::Authenticated { user, answer, credential_expires_at_ms: None })
                .map_err(|f| (f.client_message, f.reason)),
        },
        Mechanism::OAuthBearer => oauthbearer_step(&sasl, &req.auth_bytes, connection, reauthentication.is_some()),
    };
    match outcome {
        Ok(Step::Continue { answer }) => Reply::Now(SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(answer))),
        Ok(Step::Authenticated { user, answer, credential_expires_at_ms }) => {
            let principal = format!("User:{user}");
            if let Some(previous) = reauthentication.as_deref().filter(|previous| *previous != principal) {
                // Kafka's message, with its `Type.name` spelling.
                let dotted = |p: &str| p.replacen(':', ".", 1);
                let message = format!("Cannot change principals during re-authentication from {}: {}", dotted(previous), dotted(&principal));
                return fail(connection, &sasl, mechanism, failed(&message), message);
            }
            let what = if reauthentication.is_some() { "SASL re-authentication succeeded" } else { "SASL authentication succeeded" };
            tracing::info!(peer = %connection.peer, listener = %connection.listener.name, %principal, mechanism = mechanism.name(), "{what}");
            connection.principal = principal.as_str().into();
            connection.sasl = SaslProgress::Authenticated;
            // KIP-368: the session's lifetime, told to clients that can re-authenticate (v1+):
            // `connections.max.reauth.ms`, cut short by the credential's own expiry (Kafka's rule).
            let until_credential_expires = credential_expires_at_ms.map(|at| {
                let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
                std::time::Duration::from_millis(at.saturating_sub(now_ms).max(0) as u64)
            });
            let lifetime = match (sasl.session_lifetime(mechanism), until_credential_expires) {
                (Some(configured), Some(credential)) => Some(configured.min(credential)),
                (configured, credential) => configured.or(credential),
            }
            .filter(|lifetime| !lifetime.is_zero());
            connection.session.mechanism = Some(mechanism);
            connection.session.reauthenticating_as = None;
            connection.session.expires_at = lifetime.map(|lifetime| std::time::Instant::now() + lifetime);
            let mut response = SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(answer));
            if ctx.version >= 1 {
                response.session_lifetime_ms = lifetime.map_or(0, |l| i64::try_from(l.as_millis()).unwrap_or(i64::MAX));
            }
            Reply::Now(response)
        }
        Err((message, reason)) => fail(connection, &sasl, mechanism, failed(&message), reason),
    }
}

/// A failed (re-)authentication: logged without secrets, answered after
/// `connection.failed.authentication.delay.ms`, then the connection closes.
fn fail(
    connection: &mut ConnectionState,
    sasl: &SaslSettings,
    mechanism: Mechanism,
    response: SaslAuthenticateResponse,
    reason: String,
) -> Reply<SaslAuthenticateResponse> {
    let what = if connection.session.reauthenticating_as.is_some() { "SASL re-authentication" } else { "SASL authentication" };
    tracing::warn!(
        peer = %connection.peer,
        listener = %connection.listener.name,
        mechanism = mechanism.name(),
        %reason,
        "{what} failed; closing the connection"
    );
    connection.sasl = SaslProgress::Failed;
    let delay = sasl.failed_authentication_delay;
    Reply::Later(Box::pin(async move {
        tokio::time::sleep(delay).await;
        response
    }))
}

/// OAUTHBEARER's two steps (Kafka's `OAuthBearerSaslServer`): the client's
/// first message with its token; a token that does not validate gets the
/// error challenge, and the client's 0x01 acknowledgement of it the failure.
fn oauthbearer_step(sasl: &SaslSettings, token: &[u8], connection: &mut ConnectionState, reauthenticating: bool) -> Result<Step, (String, String)> {
    if let Some(reason) = connection.oauthbearer_failure.take() {
        // The client's answer to the error challenge: the failure, with the challenge as the message.
        return Err((INVALID_TOKEN_CHALLENGE.to_string(), reason));
    }
    let Some(validator) = sasl.oauthbearer.as_ref() else {
        return Err((invalid_credentials(Mechanism::OAuthBearer, reauthenticating), "OAUTHBEARER is not configured on this listener".into()));
    };
    let message = ClientInitialResponse::parse(token).map_err(|reason| (invalid_credentials(Mechanism::OAuthBearer, reauthenticating), reason))?;
    match validator.validate(&message.token, std::time::SystemTime::now()) {
        Ok(valid) => {
            if !message.authorization_id.is_empty() && message.authorization_id != valid.principal {
                let text = format!(
                    "Authentication failed: Client requested an authorization id ({}) that is different from the token's principal name ({})",
                    message.authorization_id, valid.principal
                );
                return Err((text.clone(), text));
            }
            Ok(Step::Authenticated { user: valid.principal, answer: Vec::new(), credential_expires_at_ms: Some(valid.expires_at_ms) })
        }
        Err(reason) => {
            tracing::info!(peer = %connection.peer, listener = %connection.listener.name, %reason, "OAUTHBEARER token refused; sending the error challenge");
            connection.oauthbearer_failure = Some(reason);
            Ok(Step::Continue { answer: INVALID_TOKEN_CHALLENGE.as_bytes().to_vec() })
        }
    }
}
