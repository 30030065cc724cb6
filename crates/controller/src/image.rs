//! `MetadataImage`: the cluster metadata as the committed records built it.
//! Immutable once published (readers get an `Arc`); the state machine applies
//! records to its own copy (`Arc::make_mut`, a clone only while readers hold the old one).
//! Its serialized form is the Raft snapshot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::records::{
    AccessControlEntryRecord, BrokerEndpoint, BrokerRegistrationRecord, ConfigResource, MetadataRecord, PartitionChangeRecord, PartitionRecord,
    NO_LEADER,
};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub node_id: i32,
    pub incarnation_id: Uuid,
    pub broker_epoch: i64,
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
    pub fenced: bool,
    #[serde(default)]
    pub directory_id: Uuid,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PartitionImage {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// During a reassignment (KIP-455) `replicas` is the target followed by the
    /// replicas leaving; these joining ones are in it too. Both empty otherwise.
    #[serde(default)]
    pub adding_replicas: Vec<i32>,
    #[serde(default)]
    pub removing_replicas: Vec<i32>,
    /// The last ISR member came back with a new, empty data directory (a wiped
    /// disk): it stays in the ISR, which is never empty, but cannot lead, since
    /// its copy is gone (Kafka: a replica in a directory the broker no longer
    /// has is offline). Only an unclean election brings the partition back; a
    /// new ISR without the member clears it.
    #[serde(default)]
    pub offline_replicas: Vec<i32>,
}

impl PartitionImage {
    /// `replica` may be elected leader cleanly: in the ISR, its copy not lost, unfenced.
    pub fn can_lead(&self, image: &MetadataImage, replica: i32) -> bool {
        self.isr.contains(&replica) && !self.offline_replicas.contains(&replica) && image.is_unfenced(replica)
    }

    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas the partition will have once its reassignment completes
    /// (its replicas when none is in progress), in the target's order.
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas.iter().copied().filter(|r| !self.removing_replicas.contains(r)).collect()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: BTreeMap<i32, PartitionImage>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct MetadataImage {
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub topics: BTreeMap<Uuid, TopicImage>,
    pub topic_ids_by_name: BTreeMap<String, Uuid>,
    /// resource type → resource name → config name → value.
    pub configs: BTreeMap<ConfigResource, BTreeMap<String, BTreeMap<String, String>>>,
    /// The first producer id not yet handed out (blocks are allocated upwards from 0).
    pub next_producer_id: i64,
    pub features: BTreeMap<String, i16>,
    /// The highest broker epoch handed out: epochs never repeat, even after unregistration.
    #[serde(default)]
    pub last_broker_epoch: i64,
    /// SCRAM credentials: user → mechanism (1 = SCRAM-SHA-256, 2 = SCRAM-SHA-512) → credential.
    #[serde(default)]
    pub scram_credentials: BTreeMap<String, BTreeMap<i8, ScramCredential>>,
    /// ACL bindings (Kafka's AccessControlEntryRecord) by id.
    #[serde(default)]
    pub acls: BTreeMap<Uuid, AccessControlEntryRecord>,
    /// Client quotas (Kafka's ClientQuotaRecord): entity → key → value.
    #[serde(default, with = "crate::quota::serde_quotas")]
    pub client_quotas: crate::quota::ClientQuotas,
    /// The index of the last metadata log entry applied to this image (0: none).
    #[serde(default)]
    pub applied_log_index: u64,
}

/// A user's SCRAM credential for one mechanism (RFC 5802): what a server needs to
/// check a client's proof and prove itself, and nothing that gives the password.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

impl std::fmt::Debug for ScramCredential {
    // The keys stay out of logs, as Kafka's ScramCredentialValue hides them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

/// A record that does not fit the image (a bug in the controller that wrote it, or
/// a log from a newer release). The state machine logs it and goes on: every node
/// skips the same records, so the images stay equal.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("metadata record not applied: {0}")]
pub struct ApplyError(pub String);

impl MetadataImage {
    pub fn topic_by_name(&self, name: &str) -> Option<&TopicImage> {
        self.topic_ids_by_name.get(name).and_then(|id| self.topics.get(id))
    }

    pub fn topic_by_id(&self, topic_id: &Uuid) -> Option<&TopicImage> {
        self.topics.get(topic_id)
    }

    pub fn partition(&self, topic_id: &Uuid, partition: i32) -> Option<&PartitionImage> {
        self.topics.get(topic_id).and_then(|t| t.partitions.get(&partition))
    }

    /// Registered and not fenced.
    pub fn is_unfenced(&self, node_id: i32) -> bool {
        self.brokers.get(&node_id).is_some_and(|b| !b.fenced)
    }

    pub fn unfenced_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    pub fn topic_configs(&self, topic: &str) -> Option<&BTreeMap<String, String>> {
        self.configs.get(&ConfigResource::Topic).and_then(|by_name| by_name.get(topic))
    }

    pub fn apply(&mut self, record: &MetadataRecord) -> Result<(), ApplyError> {
        match record {
            MetadataRecord::ClusterId { cluster_id } => {
                if let Some(existing) = &self.cluster_id {
                    if existing != cluster_id {
                        return Err(ApplyError(format!("cluster id is {existing}, not changed to {cluster_id}")));
                    }
                }
                self.cluster_id = Some(cluster_id.clone());
            }
            MetadataRecord::RegisterBroker(BrokerRegistrationRecord {
                node_id,
                incarnation_id,
                broker_epoch,
                endpoints,
                rack,
                fenced,
                directory_id,
            }) => {
                self.last_broker_epoch = self.last_broker_epoch.max(*broker_epoch);
                self.brokers.insert(
                    *node_id,
                    BrokerRegistration {
                        node_id: *node_id,
                        incarnation_id: *incarnation_id,
                        broker_epoch: *broker_epoch,
                        endpoints: endpoints.clone(),
                        rack: rack.clone(),
                        fenced: *fenced,
                        directory_id: *directory_id,
                    },
                );
            }
            MetadataRecord::UnregisterBroker { node_id, broker_epoch } => {
                self.broker_with_epoch(*node_id, *broker_epoch)?;
                self.brokers.remove(node_id);
            }
            MetadataRecord::FenceBroker { node_id, broker_epoch } => {
                self.broker_with_epoch(*node_id, *broker_epoch)?.fenced = true;
            }
            MetadataRecord::UnfenceBroker { node_id, broker_epoch } => {
                self.broker_with_epoch(*node_id, *broker_epoch)?.fenced = false;
            }
            MetadataRecord::Topic { name, topic_id } => {
                if self.topic_ids_by_name.contains_key(name) || self.topics.contains_key(topic_id) {
                    return Err(ApplyError(format!("topic {name} ({topic_id}) exists")));
                }
                self.topic_ids_by_name.insert(name.clone(), *topic_id);
                self.topics.insert(
                    *topic_id,
                    TopicImage { name: name.clone(), topic_id: *topic_id, partitions: BTreeMap::new() },
                );
            }
            MetadataRecord::Partition(PartitionRecord {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
            }) => {
                let topic = self
                    .topics
                    .get_mut(topic_id)
                    .ok_or_else(|| ApplyError(format!("partition {partition} of unknown topic {topic_id}")))?;
                topic.partitions.insert(
                    *partition,
                    PartitionImage {
                        replicas: replicas.clone(),
                        isr: isr.clone(),
                        leader: *leader,
                        leader_epoch: *leader_epoch,
                        partition_epoch: *partition_epoch,
                        adding_replicas: Vec::new(),
                        removing_replicas: Vec::new(),
                        offline_replicas: Vec::new(),
                    },
                );
            }
            MetadataRecord::PartitionChange(PartitionChangeRecord {
                topic_id,
                partition,
                leader,
                isr,
                replicas,
                adding_replicas,
                removing_replicas,
                offline_replicas,
            }) => {
                let state = self
                    .topics
                    .get_mut(topic_id)
                    .and_then(|t| t.partitions.get_mut(partition))
                    .ok_or_else(|| ApplyError(format!("change of unknown partition {topic_id}-{partition}")))?;
                if let Some(leader) = leader {
                    if *leader != state.leader {
                        state.leader = *leader;
                        state.leader_epoch += 1;
                    }
                }
                if let Some(isr) = isr {
                    state.isr = isr.clone();
                }
                if let Some(replicas) = replicas {
                    state.replicas = replicas.clone();
                }
                if let Some(adding) = adding_replicas {
                    state.adding_replicas = adding.clone();
                }
                if let Some(removing) = removing_replicas {
                    state.removing_replicas = removing.clone();
                }
                if let Some(offline) = offline_replicas {
                    state.offline_replicas = offline.clone();
                }
                // A member that left the ISR is no longer an offline ISR member.
                let isr = state.isr.clone();
                state.offline_replicas.retain(|r| isr.contains(r));
                state.partition_epoch += 1;
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                let topic = self
                    .topics
                    .remove(topic_id)
                    .ok_or_else(|| ApplyError(format!("removal of unknown topic {topic_id}")))?;
                self.topic_ids_by_name.remove(&topic.name);
                if let Some(by_name) = self.configs.get_mut(&ConfigResource::Topic) {
                    by_name.remove(&topic.name);
                }
            }
            MetadataRecord::Config { resource_type, resource_name, name, value } => {
                let by_name = self.configs.entry(*resource_type).or_default();
                match value {
                    Some(value) => {
                        by_name.entry(resource_name.clone()).or_default().insert(name.clone(), value.clone());
                    }
                    None => {
                        if let Some(configs) = by_name.get_mut(resource_name) {
                            configs.remove(name);
                            if configs.is_empty() {
                                by_name.remove(resource_name);
                            }
                        }
                    }
                }
            }
            MetadataRecord::ProducerIds { next_producer_id, .. } => {
                if *next_producer_id <= self.next_producer_id {
                    return Err(ApplyError(format!(
                        "producer id block ending at {next_producer_id} is not past {}",
                        self.next_producer_id
                    )));
                }
                self.next_producer_id = *next_producer_id;
            }
            MetadataRecord::FeatureLevel { name, level } => {
                if *level == 0 {
                    self.features.remove(name);
                } else {
                    self.features.insert(name.clone(), *level);
                }
            }
            MetadataRecord::UserScramCredential { name, mechanism, salt, stored_key, server_key, iterations } => {
                let credential = ScramCredential {
                    salt: salt.clone(),
                    stored_key: stored_key.clone(),
                    server_key: server_key.clone(),
                    iterations: *iterations,
                };
                self.scram_credentials.entry(name.clone()).or_default().insert(*mechanism, credential);
            }
            MetadataRecord::RemoveUserScramCredential { name, mechanism } => {
                let by_mechanism = self
                    .scram_credentials
                    .get_mut(name)
                    .filter(|m| m.contains_key(mechanism))
                    .ok_or_else(|| ApplyError(format!("removal of unknown SCRAM credential {name} (mechanism {mechanism})")))?;
                by_mechanism.remove(mechanism);
                if by_mechanism.is_empty() {
                    self.scram_credentials.remove(name);
                }
            }
            MetadataRecord::AccessControlEntry(entry) => {
                if self.acls.contains_key(&entry.id) {
                    return Err(ApplyError(format!("ACL id {} is already in use", entry.id)));
                }
                self.acls.insert(entry.id, entry.clone());
            }
            MetadataRecord::RemoveAccessControlEntry { id } => {
                if self.acls.remove(id).is_none() {
                    return Err(ApplyError(format!("removal of unknown ACL {id}")));
                }
            }
            MetadataRecord::ClientQuota { entity, key, value } => {
                let entity = crate::quota::validate_entity(entity).map_err(|(_, message)| ApplyError(format!("client quota: {message}")))?;
                match value {
                    Some(value) if value.is_nan() => return Err(ApplyError(format!("client quota {key} is NaN"))),
                    Some(value) => {
                        self.client_quotas.entry(entity).or_default().insert(key.clone(), crate::quota::QuotaValue(*value));
                    }
                    None => {
                        if let Some(keys) = self.client_quotas.get_mut(&entity) {
                            keys.remove(key);
                            if keys.is_empty() {
                                self.client_quotas.remove(&entity);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn broker_with_epoch(&mut self, node_id: i32, broker_epoch: i64) -> Result<&mut BrokerRegistration, ApplyError> {
        match self.brokers.get_mut(&node_id) {
            Some(broker) if broker.broker_epoch == broker_epoch => Ok(broker),
            Some(broker) => Err(ApplyError(format!(
                "broker {node_id} has epoch {}, the record names {broker_epoch}",
                broker.broker_epoch
            ))),
            None => Err(ApplyError(format!("broker {node_id} is not registered"))),
        }
    }

    /// Leaderless partitions are reported with `NO_LEADER`.
    pub fn leader_of(&self, topic_id: &Uuid, partition: i32) -> i32 {
        self.partition(topic_id, partition).map_or(NO_LEADER, |p| p.leader)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic_with_partition(image: &mut MetadataImage) -> Uuid {
        let topic_id = Uuid::new_v4();
        image.apply(&MetadataRecord::Topic { name: "t".into(), topic_id }).unwrap();
        image
            .apply(&MetadataRecord::Partition(PartitionRecord {
                topic_id,
                partition: 0,
                replicas: vec![1, 2, 3],
                isr: vec![1, 2, 3],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
            }))
            .unwrap();
        topic_id
    }

    #[test]
    fn leader_change_bumps_both_epochs_isr_change_only_the_partition_epoch() {
        let mut image = MetadataImage::default();
        let topic_id = topic_with_partition(&mut image);
        let change = |leader, isr| {
            MetadataRecord::PartitionChange(PartitionChangeRecord { topic_id, partition: 0, leader, isr, ..Default::default() })
        };
        image.apply(&change(None, Some(vec![1, 2]))).unwrap();
        let p = image.partition(&topic_id, 0).unwrap();
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch, p.isr.clone()), (1, 0, 1, vec![1, 2]));
        image.apply(&change(Some(2), Some(vec![2]))).unwrap();
        let p = image.partition(&topic_id, 0).unwrap();
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch, p.isr.clone()), (2, 1, 2, vec![2]));
        // Naming the current leader again is not a leader change.
        image.apply(&change(Some(2), None)).unwrap();
        let p = image.partition(&topic_id, 0).unwrap();
        assert_eq!((p.leader_epoch, p.partition_epoch), (1, 3));
    }

    #[test]
    fn remove_topic_drops_name_partitions_and_configs() {
        let mut image = MetadataImage::default();
        let topic_id = topic_with_partition(&mut image);
        image
            .apply(&MetadataRecord::Config {
                resource_type: ConfigResource::Topic,
                resource_name: "t".into(),
                name: "retention.ms".into(),
                value: Some("1000".into()),
            })
            .unwrap();
        assert_eq!(image.topic_configs("t").unwrap()["retention.ms"], "1000");
        image.apply(&MetadataRecord::RemoveTopic { topic_id }).unwrap();
        assert!(image.topic_by_name("t").is_none());
        assert!(image.topic_configs("t").is_none());
        assert!(image.apply(&MetadataRecord::RemoveTopic { topic_id }).is_err());
    }

    #[test]
    fn records_for_stale_broker_epochs_or_unknown_partitions_are_refused_without_change() {
        let mut image = MetadataImage::default();
        image
            .apply(&MetadataRecord::RegisterBroker(BrokerRegistrationRecord {
                node_id: 1,
                incarnation_id: Uuid::new_v4(),
                broker_epoch: 5,
                endpoints: vec![],
                rack: None,
                fenced: true,
                directory_id: Uuid::nil(),
            }))
            .unwrap();
        let before = image.clone();
        assert!(image.apply(&MetadataRecord::UnfenceBroker { node_id: 1, broker_epoch: 4 }).is_err());
        assert!(image
            .apply(&MetadataRecord::PartitionChange(PartitionChangeRecord {
                topic_id: Uuid::new_v4(),
                partition: 0,
                ..Default::default()
            }))
            .is_err());
        assert_eq!(image, before);
        image.apply(&MetadataRecord::UnfenceBroker { node_id: 1, broker_epoch: 5 }).unwrap();
        assert!(image.is_unfenced(1));
    }

    #[test]
    fn image_round_trips_through_its_snapshot_encoding() {
        let mut image = MetadataImage::default();
        topic_with_partition(&mut image);
        image
            .apply(&MetadataRecord::UserScramCredential {
                name: "alice".into(),
                mechanism: 2,
                salt: vec![1, 2],
                stored_key: vec![3],
                server_key: vec![4],
                iterations: 8192,
            })
            .unwrap();
        image.apply(&MetadataRecord::ClusterId { cluster_id: "abc".into() }).unwrap();
        image
            .apply(&MetadataRecord::ProducerIds { broker_id: 1, broker_epoch: 1, next_producer_id: 1000 })
            .unwrap();
        let bytes = serde_json::to_vec(&image).unwrap();
        let decoded: MetadataImage = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(decoded, image);
    }

    #[test]
    fn scram_credentials_are_kept_per_user_and_mechanism_and_removed_one_by_one() {
        let mut image = MetadataImage::default();
        let upsert = |mechanism, iterations| MetadataRecord::UserScramCredential {
            name: "alice".into(),
            mechanism,
            salt: vec![1],
            stored_key: vec![2],
            server_key: vec![3],
            iterations,
        };
        image.apply(&upsert(1, 4096)).unwrap();
        image.apply(&upsert(2, 8192)).unwrap();
        image.apply(&upsert(2, 10000)).unwrap();
        assert_eq!(image.scram_credentials["alice"][&2].iterations, 10000);
        assert!(!format!("{:?}", image.scram_credentials).contains("stored_key"));
        image.apply(&MetadataRecord::RemoveUserScramCredential { name: "alice".into(), mechanism: 1 }).unwrap();
        assert_eq!(image.scram_credentials["alice"].keys().collect::<Vec<_>>(), vec![&2]);
        image.apply(&MetadataRecord::RemoveUserScramCredential { name: "alice".into(), mechanism: 2 }).unwrap();
        assert!(image.scram_credentials.is_empty());
        let before = image.clone();
        assert!(image.apply(&MetadataRecord::RemoveUserScramCredential { name: "alice".into(), mechanism: 2 }).is_err());
        assert_eq!(image, before);
    }
}
