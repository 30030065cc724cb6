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
    // KIP-360: a producer that knows its id asks for an epoch bump.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return Reply::Now(response.with_producer_id(req.producer_id).with_producer_epoch(req.producer_epoch + 1));
    }
    match broker.producer_ids.allocate(broker.replicas.meta()) {
        Ok(id) => Reply::Now(response.with_producer_id(ProducerId(id)).with_producer_epoch(0)),
        Err(e) => {
            tracing::error!(error = %e, "allocating a producer id failed");
            Reply::Now(response.with_error_code(ResponseError::KafkaStorageError.code()))
        }
    }
}
