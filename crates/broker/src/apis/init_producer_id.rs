//! InitProducerId (key 22): producer ids for idempotent producers, and for
//! transactional ones through the transaction coordinator (a new id, or the
//! epoch bumped to fence the previous producer of the transactional id).

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use runnel_controller::acl::{operation, resource_type};

use super::{Authz, Reply, RequestContext};
use crate::Broker;

/// How long a request waits for a producer-id block from the controller before it
/// is answered COORDINATOR_LOAD_IN_PROGRESS (retriable; Kafka answers at once).
const BLOCK_WAIT: Duration = Duration::from_secs(3);

/// A fresh producer id from this broker's block, without waiting.
fn allocate(broker: &Broker) -> Result<i64, ResponseError> {
    broker.producer_ids.try_next().map_err(|e| {
        tracing::info!(error = %e, "InitProducerId: no producer id available yet");
        e.code
    })
}

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: InitProducerIdRequest) -> Reply<InitProducerIdResponse> {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
        .with_ongoing_txn_producer_id(ProducerId(-1))
        .with_ongoing_txn_producer_epoch(-1);
    // Kafka: WRITE on the transactional id; an idempotent producer needs
    // IDEMPOTENT_WRITE on the cluster or WRITE on some topic.
    let authz = Authz::new(broker, ctx);
    match &req.transactional_id {
        Some(id) if !authz.transactional_id(operation::WRITE, id) => {
            return Reply::Now(response.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()));
        }
        None if !authz.cluster(operation::IDEMPOTENT_WRITE) && !authz.any(operation::WRITE, resource_type::TOPIC) => {
            return Reply::Now(response.with_error_code(ResponseError::ClusterAuthorizationFailed.code()));
        }
        _ => {}
    }
    if let Some(transactional_id) = req.transactional_id {
        let broker = broker.clone();
        let version = ctx.version;
        return Reply::Later(Box::pin(async move {
            // KIP-360: a producer recovering names its id and epoch (-1 when it has none).
            let expected = (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
            // A new transactional id needs a fresh id; an epoch bump does not, so
            // this only waits, and the bump goes on whether a block came or not.
            broker.producer_ids.wait_ready(BLOCK_WAIT).await;
            let result = broker
                .txns
                .init_producer_id(&transactional_id.0, req.transaction_timeout_ms, expected, || allocate(&broker))
                .await;
            match result {
                Ok((id, epoch)) => response.with_producer_id(ProducerId(id)).with_producer_epoch(epoch),
                // Clients before v4 know only INVALID_PRODUCER_EPOCH (Kafka's mapping).
                Err(ResponseError::ProducerFenced) if version < 4 => response.with_error_code(ResponseError::InvalidProducerEpoch.code()),
                Err(e) => response.with_error_code(e.code()),
            }
        }));
    }
    // Without a transactional id Kafka always issues a fresh producer id at
    // epoch 0, whatever id and epoch the request names: an idempotent
    // producer bumps its epoch itself (KIP-360), and granting a bump for an id
    // this broker never issued would let a client pick its own producer id.
    if let Ok(id) = broker.producer_ids.try_next() {
        return Reply::Now(response.with_producer_id(ProducerId(id)).with_producer_epoch(0));
    }
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        match broker.producer_ids.next_id(BLOCK_WAIT).await {
            Ok(id) => response.with_producer_id(ProducerId(id)).with_producer_epoch(0),
            Err(e) => {
                tracing::info!(error = %e, "InitProducerId: no producer id available");
                response.with_error_code(e.code())
            }
        }
    }))
}
