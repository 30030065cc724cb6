//! SaslAuthenticate (key 36, v0-2): one SASL token each way.
//!
//! A failed authentication is answered SASL_AUTHENTICATION_FAILED with
//! Kafka's message after `connection.failed.authentication.delay.ms`, logged
//! with the peer address (never a secret), and the connection is closed.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Reply, RequestContext};
use crate::network::{ConnectionState, SaslProgress};
use crate::security::sasl::Mechanism;

pub fn handle(_ctx: &RequestContext, req: SaslAuthenticateRequest, connection: &mut ConnectionState) -> Reply<SaslAuthenticateResponse> {
    let failed = |message: &str| {
        SaslAuthenticateResponse::default()
            .with_error_code(ResponseError::SaslAuthenticationFailed.code())
            .with_error_message(Some(StrBytes::from_string(message.to_string())))
    };
    let (Some(sasl), SaslProgress::AwaitingToken { mechanism, .. }) = (connection.listener.sasl.clone(), &connection.sasl) else {
        // Kafka's answer to a SaslAuthenticate out of turn (no SASL here, no handshake yet, or already authenticated).
        let message = if matches!(connection.sasl, SaslProgress::Authenticated | SaslProgress::NotRequired) {
            "SaslAuthenticate request received after successful authentication"
        } else {
            "Unexpected SaslAuthenticate request"
        };
        return Reply::Now(failed(message).with_error_code(ResponseError::IllegalSaslState.code()));
    };
    let outcome = match mechanism {
        Mechanism::Plain => sasl.authenticate_plain(&req.auth_bytes),
    };
    match outcome {
        Ok(user) => {
            let principal = format!("User:{user}");
            tracing::info!(peer = %connection.peer, listener = %connection.listener.name, %principal, mechanism = mechanism.name(), "SASL authentication succeeded");
            connection.principal = principal.as_str().into();
            connection.sasl = SaslProgress::Authenticated;
            Reply::Now(SaslAuthenticateResponse::default().with_auth_bytes(Bytes::new()))
        }
        Err(message) => {
            tracing::warn!(
                peer = %connection.peer,
                listener = %connection.listener.name,
                mechanism = mechanism.name(),
                reason = message,
                "SASL authentication failed; closing the connection"
            );
            connection.sasl = SaslProgress::Failed;
            let delay = sasl.failed_authentication_delay;
            let response = failed(message);
            Reply::Later(Box::pin(async move {
                tokio::time::sleep(delay).await;
                response
            }))
        }
    }
}
