//! Which partitions of an internal topic a coordinator holds in memory, and
//! how that follows leadership. Shared by the group coordinator
//! (`__consumer_offsets`) and the transaction coordinator
//! (`__transaction_state`): both load a partition's state when this broker
//! becomes its leader, answer COORDINATOR_LOAD_IN_PROGRESS while loading,
//! NOT_COORDINATOR when another broker leads it, and unload on resignation.

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;

use crate::cluster::Cluster;
use crate::partition::{Partition, Role};
use crate::replica_manager::{ReplicaManager, Topic};

/// Java's `String.hashCode`, which Kafka uses to map a group or a
/// transactional id to its partition.
fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The partition of an internal topic a key (group id, transactional id) belongs to, as Kafka maps it.
pub fn partition_for(key: &str, partitions: usize) -> i32 {
    (java_string_hash(key) & 0x7fff_ffff) % (partitions.max(1) as i32)
}

/// A partition led here, by leader epoch (the coordinator epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hosted {
    /// Being replayed: its keys answer COORDINATOR_LOAD_IN_PROGRESS.
    Loading(i32),
    Loaded(i32),
}

/// What changed since the last look at the topic's leaderships.
pub struct LeadershipChanges {
    /// Partitions now led here at an epoch not loaded yet (now marked loading).
    pub to_load: Vec<(Arc<Partition>, i32)>,
    /// Partitions whose state must be forgotten: led elsewhere now, gone, or
    /// led here again at a newer epoch (others may have written meanwhile).
    pub to_unload: Vec<i32>,
    /// The topic's partition count; None when the topic is gone (unload everything).
    pub partition_count: Option<usize>,
}

/// The partitions of one internal topic whose state is in memory here.
/// Its lock is taken alone or after the coordinator's own locks, never before them.
pub struct HostedPartitions {
    topic: &'static str,
    hosted: Mutex<HashMap<i32, Hosted>>,
}

impl HostedPartitions {
    pub fn new(topic: &'static str) -> HostedPartitions {
        HostedPartitions { topic, hosted: Mutex::new(HashMap::new()) }
    }

    /// The topic as this broker serves it (None while the cluster lists another one of that name).
    fn listed_topic(&self, replicas: &ReplicaManager, cluster: &Cluster) -> Option<Arc<Topic>> {
        replicas.topic(self.topic).filter(|t| cluster.is_listed(t))
    }

    /// The coordinator epoch of `key`'s partition if it is led and loaded here:
    /// NOT_COORDINATOR when another broker leads it (or there is no topic),
    /// COORDINATOR_LOAD_IN_PROGRESS while it is being loaded.
    /// NOT_COORDINATOR too while the broker's session with the controller has
    /// lapsed (another broker may coordinate the key by now).
    pub fn coordinator_epoch(&self, replicas: &ReplicaManager, cluster: &Cluster, key: &str) -> Result<i32, ResponseError> {
        if !cluster.in_session() {
            return Err(ResponseError::NotCoordinator);
        }
        let topic = self.listed_topic(replicas, cluster).ok_or(ResponseError::NotCoordinator)?;
        let index = partition_for(key, topic.partition_count());
        let partition = topic.partition(index).ok_or(ResponseError::NotCoordinator)?;
        let state = partition.replica_state();
        if state.role != Role::Leader {
            return Err(ResponseError::NotCoordinator);
        }
        match self.hosted.lock().get(&index) {
            Some(Hosted::Loaded(epoch)) if *epoch == state.leader_epoch => Ok(*epoch),
            _ => Err(ResponseError::CoordinatorLoadInProgress),
        }
    }

    /// Compares the topic's current leaderships with what is hosted, marks
    /// the partitions to load as loading and forgets those to unload; the
    /// caller loads and unloads their state.
    pub fn changes(&self, replicas: &ReplicaManager, cluster: &Cluster) -> LeadershipChanges {
        let topic = self.listed_topic(replicas, cluster);
        let partitions = topic.as_ref().map(|t| t.partitions()).unwrap_or_default();
        let mut changes = LeadershipChanges { to_load: Vec::new(), to_unload: Vec::new(), partition_count: topic.map(|t| t.partition_count()) };
        let mut hosted = self.hosted.lock();
        for partition in &partitions {
            let state = partition.replica_state();
            let current = hosted.get(&partition.index).copied();
            if state.role == Role::Leader {
                let same_epoch = matches!(current, Some(Hosted::Loading(e) | Hosted::Loaded(e)) if e == state.leader_epoch);
                if !same_epoch {
                    if current.is_some() {
                        changes.to_unload.push(partition.index);
                    }
                    hosted.insert(partition.index, Hosted::Loading(state.leader_epoch));
                    changes.to_load.push((partition.clone(), state.leader_epoch));
                }
            } else if current.is_some() {
                hosted.remove(&partition.index);
                changes.to_unload.push(partition.index);
            }
        }
        // Partitions of a topic that is gone (deleted, or replaced by the cluster's).
        let gone: Vec<i32> = hosted.keys().copied().filter(|i| !partitions.iter().any(|p| p.index == *i)).collect();
        for index in gone {
            hosted.remove(&index);
            changes.to_unload.push(index);
        }
        changes
    }

    /// Marks a partition loaded at `epoch` if it is still being loaded at that
    /// epoch; false when leadership moved on meanwhile (the loaded state is then dropped).
    /// Called with the coordinator's own locks held, so the state becomes live at once.
    pub fn finish_loading(&self, index: i32, epoch: i32) -> bool {
        let mut hosted = self.hosted.lock();
        if hosted.get(&index) != Some(&Hosted::Loading(epoch)) {
            return false;
        }
        hosted.insert(index, Hosted::Loaded(epoch));
        true
    }

    /// Whether some partition is being loaded here.
    pub fn any_loading(&self) -> bool {
        self.hosted.lock().values().any(|h| matches!(h, Hosted::Loading(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_partitions_as_kafka_maps_them() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        // Java: "my-group".hashCode() == -1906497762, masked to 240985886, % 50 == 36.
        assert_eq!(java_string_hash("my-group"), -1_906_497_762);
        assert_eq!(partition_for("my-group", 50), 36);
        assert_eq!(partition_for("anything", 1), 0);
        assert_eq!(partition_for("anything", 0), 0, "no partitions yet is treated as one");
        // Java's Integer.MIN_VALUE hash: masked to 0, never a negative partition.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 7), 0);
    }
}
