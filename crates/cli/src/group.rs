//! `runnel group list|describe|lag|delete|delete-offsets|reset-offsets`.

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::topic::partitions_of;
use crate::{client_config, wire, ClientArgs, BROKER_TIMEOUT};

#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// List consumer groups with their state and type (classic or consumer).
    List,
    /// Members, assignments, committed offsets, end offsets and lag of a group.
    Describe {
        /// The group id.
        group: String,
    },
    /// Committed offset, end offset and lag of every partition, for all groups (or the named ones).
    Lag {
        /// Only these groups (default: every group the broker lists).
        groups: Vec<String>,
    },
    /// Delete groups (only groups without members).
    Delete {
        /// The group ids.
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Delete a group's committed offsets for a topic (refused by the broker
    /// while the group's members subscribe to it).
    DeleteOffsets {
        /// The group id.
        group: String,
        /// The topic whose committed offsets are deleted.
        #[arg(long)]
        topic: String,
        /// Only this partition (repeatable; default: all of the topic's).
        #[arg(long = "partition")]
        partitions: Vec<i32>,
    },
    /// Move a group's committed offsets for a topic (refused while the group
    /// has members). Shows the plan only, unless --execute is given.
    ResetOffsets {
        /// The group id.
        group: String,
        /// The topic whose offsets move.
        #[arg(long)]
        topic: String,
        /// To each partition's log start offset.
        #[arg(long, group = "target")]
        to_earliest: bool,
        /// To each partition's end offset (skip everything not yet consumed).
        #[arg(long, group = "target")]
        to_latest: bool,
        /// To this offset (clamped to each partition's log start and end).
        #[arg(long, group = "target", value_name = "OFFSET")]
        to_offset: Option<i64>,
        /// To the first offset whose timestamp is at or after this time: ISO-8601
        /// (2026-11-30T14:00:00, with optional .mmm and Z or ±HH:MM; no zone
        /// means UTC) or milliseconds since the epoch.
        #[arg(long, group = "target", value_name = "DATETIME")]
        to_datetime: Option<String>,
        /// Apply the new offsets (without it, only print them, as kafka-consumer-groups does).
        #[arg(long)]
        execute: bool,
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
            let mut groups = list_groups(args).await?;
            groups.sort();
            for (name, state, kind) in groups {
                println!("{name}\t{state}\t{kind}");
            }
        }
        GroupCommand::Describe { group } => {
            if !describe_consumer_protocol_group(args, &group).await? {
                describe(args, &group).await?
            }
        }
        GroupCommand::Lag { groups } => {
            let mut groups = if groups.is_empty() { list_groups(args).await?.into_iter().map(|g| g.0).collect() } else { groups };
            groups.sort();
            let client = consumer(args, "runnel-cli-lag")?;
            println!("group\ttopic\tpartition\tcommitted\tend\tlag");
            // One unreadable group (e.g. deleted meanwhile) does not hide the others.
            let mut unreadable = 0;
            for group in groups {
                match offset_rows(args, &client, &group).await {
                    Ok(rows) => rows.iter().for_each(|row| println!("{group}\t{row}")),
                    Err(e) => {
                        eprintln!("error: group {group:?}: {e:#}");
                        unreadable += 1;
                    }
                }
            }
            if unreadable > 0 {
                bail!("the offsets of {unreadable} group(s) could not be read");
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
            let partitions = if partitions.is_empty() { partitions_of(args, &consumer(args, &group)?, &topic)? } else { partitions };
            let request = OffsetDeleteRequest::default().with_group_id(GroupId(StrBytes::from_string(group.clone()))).with_topics(vec![
                OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partitions(partitions.iter().map(|p| OffsetDeleteRequestPartition::default().with_partition_index(*p)).collect()),
            ]);
            let mut coordinator = wire::Connection::group_coordinator(&args.brokers, &group).await.map_err(|e| unreachable(args, e))?;
            let (response, _) = coordinator.send(&request).await.map_err(|e| unreachable(args, e))?;
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
        GroupCommand::ResetOffsets { group, topic, to_earliest, to_latest, to_offset, to_datetime, execute } => {
            if !(to_earliest || to_latest || to_offset.is_some() || to_datetime.is_some()) {
                bail!("say where to: --to-earliest, --to-latest, --to-offset N or --to-datetime DATETIME");
            }
            let to_ms = to_datetime.as_deref().map(parse_datetime).transpose()?;
            let client = consumer(args, &group)?;
            let list = client.fetch_group_list(Some(&group), BROKER_TIMEOUT).map_err(|e| unreachable(args, e))?;
            if let Some(g) = list.groups().first() {
                if !g.members().is_empty() {
                    bail!("group {group:?} has {} active member(s) ({}): stop its consumers first", g.members().len(), g.state());
                }
            }
            let mut targets: Vec<(i32, i64)> = Vec::new();
            for p in partitions_of(args, &client, &topic)? {
                let (low, high) = client.fetch_watermarks(&topic, p, BROKER_TIMEOUT).map_err(|e| unreachable(args, e))?;
                let offset = if let Some(ms) = to_ms {
                    let mut query = TopicPartitionList::new();
                    query.add_partition_offset(&topic, p, Offset::Offset(ms))?;
                    let found = client.offsets_for_times(query, BROKER_TIMEOUT).map_err(|e| unreachable(args, e))?;
                    match found.elements().first().map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o,
                        // No record at or after the time: the end.
                        _ => high,
                    }
                } else {
                    match (to_earliest, to_latest, to_offset) {
                        (true, _, _) => low,
                        (_, true, _) => high,
                        (_, _, Some(o)) => o.clamp(low, high),
                        _ => high,
                    }
                };
                targets.push((p, offset));
            }
            println!("topic\tpartition\tnew-offset");
            for (p, o) in &targets {
                println!("{topic}\t{p}\t{o}");
            }
            if !execute {
                eprintln!("(preview only: add --execute to commit these offsets for group {group:?})");
                return Ok(());
            }
            commit_offsets(args, &group, &topic, &targets).await?;
            eprintln!("committed the new offsets of group {group:?}");
        }
    }
    Ok(())
}

/// (group, state, type) of every group the broker lists.
async fn list_groups(args: &ClientArgs) -> Result<Vec<(String, String, String)>> {
    // ListGroups v5 names each group's type (classic or consumer) and its real state.
    let response = wire::exchange(&args.brokers, &ListGroupsRequest::default()).await.map_err(|e| unreachable(args, e))?;
    if let Some(e) = ResponseError::try_from_code(response.error_code) {
        bail!("listing groups failed: {e}");
    }
    Ok(response.groups.iter().map(|g| (g.group_id.0.to_string(), g.group_state.to_string(), display_group_type(&g.group_type))).collect())
}

/// Brokers send the type in lower case ("classic"); Kafka's tools show "Classic".
fn display_group_type(wire: &str) -> String {
    let mut chars = wire.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Commits offsets for a group with no members, as an admin (generation -1),
/// reporting every partition the coordinator refused.
async fn commit_offsets(args: &ClientArgs, group: &str, topic: &str, targets: &[(i32, i64)]) -> Result<()> {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(TopicName(StrBytes::from_string(topic.to_string()))).with_partitions(
            targets.iter().map(|(p, o)| OffsetCommitRequestPartition::default().with_partition_index(*p).with_committed_offset(*o)).collect(),
        )]);
    let mut coordinator = wire::Connection::group_coordinator(&args.brokers, group).await.map_err(|e| unreachable(args, e))?;
    let (response, _) = coordinator.send(&request).await.map_err(|e| unreachable(args, e))?;
    let mut refused = Vec::new();
    for t in &response.topics {
        for p in &t.partitions {
            if let Some(e) = ResponseError::try_from_code(p.error_code) {
                refused.push(format!("{}:{}: {e}", t.name.0, p.partition_index));
            }
        }
    }
    if !refused.is_empty() {
        bail!("the coordinator refused offsets of group {group:?}: {}", refused.join("; "));
    }
    Ok(())
}

/// Parses ISO-8601 `YYYY-MM-DDTHH:MM[:SS[.fff]][Z|±HH:MM]` (no zone: UTC), or
/// plain milliseconds since the epoch, into milliseconds since the epoch.
pub fn parse_datetime(text: &str) -> Result<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || anyhow!("{text:?} is not an ISO-8601 date-time (e.g. 2026-11-30T14:00:00.000Z) nor milliseconds since the epoch");
    let (date, time) = text.split_once(['T', ' ']).ok_or_else(bad)?;
    let mut date_parts = date.split('-');
    let next_num = |it: &mut std::str::Split<'_, char>| -> Result<i64> { it.next().and_then(|s| s.parse().ok()).ok_or_else(bad) };
    let year = next_num(&mut date_parts)?;
    let month = next_num(&mut date_parts)?;
    let day = next_num(&mut date_parts)?;
    if date_parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(bad());
    }
    // Split off the zone: Z, +HH:MM, -HH:MM (or +HHMM).
    let (clock, offset_minutes) = if let Some(c) = time.strip_suffix('Z').or_else(|| time.strip_suffix('z')) {
        (c, 0)
    } else if let Some(at) = time.rfind(['+', '-']) {
        let (c, zone) = time.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
        if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let hours: i64 = digits[..2].parse().map_err(|_| bad())?;
        let minutes: i64 = digits[2..].parse().map_err(|_| bad())?;
        (c, sign * (hours * 60 + minutes))
    } else {
        (time, 0)
    };
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, f)) => (hms, f),
        None => (clock, ""),
    };
    let mut clock_parts = hms.split(':');
    let hour = next_num(&mut clock_parts)?;
    let minute = next_num(&mut clock_parts)?;
    let second = match clock_parts.next() {
        Some(s) => s.parse::<i64>().map_err(|_| bad())?,
        None => 0,
    };
    if clock_parts.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return Err(bad());
    }
    if !fraction.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let millis: i64 = format!("{fraction:0<3}")[..3].parse().map_err(|_| bad())?;
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1_000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Describes a group of the KIP-848 consumer protocol; false when the group
/// is not one (or the broker does not know ConsumerGroupDescribe).
async fn describe_consumer_protocol_group(args: &ClientArgs, group: &str) -> Result<bool> {
    let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(StrBytes::from_string(group.to_string()))]);
    let Ok(response) = wire::exchange(&args.brokers, &request).await else { return Ok(false) };
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
    print_offsets(args, &client, group).await?;
    Ok(true)
}

async fn describe(args: &ClientArgs, group: &str) -> Result<()> {
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
    print_offsets(args, &client, group).await
}

async fn print_offsets(args: &ClientArgs, client: &BaseConsumer, group: &str) -> Result<()> {
    println!("topic\tpartition\tcommitted\tend\tlag");
    for row in offset_rows(args, client, group).await? {
        println!("{row}");
    }
    Ok(())
}

/// "topic\tpartition\tcommitted\tend\tlag" for every partition the group committed to.
async fn offset_rows(args: &ClientArgs, client: &BaseConsumer, group: &str) -> Result<Vec<String>> {
    let committed = committed_offsets(args, group).await?;
    if committed.is_empty() {
        return Ok(Vec::new());
    }
    // Offsets can outlive their topic: such rows say so instead of waiting on a partition that is gone.
    let metadata = client.fetch_metadata(None, BROKER_TIMEOUT).map_err(|e| unreachable(args, e))?;
    let exists = |topic: &str, partition: i32| {
        metadata.topics().iter().any(|t| t.name() == topic && t.error().is_none() && t.partitions().iter().any(|p| p.id() == partition))
    };
    let mut rows = Vec::new();
    for (topic, partition, committed) in committed {
        if !exists(&topic, partition) {
            rows.push(format!("{topic}\t{partition}\t{committed}\t-\tunknown: the partition does not exist"));
            continue;
        }
        let (low, end) = client.fetch_watermarks(&topic, partition, BROKER_TIMEOUT).map_err(|e| unreachable(args, e))?;
        rows.push(format!("{topic}\t{partition}\t{committed}\t{end}\t{}", lag_of(committed, low, end)));
    }
    Ok(rows)
}

/// The lag column. A committed offset outside the log (the log was truncated
/// or its records deleted) is not a lag: the consumer will reset it by its
/// auto.offset.reset, as Kafka's consumers do.
pub fn lag_of(committed: i64, low: i64, end: i64) -> String {
    if committed > end {
        format!("invalid: beyond the end {end} (consumers reset by auto.offset.reset)")
    } else if committed < low {
        format!("invalid: before the log start {low} (consumers reset by auto.offset.reset)")
    } else {
        (end - committed).to_string()
    }
}

/// (topic, partition, offset) of every offset the group committed, sorted.
async fn committed_offsets(args: &ClientArgs, group: &str) -> Result<Vec<(String, i32, i64)>> {
    let mut coordinator = wire::Connection::group_coordinator(&args.brokers, group).await.map_err(|e| unreachable(args, e))?;
    let version = coordinator.version_of::<OffsetFetchRequest>()?;
    if version < 2 {
        bail!("the broker cannot list all of a group's offsets (OffsetFetch v2+)");
    }
    // Topics None: every partition the group committed to.
    let mut request = OffsetFetchRequest::default();
    if version >= 8 {
        request.groups = vec![OffsetFetchRequestGroup::default().with_group_id(GroupId(StrBytes::from_string(group.to_string()))).with_topics(None)];
    } else {
        request.group_id = GroupId(StrBytes::from_string(group.to_string()));
        request.topics = None;
    }
    let response = coordinator.send_at(&request, version).await.map_err(|e| unreachable(args, e))?;
    let mut out = Vec::new();
    let mut push = |topic: &str, partition: i32, offset: i64, code: i16| -> Result<()> {
        if let Some(e) = ResponseError::try_from_code(code) {
            bail!("committed offset of group {group:?} on {topic}:{partition}: {e}");
        }
        if offset >= 0 {
            out.push((topic.to_string(), partition, offset));
        }
        Ok(())
    };
    if version >= 8 {
        for g in &response.groups {
            if let Some(e) = ResponseError::try_from_code(g.error_code) {
                bail!("committed offsets of group {group:?}: {e}");
            }
            for t in &g.topics {
                for p in &t.partitions {
                    push(&t.name.0, p.partition_index, p.committed_offset, p.error_code)?;
                }
            }
        }
    } else {
        if let Some(e) = ResponseError::try_from_code(response.error_code) {
            bail!("committed offsets of group {group:?}: {e}");
        }
        for t in &response.topics {
            for p in &t.partitions {
                push(&t.name.0, p.partition_index, p.committed_offset, p.error_code)?;
            }
        }
    }
    out.sort();
    Ok(out)
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

    #[test]
    fn parses_iso_8601_date_times() {
        use super::parse_datetime;
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_datetime("2026-11-30T14:00:00.250Z").unwrap(), 1_796_047_200_250);
        assert_eq!(parse_datetime("2026-11-30T15:00:00.25+01:00").unwrap(), 1_796_047_200_250);
        assert_eq!(parse_datetime("2026-11-30T09:30-04:30").unwrap(), 1_796_047_200_000);
        assert_eq!(parse_datetime("2000-02-29T00:00:00").unwrap(), 951_782_400_000);
        assert_eq!(parse_datetime("1796047200250").unwrap(), 1_796_047_200_250);
        for bad in ["yesterday", "2026-13-01T00:00:00", "2026-11-30", "2026-11-30T25:00:00", "2026-11-30T10:00:00+1"] {
            assert!(parse_datetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn committed_offsets_outside_the_log_are_invalid_not_lag_0() {
        assert_eq!(super::lag_of(4, 0, 6), "2");
        assert!(super::lag_of(1000, 0, 0).starts_with("invalid: beyond the end 0"));
        assert!(super::lag_of(2, 5, 9).starts_with("invalid: before the log start 5"));
    }
}
