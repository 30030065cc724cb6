//! EndTxn (key 26): commit or abort the producer's transaction. Answered
//! once the transaction's markers are written and it is complete.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use super::{Reply, RequestContext};
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: EndTxnRequest) -> Reply<EndTxnResponse> {
    let broker = broker.clone();
    let version = ctx.version;
    Reply::Later(Box::pin(async move {
        if let Err(e) = broker.txns.check_coordinator(&req.transactional_id.0) {
            return EndTxnResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1).with_error_code(e.code());
        }
        let result = broker.txns.end_txn(&req.transactional_id.0, req.producer_id.0, req.producer_epoch, req.committed).await;
        let response = EndTxnResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
        match result {
            Ok(()) => response,
            Err(ResponseError::ProducerFenced) if version < 2 => response.with_error_code(ResponseError::InvalidProducerEpoch.code()),
            Err(e) => response.with_error_code(e.code()),
        }
    }))
}
