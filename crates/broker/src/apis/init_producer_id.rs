//! InitProducerId (key 22): producer ids for idempotent producers.
//!
//! Transactions are not implemented yet: a request with a transactional id
//! gets UNSUPPORTED_VERSION, which clients report as "the broker does not
//! support transactions" instead of retrying forever.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{Reply, RequestContext};
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, _ctx: &RequestContext, req: InitProducerIdRequest) -> Reply<InitProducerIdResponse> {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
        .with_ongoing_txn_producer_id(ProducerId(-1))
        .with_ongoing_txn_producer_epoch(-1);
    if req.transactional_id.is_some() {
        return Reply::Now(response.with_error_code(ResponseError::UnsupportedVersion.code()));
    }
    // Without a transactional id Kafka always issues a fresh producer id at
    // epoch 0, whatever id and epoch the request names: an idempotent
    // producer bumps its epoch itself (KIP-360), and granting a bump for an id
    // this broker never issued would let a client pick its own producer id.
    match broker.producer_ids.allocate(broker.replicas.meta()) {
        Ok(id) => Reply::Now(response.with_producer_id(ProducerId(id)).with_producer_epoch(0)),
        Err(e) => {
            tracing::error!(error = %e, "allocating a producer id failed");
            Reply::Now(response.with_error_code(ResponseError::KafkaStorageError.code()))
        }
    }
}
