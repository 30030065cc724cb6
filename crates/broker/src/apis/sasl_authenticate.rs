//! SaslAuthenticate (key 36, v0-2): one SASL token each way.
//!
//! PLAIN takes one round; SCRAM two (client-first → server-first, client-final
//! → server-final), its credentials from this broker's cluster metadata image.
//! A failed authentication is answered SASL_AUTHENTICATION_FAILED with
//! Kafka's message after `connection.failed.authentication.delay.ms`, logged
//! with the peer address (never a secret), and the connection is closed.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Reply, RequestContext};
use crate::network::{ConnectionState, SaslProgress};
use crate::security::sasl::Mechanism;
use crate::security::scram;
use crate::Broker;

/// What one token did: authenticated the user, or asks for the next token.
enum Step {
    Authenticated { user: String, answer: Vec<u8> },
    Continue { answer: Vec<u8> },
}

pub fn handle(broker: &Arc<Broker>, _ctx: &RequestContext, req: SaslAuthenticateRequest, connection: &mut ConnectionState) -> Reply<SaslAuthenticateResponse> {
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
    let outcome: Result<Step, (String, String)> = match mechanism {
        Mechanism::Plain => sasl
            .authenticate_plain(&req.auth_bytes)
            .map(|user| Step::Authenticated { user, answer: Vec::new() })
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
                .map(|(user, answer)| Step::Authenticated { user, answer })
                .map_err(|f| (f.client_message, f.reason)),
        },
    };
    match outcome {
        Ok(Step::Continue { answer }) => Reply::Now(SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(answer))),
        Ok(Step::Authenticated { user, answer }) => {
            let principal = format!("User:{user}");
            tracing::info!(peer = %connection.peer, listener = %connection.listener.name, %principal, mechanism = mechanism.name(), "SASL authentication succeeded");
            connection.principal = principal.as_str().into();
            connection.sasl = SaslProgress::Authenticated;
            Reply::Now(SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(answer)))
        }
        Err((message, reason)) => {
            tracing::warn!(
                peer = %connection.peer,
                listener = %connection.listener.name,
                mechanism = mechanism.name(),
                %reason,
                "SASL authentication failed; closing the connection"
            );
            connection.sasl = SaslProgress::Failed;
            let delay = sasl.failed_authentication_delay;
            let response = failed(&message);
            Reply::Later(Box::pin(async move {
                tokio::time::sleep(delay).await;
                response
            }))
        }
    }
}
