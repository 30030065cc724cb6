//! AddOffsetsToTxn (key 25): a group's `__consumer_offsets` partition joins
//! the producer's transaction, so the transaction's marker also decides its
//! TxnOffsetCommit offsets.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::coordinator::OFFSETS_TOPIC;
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: AddOffsetsToTxnRequest) -> Reply<AddOffsetsToTxnResponse> {
    // Kafka: WRITE on the transactional id, READ on the group.
    let authz = Authz::new(broker, ctx);
    if !authz.transactional_id(operation::WRITE, &req.transactional_id.0) {
        return Reply::Now(AddOffsetsToTxnResponse::default().with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()));
    }
    if !authz.group(operation::READ, &req.group_id.0) {
        return Reply::Now(AddOffsetsToTxnResponse::default().with_error_code(ResponseError::GroupAuthorizationFailed.code()));
    }
    let broker = broker.clone();
    let version = ctx.version;
    Reply::Later(Box::pin(async move {
        if let Err(e) = broker.txns.check_coordinator(&req.transactional_id.0) {
            return AddOffsetsToTxnResponse::default().with_error_code(e.code());
        }
        let Some(index) = broker.groups.offsets_partition_index(&req.group_id.0) else {
            return AddOffsetsToTxnResponse::default().with_error_code(ResponseError::CoordinatorNotAvailable.code());
        };
        let partitions = [(OFFSETS_TOPIC.to_string(), index)];
        let result = broker.txns.add_partitions(&req.transactional_id.0, req.producer_id.0, req.producer_epoch, &partitions, 0).await;
        let code = match result {
            Ok(()) => 0,
            Err(ResponseError::ProducerFenced) if version < 2 => ResponseError::InvalidProducerEpoch.code(),
            Err(e) => e.code(),
        };
        AddOffsetsToTxnResponse::default().with_error_code(code)
    }))
}
