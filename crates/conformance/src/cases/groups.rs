//! Consumer groups: FindCoordinator, the classic protocol (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup), offsets (OffsetCommit, OffsetFetch,
//! OffsetDelete), ListGroups, DescribeGroups, DeleteGroups, and the KIP-848
//! protocol (ConsumerGroupHeartbeat, ConsumerGroupDescribe).

use std::time::Duration;

use anyhow::{ensure, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
#[allow(unused_imports)]
use crate::msg::*;
use kafka_protocol::protocol::Encodable;

use super::{case, case_with_setting, Case};
use crate::ctx::{s, Ctx};

const MEMBER_ID_REQUIRED: i16 = 79;
/// The broker setting of the `migration.disabled_policy*` cases' pass.
const MIGRATION_DISABLED: &str = "group.consumer.migration.policy=disabled";

/// A consumer-protocol subscription to `topic` (version prefix + body).
fn subscription(topic: &str) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    let body = ConsumerProtocolSubscription::default().with_topics(vec![s(topic)]);
    // Encoding a message we built cannot fail.
    body.encode(&mut buf, 0).expect("encoding a subscription");
    buf.freeze()
}

fn assignment(topic: &str) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    let body = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
        kafka_protocol::messages::consumer_protocol_assignment::TopicPartition::default()
            .with_topic(TopicName(s(topic)))
            .with_partitions(vec![0]),
    ]);
    body.encode(&mut buf, 0).expect("encoding an assignment");
    buf.freeze()
}

fn join_request(group: &str, member: &str, instance: Option<&str>, topic: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(s("range")).with_metadata(subscription(topic))])
}

fn sync_request(group: &str, member: &str, generation: i32, instance: Option<&str>, assignments: Vec<(String, Bytes)>) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(
            assignments
                .into_iter()
                .map(|(m, a)| SyncGroupRequestAssignment::default().with_member_id(s(&m)).with_assignment(a))
                .collect(),
        )
}

fn heartbeat(group: &str, member: &str, generation: i32, instance: Option<&str>) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_generation_id(generation)
        .with_group_instance_id(instance.map(s))
}

/// Joins (twice if the broker asks for a member id) and returns (member id, generation).
fn join(ctx: &mut Ctx, group: &str, instance: Option<&str>, topic: &str) -> Result<(String, i32)> {
    let mut response = ctx.send(&join_request(group, "", instance, topic))?;
    if response.error_code == MEMBER_ID_REQUIRED {
        let member = response.member_id.to_string();
        response = ctx.send(&join_request(group, &member, instance, topic))?;
    }
    ensure!(response.error_code == 0, "JoinGroup failed with {}", response.error_code);
    Ok((response.member_id.to_string(), response.generation_id))
}

/// One member, leader, synced: a Stable group subscribed to `topic`.
fn stable_member(ctx: &mut Ctx, group: &str, instance: Option<&str>, topic: &str) -> Result<(String, i32)> {
    let (member, generation) = join(ctx, group, instance, topic)?;
    let response = ctx.send(&sync_request(group, &member, generation, instance, vec![(member.clone(), assignment(topic))]))?;
    ensure!(response.error_code == 0, "SyncGroup failed with {}", response.error_code);
    Ok((member, generation))
}

fn commit_request(group: &str, generation: i32, member: &str, topic: &str, partition: i32, offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(TopicName(s(topic))).with_partitions(vec![
            OffsetCommitRequestPartition::default()
                .with_partition_index(partition)
                .with_committed_offset(offset)
                .with_committed_metadata(Some(s("meta"))),
        ])])
}

/// OffsetFetch v8+ (a list of groups).
fn offset_fetch(group: &str, topic: Option<&str>) -> OffsetFetchRequest {
    let topics = topic.map(|t| vec![OffsetFetchRequestTopics::default().with_name(TopicName(s(t))).with_partition_indexes(vec![0])]);
    OffsetFetchRequest::default()
        .with_groups(vec![OffsetFetchRequestGroup::default().with_group_id(GroupId(s(group))).with_topics(topics)])
}

/// OffsetFetch up to v7 (one group).
fn offset_fetch_v7(group: &str, topic: &str) -> OffsetFetchRequest {
    OffsetFetchRequest::default().with_group_id(GroupId(s(group))).with_topics(Some(vec![
        OffsetFetchRequestTopic::default().with_name(TopicName(s(topic))).with_partition_indexes(vec![0]),
    ]))
}

fn offset_delete(group: &str, topic: &str) -> OffsetDeleteRequest {
    OffsetDeleteRequest::default().with_group_id(GroupId(s(group))).with_topics(vec![OffsetDeleteRequestTopic::default()
        .with_name(TopicName(s(topic)))
        .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(0)])])
}

/// LeaveGroup v3+ (a list of members).
fn leave(group: &str, member: &str) -> LeaveGroupRequest {
    LeaveGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_members(vec![MemberIdentity::default().with_member_id(s(member))])
}

fn describe_groups(group: &str) -> DescribeGroupsRequest {
    DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))])
}

fn delete_groups(group: &str) -> DeleteGroupsRequest {
    DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))])
}

/// v4+ batches keys; earlier versions carry one `key`.
fn find_coordinator(key: &str, key_type: i8) -> FindCoordinatorRequest {
    FindCoordinatorRequest::default().with_key_type(key_type).with_coordinator_keys(vec![s(key)])
}

fn find_coordinator_v3(key: &str, key_type: i8) -> FindCoordinatorRequest {
    FindCoordinatorRequest::default().with_key(s(key)).with_key_type(key_type)
}

fn cg_heartbeat(group: &str, member: &str, epoch: i32, topic: Option<&str>) -> ConsumerGroupHeartbeatRequest {
    let mut request = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(10_000)
        .with_subscribed_topic_names(topic.map(|t| vec![TopicName(s(t))]));
    if epoch == 0 {
        request.topic_partitions = Some(vec![]);
    }
    request
}

/// A KIP-848 member id: clients generate their own (KIP-1082).
fn cg_member(ctx: &Ctx, label: &str) -> String {
    ctx.name(label).chars().chain("-0000000000000000".chars()).take(22).collect()
}

/// ConsumerGroupDescribe with the members in a deterministic order (Kafka
/// keeps them in a hash map): classic members (type 0) first.
fn describe_mixed_group(ctx: &mut Ctx, label: &str, group: &str) -> Result<()> {
    let mut response = ctx.send(&ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]))?;
    for described in &mut response.groups {
        described.members.sort_by_key(|m| m.member_type);
    }
    ctx.record(label, &response)
}

/// Our group's line in ListGroups (type, state, protocol type).
fn list_our_group(ctx: &mut Ctx, label: &str, group: &str) -> Result<()> {
    let response = ctx.send(&ListGroupsRequest::default())?;
    let ours: Vec<_> = response.groups.iter().filter(|g| g.group_id.0.as_str() == group).collect();
    ctx.record(label, &ours)
}

/// A stable classic group with one member, upgraded by a consumer-protocol
/// member joining it: (topic, group, classic member, consumer member).
fn upgraded_group(ctx: &mut Ctx, base: &str) -> Result<(String, String, String, String)> {
    let (topic, group, classic, _) = group_setup(ctx, base, None)?;
    let member = cg_member(ctx, "c");
    let joined = ctx.send(&cg_heartbeat(&group, &member, 0, Some(&topic)))?;
    ensure!(joined.error_code == 0, "the consumer-protocol member's join failed with {}", joined.error_code);
    Ok((topic, group, classic, member))
}

/// A topic and a stable classic group on it, for group error paths.
fn group_setup(ctx: &mut Ctx, base: &str, instance: Option<&str>) -> Result<(String, String, String, i32)> {
    let topic = ctx.name(&format!("{base}-t"));
    ctx.create_topic(&topic, 1, &[])?;
    let group = ctx.name(&format!("{base}-g"));
    let (member, generation) = stable_member(ctx, &group, instance, &topic)?;
    Ok((topic, group, member, generation))
}

pub fn cases() -> Vec<Case> {
    vec![
        case("find_coordinator.group", |ctx| {
            let group = ctx.name("fc-g");
            ctx.probe("probe", &find_coordinator(&group, 0))?;
            Ok(())
        }),
        case("find_coordinator.group_v3", |ctx| {
            let group = ctx.name("fc-g3");
            ctx.probe_v("probe", &find_coordinator_v3(&group, 0), 3)?;
            Ok(())
        }),
        case("find_coordinator.transaction", |ctx| {
            // Kafka creates __transaction_state on first use: ask until settled.
            let txn = ctx.name("fc-txn");
            let response = ctx.send_until_ready(&find_coordinator(&txn, 1), 10, |r| r.coordinators.first().map_or(0, |c| c.error_code))?;
            ctx.record("probe", &response)?;
            Ok(())
        }),
        case("find_coordinator.share", |ctx| {
            let key = format!("{}:topic-id:0", ctx.name("fc-share"));
            ctx.probe("probe", &find_coordinator(&key, 2))?;
            Ok(())
        }),
        case("find_coordinator.invalid_key_type", |ctx| {
            ctx.probe("probe", &find_coordinator("x", 7))?;
            Ok(())
        }),
        case("find_coordinator.empty_group_id", |ctx| {
            ctx.probe("probe", &find_coordinator("", 0))?;
            Ok(())
        }),
        case("join_group.member_id_required", |ctx| {
            let group = ctx.name("jg-required");
            ctx.probe("probe", &join_request(&group, "", None, "t"))?;
            Ok(())
        }),
        case("join_group.second_join_completes", |ctx| {
            let group = ctx.name("jg-complete");
            let first = ctx.send(&join_request(&group, "", None, "t"))?;
            ctx.probe("probe", &join_request(&group, &first.member_id, None, "t"))?;
            Ok(())
        }),
        case("join_group.static_member_no_member_id_round", |ctx| {
            let group = ctx.name("jg-static");
            ctx.probe("probe", &join_request(&group, "", Some("instance-1"), "t"))?;
            Ok(())
        }),
        case("join_group.unknown_member_id", |ctx| {
            let group = ctx.name("jg-unknown");
            ctx.probe("probe", &join_request(&group, "no-such-member", None, "t"))?;
            Ok(())
        }),
        case("join_group.session_timeout_too_small", |ctx| {
            let group = ctx.name("jg-session");
            ctx.probe("probe", &join_request(&group, "", None, "t").with_session_timeout_ms(1))?;
            Ok(())
        }),
        case("join_group.session_timeout_too_large", |ctx| {
            let group = ctx.name("jg-session-large");
            ctx.probe("probe", &join_request(&group, "", None, "t").with_session_timeout_ms(3_600_000))?;
            Ok(())
        }),
        case("join_group.empty_group_id", |ctx| {
            ctx.probe("probe", &join_request("", "", None, "t"))?;
            Ok(())
        }),
        case("join_group.empty_protocol_type", |ctx| {
            let group = ctx.name("jg-no-type");
            ctx.probe("probe", &join_request(&group, "", None, "t").with_protocol_type(s("")))?;
            Ok(())
        }),
        case("join_group.no_protocols", |ctx| {
            let group = ctx.name("jg-no-protocols");
            ctx.probe("probe", &join_request(&group, "", None, "t").with_protocols(vec![]))?;
            Ok(())
        }),
        case("join_group.inconsistent_protocol", |ctx| {
            let (topic, group, _, _) = group_setup(ctx, "jg-inconsistent", None)?;
            let mut request = join_request(&group, "", None, &topic);
            request.protocols[0].name = s("roundrobin");
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("join_group.rejoin_stable_leader", |ctx| {
            // The leader rejoining with unchanged metadata: a new generation.
            let (topic, group, member, _) = group_setup(ctx, "jg-rejoin", None)?;
            ctx.probe("probe", &join_request(&group, &member, None, &topic))?;
            Ok(())
        }),
        case("sync_group.leader", |ctx| {
            let topic = ctx.name("sg-t");
            let group = ctx.name("sg-g");
            let (member, generation) = join(ctx, &group, None, &topic)?;
            ctx.probe("probe", &sync_request(&group, &member, generation, None, vec![(member.clone(), assignment(&topic))]))?;
            Ok(())
        }),
        case("sync_group.unknown_member", |ctx| {
            let (_, group, _, generation) = group_setup(ctx, "sg-unknown", None)?;
            ctx.probe("probe", &sync_request(&group, "no-such-member", generation, None, vec![]))?;
            Ok(())
        }),
        case("sync_group.illegal_generation", |ctx| {
            let (_, group, member, generation) = group_setup(ctx, "sg-generation", None)?;
            ctx.probe("probe", &sync_request(&group, &member, generation + 5, None, vec![]))?;
            Ok(())
        }),
        case("sync_group.unknown_group", |ctx| {
            let group = ctx.name("sg-nogroup");
            ctx.probe("probe", &sync_request(&group, "m", 1, None, vec![]))?;
            Ok(())
        }),
        case("sync_group.wrong_protocol_name", |ctx| {
            let topic = ctx.name("sg-proto-t");
            let group = ctx.name("sg-proto-g");
            let (member, generation) = join(ctx, &group, None, &topic)?;
            let request = sync_request(&group, &member, generation, None, vec![]).with_protocol_name(Some(s("roundrobin")));
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("heartbeat.stable", |ctx| {
            let (_, group, member, generation) = group_setup(ctx, "hb-ok", None)?;
            ctx.probe("probe", &heartbeat(&group, &member, generation, None))?;
            Ok(())
        }),
        case("heartbeat.unknown_member", |ctx| {
            let (_, group, _, generation) = group_setup(ctx, "hb-unknown", None)?;
            ctx.probe("probe", &heartbeat(&group, "no-such-member", generation, None))?;
            Ok(())
        }),
        case("heartbeat.illegal_generation", |ctx| {
            let (_, group, member, generation) = group_setup(ctx, "hb-generation", None)?;
            ctx.probe("probe", &heartbeat(&group, &member, generation + 1, None))?;
            Ok(())
        }),
        case("heartbeat.unknown_group", |ctx| {
            let group = ctx.name("hb-nogroup");
            ctx.probe("probe", &heartbeat(&group, "m", 1, None))?;
            Ok(())
        }),
        case("heartbeat.rebalance_in_progress", |ctx| {
            let (topic, group, member, generation) = group_setup(ctx, "hb-rebalance", None)?;
            // A second member's join (on its own connection) starts a rebalance
            // and waits for it; the first member's heartbeat must say so.
            let mut other = ctx.new_conn()?;
            let version = ctx.version(ApiKey::JoinGroup);
            let first = other.send(&join_request(&group, "", None, &topic), version)?;
            other.write(&join_request(&group, &first.member_id, None, &topic), version)?;
            std::thread::sleep(Duration::from_millis(1000));
            ctx.probe("probe", &heartbeat(&group, &member, generation, None))?;
            Ok(())
        }),
        case("heartbeat.fenced_instance_id", |ctx| {
            let (topic, group, old_member, generation) = group_setup(ctx, "hb-fenced", Some("instance-a"))?;
            // The same static instance joins again (a restart): the old member id is fenced.
            ctx.send(&join_request(&group, "", Some("instance-a"), &topic))?;
            ctx.probe("probe", &heartbeat(&group, &old_member, generation, Some("instance-a")))?;
            Ok(())
        }),
        case("heartbeat.unknown_static_instance", |ctx| {
            let (_, group, member, generation) = group_setup(ctx, "hb-instance", None)?;
            ctx.probe("probe", &heartbeat(&group, &member, generation, Some("never-joined")))?;
            Ok(())
        }),
        case("heartbeat.completing_rebalance", |ctx| {
            // Joined, not yet synced: Kafka tells a heartbeat the rebalance is still on.
            let topic = ctx.name("hb-cr-t");
            let group = ctx.name("hb-cr-g");
            let (member, generation) = join(ctx, &group, None, &topic)?;
            ctx.probe("probe", &heartbeat(&group, &member, generation, None))?;
            Ok(())
        }),
        case("sync_group.follower_before_leader", |ctx| {
            // Two members joined; the follower's sync waits for the leader's.
            let topic = ctx.name("sg-f-t");
            ctx.create_topic(&topic, 1, &[])?;
            let group = ctx.name("sg-f-g");
            let (leader, _) = stable_member(ctx, &group, None, &topic)?;
            let mut other = ctx.new_conn()?;
            let join_version = ctx.version(ApiKey::JoinGroup);
            let first = other.send(&join_request(&group, "", None, &topic), join_version)?;
            other.write(&join_request(&group, &first.member_id, None, &topic), join_version)?;
            std::thread::sleep(Duration::from_millis(1000));
            let rejoined = ctx.send(&join_request(&group, &leader, None, &topic))?;
            let follower = other.read::<JoinGroupRequest>(join_version)?;
            ctx.record("leader_join", &(rejoined.error_code, rejoined.generation_id, rejoined.members.len()))?;
            ctx.record("follower_join", &(follower.error_code, follower.generation_id, follower.members.len()))?;
            let sync_version = ctx.version(ApiKey::SyncGroup);
            other.write(&sync_request(&group, &follower.member_id, follower.generation_id, None, vec![]), sync_version)?;
            let assignments = vec![(leader.clone(), assignment(&topic)), (follower.member_id.to_string(), Bytes::new())];
            let leader_sync = ctx.send(&sync_request(&group, &leader, rejoined.generation_id, None, assignments))?;
            let follower_sync = other.read::<SyncGroupRequest>(sync_version)?;
            ctx.record("leader_sync", &leader_sync)?;
            ctx.record("follower_sync", &follower_sync)?;
            Ok(())
        }),
        case("leave_group.member", |ctx| {
            let (_, group, member, _) = group_setup(ctx, "lg-ok", None)?;
            ctx.probe("probe", &leave(&group, &member))?;
            ctx.probe("describe", &describe_groups(&group))?;
            Ok(())
        }),
        case("leave_group.unknown_member", |ctx| {
            let (_, group, _, _) = group_setup(ctx, "lg-unknown", None)?;
            ctx.probe("probe", &leave(&group, "no-such-member"))?;
            Ok(())
        }),
        case("leave_group.unknown_group", |ctx| {
            let group = ctx.name("lg-nogroup");
            ctx.probe("probe", &leave(&group, "m"))?;
            Ok(())
        }),
        case("leave_group.static_member_by_instance", |ctx| {
            let (_, group, _, _) = group_setup(ctx, "lg-static", Some("instance-b"))?;
            let request = LeaveGroupRequest::default().with_group_id(GroupId(s(&group))).with_members(vec![
                MemberIdentity::default().with_member_id(s("")).with_group_instance_id(Some(s("instance-b"))),
            ]);
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("offset_commit.standalone", |ctx| {
            let topic = ctx.name("oc-t");
            ctx.create_topic(&topic, 1, &[])?;
            let group = ctx.name("oc-g");
            ctx.probe("probe", &commit_request(&group, -1, "", &topic, 0, 5))?;
            ctx.probe("fetch", &offset_fetch(&group, Some(&topic)))?;
            Ok(())
        }),
        case("offset_commit.unknown_topic", |ctx| {
            let topic = ctx.name("oc-unknown-t");
            let group = ctx.name("oc-unknown-g");
            ctx.probe("probe", &commit_request(&group, -1, "", &topic, 0, 5))?;
            Ok(())
        }),
        case("offset_commit.unknown_partition", |ctx| {
            let topic = ctx.name("oc-part-t");
            ctx.create_topic(&topic, 1, &[])?;
            let group = ctx.name("oc-part-g");
            ctx.probe("probe", &commit_request(&group, -1, "", &topic, 9, 5))?;
            Ok(())
        }),
        case("offset_commit.beyond_high_watermark", |ctx| {
            // Kafka does not check committed offsets against the log.
            let topic = ctx.name("oc-beyond-t");
            ctx.create_topic(&topic, 1, &[])?;
            let group = ctx.name("oc-beyond-g");
            ctx.probe("probe", &commit_request(&group, -1, "", &topic, 0, 1_000_000))?;
            Ok(())
        }),
        case("offset_commit.member_of_stable_group", |ctx| {
            let (topic, group, member, generation) = group_setup(ctx, "oc-member", None)?;
            ctx.probe("probe", &commit_request(&group, generation, &member, &topic, 0, 3))?;
            Ok(())
        }),
        case("offset_commit.unknown_member", |ctx| {
            let (topic, group, _, generation) = group_setup(ctx, "oc-unknown-member", None)?;
            ctx.probe("probe", &commit_request(&group, generation, "no-such-member", &topic, 0, 3))?;
            Ok(())
        }),
        case("offset_commit.illegal_generation", |ctx| {
            let (topic, group, member, generation) = group_setup(ctx, "oc-generation", None)?;
            ctx.probe("probe", &commit_request(&group, generation + 3, &member, &topic, 0, 3))?;
            Ok(())
        }),
        case("offset_commit.standalone_to_active_group", |ctx| {
            let (topic, group, _, _) = group_setup(ctx, "oc-active", None)?;
            ctx.probe("probe", &commit_request(&group, -1, "", &topic, 0, 3))?;
            Ok(())
        }),
        case("offset_commit.generation_on_unknown_group", |ctx| {
            let topic = ctx.name("oc-gen-t");
            ctx.create_topic(&topic, 1, &[])?;
            let group = ctx.name("oc-gen-g");
            ctx.probe("probe", &commit_request(&group, 4, "someone", &topic, 0, 3))?;
            Ok(())
        }),
        case("offset_commit.empty_group_id", |ctx| {
            let topic = ctx.name("oc-empty-t");
            ctx.create_topic(&topic, 1, &[])?;
            ctx.probe("probe", &commit_request("", -1, "", &topic, 0, 3))?;
            Ok(())
        }),
        case("offset_commit.fenced_instance", |ctx| {
            let (topic, group, member, generation) = group_setup(ctx, "oc-fenced", Some("instance-c"))?;
            ctx.send(&join_request(&group, "", Some("instance-c"), &topic))?;
            let request = commit_request(&group, generation, &member, &topic, 0, 3).with_group_instance_id(Some(s("instance-c")));
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("offset_fetch.unknown_group", |ctx| {
            let topic = ctx.name("of-t");
            ctx.create_topic(&topic, 1, &[])?;
            let group = ctx.name("of-unknown");
            ctx.probe("probe", &offset_fetch(&group, Some(&topic)))?;
            Ok(())
        }),
        case("offset_fetch.all_topics", |ctx| {
            let topic = ctx.name("of-all-t");
            ctx.create_topic(&topic, 1, &[])?;
            let group = ctx.name("of-all-g");
            ctx.send(&commit_request(&group, -1, "", &topic, 0, 7))?;
            ctx.probe("probe", &offset_fetch(&group, None))?;
            Ok(())
        }),
        case("offset_fetch.unknown_topic", |ctx| {
            let topic = ctx.name("of-known-t");
            ctx.create_topic(&topic, 1, &[])?;
            let group = ctx.name("of-unknown-topic-g");
            ctx.send(&commit_request(&group, -1, "", &topic, 0, 7))?;
            ctx.probe("probe", &offset_fetch(&group, Some(&ctx.name("of-missing-t"))))?;
            Ok(())
        }),
        case("offset_fetch.v7_single_group", |ctx| {
            let topic = ctx.name("of-v7-t");
            ctx.create_topic(&topic, 1, &[])?;
            let group = ctx.name("of-v7-g");
            ctx.send(&commit_request(&group, -1, "", &topic, 0, 7))?;
            ctx.probe_v("probe", &offset_fetch_v7(&group, &topic), 7)?;
            Ok(())
        }),
        case("offset_delete.empty_group", |ctx| {
            let topic = ctx.name("od-t");
            ctx.create_topic(&topic, 1, &[])?;
            let group = ctx.name("od-g");
            ctx.send(&commit_request(&group, -1, "", &topic, 0, 7))?;
            ctx.probe("probe", &offset_delete(&group, &topic))?;
            ctx.probe("fetch", &offset_fetch(&group, Some(&topic)))?;
            Ok(())
        }),
        case("offset_delete.unknown_group", |ctx| {
            let group = ctx.name("od-unknown");
            ctx.probe("probe", &offset_delete(&group, "t"))?;
            Ok(())
        }),
        case("offset_delete.subscribed_topic", |ctx| {
            let (topic, group, member, generation) = group_setup(ctx, "od-subscribed", None)?;
            ctx.send(&commit_request(&group, generation, &member, &topic, 0, 2))?;
            ctx.probe("probe", &offset_delete(&group, &topic))?;
            Ok(())
        }),
        case("offset_delete.unknown_topic", |ctx| {
            let topic = ctx.name("od-known-t");
            ctx.create_topic(&topic, 1, &[])?;
            let group = ctx.name("od-unknown-topic-g");
            ctx.send(&commit_request(&group, -1, "", &topic, 0, 7))?;
            ctx.probe("probe", &offset_delete(&group, &ctx.name("od-missing-t")))?;
            Ok(())
        }),
        case("describe_groups.unknown", |ctx| {
            let group = ctx.name("dg-unknown");
            ctx.probe("probe", &describe_groups(&group))?;
            Ok(())
        }),
        case("describe_groups.stable", |ctx| {
            let (_, group, _, _) = group_setup(ctx, "dg-stable", None)?;
            ctx.probe("probe", &describe_groups(&group))?;
            Ok(())
        }),
        case("describe_groups.empty_after_commit", |ctx| {
            let topic = ctx.name("dg-empty-t");
            ctx.create_topic(&topic, 1, &[])?;
            let group = ctx.name("dg-empty-g");
            ctx.send(&commit_request(&group, -1, "", &topic, 0, 7))?;
            ctx.probe("probe", &describe_groups(&group))?;
            Ok(())
        }),
        case("describe_groups.completing_rebalance", |ctx| {
            let topic = ctx.name("dg-cr-t");
            let group = ctx.name("dg-cr-g");
            join(ctx, &group, None, &topic)?;
            ctx.probe("probe", &describe_groups(&group))?;
            Ok(())
        }),
        case("list_groups.contains_stable_group", |ctx| {
            let (_, group, _, _) = group_setup(ctx, "lsg", None)?;
            let response = ctx.send(&ListGroupsRequest::default().with_states_filter(vec![s("Stable")]))?;
            ctx.record("error_code", &response.error_code)?;
            let ours: Vec<_> = response.groups.iter().filter(|g| g.group_id.0.as_str() == group).collect();
            ctx.record("ours", &ours)?;
            Ok(())
        }),
        case("list_groups.state_filter_excludes", |ctx| {
            let (_, group, _, _) = group_setup(ctx, "lsg-ex", None)?;
            let response = ctx.send(&ListGroupsRequest::default().with_states_filter(vec![s("Empty")]))?;
            let ours = response.groups.iter().any(|g| g.group_id.0.as_str() == group);
            ctx.record("listed", &ours)?;
            Ok(())
        }),
        case("list_groups.type_filter_consumer", |ctx| {
            let (_, group, _, _) = group_setup(ctx, "lsg-type", None)?;
            let response = ctx.send(&ListGroupsRequest::default().with_types_filter(vec![s("consumer")]))?;
            let ours = response.groups.iter().any(|g| g.group_id.0.as_str() == group);
            ctx.record("listed", &ours)?;
            Ok(())
        }),
        case("list_groups.unknown_state_filter", |ctx| {
            let response = ctx.send(&ListGroupsRequest::default().with_states_filter(vec![s("Sleeping")]))?;
            ctx.record("error_code", &response.error_code)?;
            ctx.record("count", &response.groups.len())?;
            Ok(())
        }),
        case("delete_groups.unknown", |ctx| {
            let group = ctx.name("dlg-unknown");
            ctx.probe("probe", &delete_groups(&group))?;
            Ok(())
        }),
        case("delete_groups.non_empty", |ctx| {
            let (_, group, _, _) = group_setup(ctx, "dlg-busy", None)?;
            ctx.probe("probe", &delete_groups(&group))?;
            Ok(())
        }),
        case("delete_groups.empty", |ctx| {
            let topic = ctx.name("dlg-t");
            ctx.create_topic(&topic, 1, &[])?;
            let group = ctx.name("dlg-g");
            ctx.send(&commit_request(&group, -1, "", &topic, 0, 7))?;
            ctx.probe("probe", &delete_groups(&group))?;
            ctx.probe("describe_after", &describe_groups(&group))?;
            Ok(())
        }),
        case("consumer_group_heartbeat.join", |ctx| {
            let topic = ctx.name("cgh-t");
            ctx.create_topic(&topic, 1, &[])?;
            let group = ctx.name("cgh-g");
            let member = cg_member(ctx, "m");
            let first = ctx.send(&cg_heartbeat(&group, &member, 0, Some(&topic)))?;
            ctx.record("first_error_code", &first.error_code)?;
            // The assignment may come with the first answer or a later one
            // (Kafka computes it once the coordinator has the topic's metadata).
            let mut response = first;
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while response.assignment.as_ref().is_none_or(|a| a.topic_partitions.is_empty()) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
                response = ctx.send(&cg_heartbeat(&group, &member, response.member_epoch, None))?;
            }
            ctx.rule("settled.member_epoch", crate::ctx::Rule::Ignore);
            ctx.record("settled", &response)?;
            Ok(())
        }),
        case("consumer_group_heartbeat.stale_member_epoch", |ctx| {
            let topic = ctx.name("cgh-stale-t");
            ctx.create_topic(&topic, 1, &[])?;
            let group = ctx.name("cgh-stale-g");
            let member = cg_member(ctx, "m");
            let joined = ctx.send(&cg_heartbeat(&group, &member, 0, Some(&topic)))?;
            ensure!(joined.error_code == 0, "join failed with {}", joined.error_code);
            ctx.probe("probe", &cg_heartbeat(&group, &member, joined.member_epoch + 7, None))?;
            Ok(())
        }),
        case("consumer_group_heartbeat.unknown_member", |ctx| {
            let topic = ctx.name("cgh-unknown-t");
            ctx.create_topic(&topic, 1, &[])?;
            let group = ctx.name("cgh-unknown-g");
            let member = cg_member(ctx, "m");
            ctx.send(&cg_heartbeat(&group, &member, 0, Some(&topic)))?;
            let stranger = cg_member(ctx, "x");
            ctx.probe("probe", &cg_heartbeat(&group, &stranger, 1, None))?;
            Ok(())
        }),
        case("consumer_group_heartbeat.join_without_subscription", |ctx| {
            let group = ctx.name("cgh-nosub");
            let member = cg_member(ctx, "m");
            ctx.probe("probe", &cg_heartbeat(&group, &member, 0, None))?;
            Ok(())
        }),
        case("consumer_group_heartbeat.empty_member_id", |ctx| {
            let group = ctx.name("cgh-nomember");
            ctx.probe("probe", &cg_heartbeat(&group, "", 0, Some("t")))?;
            Ok(())
        }),
        case("consumer_group_heartbeat.leave", |ctx| {
            let topic = ctx.name("cgh-leave-t");
            ctx.create_topic(&topic, 1, &[])?;
            let group = ctx.name("cgh-leave-g");
            let member = cg_member(ctx, "m");
            ctx.send(&cg_heartbeat(&group, &member, 0, Some(&topic)))?;
            ctx.probe("probe", &cg_heartbeat(&group, &member, -1, None))?;
            Ok(())
        }),
        case("consumer_group_heartbeat.unknown_assignor", |ctx| {
            let group = ctx.name("cgh-assignor");
            let member = cg_member(ctx, "m");
            let request = cg_heartbeat(&group, &member, 0, Some("t")).with_server_assignor(Some(s("fancy")));
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("consumer_group_heartbeat.on_classic_group", |ctx| {
            let (topic, group, _, _) = group_setup(ctx, "cgh-classic", None)?;
            let member = cg_member(ctx, "m");
            ctx.probe("probe", &cg_heartbeat(&group, &member, 0, Some(&topic)))?;
            Ok(())
        }),
        case("consumer_group_heartbeat.invalid_regex", |ctx| {
            let group = ctx.name("cgh-regex");
            let member = cg_member(ctx, "m");
            let request = cg_heartbeat(&group, &member, 0, None).with_subscribed_topic_regex(Some(s("(unclosed")));
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("consumer_group_describe.unknown", |ctx| {
            let group = ctx.name("cgd-unknown");
            ctx.probe("probe", &ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(&group))]))?;
            Ok(())
        }),
        case("consumer_group_describe.classic_group", |ctx| {
            let (_, group, _, _) = group_setup(ctx, "cgd-classic", None)?;
            ctx.probe("probe", &ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(&group))]))?;
            Ok(())
        }),
        case("migration.classic_member_rejoins_upgraded_group", |ctx| {
            // Upgrade: the classic member is told to rejoin, rejoins without a
            // join barrier, and its SyncGroup carries the coordinator's assignment.
            let (topic, group, classic, member) = upgraded_group(ctx, "mig-rejoin")?;
            ctx.probe("heartbeat_during_rebalance", &heartbeat(&group, &classic, 1, None))?;
            describe_mixed_group(ctx, "describe_reconciling", &group)?;
            let joined = ctx.probe("rejoin", &join_request(&group, &classic, None, &topic))?;
            ctx.probe("sync", &sync_request(&group, &classic, joined.generation_id, None, vec![]))?;
            ctx.probe("heartbeat_stable", &heartbeat(&group, &classic, joined.generation_id, None))?;
            ctx.probe("heartbeat_old_generation", &heartbeat(&group, &classic, 1, None))?;
            ctx.probe("consumer_heartbeat", &cg_heartbeat(&group, &member, joined.generation_id, None))?;
            describe_mixed_group(ctx, "describe_stable", &group)?;
            ctx.probe("describe_groups", &describe_groups(&group))?;
            list_our_group(ctx, "list", &group)?;
            Ok(())
        }),
        case("migration.classic_member_joins_consumer_group", |ctx| {
            let topic = ctx.name("mig-join-t");
            ctx.create_topic(&topic, 2, &[])?;
            let group = ctx.name("mig-join-g");
            let member = cg_member(ctx, "c");
            let mut consumer = ctx.send(&cg_heartbeat(&group, &member, 0, Some(&topic)))?;
            // The consumer member owns both partitions before the classic member joins. Kafka's
            // first answer may carry none when its coordinator has not yet seen the new topic (a
            // CI run caught Kafka there while Runnel had assigned both: different sync answers).
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while consumer.assignment.as_ref().map_or(0, |a| a.topic_partitions.iter().map(|t| t.partitions.len()).sum::<usize>()) < 2
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(200));
                consumer = ctx.send(&cg_heartbeat(&group, &member, consumer.member_epoch, None))?;
            }
            // Kafka recomputes a target assignment at most once a second (group.consumer.assignment.interval.ms).
            std::thread::sleep(Duration::from_millis(1200));
            let first = ctx.send(&join_request(&group, "", None, &topic))?;
            // A new consumer group's first epoch differs (see consumer_group_heartbeat.join):
            // epochs are compared relative to the consumer-protocol member's.
            for field in ["join.generation_id", "describe.groups[*].*epoch"] {
                ctx.rule(field, crate::ctx::Rule::Ignore);
            }
            let joined = ctx.probe("join", &join_request(&group, &first.member_id, None, &topic))?;
            ctx.record("join_generation_after_the_consumer_member", &(joined.generation_id - consumer.member_epoch))?;
            ctx.probe("sync_wrong_generation", &sync_request(&group, &first.member_id, joined.generation_id + 1, None, vec![]))?;
            ctx.probe("sync", &sync_request(&group, &first.member_id, joined.generation_id, None, vec![]))?;
            ctx.probe("heartbeat", &heartbeat(&group, &first.member_id, joined.generation_id, None))?;
            ctx.probe("heartbeat_unknown_member", &heartbeat(&group, "no-such-member", joined.generation_id, None))?;
            let mut other_protocol = join_request(&group, "", None, &topic);
            other_protocol.protocols[0].name = s("roundrobin");
            ctx.probe("inconsistent_protocol", &other_protocol)?;
            describe_mixed_group(ctx, "describe", &group)?;
            let described = ctx.send(&ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(&group))]))?;
            let relative: Vec<(i32, i32, Vec<(i8, i32)>)> = described
                .groups
                .iter()
                .map(|g| {
                    let mut members: Vec<(i8, i32)> = g.members.iter().map(|m| (m.member_type, m.member_epoch - consumer.member_epoch)).collect();
                    members.sort();
                    (g.group_epoch - consumer.member_epoch, g.assignment_epoch - consumer.member_epoch, members)
                })
                .collect();
            ctx.record("describe_epochs_after_the_consumer_member", &relative)?;
            Ok(())
        }),
        case("migration.classic_member_leaves_mixed_group", |ctx| {
            // The consumer-protocol member stays: the group stays a consumer group.
            let (_, group, classic, _) = upgraded_group(ctx, "mig-leave")?;
            ctx.probe("leave", &leave(&group, &classic))?;
            ctx.probe("leave_again", &leave(&group, &classic))?;
            describe_mixed_group(ctx, "describe", &group)?;
            list_our_group(ctx, "list", &group)?;
            Ok(())
        }),
        case("migration.downgrade_when_last_consumer_member_leaves", |ctx| {
            let (topic, group, classic, member) = upgraded_group(ctx, "mig-down")?;
            ctx.probe("consumer_leave", &cg_heartbeat(&group, &member, 2, None).with_member_epoch(-1))?;
            ctx.probe("heartbeat_old_generation", &heartbeat(&group, &classic, 1, None))?;
            ctx.probe("describe_groups", &describe_groups(&group))?;
            describe_mixed_group(ctx, "consumer_group_describe", &group)?;
            list_our_group(ctx, "list", &group)?;
            // The classic group rebalances: its one member rejoins and leads.
            let joined = ctx.probe("rejoin", &join_request(&group, &classic, None, &topic))?;
            ctx.probe("sync", &sync_request(&group, &classic, joined.generation_id, None, vec![(classic.clone(), assignment(&topic))]))?;
            ctx.probe("describe_stable", &describe_groups(&group))?;
            Ok(())
        }),
        case("migration.upgrade_refused_for_other_protocol_types", |ctx| {
            // A classic group of another embedded protocol (e.g. Connect) cannot become a consumer group.
            let group = ctx.name("mig-connect-g");
            let request = join_request(&group, "", Some("worker-1"), "t").with_protocol_type(s("connect"));
            let joined = ctx.send(&request)?;
            ensure!(joined.error_code == 0, "JoinGroup failed with {}", joined.error_code);
            let member = cg_member(ctx, "c");
            ctx.probe("probe", &cg_heartbeat(&group, &member, 0, Some("t")))?;
            ctx.probe("rejoin_epoch", &cg_heartbeat(&group, &member, 3, Some("t")))?;
            Ok(())
        }),
        case_with_setting("migration.disabled_policy_refuses_upgrade", MIGRATION_DISABLED, |ctx| {
            let (topic, group, classic, generation) = group_setup(ctx, "mig-off-up", None)?;
            let member = cg_member(ctx, "c");
            ctx.probe("probe", &cg_heartbeat(&group, &member, 0, Some(&topic)))?;
            ctx.probe("classic_heartbeat", &heartbeat(&group, &classic, generation, None))?;
            Ok(())
        }),
        case_with_setting("migration.disabled_policy_refuses_classic_members", MIGRATION_DISABLED, |ctx| {
            let topic = ctx.name("mig-off-t");
            ctx.create_topic(&topic, 1, &[])?;
            let group = ctx.name("mig-off-g");
            let member = cg_member(ctx, "c");
            ctx.send(&cg_heartbeat(&group, &member, 0, Some(&topic)))?;
            ctx.probe("probe", &join_request(&group, "", None, &topic))?;
            ctx.probe("static", &join_request(&group, "", Some("instance-1"), &topic))?;
            Ok(())
        }),
        case_with_setting("migration.disabled_policy_still_converts_empty_groups", MIGRATION_DISABLED, |ctx| {
            let (topic, group, classic, _) = group_setup(ctx, "mig-off-empty", None)?;
            ctx.send(&leave(&group, &classic))?;
            let member = cg_member(ctx, "c");
            // A new consumer group's first epoch differs (see consumer_group_heartbeat.join).
            ctx.rule("join.member_epoch", crate::ctx::Rule::Ignore);
            let joined = ctx.probe("join", &cg_heartbeat(&group, &member, 0, Some(&topic)))?;
            ctx.send(&cg_heartbeat(&group, &member, joined.member_epoch, None).with_member_epoch(-1))?;
            let first = ctx.send(&join_request(&group, "", None, &topic))?;
            ctx.probe("classic_join", &join_request(&group, &first.member_id, None, &topic))?;
            list_our_group(ctx, "list", &group)?;
            Ok(())
        }),
        case("join_group.classic_join_on_consumer_group", |ctx| {
            let topic = ctx.name("jg-848-t");
            ctx.create_topic(&topic, 1, &[])?;
            let group = ctx.name("jg-848-g");
            let member = cg_member(ctx, "m");
            ctx.send(&cg_heartbeat(&group, &member, 0, Some(&topic)))?;
            ctx.probe("probe", &join_request(&group, "", None, &topic))?;
            Ok(())
        }),
    ]
}
