//! EndTxn (key 26): commit or abort the producer's transaction. Answered
//! once the transaction's markers are written and it is complete. v5 is a
//! transactions v2 client's (KIP-890): the epoch is bumped and the answer
//! carries the producer id and epoch to go on with.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: EndTxnRequest) -> Reply<EndTxnResponse> {
    if !Authz::new(broker, ctx).transactional_id(operation::WRITE, &req.transactional_id.0) {
        let code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return Reply::Now(EndTxnResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1).with_error_code(code));
    }
    let broker = broker.clone();
    let version = ctx.version;
    Reply::Later(Box::pin(async move {
        if let Err(e) = broker.txns.check_coordinator(&req.transactional_id.0) {
            return EndTxnResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1).with_error_code(e.code());
        }
        // Kafka: the request version says the client's transaction version
        // (a broker pinned below transaction.version 2 treats v5 as v1).
        let client_transaction_version = if version >= 5 && broker.config.transaction_version >= 2 { 2 } else { 0 };
        let new_producer_id = || {
            broker.producer_ids.try_next().map_err(|e| {
                tracing::info!(error = %e, "EndTxn: no producer id available for an exhausted epoch");
                e.code
            })
        };
        let result = broker
            .txns
            .end_txn(&req.transactional_id.0, req.producer_id.0, req.producer_epoch, req.committed, client_transaction_version, new_producer_id)
            .await;
        let response = EndTxnResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
        match result {
            // The fields exist from v5 only.
            Ok((producer_id, producer_epoch)) if version >= 5 => response.with_producer_id(ProducerId(producer_id)).with_producer_epoch(producer_epoch),
            Ok(_) => response,
            Err(ResponseError::ProducerFenced) if version < 2 => response.with_error_code(ResponseError::InvalidProducerEpoch.code()),
            Err(e) => response.with_error_code(e.code()),
        }
    }))
}
