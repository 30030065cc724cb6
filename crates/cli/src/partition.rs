//! `runnel partition reassign` (AlterPartitionReassignments) and
//! `runnel partition list-reassignments` (ListPartitionReassignments), over the
//! Kafka protocol (librdkafka has neither API).

use anyhow::{anyhow, bail, Context, Result};
use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, BrokerId, ListPartitionReassignmentsRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::wire::{self, Connection};
use crate::{ClientArgs, BROKER_TIMEOUT};

#[derive(clap::Subcommand, Debug)]
pub enum PartitionCommand {
    /// Move a partition to other brokers (the first becomes its preferred leader): the new replicas copy the log, then the old ones leave.
    Reassign {
        /// Topic of the partition.
        #[arg(long, short = 't')]
        topic: String,
        /// Partition to move.
        #[arg(long, short = 'p')]
        partition: i32,
        /// The target replicas, comma-separated broker ids, e.g. 2,3.
        #[arg(long, value_delimiter = ',', required_unless_present = "cancel", conflicts_with = "cancel")]
        replicas: Vec<i32>,
        /// Cancel the partition's ongoing reassignment instead (back to its original replicas).
        #[arg(long)]
        cancel: bool,
        /// Refuse a target with another number of replicas than the partition has (KIP-1107; needs a broker with AlterPartitionReassignments v1).
        #[arg(long)]
        keep_replication_factor: bool,
    },
    /// List the ongoing reassignments: replicas, the ones being added and the ones being removed.
    ListReassignments {
        /// Only these topics (all partitions); none: every topic.
        topics: Vec<String>,
    },
}

pub async fn run(args: &ClientArgs, cmd: PartitionCommand) -> Result<()> {
    match cmd {
        PartitionCommand::Reassign { topic, partition, replicas, cancel, keep_replication_factor } => {
            reassign(args, &topic, partition, (!cancel).then_some(replicas), keep_replication_factor).await
        }
        PartitionCommand::ListReassignments { topics } => list(args, &topics).await,
    }
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

async fn connect(args: &ClientArgs) -> Result<Connection> {
    Connection::open(&args.brokers).await.map_err(|e| anyhow!("cannot reach the broker at {}: {e}", args.brokers))
}

async fn reassign(args: &ClientArgs, topic: &str, partition: i32, replicas: Option<Vec<i32>>, keep_replication_factor: bool) -> Result<()> {
    let request = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(BROKER_TIMEOUT.as_millis() as i32)
        .with_allow_replication_factor_change(!keep_replication_factor)
        .with_topics(vec![ReassignableTopic::default().with_name(name(topic)).with_partitions(vec![
            ReassignablePartition::default()
                .with_partition_index(partition)
                .with_replicas(replicas.clone().map(|r| r.into_iter().map(BrokerId).collect())),
        ])]);
    let mut connection = connect(args).await?;
    if keep_replication_factor && connection.version_of::<AlterPartitionReassignmentsRequest>()? < 1 {
        bail!("the broker does not support --keep-replication-factor (AlterPartitionReassignments v1)");
    }
    let what = if replicas.is_some() { "reassigning" } else { "cancelling the reassignment of" };
    let (response, _) = connection.send(&request).await.with_context(|| format!("{what} {topic}-{partition}"))?;
    if let Some(e) = wire::error_of(response.error_code, response.error_message.as_ref()) {
        bail!("{what} {topic}-{partition}: {e}");
    }
    let result = response.responses.iter().flat_map(|t| t.partitions.iter()).find(|p| p.partition_index == partition);
    let result = result.ok_or_else(|| anyhow!("the broker did not answer for {topic}-{partition}"))?;
    if let Some(e) = wire::error_of(result.error_code, result.error_message.as_ref()) {
        bail!("{what} {topic}-{partition}: {e}");
    }
    match replicas {
        Some(r) => println!(
            "{topic}\t{partition}\treassignment to {} started (runnel partition list-reassignments shows it until it completes)",
            r.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
        ),
        None => println!("{topic}\t{partition}\treassignment cancelled"),
    }
    Ok(())
}

async fn list(args: &ClientArgs, topics: &[String]) -> Result<()> {
    let mut connection = connect(args).await?;
    let named = if topics.is_empty() {
        None
    } else {
        // All partitions of each named topic: the broker leaves out those that do not exist.
        let metadata = partition_counts(&mut connection, topics).await?;
        Some(
            topics
                .iter()
                .map(|t| {
                    let count = metadata.iter().find(|(n, _)| n == t).map_or(0, |(_, c)| *c);
                    ListPartitionReassignmentsTopics::default().with_name(name(t)).with_partition_indexes((0..count).collect())
                })
                .collect(),
        )
    };
    let request = ListPartitionReassignmentsRequest::default().with_timeout_ms(BROKER_TIMEOUT.as_millis() as i32).with_topics(named);
    let (response, _) = connection.send(&request).await.context("listing partition reassignments")?;
    if let Some(e) = wire::error_of(response.error_code, response.error_message.as_ref()) {
        bail!("listing partition reassignments: {e}");
    }
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0.to_string()).collect::<Vec<_>>().join(",");
    let mut any = false;
    for topic in &response.topics {
        for p in &topic.partitions {
            if !any {
                println!("topic\tpartition\treplicas\tadding\tremoving");
                any = true;
            }
            println!("{}\t{}\t{}\t{}\t{}", topic.name.0.as_str(), p.partition_index, ids(&p.replicas), ids(&p.adding_replicas), ids(&p.removing_replicas));
        }
    }
    if !any {
        println!("no reassignment in progress");
    }
    Ok(())
}

/// (topic, partition count) of the named topics that exist (Metadata, no auto-creation).
async fn partition_counts(connection: &mut Connection, topics: &[String]) -> Result<Vec<(String, i32)>> {
    let request = MetadataRequest::default()
        .with_topics(Some(topics.iter().map(|t| MetadataRequestTopic::default().with_name(Some(name(t)))).collect()))
        .with_allow_auto_topic_creation(false);
    let (response, _) = connection.send(&request).await.context("reading the topics' metadata")?;
    Ok(response
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .filter_map(|t| t.name.as_ref().map(|n| (n.0.to_string(), t.partitions.len() as i32)))
        .collect())
}
