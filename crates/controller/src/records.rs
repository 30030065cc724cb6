//! The cluster metadata records: the entries of the metadata log, in the shape of
//! Kafka KRaft's `__cluster_metadata` records (our own encoding: serde JSON).
//!
//! Compatibility rule: a record is never changed in place. New optional fields
//! carry `#[serde(default)]` so older entries still decode; anything else is a new
//! variant. Variants are tagged by name, so a log written by an older release
//! decodes in a newer one.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Kafka's "no leader" broker id (-1), as the wire protocol reports it.
pub const NO_LEADER: i32 = -1;

/// What the Raft log carries: the records of one controller decision, applied atomically.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct MetadataBatch {
    pub records: Vec<MetadataRecord>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// Written once, by the first active controller of a new cluster.
    ClusterId { cluster_id: String },
    RegisterBroker(BrokerRegistrationRecord),
    UnregisterBroker { node_id: i32, broker_epoch: i64 },
    FenceBroker { node_id: i32, broker_epoch: i64 },
    UnfenceBroker { node_id: i32, broker_epoch: i64 },
    Topic { name: String, topic_id: Uuid },
    Partition(PartitionRecord),
    /// Applying it bumps the epochs, as Kafka's replay does: a leader change bumps
    /// the leader epoch; any change bumps the partition epoch.
    PartitionChange(PartitionChangeRecord),
    /// Removes the topic, its partitions and its configs.
    RemoveTopic { topic_id: Uuid },
    /// `value: None` deletes the key (back to the default).
    Config { resource_type: ConfigResource, resource_name: String, name: String, value: Option<String> },
    /// The block `[previous next_producer_id, next_producer_id)` went to `broker_id`.
    ProducerIds { broker_id: i32, broker_epoch: i64, next_producer_id: i64 },
    /// A finalized feature level (e.g. `metadata.version`); level 0 removes it.
    FeatureLevel { name: String, level: i16 },
    /// A SCRAM credential (Kafka's UserScramCredentialRecord): creates or replaces the
    /// user's credential for one mechanism (1 = SCRAM-SHA-256, 2 = SCRAM-SHA-512).
    /// Salted and hashed (RFC 5802's StoredKey and ServerKey); the password is never stored.
    UserScramCredential { name: String, mechanism: i8, salt: Vec<u8>, stored_key: Vec<u8>, server_key: Vec<u8>, iterations: i32 },
    /// Removes a user's credential for one mechanism (Kafka's RemoveUserScramCredentialRecord).
    RemoveUserScramCredential { name: String, mechanism: i8 },
    /// An ACL binding (Kafka's AccessControlEntryRecord), kept in the image under its id.
    AccessControlEntry(AccessControlEntryRecord),
    /// Removes the ACL binding with this id (Kafka's RemoveAccessControlEntryRecord).
    RemoveAccessControlEntry { id: Uuid },
    /// A client quota (Kafka's ClientQuotaRecord): entity (type, name) pairs (a `None`
    /// name is the type's default), key, value (`None` removes the key). The image keeps
    /// them in `client_quotas`.
    ClientQuota { entity: Vec<(String, Option<String>)>, key: String, value: Option<f64> },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BrokerEndpoint {
    /// The listener name, e.g. `PLAINTEXT`.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub security_protocol: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BrokerRegistrationRecord {
    pub node_id: i32,
    /// A new id every time the broker process starts: a new incarnation gets a new epoch.
    pub incarnation_id: Uuid,
    pub broker_epoch: i64,
    pub endpoints: Vec<BrokerEndpoint>,
    #[serde(default)]
    pub rack: Option<String>,
    /// Brokers register fenced and are unfenced once caught up with the metadata.
    pub fenced: bool,
    /// The broker's data directory (made when the directory is, kept in it, as
    /// Kafka's `directory.id`); nil from releases before it. A new one for a
    /// registered node means its disk was wiped: its replicas hold nothing.
    #[serde(default)]
    pub directory_id: Uuid,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PartitionRecord {
    pub topic_id: Uuid,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct PartitionChangeRecord {
    pub topic_id: Uuid,
    pub partition: i32,
    /// `Some(NO_LEADER)` makes the partition leaderless.
    #[serde(default)]
    pub leader: Option<i32>,
    #[serde(default)]
    pub isr: Option<Vec<i32>>,
    #[serde(default)]
    pub replicas: Option<Vec<i32>>,
    /// A reassignment's replicas still joining (KIP-455); `Some(vec![])` clears them.
    #[serde(default)]
    pub adding_replicas: Option<Vec<i32>>,
    /// A reassignment's replicas leaving once it completes; `Some(vec![])` clears them.
    #[serde(default)]
    pub removing_replicas: Option<Vec<i32>>,
    /// ISR members whose copy was lost with their data directory (see
    /// [`crate::image::PartitionImage::offline_replicas`]).
    #[serde(default)]
    pub offline_replicas: Option<Vec<i32>>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigResource {
    Topic,
    Broker,
    Group,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AccessControlEntryRecord {
    pub id: Uuid,
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission_type: i8,
}
