//! The group coordinator: consumer groups (classic protocol) and their
//! committed offsets.
//!
//! Groups live in memory ([`group::Group`]); committed offsets are written,
//! the way Kafka does it, as records to the internal compacted topic
//! `__consumer_offsets` on this broker's own log (Kafka's key version 1 /
//! value version 3 formats, see [`offsets`]) and read back on start. A commit
//! is answered only once its record is fsynced.

pub mod group;
pub mod offsets;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;

use crate::config::BrokerConfig;
use crate::partition::Partition;
use crate::replica_manager::ReplicaManager;
use group::{Group, GroupState, JoinOutcome, JoinRequest, JoinResult, SyncOutcome, SyncResult};
use offsets::{CommittedOffset, OffsetKey};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's `offset.metadata.max.bytes` default.
pub const OFFSET_METADATA_MAX_BYTES: usize = 4096;
const TICK: Duration = Duration::from_millis(100);

pub struct GroupCoordinator {
    config: Arc<BrokerConfig>,
    replicas: Arc<ReplicaManager>,
    groups: Mutex<HashMap<String, Group>>,
    offsets: Mutex<BTreeMap<OffsetKey, CommittedOffset>>,
}

/// Java's `String.hashCode`, which Kafka uses to map a group to its offsets partition.
fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

impl GroupCoordinator {
    /// Creates `__consumer_offsets` if needed, loads committed offsets from
    /// it, and starts the clock that expires sessions and completes rebalances.
    pub fn start(config: Arc<BrokerConfig>, replicas: Arc<ReplicaManager>) -> Result<Arc<GroupCoordinator>, String> {
        if replicas.topic(OFFSETS_TOPIC).is_none() {
            let mut configs = BTreeMap::new();
            configs.insert("cleanup.policy".to_string(), "compact".to_string());
            replicas
                .create_topic(OFFSETS_TOPIC, config.offsets_topic_num_partitions, 1, configs, false)
                .map_err(|e| format!("creating {OFFSETS_TOPIC}: {e}"))?;
        }
        let coordinator = Arc::new(GroupCoordinator {
            config,
            replicas,
            groups: Mutex::new(HashMap::new()),
            offsets: Mutex::new(BTreeMap::new()),
        });
        coordinator.load_offsets()?;
        let weak = Arc::downgrade(&coordinator);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(TICK);
            loop {
                ticker.tick().await;
                let Some(coordinator) = weak.upgrade() else { return };
                let now = Instant::now();
                for group in coordinator.groups.lock().values_mut() {
                    group.tick(now);
                }
            }
        });
        Ok(coordinator)
    }

    fn offsets_partition(&self, group_id: &str) -> Option<Arc<Partition>> {
        let topic = self.replicas.topic(OFFSETS_TOPIC)?;
        let count = topic.partition_count().max(1) as i32;
        let index = (java_string_hash(group_id) & 0x7fff_ffff) % count;
        topic.partition(index)
    }

    fn load_offsets(&self) -> Result<(), String> {
        let Some(topic) = self.replicas.topic(OFFSETS_TOPIC) else { return Ok(()) };
        let mut loaded = 0usize;
        for partition in topic.partitions() {
            let records = offsets::read_all(&partition).map_err(|e| format!("loading {OFFSETS_TOPIC}: {e}"))?;
            let mut cache = self.offsets.lock();
            let mut groups = self.groups.lock();
            for (key, value) in records {
                groups.entry(key.group.clone()).or_insert_with(|| Group::new(key.group.clone()));
                match value {
                    Some(v) => {
                        cache.insert(key, v);
                    }
                    None => {
                        cache.remove(&key);
                    }
                }
                loaded += 1;
            }
        }
        tracing::info!(records = loaded, "loaded committed offsets");
        Ok(())
    }

    pub fn initial_rebalance_delay(&self) -> Duration {
        Duration::from_millis(self.config.group_initial_rebalance_delay_ms)
    }

    pub fn session_timeout_in_range(&self, session_timeout_ms: i32) -> bool {
        (self.config.group_min_session_timeout_ms..=self.config.group_max_session_timeout_ms).contains(&session_timeout_ms)
    }

    pub fn join(&self, group_id: &str, req: JoinRequest) -> JoinResult {
        let mut groups = self.groups.lock();
        let group = groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id.to_string()));
        group.join(req, Instant::now(), self.initial_rebalance_delay())
    }

    pub fn sync(&self, group_id: &str, member_id: &str, generation: i32, assignments: Vec<(String, bytes::Bytes)>) -> SyncResult {
        let mut groups = self.groups.lock();
        match groups.get_mut(group_id) {
            Some(group) => group.sync(member_id, generation, assignments, Instant::now()),
            None => SyncResult::Now(SyncOutcome {
                error: Some(ResponseError::UnknownMemberId),
                protocol_type: None,
                protocol_name: None,
                assignment: bytes::Bytes::new(),
            }),
        }
    }

    pub fn heartbeat(&self, group_id: &str, member_id: &str, generation: i32) -> Result<(), ResponseError> {
        let mut groups = self.groups.lock();
        let group = groups.get_mut(group_id).ok_or(ResponseError::UnknownMemberId)?;
        group.heartbeat(member_id, generation, Instant::now())
    }

    /// Removes members (by id, or by static instance id); per-member errors.
    pub fn leave(&self, group_id: &str, members: &[(String, Option<String>)]) -> Vec<Result<(), ResponseError>> {
        let mut groups = self.groups.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return members.iter().map(|_| Err(ResponseError::UnknownMemberId)).collect();
        };
        members
            .iter()
            .map(|(member_id, instance)| match group.resolve_member(member_id, instance.as_deref()) {
                Some(id) => {
                    tracing::debug!(group = group_id, member = %id, "member left");
                    group.remove_member(&id, Instant::now());
                    Ok(())
                }
                None => Err(ResponseError::UnknownMemberId),
            })
            .collect()
    }

    /// Validates a commit against the group's membership and generation.
    pub fn validate_commit(&self, group_id: &str, member_id: &str, generation: i32) -> Result<(), ResponseError> {
        let mut groups = self.groups.lock();
        let group = groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id.to_string()));
        group.validate_commit(member_id, generation)
    }

    /// Durably records offsets: appends them to `__consumer_offsets`, waits
    /// for the fsync, then makes them visible to OffsetFetch.
    pub async fn store_offsets(&self, group_id: &str, commits: Vec<(OffsetKey, CommittedOffset)>) -> Result<(), ResponseError> {
        if commits.is_empty() {
            return Ok(());
        }
        let partition = self.offsets_partition(group_id).ok_or(ResponseError::CoordinatorNotAvailable)?;
        let entries: Vec<(OffsetKey, Option<CommittedOffset>)> =
            commits.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
        offsets::append(&partition, &entries).await?;
        let mut cache = self.offsets.lock();
        for (key, value) in commits {
            cache.insert(key, value);
        }
        Ok(())
    }

    pub fn committed(&self, key: &OffsetKey) -> Option<CommittedOffset> {
        self.offsets.lock().get(key).cloned()
    }

    /// Every committed offset of a group: (topic, partition) → offset.
    pub fn committed_for_group(&self, group_id: &str) -> Vec<(OffsetKey, CommittedOffset)> {
        let start = OffsetKey { group: group_id.to_string(), topic: String::new(), partition: i32::MIN };
        self.offsets
            .lock()
            .range(start..)
            .take_while(|(k, _)| k.group == group_id)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// (group id, protocol type, state) of every group.
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        let mut out: Vec<_> = self
            .groups
            .lock()
            .values()
            .map(|g| (g.id.clone(), g.protocol_type.clone().unwrap_or_else(|| "consumer".into()), g.state))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn describe<R>(&self, group_id: &str, f: impl FnOnce(Option<&Group>) -> R) -> R {
        let groups = self.groups.lock();
        f(groups.get(group_id))
    }

    /// OffsetDelete: removes committed offsets of partitions the group does
    /// not subscribe to (all of them when the group has no members).
    /// Per-partition results, or a group-level error.
    pub async fn delete_offsets(&self, group_id: &str, partitions: &[(String, i32)]) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        let subscribed = {
            let groups = self.groups.lock();
            let group = groups.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
            if group.members.is_empty() {
                std::collections::HashSet::new()
            } else {
                group.subscribed_topics().ok_or(ResponseError::NonEmptyGroup)?
            }
        };
        let results: Vec<Option<ResponseError>> = partitions
            .iter()
            .map(|(topic, _)| subscribed.contains(topic).then_some(ResponseError::GroupSubscribedToTopic))
            .collect();
        let doomed: Vec<OffsetKey> = partitions
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_none())
            .map(|((topic, partition), _)| OffsetKey { group: group_id.to_string(), topic: topic.clone(), partition: *partition })
            .filter(|k| self.offsets.lock().contains_key(k))
            .collect();
        if !doomed.is_empty() {
            let partition = self.offsets_partition(group_id).ok_or(ResponseError::CoordinatorNotAvailable)?;
            let tombstones: Vec<(OffsetKey, Option<CommittedOffset>)> = doomed.iter().map(|k| (k.clone(), None)).collect();
            offsets::append(&partition, &tombstones).await?;
            let mut cache = self.offsets.lock();
            for key in doomed {
                cache.remove(&key);
            }
        }
        Ok(results)
    }

    /// Deletes an empty group and its offsets (tombstones in `__consumer_offsets`).
    pub async fn delete_group(&self, group_id: &str) -> Result<(), ResponseError> {
        {
            let groups = self.groups.lock();
            let group = groups.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
            if !group.is_empty() {
                return Err(ResponseError::NonEmptyGroup);
            }
        }
        let keys: Vec<OffsetKey> = self.committed_for_group(group_id).into_iter().map(|(k, _)| k).collect();
        if !keys.is_empty() {
            let partition = self.offsets_partition(group_id).ok_or(ResponseError::CoordinatorNotAvailable)?;
            let tombstones: Vec<(OffsetKey, Option<CommittedOffset>)> = keys.iter().map(|k| (k.clone(), None)).collect();
            offsets::append(&partition, &tombstones).await?;
            let mut cache = self.offsets.lock();
            for key in keys {
                cache.remove(&key);
            }
        }
        self.groups.lock().remove(group_id);
        Ok(())
    }
}

/// Turns a finished join into the protocol's response.
pub fn join_response(outcome: JoinOutcome) -> kafka_protocol::messages::JoinGroupResponse {
    use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
    use kafka_protocol::protocol::StrBytes;
    kafka_protocol::messages::JoinGroupResponse::default()
        .with_error_code(outcome.error.map(|e| e.code()).unwrap_or(0))
        .with_generation_id(outcome.generation)
        .with_protocol_type(outcome.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(outcome.protocol_name.map(StrBytes::from_string))
        .with_leader(StrBytes::from_string(outcome.leader))
        .with_member_id(StrBytes::from_string(outcome.member_id))
        .with_members(
            outcome
                .members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(id))
                        .with_group_instance_id(instance.map(StrBytes::from_string))
                        .with_metadata(metadata)
                })
                .collect(),
        )
}

#[cfg(test)]
mod tests {
    #[test]
    fn group_hash_matches_javas_string_hash_code() {
        assert_eq!(super::java_string_hash(""), 0);
        assert_eq!(super::java_string_hash("a"), 97);
        assert_eq!(super::java_string_hash("hello"), 99_162_322);
        assert_eq!(super::java_string_hash("python_example_group_1"), "python_example_group_1".encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32)));
    }
}
