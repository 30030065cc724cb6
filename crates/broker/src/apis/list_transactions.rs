//! ListTransactions (key 66): the transactional ids this coordinator knows,
//! filtered by state, producer id, minimum running time (v1+) and id
//! pattern (v2+, a regular expression).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId};
use kafka_protocol::protocol::StrBytes;

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::txn_coordinator::TxnState;
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: ListTransactionsRequest) -> Reply<ListTransactionsResponse> {
    // Kafka: only the transactional ids the caller may DESCRIBE are listed.
    let authz = Authz::new(broker, ctx);
    let mut states = Vec::new();
    let mut unknown = Vec::new();
    for name in &req.state_filters {
        match TxnState::from_name(name) {
            Some(state) => states.push(state),
            None => unknown.push(name.clone()),
        }
    }
    let pattern = match req.transactional_id_pattern.as_deref().filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => match regex::Regex::new(&format!("^(?:{p})$")) {
            Ok(re) => Some(re),
            Err(_) => return Reply::Now(ListTransactionsResponse::default().with_error_code(ResponseError::InvalidRegularExpression.code())),
        },
    };
    if broker.txns.loading() {
        // Kafka's answer while any state partition led here is loading.
        return Reply::Now(ListTransactionsResponse::default().with_error_code(ResponseError::CoordinatorLoadInProgress.code()));
    }
    let producer_ids: Vec<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    // Every state filter unknown: nothing can match (Kafka).
    let listed = if !req.state_filters.is_empty() && states.is_empty() {
        Vec::new()
    } else {
        broker.txns.list(&states, &producer_ids, req.duration_filter)
    };
    let transactions = listed
        .into_iter()
        .filter(|t| pattern.as_ref().is_none_or(|re| re.is_match(&t.transactional_id)))
        .filter(|t| authz.transactional_id(operation::DESCRIBE, &t.transactional_id))
        .map(|t| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(t.transactional_id)))
                .with_producer_id(ProducerId(t.meta.producer_id))
                .with_transaction_state(StrBytes::from_static_str(t.meta.state.name()))
        })
        .collect();
    Reply::Now(ListTransactionsResponse::default().with_unknown_state_filters(unknown).with_transaction_states(transactions))
}
