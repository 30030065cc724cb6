//! DescribeQuorum (key 55, KIP-595): the metadata quorum (`__cluster_metadata`
//! partition 0) as its leader sees it: leader id, epoch (the Raft term), high
//! watermark, and per voter its log end offset and when it last fetched and
//! was last caught up. Any broker answers: a follower asks the leader over the
//! controller connection, as Kafka's brokers forward it to the controller.
//! Every Runnel node is a voter (combined mode), so there are no observers.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{Listener, Node, PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use runnel_controller::{QuorumInfo, SubmitError};

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::Broker;

/// The metadata log's topic-partition, as Kafka names it.
pub const METADATA_TOPIC: &str = "__cluster_metadata";
const METADATA_PARTITION: i32 = 0;

/// The controller listener's name in `nodes` when `controller.listener.names` gives none.
const DEFAULT_CONTROLLER_LISTENER: &str = "CONTROLLER";

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: DescribeQuorumRequest) -> Reply<DescribeQuorumResponse> {
    // Kafka answers only a request for exactly __cluster_metadata-0; anything
    // else gets UNKNOWN_TOPIC_OR_PARTITION on every partition it named.
    // Kafka: DESCRIBE on the cluster, refused on every partition named.
    if !Authz::new(broker, ctx).cluster(operation::DESCRIBE) {
        let topics = req
            .topics
            .iter()
            .map(|t| {
                TopicData::default().with_topic_name(t.topic_name.clone()).with_partitions(
                    t.partitions.iter().map(|p| partition_error(p.partition_index, ResponseError::ClusterAuthorizationFailed, None)).collect(),
                )
            })
            .collect();
        return Reply::Now(DescribeQuorumResponse::default().with_topics(topics));
    }
    let valid = req.topics.len() == 1
        && req.topics[0].topic_name.0.as_str() == METADATA_TOPIC
        && req.topics[0].partitions.len() == 1
        && req.topics[0].partitions[0].partition_index == METADATA_PARTITION;
    if !valid {
        let topics = req
            .topics
            .iter()
            .map(|t| {
                TopicData::default().with_topic_name(t.topic_name.clone()).with_partitions(
                    t.partitions.iter().map(|p| partition_error(p.partition_index, ResponseError::UnknownTopicOrPartition, None)).collect(),
                )
            })
            .collect();
        return Reply::Now(DescribeQuorumResponse::default().with_topics(topics));
    }
    let broker = broker.clone();
    let version = ctx.version;
    Reply::Later(Box::pin(async move {
        let partition = match broker.cluster.quorum().describe_quorum().await {
            Ok(info) => partition_data(&info),
            Err(e) => {
                let code = match &e {
                    SubmitError::Refused(refusal) => ResponseError::try_from_code(refusal.code).unwrap_or(ResponseError::UnknownServerError),
                    SubmitError::NotLeader { .. } => ResponseError::NotLeaderOrFollower,
                    SubmitError::Unavailable(_) => ResponseError::RequestTimedOut,
                };
                partition_error(METADATA_PARTITION, code, Some(format!("the metadata quorum did not answer: {e}")))
            }
        };
        let described = partition.error_code == 0;
        let mut response = DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
            .with_partitions(vec![partition])]);
        if version >= 2 && described {
            response = response.with_nodes(voter_nodes(&broker));
        }
        response
    }))
}

fn partition_error(partition_index: i32, error: ResponseError, message: Option<String>) -> PartitionData {
    let message = message.unwrap_or_else(|| error.to_string());
    PartitionData::default()
        .with_partition_index(partition_index)
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(message)))
}

fn node_id(id: u64) -> BrokerId {
    BrokerId(i32::try_from(id).unwrap_or(-1))
}

fn partition_data(info: &QuorumInfo) -> PartitionData {
    let voters = info
        .voters
        .iter()
        .map(|v| {
            ReplicaState::default()
                .with_replica_id(node_id(v.node_id))
                .with_log_end_offset(v.log_end_offset)
                .with_last_fetch_timestamp(v.last_fetch_timestamp)
                .with_last_caught_up_timestamp(v.last_caught_up_timestamp)
        })
        .collect();
    PartitionData::default()
        .with_partition_index(METADATA_PARTITION)
        .with_leader_id(info.leader_id.map_or(BrokerId(-1), node_id))
        .with_leader_epoch(i32::try_from(info.leader_epoch).unwrap_or(i32::MAX))
        .with_high_watermark(info.high_watermark)
        .with_current_voters(voters)
        .with_observers(Vec::new())
}

/// v2's `nodes`: each voter's controller listener, from `controller.quorum.voters`
/// (a quorum of one has no controller listener: no endpoints).
fn voter_nodes(broker: &Broker) -> Vec<Node> {
    let config = &broker.config;
    let listener_name = config.controller_listener_names.first().map_or(DEFAULT_CONTROLLER_LISTENER, String::as_str);
    if config.controller_quorum_voters.is_empty() {
        return vec![Node::default().with_node_id(BrokerId(config.node_id))];
    }
    config
        .controller_quorum_voters
        .iter()
        .map(|(id, address)| {
            let listeners = split_host_port(address)
                .map(|(host, port)| {
                    Listener::default()
                        .with_name(StrBytes::from_string(listener_name.to_string()))
                        .with_host(StrBytes::from_string(host))
                        .with_port(port)
                })
                .into_iter()
                .collect();
            Node::default().with_node_id(BrokerId(*id)).with_listeners(listeners)
        })
        .collect()
}

/// `host:port` or `[v6]:port`.
fn split_host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    Some((host.to_string(), port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn voter_addresses_split_into_host_and_port() {
        assert_eq!(split_host_port("127.0.0.1:9093"), Some(("127.0.0.1".into(), 9093)));
        assert_eq!(split_host_port("[::1]:19093"), Some(("::1".into(), 19093)));
        assert_eq!(split_host_port("no-port"), None);
        assert_eq!(split_host_port("host:99999"), None);
    }
}
