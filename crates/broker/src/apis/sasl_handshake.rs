//! SaslHandshake (key 17, v0-1): the client names its SASL mechanism.
//!
//! On a SASL listener, before authentication: an enabled mechanism moves the
//! connection on to SaslAuthenticate; another gets UNSUPPORTED_SASL_MECHANISM
//! with the enabled ones, and the connection is closed. Anywhere else (a
//! listener without SASL, or a second handshake) it is ILLEGAL_SASL_STATE, as
//! Kafka answers, except a handshake after authentication on a listener with
//! `connections.max.reauth.ms`: that begins a KIP-368 re-authentication
//! (`apis/mod.rs` moves the connection back here).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Reply, RequestContext};
use crate::network::{ConnectionState, SaslProgress};
use crate::security::sasl::Mechanism;

pub fn handle(ctx: &RequestContext, req: SaslHandshakeRequest, connection: &mut ConnectionState) -> Reply<SaslHandshakeResponse> {
    let Some(sasl) = connection.listener.sasl.clone() else {
        return Reply::Now(SaslHandshakeResponse::default().with_error_code(ResponseError::IllegalSaslState.code()));
    };
    let enabled: Vec<StrBytes> = sasl.mechanism_names().into_iter().map(StrBytes::from_static_str).collect();
    if !matches!(connection.sasl, SaslProgress::AwaitingHandshake) {
        return Reply::Now(SaslHandshakeResponse::default().with_error_code(ResponseError::IllegalSaslState.code()).with_mechanisms(enabled));
    }
    match Mechanism::parse(req.mechanism.as_str()).filter(|m| sasl.mechanisms.contains(m)) {
        Some(mechanism) => {
            connection.sasl = SaslProgress::AwaitingToken { mechanism, handshake_version: ctx.version };
            Reply::Now(SaslHandshakeResponse::default().with_mechanisms(enabled))
        }
        None => {
            tracing::info!(peer = %connection.peer, listener = %connection.listener.name, mechanism = %req.mechanism, "SASL mechanism not enabled; closing the connection");
            connection.sasl = SaslProgress::Failed;
            Reply::Now(SaslHandshakeResponse::default().with_error_code(ResponseError::UnsupportedSaslMechanism.code()).with_mechanisms(enabled))
        }
    }
}
