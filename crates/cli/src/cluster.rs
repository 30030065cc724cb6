//! `runnel cluster describe` (DescribeCluster + DescribeQuorum) and
//! `runnel topic elect-leaders` (ElectLeaders), over the Kafka protocol.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{DescribeClusterRequest, DescribeQuorumRequest, ElectLeadersRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::BaseConsumer;

use crate::topic::partitions_of;
use crate::wire::{self, Connection};
use crate::{client_config, ClientArgs, BROKER_TIMEOUT};

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Show the cluster id, the brokers (address, rack, fenced or not), the active controller and the metadata quorum's voters with their lag.
    Describe,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Election {
    /// Give leadership back to each partition's preferred (first) replica, if it is in sync.
    Preferred,
    /// Elect a leader for partitions that have none, even out of sync (may lose acknowledged records).
    Unclean,
}

pub async fn run(args: &ClientArgs, cmd: ClusterCommand) -> Result<()> {
    match cmd {
        ClusterCommand::Describe => describe(args).await,
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

async fn describe(args: &ClientArgs) -> Result<()> {
    let mut connection = Connection::open(&args.brokers).await.map_err(|e| anyhow!("cannot reach the broker at {}: {e}", args.brokers))?;
    // v2 (KIP-1073) also lists fenced brokers; older versions only live ones.
    let (cluster, version) = connection.send(&DescribeClusterRequest::default().with_include_fenced_brokers(true)).await.context("describing the cluster")?;
    if let Some(e) = wire::error_of(cluster.error_code, cluster.error_message.as_ref()) {
        bail!("describing the cluster: {e}");
    }
    println!("cluster-id\t{}", cluster.cluster_id.as_str());
    println!("controller\t{}", cluster.controller_id.0);
    println!();
    println!("broker\taddress\track\tstatus");
    let mut brokers: Vec<_> = cluster.brokers.iter().collect();
    brokers.sort_by_key(|b| b.broker_id.0);
    for b in brokers {
        let status = match (b.is_fenced, version >= 2) {
            (true, _) => "fenced",
            (false, true) => "active",
            (false, false) => "active (fenced brokers not listed before DescribeCluster v2)",
        };
        let rack = b.rack.as_deref().unwrap_or("-");
        let controller = if b.broker_id == cluster.controller_id { ", controller" } else { "" };
        println!("{}\t{}:{}\t{rack}\t{status}{controller}", b.broker_id.0, b.host.as_str(), b.port);
    }
    println!();
    let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let (quorum, _) = match connection.send(&request).await {
        Ok(answer) => answer,
        Err(e) => {
            // Not every Kafka-compatible broker has a KRaft quorum to describe.
            println!("quorum\tnot available: {e:#}");
            return Ok(());
        }
    };
    if let Some(e) = wire::error_of(quorum.error_code, quorum.error_message.as_ref()) {
        bail!("describing the metadata quorum: {e}");
    }
    let p = quorum.topics.first().and_then(|t| t.partitions.first()).ok_or_else(|| anyhow!("the broker described no quorum"))?;
    if let Some(e) = wire::error_of(p.error_code, p.error_message.as_ref()) {
        bail!("describing the metadata quorum: {e}");
    }
    println!("quorum-leader\t{}", p.leader_id.0);
    println!("quorum-epoch\t{}", p.leader_epoch);
    println!("high-watermark\t{}", p.high_watermark);
    println!();
    println!("voter\tlog-end-offset\tlag\tlast-caught-up-ms-ago\tstatus");
    let leader_end = p.current_voters.iter().find(|v| v.replica_id == p.leader_id).map(|v| v.log_end_offset);
    let now = now_ms();
    for (role, replicas) in [("voter", &p.current_voters), ("observer", &p.observers)] {
        for v in replicas {
            let lag = match leader_end {
                Some(end) if v.log_end_offset >= 0 => (end - v.log_end_offset).to_string(),
                _ => "-".to_string(),
            };
            let caught_up = if v.last_caught_up_timestamp >= 0 { (now - v.last_caught_up_timestamp).max(0).to_string() } else { "-".to_string() };
            let status = match role {
                "voter" if v.replica_id == p.leader_id => "leader",
                "voter" => "follower",
                _ => "observer",
            };
            println!("{}\t{}\t{lag}\t{caught_up}\t{status}", v.replica_id.0, v.log_end_offset);
        }
    }
    Ok(())
}

/// `runnel topic elect-leaders`: no topics means every partition of every topic.
pub async fn elect_leaders(args: &ClientArgs, topics: &[String], partitions: &[i32], election: Election) -> Result<()> {
    if topics.is_empty() && !partitions.is_empty() {
        bail!("--partition needs a topic");
    }
    let topic_partitions = if topics.is_empty() {
        None
    } else {
        let client: BaseConsumer = client_config(args)?.create().context("creating client")?;
        let mut list = Vec::new();
        for topic in topics {
            let ids = if partitions.is_empty() { partitions_of(args, &client, topic)? } else { partitions.to_vec() };
            list.push(TopicPartitions::default().with_topic(TopicName(StrBytes::from_string(topic.clone()))).with_partitions(ids));
        }
        Some(list)
    };
    let election_type = match election {
        Election::Preferred => 0,
        Election::Unclean => 1,
    };
    let request = ElectLeadersRequest::default()
        .with_election_type(election_type)
        .with_topic_partitions(topic_partitions)
        .with_timeout_ms(BROKER_TIMEOUT.as_millis() as i32);
    let mut connection = Connection::open(&args.brokers).await.map_err(|e| anyhow!("cannot reach the broker at {}: {e}", args.brokers))?;
    if election == Election::Unclean && connection.version_of::<ElectLeadersRequest>()? < 1 {
        bail!("the broker does not support unclean elections (ElectLeaders v1)");
    }
    let (response, _) = connection.send(&request).await.context("electing leaders")?;
    if let Some(e) = wire::error_of(response.error_code, None) {
        bail!("electing leaders: {e}");
    }
    let mut failed = false;
    let mut printed = 0;
    for topic in &response.replica_election_results {
        for p in &topic.partition_result {
            printed += 1;
            let outcome = match ResponseError::try_from_code(p.error_code) {
                None => "elected".to_string(),
                Some(ResponseError::ElectionNotNeeded) => "not needed (the wanted leader already leads)".to_string(),
                Some(e) => {
                    failed = true;
                    format!("error: {}", wire::broker_error(e, p.error_message.as_deref()))
                }
            };
            println!("{}\t{}\t{outcome}", topic.topic.0.as_str(), p.partition_id);
        }
    }
    if printed == 0 {
        println!("no partition needed an election");
    }
    if failed {
        bail!("leaders of some partitions were not elected");
    }
    Ok(())
}
