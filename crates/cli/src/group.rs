//! `runnel group list|describe|delete|reset-offsets`.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, GroupId, ListGroupsRequest, OffsetDeleteRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::{client_config, wire, ClientArgs, BROKER_TIMEOUT};

#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// List consumer groups with their state.
    List,
    /// Members, assignments, committed offsets, end offsets and lag of a group.
    Describe { group: String },
    /// Delete groups (only groups without members).
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Delete a group's committed offsets for a topic (refused by the broker
    /// while the group's members subscribe to it).
    DeleteOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        /// Only these partitions (default: all of the topic's).
        #[arg(long = "partition")]
        partitions: Vec<i32>,
    },
    /// Move a group's committed offsets (refused while the group has members).
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        #[arg(long, group = "target")]
        to_earliest: bool,
        #[arg(long, group = "target")]
        to_latest: bool,
        #[arg(long, group = "target")]
        to_offset: Option<i64>,
        /// Milliseconds since the epoch: the first offset at or after it.
        #[arg(long, group = "target")]
        to_datetime: Option<i64>,
    },
}

fn consumer(args: &ClientArgs, group: &str) -> Result<BaseConsumer> {
    client_config(args)?
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .context("creating client")
}

fn unreachable(args: &ClientArgs, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("cannot reach the broker at {}: {e}", args.brokers)
}

/// Partitions assigned in a consumer-protocol assignment: (topic, partitions).
pub fn decode_assignment(bytes: &[u8]) -> Vec<(String, Vec<i32>)> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Some(head)
    }
    fn read(mut b: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
        take(&mut b, 2)?; // version
        let topics = i32::from_be_bytes(take(&mut b, 4)?.try_into().ok()?);
        let mut out = Vec::new();
        for _ in 0..topics.max(0) {
            let len = i16::from_be_bytes(take(&mut b, 2)?.try_into().ok()?);
            let name = String::from_utf8_lossy(take(&mut b, len.max(0) as usize)?).into_owned();
            let count = i32::from_be_bytes(take(&mut b, 4)?.try_into().ok()?);
            let mut parts = Vec::new();
            for _ in 0..count.max(0) {
                parts.push(i32::from_be_bytes(take(&mut b, 4)?.try_into().ok()?));
            }
            out.push((name, parts));
        }
        Some(out)
    }
    read(bytes).unwrap_or_default()
}

pub async fn run(args: &ClientArgs, cmd: GroupCommand) -> Result<()> {
    match cmd {
        GroupCommand::List => {
            // ListGroups v5 names each group's type (classic or consumer) and its real state.
            let request = ListGroupsRequest::default();
            let response = wire::exchange(&args.brokers, &request, 5).await.map_err(|e| unreachable(args, e))?;
            if response.error_code != 0 {
                bail!("listing groups failed: {:?}", ResponseError::try_from_code(response.error_code));
            }
            let mut groups: Vec<(String, String, String)> = response
                .groups
                .iter()
                .map(|g| (g.group_id.0.to_string(), g.group_state.to_string(), g.group_type.to_string()))
                .collect();
            groups.sort();
            for (name, state, kind) in groups {
                println!("{name}\t{state}\t{kind}");
            }
        }
        GroupCommand::Describe { group } => {
            if !describe_consumer_protocol_group(args, &group).await? {
                describe(args, &group)?
            }
        }
        GroupCommand::Delete { groups } => {
            let admin: AdminClient<DefaultClientContext> = client_config(args)?.create().context("creating the admin client")?;
            let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
            let options = AdminOptions::new().request_timeout(Some(BROKER_TIMEOUT));
            let results = admin.delete_groups(&refs, &options).await.context("deleting groups")?;
            let mut failed = false;
            for result in results {
                match result {
                    Ok(g) => println!("deleted group {g}"),
                    Err((g, code)) => {
                        eprintln!("error: group {g:?} was not deleted: {code}");
                        failed = true;
                    }
                }
            }
            if failed {
                bail!("some groups were not deleted");
            }
        }
        GroupCommand::DeleteOffsets { group, topic, partitions } => {
            let partitions = if partitions.is_empty() {
                let client = consumer(args, &group)?;
                let metadata = client.fetch_metadata(Some(&topic), BROKER_TIMEOUT).map_err(|e| unreachable(args, e))?;
                let t = metadata.topics().first().filter(|t| t.error().is_none() && !t.partitions().is_empty());
                t.ok_or_else(|| anyhow!("topic {topic:?} does not exist"))?.partitions().iter().map(|p| p.id()).collect()
            } else {
                partitions
            };
            let request = OffsetDeleteRequest::default().with_group_id(GroupId(StrBytes::from_string(group.clone()))).with_topics(vec![
                OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partitions(partitions.iter().map(|p| OffsetDeleteRequestPartition::default().with_partition_index(*p)).collect()),
            ]);
            let response = wire::exchange(&args.brokers, &request, 0).await.map_err(|e| unreachable(args, e))?;
            if let Some(e) = ResponseError::try_from_code(response.error_code) {
                bail!("deleting offsets of group {group:?}: {e}");
            }
            let mut refused = false;
            for t in &response.topics {
                for p in &t.partitions {
                    match ResponseError::try_from_code(p.error_code) {
                        None => println!("{}\t{}\tdeleted", t.name.0, p.partition_index),
                        Some(e) => {
                            refused = true;
                            eprintln!("error: {}:{}: {e}", t.name.0, p.partition_index);
                        }
                    }
                }
            }
            if refused {
                bail!("some offsets were not deleted");
            }
        }
        GroupCommand::ResetOffsets { group, topic, to_earliest, to_latest, to_offset, to_datetime } => {
            if !(to_earliest || to_latest || to_offset.is_some() || to_datetime.is_some()) {
                bail!("say where to: --to-earliest, --to-latest, --to-offset N or --to-datetime MS");
            }
            let client = consumer(args, &group)?;
            let list = client.fetch_group_list(Some(&group), BROKER_TIMEOUT).map_err(|e| unreachable(args, e))?;
            if let Some(g) = list.groups().first() {
                if !g.members().is_empty() {
                    bail!("group {group:?} has {} active member(s) ({}): stop its consumers first", g.members().len(), g.state());
                }
            }
            let metadata = client.fetch_metadata(Some(&topic), BROKER_TIMEOUT).map_err(|e| unreachable(args, e))?;
            let t = metadata.topics().first().filter(|t| t.error().is_none() && !t.partitions().is_empty());
            let t = t.ok_or_else(|| anyhow!("topic {topic:?} does not exist"))?;
            let mut targets = TopicPartitionList::new();
            for p in t.partitions() {
                let offset = if let Some(ms) = to_datetime {
                    let mut query = TopicPartitionList::new();
                    query.add_partition_offset(&topic, p.id(), Offset::Offset(ms))?;
                    let found = client.offsets_for_times(query, BROKER_TIMEOUT).map_err(|e| unreachable(args, e))?;
                    match found.elements().first().map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o,
                        _ => client.fetch_watermarks(&topic, p.id(), BROKER_TIMEOUT).map_err(|e| unreachable(args, e))?.1,
                    }
                } else {
                    let (low, high) = client.fetch_watermarks(&topic, p.id(), BROKER_TIMEOUT).map_err(|e| unreachable(args, e))?;
                    match (to_earliest, to_latest, to_offset) {
                        (true, _, _) => low,
                        (_, true, _) => high,
                        (_, _, Some(o)) => o.clamp(low, high),
                        _ => high,
                    }
                };
                targets.add_partition_offset(&topic, p.id(), Offset::Offset(offset))?;
            }
            client.commit(&targets, CommitMode::Sync).map_err(|e| anyhow!("committing new offsets for {group:?}: {e}"))?;
            for e in targets.elements() {
                if let Offset::Offset(o) = e.offset() {
                    println!("{}\t{}\t{o}", e.topic(), e.partition());
                }
            }
        }
    }
    Ok(())
}

/// Describes a group of the KIP-848 consumer protocol; false when the group
/// is not one (or the broker does not know ConsumerGroupDescribe).
async fn describe_consumer_protocol_group(args: &ClientArgs, group: &str) -> Result<bool> {
    let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(StrBytes::from_string(group.to_string()))]);
    let Ok(response) = wire::exchange(&args.brokers, &request, 0).await else { return Ok(false) };
    let Some(g) = response.groups.first().filter(|g| g.error_code == 0) else { return Ok(false) };
    println!("group\t{group}");
    println!("state\t{}", g.group_state);
    println!("protocol\tconsumer (assignor {}, group epoch {}, assignment epoch {})", g.assignor_name, g.group_epoch, g.assignment_epoch);
    println!("members\t{}", g.members.len());
    for m in &g.members {
        let assigned: Vec<String> = m
            .assignment
            .topic_partitions
            .iter()
            .filter(|tp| !tp.partitions.is_empty())
            .map(|tp| format!("{}:{}", tp.topic_name.0, tp.partitions.iter().map(i32::to_string).collect::<Vec<_>>().join(",")))
            .collect();
        let shown = if assigned.is_empty() { "(no partitions: idle)".to_string() } else { assigned.join(" ") };
        println!("  {}\t{}\t{}\t{shown}", m.member_id, m.client_id, m.client_host);
    }
    let client = consumer(args, group)?;
    print_offsets(args, &client)?;
    Ok(true)
}

fn describe(args: &ClientArgs, group: &str) -> Result<()> {
    let client = consumer(args, group)?;
    let list = client.fetch_group_list(Some(group), BROKER_TIMEOUT).map_err(|e| unreachable(args, e))?;
    let info = list.groups().first().ok_or_else(|| anyhow!("group {group:?} not found"))?;
    println!("group\t{group}");
    println!("state\t{}", info.state());
    println!("protocol\t{}", info.protocol());
    println!("members\t{}", info.members().len());
    for m in info.members() {
        let assigned: Vec<String> = m
            .assignment()
            .map(decode_assignment)
            .unwrap_or_default()
            .into_iter()
            .map(|(t, ps)| format!("{t}:{}", ps.iter().map(i32::to_string).collect::<Vec<_>>().join(",")))
            .collect();
        let shown = if assigned.is_empty() { "(no partitions: idle)".to_string() } else { assigned.join(" ") };
        println!("  {}\t{}\t{}\t{shown}", m.id(), m.client_id(), m.client_host());
    }
    print_offsets(args, &client)
}

/// Committed offset, end offset and lag of every partition the group committed to.
fn print_offsets(args: &ClientArgs, client: &BaseConsumer) -> Result<()> {
    // Committed offsets of every partition of every topic (OffsetFetch answers -1 where nothing was committed).
    let metadata = client.fetch_metadata(None, BROKER_TIMEOUT).map_err(|e| unreachable(args, e))?;
    let mut all = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| !t.name().starts_with("__")) {
        for p in t.partitions() {
            all.add_partition(t.name(), p.id());
        }
    }
    let committed = client.committed_offsets(all, Duration::from_secs(10)).map_err(|e| unreachable(args, e))?;
    println!("topic\tpartition\tcommitted\tend\tlag");
    for e in committed.elements() {
        if let Offset::Offset(c) = e.offset() {
            let (_, end) = client.fetch_watermarks(e.topic(), e.partition(), BROKER_TIMEOUT).map_err(|e| unreachable(args, e))?;
            println!("{}\t{}\t{c}\t{end}\t{}", e.topic(), e.partition(), (end - c).max(0));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_a_consumer_protocol_assignment() {
        let mut b = vec![0, 1, 0, 0, 0, 1, 0, 2, b'o', b'k', 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 5];
        b.extend_from_slice(&[0, 0, 0, 0]); // user data
        assert_eq!(super::decode_assignment(&b), vec![("ok".to_string(), vec![3, 5])]);
        assert!(super::decode_assignment(&[0, 1, 0]).is_empty());
    }
}
