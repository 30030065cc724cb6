//! A partition leader's side of KIP-890 when a transaction's coordinator is
//! another broker (Kafka's `AddPartitionsToTxnManager`): the first
//! transactional batch of a producer on a partition is checked with that
//! coordinator by an inter-broker AddPartitionsToTxn (key 24) before it is
//! appended. A transactions v2 produce adds its partitions (v5,
//! `verify_only` false); an older one asks whether they were added
//! (v4, `verify_only` true; KIP-890 part 1).
//!
//! Checks are queued per coordinator (and per kind) and sent as one request
//! with one entry per transactional id in its `transactions` array, one
//! request in flight per queue: what arrives meanwhile goes in the next one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ProducerId, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::coordinator::hosted::partition_for;
use crate::inter_broker::InterBrokerClient;
use crate::replica_manager::ReplicaManager;
use crate::txn_coordinator::TRANSACTION_STATE_TOPIC;
use crate::Broker;

/// The version a transactions v2 produce's partitions are added with (the
/// coordinator takes the client for a v2 one from it).
const ADD_VERSION: i16 = 5;
/// The version a partition is verified with (KIP-890 part 1).
const VERIFY_VERSION: i16 = 4;
/// How long a check waits for the coordinator's answer; then the produce is
/// refused with a retriable error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One producer's transaction start on some partitions, to add or verify.
pub struct TxnCheck {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<(String, i32)>,
}

/// Per partition of a [`TxnCheck`], in its order, the coordinator's error
/// (None: the partition is in the transaction). Err: no answer for any of
/// them (NETWORK_EXCEPTION when the coordinator could not be reached).
pub type CheckResult = Result<Vec<Option<ResponseError>>, ResponseError>;

/// Adds (`add`: a transactions v2 produce or TxnOffsetCommit) or verifies
/// `check`'s partitions with the transactional id's coordinator: in-process
/// when it is this broker, else over the network. Per partition, the
/// coordinator's error, unmapped (the caller maps it for its own client).
pub async fn add_or_verify(broker: &Broker, add: bool, check: TxnCheck) -> Vec<Option<ResponseError>> {
    let n = check.partitions.len();
    let (id, producer_id, producer_epoch) = (check.transactional_id.as_str(), check.producer_id, check.producer_epoch);
    match broker.txns.check_coordinator(id) {
        Ok(()) if add => vec![broker.txns.add_partitions(id, producer_id, producer_epoch, &check.partitions, 2).await.err(); n],
        Ok(()) => broker.txns.verify_partitions(id, producer_id, producer_epoch, &check.partitions).unwrap_or_else(|e| vec![Some(e); n]),
        Err(ResponseError::NotCoordinator) => match remote_coordinator(broker, id) {
            Ok(coordinator) => broker.add_partitions_to_txn.send_to(coordinator, add, check).await.unwrap_or_else(|e| vec![Some(e); n]),
            Err(e) => vec![Some(e); n],
        },
        Err(e) => vec![Some(e); n],
    }
}

/// The broker that coordinates `transactional_id` by the applied metadata: the
/// leader of its `__transaction_state` partition (as FindCoordinator answers),
/// when that is another broker; else COORDINATOR_NOT_AVAILABLE or NOT_COORDINATOR.
fn remote_coordinator(broker: &Broker, transactional_id: &str) -> Result<i32, ResponseError> {
    let image = broker.cluster.image();
    let topic = image.topic_by_name(TRANSACTION_STATE_TOPIC).ok_or(ResponseError::CoordinatorNotAvailable)?;
    let index = partition_for(transactional_id, topic.partitions.len());
    match topic.partitions.get(&index).map(|p| p.leader) {
        Some(leader) if leader == broker.config.node_id => Err(ResponseError::NotCoordinator),
        Some(leader) if leader >= 0 => Ok(leader),
        _ => Err(ResponseError::CoordinatorNotAvailable),
    }
}

struct Pending {
    check: TxnCheck,
    reply: oneshot::Sender<CheckResult>,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    /// A task is sending this queue's requests.
    sending: bool,
}

pub struct AddPartitionsToTxnManager {
    client: InterBrokerClient,
    /// By (coordinator node, add: v5 add rather than v4 verify).
    queues: Mutex<HashMap<(i32, bool), Queue>>,
}

impl AddPartitionsToTxnManager {
    pub fn new(replicas: &Arc<ReplicaManager>, node_id: i32) -> Arc<AddPartitionsToTxnManager> {
        Arc::new(AddPartitionsToTxnManager {
            client: InterBrokerClient::new(replicas, format!("runnel-partition-leader-{node_id}")),
            queues: Mutex::new(HashMap::new()),
        })
    }

    /// Asks broker `coordinator` to add (`add`) or verify `check`'s partitions.
    pub async fn send_to(self: &Arc<Self>, coordinator: i32, add: bool, check: TxnCheck) -> CheckResult {
        let (reply, answer) = oneshot::channel();
        let key = (coordinator, add);
        let start = {
            let mut queues = self.queues.lock();
            let queue = queues.entry(key).or_default();
            queue.pending.push(Pending { check, reply });
            !std::mem::replace(&mut queue.sending, true)
        };
        if start {
            tokio::spawn(self.clone().drain(key));
        }
        answer.await.unwrap_or(Err(ResponseError::NetworkException))
    }

    /// Sends the queue's checks until it is empty.
    async fn drain(self: Arc<Self>, key: (i32, bool)) {
        loop {
            let batch = {
                let mut queues = self.queues.lock();
                let queue = queues.entry(key).or_default();
                if queue.pending.is_empty() {
                    queue.sending = false;
                    return;
                }
                // A request holds one entry per transactional id; a second check
                // for the same id waits for the next request.
                let mut ids = HashSet::new();
                let (batch, rest): (Vec<Pending>, Vec<Pending>) =
                    std::mem::take(&mut queue.pending).into_iter().partition(|p| ids.insert(p.check.transactional_id.clone()));
                queue.pending = rest;
                batch
            };
            self.send(key, batch).await;
        }
    }

    async fn send(&self, (coordinator, add): (i32, bool), batch: Vec<Pending>) {
        let transactions = batch.iter().map(|p| transaction(&p.check, !add)).collect();
        let request = AddPartitionsToTxnRequest::default().with_transactions(transactions);
        let version = if add { ADD_VERSION } else { VERIFY_VERSION };
        match self.client.call(coordinator, version, &request, REQUEST_TIMEOUT).await {
            Err(why) => {
                tracing::debug!(coordinator, why = %why, "AddPartitionsToTxn to the transaction coordinator failed");
                for p in batch {
                    let _ = p.reply.send(Err(ResponseError::NetworkException));
                }
            }
            Ok(response) => match results_by_transaction(response) {
                Err(error) => {
                    for p in batch {
                        let _ = p.reply.send(Err(error));
                    }
                }
                Ok(mut results) => {
                    for p in batch {
                        let codes = results.remove(&p.check.transactional_id);
                        let _ = p.reply.send(result_for(&p.check, codes));
                    }
                }
            },
        }
    }
}

fn transaction(check: &TxnCheck, verify_only: bool) -> AddPartitionsToTxnTransaction {
    let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for (topic, index) in &check.partitions {
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(*index),
            None => topics.push(AddPartitionsToTxnTopic::default().with_name(TopicName(StrBytes::from_string(topic.clone()))).with_partitions(vec![*index])),
        }
    }
    AddPartitionsToTxnTransaction::default()
        .with_transactional_id(TransactionalId(StrBytes::from_string(check.transactional_id.clone())))
        .with_producer_id(ProducerId(check.producer_id))
        .with_producer_epoch(check.producer_epoch)
        .with_verify_only(verify_only)
        .with_topics(topics)
}

/// Per transactional id, its partitions' error codes; or the error of the
/// whole request (Kafka: a cluster authorization failure is the partition
/// leader's fault, so the producer gets UNKNOWN_SERVER_ERROR).
fn results_by_transaction(response: AddPartitionsToTxnResponse) -> Result<HashMap<String, HashMap<(String, i32), i16>>, ResponseError> {
    if response.error_code != 0 {
        return Err(match ResponseError::try_from_code(response.error_code) {
            Some(ResponseError::ClusterAuthorizationFailed) | None => ResponseError::UnknownServerError,
            Some(e) => e,
        });
    }
    let mut out = HashMap::new();
    for txn in response.results_by_transaction {
        let mut codes = HashMap::new();
        for topic in txn.topic_results {
            for p in topic.results_by_partition {
                codes.insert((topic.name.0.to_string(), p.partition_index), p.partition_error_code);
            }
        }
        out.insert(txn.transactional_id.0.to_string(), codes);
    }
    Ok(out)
}

/// A check's answer from its transaction's partition codes (none: the
/// coordinator left the transaction out of its answer).
fn result_for(check: &TxnCheck, codes: Option<HashMap<(String, i32), i16>>) -> CheckResult {
    let Some(codes) = codes else { return Err(ResponseError::UnknownServerError) };
    Ok(check
        .partitions
        .iter()
        .map(|tp| match codes.get(tp) {
            Some(0) => None,
            Some(code) => Some(ResponseError::try_from_code(*code).unwrap_or(ResponseError::UnknownServerError)),
            // The coordinator said nothing of this partition.
            None => Some(ResponseError::UnknownServerError),
        })
        .collect())
}
