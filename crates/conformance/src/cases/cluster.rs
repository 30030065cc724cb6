//! ElectLeaders, DescribeQuorum, DescribeLogDirs: the cluster admin APIs, on
//! one combined node each side.

use kafka_protocol::messages::{describe_log_dirs_request, describe_quorum_request, elect_leaders_request};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeQuorumRequest, ElectLeadersRequest, TopicName};

use super::{case, Case};
use crate::ctx::{s, Rule};

fn elect(election_type: i8, topics: &[(&str, &[i32])]) -> ElectLeadersRequest {
    ElectLeadersRequest::default().with_election_type(election_type).with_timeout_ms(30_000).with_topic_partitions(Some(
        topics
            .iter()
            .map(|(topic, partitions)| {
                elect_leaders_request::TopicPartitions::default().with_topic(TopicName(s(topic))).with_partitions(partitions.to_vec())
            })
            .collect(),
    ))
}

fn describe_quorum(topic: &str, partition: i32) -> DescribeQuorumRequest {
    DescribeQuorumRequest::default().with_topics(vec![describe_quorum_request::TopicData::default()
        .with_topic_name(TopicName(s(topic)))
        .with_partitions(vec![describe_quorum_request::PartitionData::default().with_partition_index(partition)])])
}

pub fn cases() -> Vec<Case> {
    vec![
        case("elect_leaders.preferred", |ctx| {
            // One node leads everything: ELECTION_NOT_NEEDED; unknown ones: UNKNOWN_TOPIC_OR_PARTITION.
            let name = ctx.name("elect");
            let missing = ctx.name("elect-missing");
            ctx.create_topic(&name, 2, &[])?;
            ctx.probe("probe", &elect(0, &[(&name, &[0, 1, 9]), (&missing, &[0])]))?;
            Ok(())
        }),
        case("elect_leaders.unclean", |ctx| {
            let name = ctx.name("elect-unclean");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &elect(1, &[(&name, &[0])]))?;
            Ok(())
        }),
        case("describe_quorum.metadata_partition", |ctx| {
            // Offsets, epochs and directory ids are each broker's own; node
            // listeners differ (a quorum of one has no controller listener).
            ctx.rule("probe.topics[*].partitions[*].leader_epoch", Rule::Presence);
            ctx.rule("probe.topics[*].partitions[*].high_watermark", Rule::Presence);
            ctx.rule("probe.topics[*].partitions[*].current_voters[*].replica_id", Rule::Presence);
            ctx.rule("probe.topics[*].partitions[*].current_voters[*].replica_directory_id", Rule::Ignore);
            ctx.rule("probe.topics[*].partitions[*].current_voters[*].log_end_offset", Rule::Presence);
            ctx.rule("probe.topics[*].partitions[*].current_voters[*].last_fetch_timestamp", Rule::Presence);
            ctx.rule("probe.topics[*].partitions[*].current_voters[*].last_caught_up_timestamp", Rule::Presence);
            ctx.rule("probe.nodes*", Rule::Ignore);
            ctx.probe("probe", &describe_quorum("__cluster_metadata", 0))?;
            Ok(())
        }),
        case("describe_quorum.other_partition", |ctx| {
            ctx.probe("probe", &describe_quorum("__cluster_metadata", 1))?;
            ctx.probe("other_topic", &describe_quorum("some-topic", 0))?;
            Ok(())
        }),
        case("describe_log_dirs.topic", |ctx| {
            // Paths and disk space are each machine's own.
            ctx.rule("probe.results[*].log_dir", Rule::Ignore);
            ctx.rule("probe.results[*].total_bytes", Rule::Presence);
            ctx.rule("probe.results[*].usable_bytes", Rule::Presence);
            let name = ctx.name("logdirs");
            let missing = ctx.name("logdirs-missing");
            ctx.create_topic(&name, 2, &[])?;
            ctx.produce(&name, 0, 5)?;
            let request = DescribeLogDirsRequest::default().with_topics(Some(vec![
                describe_log_dirs_request::DescribableLogDirTopic::default().with_topic(TopicName(s(&name))).with_partitions(vec![0, 7]),
                describe_log_dirs_request::DescribableLogDirTopic::default().with_topic(TopicName(s(&missing))).with_partitions(vec![0]),
            ]));
            ctx.probe("probe", &request)?;
            Ok(())
        }),
    ]
}
