//! FindCoordinator (key 10): this broker coordinates every group and every
//! transactional id. Batched keys from v4.
//!
//! A transaction key creates `__transaction_state` on first use, as Kafka
//! does; COORDINATOR_NOT_AVAILABLE if that fails.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Reply, RequestContext};
use crate::Broker;

const GROUP_KEY_TYPE: i8 = 0;
const TRANSACTION_KEY_TYPE: i8 = 1;
/// KIP-932 share groups: not served (Kafka with share groups off answers
/// INVALID_REQUEST with an empty message).
const SHARE_KEY_TYPE: i8 = 2;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: FindCoordinatorRequest) -> Reply<FindCoordinatorResponse> {
    let host = StrBytes::from_string(broker.config.advertised_host.clone());
    let port = broker.config.advertised_port;
    let node = BrokerId(broker.config.node_id);
    // Kafka serves any key, the empty group id included (it hashes to a
    // partition like any other): the id is checked by the group APIs.
    let answer = || -> Result<(), (ResponseError, Option<&'static str>)> {
        match req.key_type {
            GROUP_KEY_TYPE => Ok(()),
            TRANSACTION_KEY_TYPE => broker.txns.ensure_topic().map_err(|e| (e, None)),
            SHARE_KEY_TYPE => Err((ResponseError::InvalidRequest, None)),
            _ => Err((ResponseError::InvalidRequest, Some("unknown coordinator key type"))),
        }
    };
    if ctx.version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key.clone());
                match answer() {
                    Ok(()) => c.with_node_id(node).with_host(host.clone()).with_port(port),
                    Err((code, msg)) => c
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(code.code())
                        .with_error_message(Some(StrBytes::from_static_str(msg.unwrap_or("")))),
                }
            })
            .collect();
        return Reply::Now(FindCoordinatorResponse::default().with_coordinators(coordinators));
    }
    let response = FindCoordinatorResponse::default();
    Reply::Now(match answer() {
        // v1-3 carry the error's name on success too: Kafka sends "NONE".
        Ok(()) => response.with_node_id(node).with_host(host).with_port(port).with_error_message(Some(StrBytes::from_static_str("NONE"))),
        Err((code, msg)) => response
            .with_node_id(BrokerId(-1))
            .with_port(-1)
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_static_str(msg.unwrap_or("")))),
    })
}
