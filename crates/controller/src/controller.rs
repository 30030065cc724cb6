//! The active controller's decisions: a request and the committed image in,
//! the records to commit and the answer out (or a Kafka error code). No I/O:
//! `lib.rs` runs them on the Raft leader, one at a time, and commits the records.
//! Broker liveness (last heartbeat) lives here, in memory, as in Kafka: a new
//! active controller gives every registered broker a fresh session.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::acl::{validate_new_binding, AclBinding, AclBindingFilter, MAX_RECORDS_PER_USER_OP};
use crate::image::MetadataImage;
use crate::records::{
    BrokerEndpoint, BrokerRegistrationRecord, ConfigResource, MetadataRecord, PartitionChangeRecord, PartitionRecord,
    NO_LEADER,
};

/// Producer ids per block, as Kafka's controller hands them out.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ControllerRequest {
    RegisterBroker {
        node_id: i32,
        incarnation_id: Uuid,
        endpoints: Vec<BrokerEndpoint>,
        rack: Option<String>,
        /// The broker's data directory id (nil: an earlier release, unknown).
        #[serde(default)]
        directory_id: Uuid,
    },
    /// `want_fence`: the broker is not caught up with the metadata yet; `want_shutdown`:
    /// controlled shutdown (move its leaderships away, then fence it).
    BrokerHeartbeat { node_id: i32, broker_epoch: i64, want_fence: bool, want_shutdown: bool },
    UnregisterBroker { node_id: i32 },
    CreateTopic(CreateTopic),
    /// `count` is the new total; `assignments` (optional) are the replicas of the new partitions.
    CreatePartitions { topic: String, count: i32, assignments: Option<Vec<Vec<i32>>> },
    DeleteTopic { name: String },
    AlterPartition(AlterPartition),
    ElectLeaders { election: ElectionType, partitions: Vec<(String, i32)> },
    /// KIP-455: each partition's target replicas (`None` cancels its reassignment).
    /// `allow_replication_factor_change: false` (KIP-1107) refuses a target of another size.
    AlterPartitionReassignments {
        reassignments: Vec<Reassignment>,
        #[serde(default = "allow")]
        allow_replication_factor_change: bool,
    },
    AlterConfig { resource_type: ConfigResource, resource_name: String, name: String, value: Option<String> },
    /// The next block of producer ids for `broker_id`. `first_id_at_least`: the block
    /// starts there or later (a data directory of an earlier release, whose broker
    /// issued ids from a local counter up to there, raises the cluster's next id above
    /// them); 0 otherwise.
    AllocateProducerIds {
        broker_id: i32,
        broker_epoch: i64,
        #[serde(default)]
        first_id_at_least: i64,
    },
    /// Sets a resource's configs to exactly `configs` (AlterConfigs semantics): the
    /// keys that differ are written, the ones absent are removed, in one batch.
    ReplaceConfigs { resource_type: ConfigResource, resource_name: String, configs: BTreeMap<String, String> },
    /// A topic that existed before the metadata quorum (a data directory written by an
    /// earlier release), written into the metadata log once with the id, partition count
    /// and configs it has: every partition on `node_id`, led by it, at the leader epoch
    /// its log already holds (`leader_epochs[partition]`), so clients see no change.
    ImportTopic { name: String, topic_id: Uuid, node_id: i32, leader_epochs: Vec<i32>, configs: BTreeMap<String, String> },
    /// AlterUserScramCredentials (KIP-554). The receiving broker turned each
    /// upsertion's salted password into StoredKey/ServerKey, so no password-equivalent
    /// travels further.
    AlterUserScramCredentials { deletions: Vec<ScramDeletion>, upsertions: Vec<ScramUpsertion> },
    /// CreateAcls: each binding is checked and written unless an equal one exists.
    CreateAcls { bindings: Vec<AclBinding> },
    /// DeleteAcls: every binding a filter matches is removed.
    DeleteAcls { filters: Vec<AclBindingFilter> },
    /// AlterClientQuotas (KIP-546): each entity's key changes; `validate_only` writes nothing.
    AlterClientQuotas { alterations: Vec<crate::quota::QuotaAlteration>, validate_only: bool },
}

/// What one DeleteAcls filter did: an error, or the bindings it removed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AclDeletion {
    pub error_code: i16,
    pub error_message: Option<String>,
    pub deleted: Vec<AclBinding>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ScramDeletion {
    pub name: String,
    /// Kafka's ScramMechanism type: 1 = SCRAM-SHA-256, 2 = SCRAM-SHA-512, anything else unknown.
    pub mechanism: i8,
}

#[derive(Serialize, Deserialize, Clone, PartialEq)]
pub struct ScramUpsertion {
    pub name: String,
    pub mechanism: i8,
    pub iterations: i32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramUpsertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramUpsertion")
            .field("name", &self.name)
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Kafka's bounds on SCRAM iterations (ScramMechanism's minimum for SHA-256 and
/// SHA-512, ScramControlManager's maximum).
pub const SCRAM_MIN_ITERATIONS: i32 = 4096;
pub const SCRAM_MAX_ITERATIONS: i32 = 16384;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct CreateTopic {
    pub name: String,
    /// -1 with explicit assignments.
    pub num_partitions: i32,
    /// -1 with explicit assignments.
    pub replication_factor: i16,
    /// Replicas per partition (index = partition id), first = preferred leader.
    pub assignments: Option<Vec<Vec<i32>>>,
    pub configs: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AlterPartition {
    pub broker_id: i32,
    pub broker_epoch: i64,
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Reassignment {
    pub topic: String,
    pub partition: i32,
    /// First = preferred leader; `None` cancels the partition's reassignment.
    pub target: Option<Vec<i32>>,
}

fn allow() -> bool {
    true
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElectionType {
    Preferred,
    Unclean,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ControllerResponse {
    BrokerRegistered { broker_epoch: i64 },
    /// `metadata_index`: the metadata log index the controller had applied when it
    /// answered (set by the quorum, not by the decision); a broker whose session
    /// lapsed acts on its image again only once it has applied that far.
    Heartbeat {
        is_fenced: bool,
        should_shutdown: bool,
        #[serde(default)]
        metadata_index: u64,
    },
    TopicCreated { topic_id: Uuid, num_partitions: i32, replication_factor: i16 },
    PartitionAltered { leader: i32, leader_epoch: i32, partition_epoch: i32, isr: Vec<i32> },
    /// Per partition: error code (0 = elected).
    LeadersElected { results: Vec<(String, i32, i16)> },
    /// Per partition of an AlterPartitionReassignments: error code (0 = accepted) and message.
    Reassigned { results: Vec<(String, i32, i16, Option<String>)> },
    ProducerIds { first_producer_id: i64, count: i64 },
    /// Per user of an AlterUserScramCredentials: error code (0 = done) and message.
    ScramCredentialsAltered { results: Vec<(String, i16, Option<String>)> },
    /// Per binding of a CreateAcls, in order: error code (0 = created or already there) and message.
    AclsCreated { results: Vec<(i16, Option<String>)> },
    /// Per filter of a DeleteAcls, in order.
    AclsDeleted { results: Vec<AclDeletion> },
    /// Per entry of an AlterClientQuotas, in order: error code (0 = done) and message.
    ClientQuotasAltered { results: Vec<(i16, Option<String>)> },
    Done,
}

/// A refusal, with Kafka's error code for it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (error code {code})")]
pub struct ControllerError {
    pub code: i16,
    pub message: String,
}

impl ControllerError {
    pub fn new(error: ResponseError, message: impl Into<String>) -> Self {
        ControllerError { code: error.code(), message: message.into() }
    }
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub records: Vec<MetadataRecord>,
    pub response: ControllerResponse,
}

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// `broker.session.timeout.ms`
    pub broker_session_timeout: Duration,
    /// `unclean.leader.election.enable`
    pub unclean_leader_election: bool,
    /// `leader.imbalance.check.interval.seconds` when `auto.leader.rebalance.enable`
    /// (None: never rebalance).
    pub leader_rebalance_interval: Option<Duration>,
    /// The node id of the broker in this controller's own process (combined
    /// mode). A new incarnation of it registering proves the old one is gone
    /// (it held the same data directory lock), so it need not wait for the old
    /// session to expire — a single node restarted after kill -9 serves at once.
    pub colocated_broker: Option<i32>,
    /// How long a broker whose liveness link to this controller closed without a
    /// release has to heartbeat before it is fenced (the broker uses zero: only a
    /// dead process, or a network reset, closes a link that way).
    pub link_loss_grace: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            broker_session_timeout: Duration::from_millis(9000),
            unclean_leader_election: false,
            leader_rebalance_interval: Some(Duration::from_secs(300)),
            colocated_broker: None,
            link_loss_grace: Duration::from_millis(2000),
        }
    }
}

/// Records under construction, applied to a private copy of the image as they are
/// added, so later decisions in the same batch see earlier ones (and a record that
/// would not apply is caught here, not on every node).
struct Pending {
    image: MetadataImage,
    records: Vec<MetadataRecord>,
}

impl Pending {
    fn new(image: &MetadataImage) -> Self {
        Pending { image: image.clone(), records: Vec::new() }
    }

    fn push(&mut self, record: MetadataRecord) -> Result<(), ControllerError> {
        self.image
            .apply(&record)
            .map_err(|e| ControllerError::new(ResponseError::UnknownServerError, format!("controller bug: {e}")))?;
        self.records.push(record);
        Ok(())
    }

    /// An election that replaced the ISR (an unclean one) can leave every adding
    /// replica in sync: the reassignment completes in the same batch, as it would
    /// have on the AlterPartition that brought them in.
    fn complete_reassignment_if_possible(&mut self, topic_id: Uuid, partition: i32) -> Result<(), ControllerError> {
        let Some(state) = self.image.partition(&topic_id, partition).cloned() else { return Ok(()) };
        match completed_reassignment(&self.image, &state) {
            Some(done) => self.push(done.record(topic_id, partition, &state)),
            None => Ok(()),
        }
    }
}

pub struct Controller {
    config: ControllerConfig,
    last_heartbeat: HashMap<i32, Instant>,
    /// Brokers whose liveness link closed without a release: fenced at this
    /// deadline unless a heartbeat comes first (see `liveness_link_lost`).
    link_lost_deadline: HashMap<i32, Instant>,
}

impl Controller {
    pub fn new(config: ControllerConfig) -> Self {
        Controller { config, last_heartbeat: HashMap::new(), link_lost_deadline: HashMap::new() }
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// This node just became the active controller: every registered broker gets a
    /// full session from now (liveness is not replicated, as in Kafka).
    pub fn on_become_active(&mut self, image: &MetadataImage, now: Instant) {
        self.last_heartbeat = image.brokers.keys().map(|id| (*id, now)).collect();
        self.link_lost_deadline.clear();
    }

    /// The liveness link of broker `node_id` (incarnation `broker_epoch`) to this
    /// active controller closed without being released: its process most likely
    /// died (the kernel closes a dead process's sockets at once), so it is fenced
    /// `link_loss_grace` from now unless it heartbeats first. A link lost to a
    /// network partition does not close; the session timeout covers that. Kafka
    /// waits for the session timeout in both cases.
    /// Returns the grace when a fence is now due at its end (None: nothing to do).
    pub fn liveness_link_lost(
        &mut self,
        image: &MetadataImage,
        node_id: i32,
        broker_epoch: i64,
        now: Instant,
    ) -> Option<Duration> {
        let broker = image.brokers.get(&node_id)?;
        if broker.broker_epoch != broker_epoch || broker.fenced {
            return None;
        }
        let deadline = now + self.config.link_loss_grace;
        let entry = self.link_lost_deadline.entry(node_id).or_insert(deadline);
        *entry = (*entry).min(deadline);
        tracing::info!(
            node_id,
            grace_ms = self.config.link_loss_grace.as_millis() as u64,
            "broker's liveness link closed: fencing it unless it heartbeats within the grace"
        );
        Some(self.config.link_loss_grace)
    }

    pub fn decide(
        &mut self,
        image: &MetadataImage,
        request: &ControllerRequest,
        now: Instant,
    ) -> Result<Decision, ControllerError> {
        match request {
            ControllerRequest::RegisterBroker { node_id, incarnation_id, endpoints, rack, directory_id } => {
                self.register_broker(image, *node_id, *incarnation_id, endpoints, rack, *directory_id, now)
            }
            ControllerRequest::BrokerHeartbeat { node_id, broker_epoch, want_fence, want_shutdown } => {
                self.heartbeat(image, *node_id, *broker_epoch, *want_fence, *want_shutdown, now)
            }
            ControllerRequest::UnregisterBroker { node_id } => {
                let broker = image.brokers.get(node_id).ok_or_else(|| {
                    ControllerError::new(ResponseError::BrokerIdNotRegistered, format!("broker {node_id} is not registered"))
                })?;
                let mut pending = Pending::new(image);
                if !broker.fenced {
                    pending.push(MetadataRecord::FenceBroker { node_id: *node_id, broker_epoch: broker.broker_epoch })?;
                }
                self.move_away_from(&mut pending, *node_id)?;
                pending
                    .push(MetadataRecord::UnregisterBroker { node_id: *node_id, broker_epoch: broker.broker_epoch })?;
                self.last_heartbeat.remove(node_id);
                self.link_lost_deadline.remove(node_id);
                Ok(Decision { records: pending.records, response: ControllerResponse::Done })
            }
            ControllerRequest::CreateTopic(create) => self.create_topic(image, create),
            ControllerRequest::CreatePartitions { topic, count, assignments } => {
                self.create_partitions(image, topic, *count, assignments.as_deref())
            }
            ControllerRequest::DeleteTopic { name } => {
                let topic = image.topic_by_name(name).ok_or_else(|| unknown_topic(name))?;
                Ok(Decision {
                    records: vec![MetadataRecord::RemoveTopic { topic_id: topic.topic_id }],
                    response: ControllerResponse::Done,
                })
            }
            ControllerRequest::AlterPartition(alter) => self.alter_partition(image, alter),
            ControllerRequest::ElectLeaders { election, partitions } => self.elect_leaders(image, *election, partitions),
            ControllerRequest::AlterPartitionReassignments { reassignments, allow_replication_factor_change } => {
                alter_partition_reassignments(image, reassignments, *allow_replication_factor_change)
            }
            ControllerRequest::AlterConfig { resource_type, resource_name, name, value } => {
                if *resource_type == ConfigResource::Topic && image.topic_by_name(resource_name).is_none() {
                    return Err(unknown_topic(resource_name));
                }
                Ok(Decision {
                    records: vec![MetadataRecord::Config {
                        resource_type: *resource_type,
                        resource_name: resource_name.clone(),
                        name: name.clone(),
                        value: value.clone(),
                    }],
                    response: ControllerResponse::Done,
                })
            }
            ControllerRequest::AllocateProducerIds { broker_id, broker_epoch, first_id_at_least } => {
                allocate_producer_ids(image, *broker_id, *broker_epoch, *first_id_at_least)
            }
            ControllerRequest::ReplaceConfigs { resource_type, resource_name, configs } => {
                if *resource_type == ConfigResource::Topic && image.topic_by_name(resource_name).is_none() {
                    return Err(unknown_topic(resource_name));
                }
                let current = image.configs.get(resource_type).and_then(|by_name| by_name.get(resource_name));
                let mut records = Vec::new();
                for (name, value) in configs {
                    if current.and_then(|c| c.get(name)) != Some(value) {
                        records.push(MetadataRecord::Config {
                            resource_type: *resource_type,
                            resource_name: resource_name.clone(),
                            name: name.clone(),
                            value: Some(value.clone()),
                        });
                    }
                }
                for name in current.into_iter().flat_map(|c| c.keys()).filter(|name| !configs.contains_key(*name)) {
                    records.push(MetadataRecord::Config {
                        resource_type: *resource_type,
                        resource_name: resource_name.clone(),
                        name: name.clone(),
                        value: None,
                    });
                }
                Ok(Decision { records, response: ControllerResponse::Done })
            }
            ControllerRequest::ImportTopic { name, topic_id, node_id, leader_epochs, configs } => {
                self.import_topic(image, name, *topic_id, *node_id, leader_epochs, configs)
            }
            ControllerRequest::AlterUserScramCredentials { deletions, upsertions } => {
                alter_user_scram_credentials(image, deletions, upsertions)
            }
            ControllerRequest::CreateAcls { bindings } => create_acls(image, bindings),
            ControllerRequest::DeleteAcls { filters } => delete_acls(image, filters),
            ControllerRequest::AlterClientQuotas { alterations, validate_only } => {
                alter_client_quotas(image, alterations, *validate_only)
            }
        }
    }

    /// Fences every unfenced broker whose last heartbeat is older than the session
    /// timeout, and moves its leaderships and ISR memberships away.
    pub fn fence_expired(&mut self, image: &MetadataImage, now: Instant) -> Result<Vec<MetadataRecord>, ControllerError> {
        let mut pending = Pending::new(image);
        for broker in image.unfenced_brokers() {
            let last = *self.last_heartbeat.entry(broker.node_id).or_insert(now);
            let session_expired = now.saturating_duration_since(last) > self.config.broker_session_timeout;
            let link_lost = self.link_lost_deadline.get(&broker.node_id).is_some_and(|deadline| now >= *deadline);
            if session_expired || link_lost {
                if session_expired {
                    tracing::warn!(node_id = broker.node_id, "broker session expired: fencing it");
                } else {
                    tracing::warn!(node_id = broker.node_id, "broker's liveness link closed and no heartbeat followed: fencing it");
                }
                self.link_lost_deadline.remove(&broker.node_id);
                pending.push(MetadataRecord::FenceBroker { node_id: broker.node_id, broker_epoch: broker.broker_epoch })?;
                self.move_away_from(&mut pending, broker.node_id)?;
            }
        }
        Ok(pending.records)
    }

    /// Preferred-leader rebalancing (`auto.leader.rebalance.enable`): every partition
    /// whose first replica is in the ISR and unfenced but not the leader gets it back.
    pub fn rebalance_preferred_leaders(&self, image: &MetadataImage) -> Result<Vec<MetadataRecord>, ControllerError> {
        let mut pending = Pending::new(image);
        for topic in image.topics.values() {
            for (partition, state) in &topic.partitions {
                if let Some(&preferred) = state.replicas.first() {
                    if state.leader != preferred && state.can_lead(image, preferred) {
                        pending.push(change(topic.topic_id, *partition, Some(preferred), None))?;
                    }
                }
            }
        }
        Ok(pending.records)
    }

    fn register_broker(
        &mut self,
        image: &MetadataImage,
        node_id: i32,
        incarnation_id: Uuid,
        endpoints: &[BrokerEndpoint],
        rack: &Option<String>,
        directory_id: Uuid,
        now: Instant,
    ) -> Result<Decision, ControllerError> {
        if node_id < 0 {
            return Err(ControllerError::new(ResponseError::InvalidRequest, format!("invalid node id {node_id}")));
        }
        if let Some(existing) = image.brokers.get(&node_id) {
            if existing.incarnation_id == incarnation_id {
                // A retried registration of the same process.
                self.last_heartbeat.insert(node_id, now);
                return Ok(Decision {
                    records: vec![],
                    response: ControllerResponse::BrokerRegistered { broker_epoch: existing.broker_epoch },
                });
            }
            let alive = self
                .last_heartbeat
                .get(&node_id)
                .is_some_and(|last| now.saturating_duration_since(*last) <= self.config.broker_session_timeout);
            let colocated = self.config.colocated_broker == Some(node_id);
            if !existing.fenced && alive && !colocated {
                return Err(ControllerError::new(
                    ResponseError::DuplicateBrokerRegistration,
                    format!("another broker is registered with node id {node_id} and its session has not expired"),
                ));
            }
        }
        let broker_epoch = image.last_broker_epoch + 1;
        // A known node with another data directory than it had: its disk was wiped.
        let lost_its_directory = image
            .brokers
            .get(&node_id)
            .is_some_and(|b| !b.directory_id.is_nil() && !directory_id.is_nil() && b.directory_id != directory_id);
        let mut pending = Pending::new(image);
        // The new incarnation starts fenced: the old one's leaderships move away first.
        pending.push(MetadataRecord::RegisterBroker(BrokerRegistrationRecord {
            node_id,
            incarnation_id,
            broker_epoch,
            endpoints: endpoints.to_vec(),
            rack: rack.clone(),
            fenced: true,
            directory_id,
        }))?;
        self.move_away_from(&mut pending, node_id)?;
        if lost_its_directory {
            self.mark_copies_lost(&mut pending, node_id)?;
        }
        self.last_heartbeat.insert(node_id, now);
        self.link_lost_deadline.remove(&node_id);
        Ok(Decision { records: pending.records, response: ControllerResponse::BrokerRegistered { broker_epoch } })
    }

    fn heartbeat(
        &mut self,
        image: &MetadataImage,
        node_id: i32,
        broker_epoch: i64,
        want_fence: bool,
        want_shutdown: bool,
        now: Instant,
    ) -> Result<Decision, ControllerError> {
        let broker = check_broker_epoch(image, node_id, broker_epoch)?;
        self.last_heartbeat.insert(node_id, now);
        self.link_lost_deadline.remove(&node_id);
        let mut pending = Pending::new(image);
        if want_shutdown {
            if !broker.fenced {
                pending.push(MetadataRecord::FenceBroker { node_id, broker_epoch })?;
            }
            self.move_away_from(&mut pending, node_id)?;
            return Ok(Decision {
                records: pending.records,
                response: ControllerResponse::Heartbeat { is_fenced: true, should_shutdown: true, metadata_index: 0 },
            });
        }
        let is_fenced = match (broker.fenced, want_fence) {
            (true, false) => {
                pending.push(MetadataRecord::UnfenceBroker { node_id, broker_epoch })?;
                self.elect_for_leaderless(&mut pending, node_id)?;
                false
            }
            (false, true) => {
                pending.push(MetadataRecord::FenceBroker { node_id, broker_epoch })?;
                self.move_away_from(&mut pending, node_id)?;
                true
            }
            (fenced, _) => fenced,
        };
        Ok(Decision { records: pending.records, response: ControllerResponse::Heartbeat { is_fenced, should_shutdown: false, metadata_index: 0 } })
    }

    /// `node_id` is fenced (or going away): it leaves every ISR it is in (unless it is
    /// the last member: the ISR keeps it, so it can lead again, cleanly, when it comes
    /// back), and each partition it led gets a new leader from the rest of the ISR.
    fn move_away_from(&self, pending: &mut Pending, node_id: i32) -> Result<(), ControllerError> {
        let mut changes = Vec::new();
        for topic in pending.image.topics.values() {
            for (partition, state) in &topic.partitions {
                if state.leader != node_id && !state.isr.contains(&node_id) {
                    continue;
                }
                let remaining: Vec<i32> = state.isr.iter().copied().filter(|r| *r != node_id).collect();
                let mut record = PartitionChangeRecord { topic_id: topic.topic_id, partition: *partition, ..Default::default() };
                if remaining.is_empty() {
                    // The broker was the only ISR member, and so the leader.
                    match self.unclean_candidate(&pending.image, &state.replicas, node_id) {
                        Some(candidate) => {
                            tracing::warn!(topic = %topic.name, partition, leader = candidate, "unclean leader election");
                            record.leader = Some(candidate);
                            record.isr = Some(vec![candidate]);
                        }
                        None => record.leader = Some(NO_LEADER),
                    }
                } else {
                    record.isr = Some(remaining.clone());
                    if state.leader == node_id || state.leader == NO_LEADER {
                        record.leader = Some(
                            state
                                .replicas
                                .iter()
                                .copied()
                                .find(|r| remaining.contains(r) && pending.image.is_unfenced(*r))
                                .unwrap_or(NO_LEADER),
                        );
                    }
                }
                changes.push(record);
            }
        }
        for record in changes {
            let (topic_id, partition) = (record.topic_id, record.partition);
            pending.push(MetadataRecord::PartitionChange(record))?;
            pending.complete_reassignment_if_possible(topic_id, partition)?;
        }
        Ok(())
    }

    /// `node_id` registered with a new data directory: where it is still the last
    /// ISR member (leaving the ISR would empty it), its copy is marked lost, so it
    /// is not elected on an empty log that the other replicas would then truncate
    /// to. With unclean election on, another live replica takes over at once.
    fn mark_copies_lost(&self, pending: &mut Pending, node_id: i32) -> Result<(), ControllerError> {
        let mut changes = Vec::new();
        for topic in pending.image.topics.values() {
            for (partition, state) in &topic.partitions {
                if state.isr != [node_id] || state.offline_replicas.contains(&node_id) {
                    continue;
                }
                tracing::warn!(
                    topic = %topic.name, partition, node_id,
                    "the last in-sync replica came back with a new data directory: its copy is lost; the partition stays offline until an unclean election"
                );
                let mut record = PartitionChangeRecord {
                    topic_id: topic.topic_id,
                    partition: *partition,
                    leader: Some(NO_LEADER),
                    offline_replicas: Some(vec![node_id]),
                    ..Default::default()
                };
                if let Some(candidate) = self.unclean_candidate(&pending.image, &state.replicas, node_id) {
                    tracing::warn!(topic = %topic.name, partition, leader = candidate, "unclean leader election");
                    record.leader = Some(candidate);
                    record.isr = Some(vec![candidate]);
                }
                changes.push(record);
            }
        }
        for record in changes {
            pending.push(MetadataRecord::PartitionChange(record))?;
        }
        Ok(())
    }

    fn unclean_candidate(&self, image: &MetadataImage, replicas: &[i32], excluded: i32) -> Option<i32> {
        if !self.config.unclean_leader_election {
            return None;
        }
        replicas.iter().copied().find(|r| *r != excluded && image.is_unfenced(*r))
    }

    /// `node_id` was just unfenced: leaderless partitions whose ISR holds it get it as
    /// leader; with unclean election on, so do those with no ISR member able to lead
    /// that it replicates (Kafka's unfencing elects uncleanly too).
    fn elect_for_leaderless(&self, pending: &mut Pending, node_id: i32) -> Result<(), ControllerError> {
        let mut changes = Vec::new();
        for topic in pending.image.topics.values() {
            for (partition, state) in &topic.partitions {
                if state.leader != NO_LEADER {
                    continue;
                }
                if state.can_lead(&pending.image, node_id) {
                    changes.push((topic.topic_id, *partition, change(topic.topic_id, *partition, Some(node_id), None)));
                } else if self.config.unclean_leader_election
                    && state.replicas.contains(&node_id)
                    && !state.isr.iter().any(|r| state.can_lead(&pending.image, *r))
                {
                    tracing::warn!(topic = %topic.name, partition, leader = node_id, "unclean leader election");
                    changes.push((topic.topic_id, *partition, change(topic.topic_id, *partition, Some(node_id), Some(vec![node_id]))));
                }
            }
        }
        for (topic_id, partition, record) in changes {
            pending.push(record)?;
            pending.complete_reassignment_if_possible(topic_id, partition)?;
        }
        Ok(())
    }

    fn create_topic(&self, image: &MetadataImage, create: &CreateTopic) -> Result<Decision, ControllerError> {
        validate_topic_name(&create.name)?;
        if image.topic_by_name(&create.name).is_some() {
            return Err(ControllerError::new(
                ResponseError::TopicAlreadyExists,
                format!("Topic '{}' already exists.", create.name),
            ));
        }
        let assignments = match &create.assignments {
            Some(assignments) => {
                if create.num_partitions != -1 || create.replication_factor != -1 {
                    return Err(ControllerError::new(
                        ResponseError::InvalidRequest,
                        "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
                    ));
                }
                validate_assignments(image, assignments, None)?;
                assignments.clone()
            }
            None => {
                if create.num_partitions < 1 {
                    return Err(ControllerError::new(ResponseError::InvalidPartitions, "Number of partitions must be at least 1."));
                }
                if create.replication_factor < 1 {
                    return Err(ControllerError::new(
                        ResponseError::InvalidReplicationFactor,
                        "Replication factor must be larger than 0.",
                    ));
                }
                place_replicas(image, 0, create.num_partitions, create.replication_factor)?
            }
        };
        let topic_id = crate::random_kafka_uuid();
        let mut pending = Pending::new(image);
        pending.push(MetadataRecord::Topic { name: create.name.clone(), topic_id })?;
        for (partition, replicas) in assignments.iter().enumerate() {
            pending.push(new_partition(image, topic_id, partition as i32, replicas))?;
        }
        for (name, value) in &create.configs {
            pending.push(MetadataRecord::Config {
                resource_type: ConfigResource::Topic,
                resource_name: create.name.clone(),
                name: name.clone(),
                value: Some(value.clone()),
            })?;
        }
        Ok(Decision {
            records: pending.records,
            response: ControllerResponse::TopicCreated {
                topic_id,
                num_partitions: assignments.len() as i32,
                replication_factor: assignments.first().map_or(0, |r| r.len() as i16),
            },
        })
    }

    fn import_topic(
        &self,
        image: &MetadataImage,
        name: &str,
        topic_id: Uuid,
        node_id: i32,
        leader_epochs: &[i32],
        configs: &BTreeMap<String, String>,
    ) -> Result<Decision, ControllerError> {
        let imported = ControllerResponse::TopicCreated {
            topic_id,
            num_partitions: leader_epochs.len() as i32,
            replication_factor: 1,
        };
        match image.topic_by_name(name) {
            // Imported already (a start that stopped before it noted so).
            Some(existing) if existing.topic_id == topic_id => {
                return Ok(Decision { records: vec![], response: imported })
            }
            Some(_) => {
                return Err(ControllerError::new(
                    ResponseError::TopicAlreadyExists,
                    format!("Topic '{name}' already exists in the cluster metadata with another topic id."),
                ))
            }
            None => {}
        }
        validate_topic_name(name)?;
        if leader_epochs.is_empty() {
            return Err(ControllerError::new(ResponseError::InvalidPartitions, format!("topic {name} has no partitions")));
        }
        let mut pending = Pending::new(image);
        pending.push(MetadataRecord::Topic { name: name.to_string(), topic_id })?;
        for (partition, leader_epoch) in leader_epochs.iter().enumerate() {
            pending.push(MetadataRecord::Partition(PartitionRecord {
                topic_id,
                partition: partition as i32,
                replicas: vec![node_id],
                isr: vec![node_id],
                leader: node_id,
                leader_epoch: (*leader_epoch).max(0),
                partition_epoch: 0,
            }))?;
        }
        for (config, value) in configs {
            pending.push(MetadataRecord::Config {
                resource_type: ConfigResource::Topic,
                resource_name: name.to_string(),
                name: config.clone(),
                value: Some(value.clone()),
            })?;
        }
        Ok(Decision { records: pending.records, response: imported })
    }

    fn create_partitions(
        &self,
        image: &MetadataImage,
        name: &str,
        count: i32,
        assignments: Option<&[Vec<i32>]>,
    ) -> Result<Decision, ControllerError> {
        let topic = image.topic_by_name(name).ok_or_else(|| unknown_topic(name))?;
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(ControllerError::new(
                ResponseError::InvalidPartitions,
                format!("Topic currently has {current} partitions, which is higher than or equal to the requested {count}."),
            ));
        }
        let replication_factor = topic.partitions.values().next().map_or(1, |p| p.replicas.len() as i16);
        let new_assignments = match assignments {
            Some(assignments) => {
                if assignments.len() as i32 != count - current {
                    return Err(ControllerError::new(
                        ResponseError::InvalidReplicaAssignment,
                        format!("{} assignments given for {} new partitions", assignments.len(), count - current),
                    ));
                }
                validate_assignments(image, assignments, Some(replication_factor as usize))?;
                assignments.to_vec()
            }
            None => place_replicas(image, current, count - current, replication_factor)?,
        };
        let mut pending = Pending::new(image);
        for (i, replicas) in new_assignments.iter().enumerate() {
            pending.push(new_partition(image, topic.topic_id, current + i as i32, replicas))?;
        }
        Ok(Decision { records: pending.records, response: ControllerResponse::Done })
    }

    fn alter_partition(&self, image: &MetadataImage, alter: &AlterPartition) -> Result<Decision, ControllerError> {
        check_broker_epoch(image, alter.broker_id, alter.broker_epoch)?;
        let state = image.partition(&alter.topic_id, alter.partition).ok_or_else(|| {
            ControllerError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("unknown partition {}-{}", alter.topic_id, alter.partition),
            )
        })?;
        let tp = format!("{}-{}", alter.topic_id, alter.partition);
        if alter.leader_epoch < state.leader_epoch {
            return Err(ControllerError::new(
                ResponseError::FencedLeaderEpoch,
                format!("{tp}: leader epoch {} is older than {}", alter.leader_epoch, state.leader_epoch),
            ));
        }
        if alter.leader_epoch > state.leader_epoch {
            // The broker has seen a newer epoch than this controller: this one is stale.
            return Err(ControllerError::new(
                ResponseError::NotController,
                format!("{tp}: leader epoch {} is newer than {}", alter.leader_epoch, state.leader_epoch),
            ));
        }
        if alter.broker_id != state.leader {
            return Err(ControllerError::new(
                ResponseError::InvalidRequest,
                format!("{tp}: broker {} is not the leader ({})", alter.broker_id, state.leader),
            ));
        }
        if alter.partition_epoch != state.partition_epoch {
            return Err(ControllerError::new(
                ResponseError::InvalidUpdateVersion,
                format!("{tp}: partition epoch {} is not the current {}", alter.partition_epoch, state.partition_epoch),
            ));
        }
        let unique: BTreeSet<i32> = alter.new_isr.iter().copied().collect();
        if unique.len() != alter.new_isr.len() || !alter.new_isr.contains(&state.leader) {
            return Err(ControllerError::new(
                ResponseError::InvalidRequest,
                format!("{tp}: the new ISR {:?} must hold the leader {} once, and no duplicates", alter.new_isr, state.leader),
            ));
        }
        if let Some(outsider) = alter.new_isr.iter().find(|r| !state.replicas.contains(r)) {
            return Err(ControllerError::new(
                ResponseError::InvalidRequest,
                format!("{tp}: ISR member {outsider} is not a replica ({:?})", state.replicas),
            ));
        }
        if let Some(ineligible) = alter.new_isr.iter().find(|r| !state.isr.contains(r) && !image.is_unfenced(**r)) {
            return Err(ControllerError::new(
                ResponseError::IneligibleReplica,
                format!("{tp}: replica {ineligible} is fenced, in controlled shutdown or not registered"),
            ));
        }
        if alter.new_isr == state.isr {
            return Ok(Decision {
                records: vec![],
                response: ControllerResponse::PartitionAltered {
                    leader: state.leader,
                    leader_epoch: state.leader_epoch,
                    partition_epoch: state.partition_epoch,
                    isr: state.isr.clone(),
                },
            });
        }
        // The last adding replica joined the ISR: the reassignment completes in the same change.
        let mut with_new_isr = state.clone();
        with_new_isr.isr = alter.new_isr.clone();
        if let Some(done) = completed_reassignment(image, &with_new_isr) {
            let leader_epoch = state.leader_epoch + i32::from(done.leader != state.leader);
            let response = ControllerResponse::PartitionAltered {
                leader: done.leader,
                leader_epoch,
                partition_epoch: state.partition_epoch + 1,
                isr: done.isr.clone(),
            };
            tracing::info!(topic_id = %alter.topic_id, partition = alter.partition, replicas = ?done.replicas, leader = done.leader, "reassignment completed");
            return Ok(Decision { records: vec![done.record(alter.topic_id, alter.partition, state)], response });
        }
        Ok(Decision {
            records: vec![change(alter.topic_id, alter.partition, None, Some(alter.new_isr.clone()))],
            response: ControllerResponse::PartitionAltered {
                leader: state.leader,
                leader_epoch: state.leader_epoch,
                partition_epoch: state.partition_epoch + 1,
                isr: alter.new_isr.clone(),
            },
        })
    }

    fn elect_leaders(
        &self,
        image: &MetadataImage,
        election: ElectionType,
        partitions: &[(String, i32)],
    ) -> Result<Decision, ControllerError> {
        let mut pending = Pending::new(image);
        let mut results = Vec::new();
        for (name, partition) in partitions {
            let code = match image.topic_by_name(name).and_then(|t| t.partitions.get(partition).map(|p| (t.topic_id, p))) {
                None => ResponseError::UnknownTopicOrPartition.code(),
                Some((topic_id, state)) => match election {
                    ElectionType::Preferred => match state.replicas.first() {
                        Some(&preferred) if preferred == state.leader => ResponseError::ElectionNotNeeded.code(),
                        Some(&preferred) if state.can_lead(image, preferred) => {
                            pending.push(change(topic_id, *partition, Some(preferred), None))?;
                            0
                        }
                        _ => ResponseError::PreferredLeaderNotAvailable.code(),
                    },
                    ElectionType::Unclean => {
                        if state.leader != NO_LEADER {
                            ResponseError::ElectionNotNeeded.code()
                        } else if let Some(clean) =
                            state.replicas.iter().copied().find(|r| state.can_lead(image, *r))
                        {
                            pending.push(change(topic_id, *partition, Some(clean), None))?;
                            0
                        } else if let Some(unclean) = state
                            .replicas
                            .iter()
                            .copied()
                            .filter(|r| image.is_unfenced(*r))
                            // A replica that kept its log first; a lost copy only when no other is live.
                            .min_by_key(|r| state.offline_replicas.contains(r))
                        {
                            pending.push(change(topic_id, *partition, Some(unclean), Some(vec![unclean])))?;
                            pending.complete_reassignment_if_possible(topic_id, *partition)?;
                            0
                        } else {
                            ResponseError::EligibleLeadersNotAvailable.code()
                        }
                    }
                },
            };
            results.push((name.clone(), *partition, code));
        }
        Ok(Decision { records: pending.records, response: ControllerResponse::LeadersElected { results } })
    }
}

/// A partition's state at the end (or revert) of a reassignment.
struct FinalAssignment {
    replicas: Vec<i32>,
    isr: Vec<i32>,
    leader: i32,
}

impl FinalAssignment {
    /// The change from `state`: replicas, ISR and leader as needed, and no reassignment left.
    fn record(&self, topic_id: Uuid, partition: i32, state: &crate::image::PartitionImage) -> MetadataRecord {
        MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id,
            partition,
            leader: (self.leader != state.leader).then_some(self.leader),
            isr: (self.isr != state.isr).then(|| self.isr.clone()),
            replicas: Some(self.replicas.clone()),
            adding_replicas: Some(Vec::new()),
            removing_replicas: Some(Vec::new()),
            offline_replicas: None,
        })
    }
}

/// The leader among `replicas` (in their order) after a change to `isr`: the
/// current one if it stays in the ISR, else the first unfenced ISR member.
fn leader_after(image: &MetadataImage, current: i32, replicas: &[i32], isr: &[i32]) -> i32 {
    if current != NO_LEADER && isr.contains(&current) && replicas.contains(&current) {
        return current;
    }
    replicas.iter().copied().find(|r| isr.contains(r) && image.is_unfenced(*r)).unwrap_or(NO_LEADER)
}

/// Kafka's completion rule (PartitionReassignmentReplicas.maybeCompleteReassignment):
/// once every adding replica is in the ISR, the replicas become the target, the
/// removed ones leave the ISR, and a removed leader is replaced by the first
/// target replica in the ISR. Not while no ISR member would be left.
fn completed_reassignment(image: &MetadataImage, state: &crate::image::PartitionImage) -> Option<FinalAssignment> {
    if !state.is_reassigning() || !state.adding_replicas.iter().all(|r| state.isr.contains(r)) {
        return None;
    }
    let target = state.target_replicas();
    let isr: Vec<i32> = state.isr.iter().copied().filter(|r| target.contains(r)).collect();
    if isr.is_empty() {
        return None;
    }
    let leader = leader_after(image, state.leader, &target, &isr);
    Some(FinalAssignment { replicas: target, isr, leader })
}

/// Cancels a reassignment (Kafka's PartitionReassignmentRevert): the adding
/// replicas leave the replicas and the ISR; should that empty the ISR (only
/// adding replicas were in sync), the original replicas that are live form it.
fn reverted_reassignment(image: &MetadataImage, state: &crate::image::PartitionImage) -> FinalAssignment {
    let replicas: Vec<i32> = state.replicas.iter().copied().filter(|r| !state.adding_replicas.contains(r)).collect();
    let mut isr: Vec<i32> = state.isr.iter().copied().filter(|r| !state.adding_replicas.contains(r)).collect();
    if isr.is_empty() {
        tracing::warn!(?replicas, "cancelling a reassignment whose ISR held only adding replicas: the original replicas form the ISR (unclean)");
        isr = replicas.iter().copied().filter(|r| image.is_unfenced(*r)).collect();
        if isr.is_empty() {
            isr = replicas.clone();
        }
    }
    let leader = leader_after(image, state.leader, &replicas, &isr);
    FinalAssignment { replicas, isr, leader }
}

/// AlterPartitionReassignments: each partition on its own (one's error does not
/// stop the others), in one batch.
fn alter_partition_reassignments(
    image: &MetadataImage,
    reassignments: &[Reassignment],
    allow_replication_factor_change: bool,
) -> Result<Decision, ControllerError> {
    let mut pending = Pending::new(image);
    let mut results = Vec::with_capacity(reassignments.len());
    for reassignment in reassignments {
        match reassign_partition(&pending.image, reassignment, allow_replication_factor_change) {
            Ok(record) => {
                if let Some(record) = record {
                    pending.push(record)?;
                }
                results.push((reassignment.topic.clone(), reassignment.partition, 0, None));
            }
            Err(e) => results.push((reassignment.topic.clone(), reassignment.partition, e.code, Some(e.message))),
        }
    }
    Ok(Decision { records: pending.records, response: ControllerResponse::Reassigned { results } })
}

/// One partition's reassignment (Kafka's ReplicationControlManager.changePartitionReassignment
/// and cancelPartitionReassignment): the record to write, if anything changes.
fn reassign_partition(
    image: &MetadataImage,
    reassignment: &Reassignment,
    allow_replication_factor_change: bool,
) -> Result<Option<MetadataRecord>, ControllerError> {
    let Reassignment { topic, partition, target } = reassignment;
    let unknown = || ControllerError::new(ResponseError::UnknownTopicOrPartition, format!("Unable to find partition {topic}:{partition}."));
    let topic_image = image.topic_by_name(topic).ok_or_else(unknown)?;
    let topic_id = topic_image.topic_id;
    let state = topic_image.partitions.get(partition).ok_or_else(unknown)?;
    let Some(target) = target else {
        if !state.is_reassigning() {
            return Err(ControllerError::new(
                ResponseError::NoReassignmentInProgress,
                format!("Partition {topic}:{partition} has no ongoing reassignment."),
            ));
        }
        return Ok(Some(reverted_reassignment(image, state).record(topic_id, *partition, state)));
    };
    let invalid = |message: String| ControllerError::new(ResponseError::InvalidReplicaAssignment, message);
    if target.is_empty() {
        return Err(invalid("The manual partition assignment includes an empty replica list.".into()));
    }
    let mut seen = BTreeSet::new();
    for replica in target {
        if !seen.insert(*replica) {
            return Err(invalid(format!("The manual partition assignment includes the broker {replica} more than once.")));
        }
        if !image.brokers.contains_key(replica) {
            return Err(invalid(format!(
                "The manual partition assignment includes broker {replica}, but no such broker is registered."
            )));
        }
    }
    if !target.iter().any(|r| image.is_unfenced(*r)) {
        return Err(invalid(format!(
            "All brokers specified in the manual partition assignment for partition {partition} are fenced or in controlled shutdown."
        )));
    }
    let current_factor = state.target_replicas().len();
    if !allow_replication_factor_change && target.len() != current_factor {
        return Err(ControllerError::new(
            ResponseError::InvalidReplicationFactor,
            format!("The replication factor is changed from {current_factor} to {}", target.len()),
        ));
    }
    // Kafka's PartitionReassignmentReplicas: the target first, then the replicas leaving.
    let mut replicas = target.clone();
    replicas.extend(state.replicas.iter().copied().filter(|r| !target.contains(r)));
    let adding: Vec<i32> = target.iter().copied().filter(|r| !state.replicas.contains(r)).collect();
    let removing: Vec<i32> = state.replicas.iter().copied().filter(|r| !target.contains(r)).collect();
    if adding.is_empty() && removing.is_empty() && replicas == state.replicas && !state.is_reassigning() {
        return Ok(None); // the current assignment already
    }
    let mut union = state.clone();
    union.replicas = replicas.clone();
    union.adding_replicas = adding.clone();
    union.removing_replicas = removing.clone();
    if let Some(done) = completed_reassignment(image, &union) {
        // Nothing to copy (only removals): it completes at once.
        return Ok(Some(done.record(topic_id, *partition, state)));
    }
    Ok(Some(MetadataRecord::PartitionChange(PartitionChangeRecord {
        topic_id,
        partition: *partition,
        replicas: Some(replicas),
        adding_replicas: Some(adding),
        removing_replicas: Some(removing),
        ..Default::default()
    })))
}

/// Kafka's ScramControlManager.alterCredentials: a user named twice in one request
/// (deletion or upsertion) gets DUPLICATE_RESOURCE and none of its changes; each other
/// user's change is checked alone, and the valid ones are committed together. Answers
/// list the deletions done, then the upsertions done, then the refusals.
fn alter_user_scram_credentials(
    image: &MetadataImage,
    deletions: &[ScramDeletion],
    upsertions: &[ScramUpsertion],
) -> Result<Decision, ControllerError> {
    const DUPLICATE: &str = "A user credential cannot be altered twice in the same request";
    let mut errors: Vec<(String, ResponseError, String)> = Vec::new();
    let refused = |errors: &[(String, ResponseError, String)], name: &str| errors.iter().any(|(n, _, _)| n == name);
    let mut to_delete: Vec<&ScramDeletion> = Vec::new();
    let mut to_upsert: Vec<&ScramUpsertion> = Vec::new();
    for deletion in deletions {
        if refused(&errors, &deletion.name) {
            continue;
        }
        if let Some(at) = to_delete.iter().position(|d| d.name == deletion.name) {
            to_delete.remove(at);
            errors.push((deletion.name.clone(), ResponseError::DuplicateResource, DUPLICATE.into()));
            continue;
        }
        let known = image.scram_credentials.get(&deletion.name).is_some_and(|m| m.contains_key(&deletion.mechanism));
        match check_scram_name_and_mechanism(&deletion.name, deletion.mechanism) {
            Err((code, message)) => errors.push((deletion.name.clone(), code, message.into())),
            Ok(()) if !known => errors.push((
                deletion.name.clone(),
                ResponseError::ResourceNotFound,
                "Attempt to delete a user credential that does not exist".into(),
            )),
            Ok(()) => to_delete.push(deletion),
        }
    }
    for upsertion in upsertions {
        if refused(&errors, &upsertion.name) {
            continue;
        }
        let deleted = to_delete.iter().position(|d| d.name == upsertion.name);
        let upserted = to_upsert.iter().position(|u| u.name == upsertion.name);
        if deleted.is_some() || upserted.is_some() {
            if let Some(at) = deleted {
                to_delete.remove(at);
            }
            if let Some(at) = upserted {
                to_upsert.remove(at);
            }
            errors.push((upsertion.name.clone(), ResponseError::DuplicateResource, DUPLICATE.into()));
            continue;
        }
        let checked = check_scram_name_and_mechanism(&upsertion.name, upsertion.mechanism).and_then(|()| {
            if upsertion.iterations < SCRAM_MIN_ITERATIONS {
                Err((ResponseError::UnacceptableCredential, "Too few iterations"))
            } else if upsertion.iterations > SCRAM_MAX_ITERATIONS {
                Err((ResponseError::UnacceptableCredential, "Too many iterations"))
            } else if upsertion.stored_key.is_empty() || upsertion.server_key.is_empty() {
                // Kafka cannot derive keys from an empty salted password either.
                Err((ResponseError::UnacceptableCredential, "The salted password must not be empty"))
            } else {
                Ok(())
            }
        });
        match checked {
            Err((code, message)) => errors.push((upsertion.name.clone(), code, message.into())),
            Ok(()) => to_upsert.push(upsertion),
        }
    }
    let mut pending = Pending::new(image);
    let mut results = Vec::new();
    for deletion in to_delete {
        pending.push(MetadataRecord::RemoveUserScramCredential { name: deletion.name.clone(), mechanism: deletion.mechanism })?;
        results.push((deletion.name.clone(), 0, None));
    }
    for upsertion in to_upsert {
        pending.push(MetadataRecord::UserScramCredential {
            name: upsertion.name.clone(),
            mechanism: upsertion.mechanism,
            salt: upsertion.salt.clone(),
            stored_key: upsertion.stored_key.clone(),
            server_key: upsertion.server_key.clone(),
            iterations: upsertion.iterations,
        })?;
        results.push((upsertion.name.clone(), 0, None));
    }
    results.extend(errors.into_iter().map(|(name, code, message)| (name, code.code(), Some(message))));
    Ok(Decision { records: pending.records, response: ControllerResponse::ScramCredentialsAltered { results } })
}

/// Kafka's `AclControlManager.createAcls`: an invalid binding gets INVALID_REQUEST,
/// one equal to an existing binding succeeds without a new record.
fn create_acls(image: &MetadataImage, bindings: &[AclBinding]) -> Result<Decision, ControllerError> {
    if bindings.len() > MAX_RECORDS_PER_USER_OP {
        return Err(ControllerError::new(
            ResponseError::PolicyViolation,
            format!("Cannot create more than {MAX_RECORDS_PER_USER_OP} ACLs in a single request"),
        ));
    }
    let mut existing: BTreeSet<AclBinding> = image.acls.values().map(AclBinding::from_record).collect();
    let mut pending = Pending::new(image);
    let mut results = Vec::with_capacity(bindings.len());
    for binding in bindings {
        if let Err(message) = validate_new_binding(binding) {
            results.push((ResponseError::InvalidRequest.code(), Some(message)));
            continue;
        }
        if existing.insert(binding.clone()) {
            let mut id = Uuid::new_v4();
            while pending.image.acls.contains_key(&id) {
                id = Uuid::new_v4();
            }
            pending.push(MetadataRecord::AccessControlEntry(binding.to_record(id)))?;
        }
        results.push((0, None));
    }
    Ok(Decision { records: pending.records, response: ControllerResponse::AclsCreated { results } })
}

/// Kafka's `ClientQuotaControlManager.alterClientQuotas`: each entry is checked
/// alone (an invalid one changes nothing, the others are written together).
fn alter_client_quotas(
    image: &MetadataImage,
    alterations: &[crate::quota::QuotaAlteration],
    validate_only: bool,
) -> Result<Decision, ControllerError> {
    let (results, changes) = crate::quota::alter(&image.client_quotas, alterations);
    let mut pending = Pending::new(image);
    if !validate_only {
        for (entity, key, value) in changes {
            pending.push(MetadataRecord::ClientQuota { entity, key, value })?;
        }
    }
    Ok(Decision { records: pending.records, response: ControllerResponse::ClientQuotasAltered { results } })
}

/// Kafka's `AclControlManager.deleteAcls`: per filter, the bindings it matches
/// (a binding matched by an earlier filter is not listed again).
fn delete_acls(image: &MetadataImage, filters: &[AclBindingFilter]) -> Result<Decision, ControllerError> {
    let mut pending = Pending::new(image);
    let mut results = Vec::with_capacity(filters.len());
    for filter in filters {
        if let Some(element) = filter.unknown_element() {
            results.push(AclDeletion {
                error_code: ResponseError::InvalidRequest.code(),
                error_message: Some(format!("Unknown {element} in the filter.")),
                deleted: Vec::new(),
            });
            continue;
        }
        let matching: Vec<(Uuid, AclBinding)> = pending
            .image
            .acls
            .iter()
            .map(|(id, record)| (*id, AclBinding::from_record(record)))
            .filter(|(_, binding)| filter.matches(binding))
            .collect();
        if pending.records.len() + matching.len() > MAX_RECORDS_PER_USER_OP {
            return Err(ControllerError::new(
                ResponseError::PolicyViolation,
                format!("Cannot delete more than {MAX_RECORDS_PER_USER_OP} ACLs in a single request"),
            ));
        }
        let mut deleted = Vec::with_capacity(matching.len());
        for (id, binding) in matching {
            pending.push(MetadataRecord::RemoveAccessControlEntry { id })?;
            deleted.push(binding);
        }
        results.push(AclDeletion { error_code: 0, error_message: None, deleted });
    }
    Ok(Decision { records: pending.records, response: ControllerResponse::AclsDeleted { results } })
}

fn check_scram_name_and_mechanism(name: &str, mechanism: i8) -> Result<(), (ResponseError, &'static str)> {
    if name.is_empty() {
        Err((ResponseError::UnacceptableCredential, "Username must not be empty"))
    } else if !matches!(mechanism, 1 | 2) {
        Err((ResponseError::UnsupportedSaslMechanism, "Unknown SCRAM mechanism"))
    } else {
        Ok(())
    }
}

fn change(topic_id: Uuid, partition: i32, leader: Option<i32>, isr: Option<Vec<i32>>) -> MetadataRecord {
    MetadataRecord::PartitionChange(PartitionChangeRecord { topic_id, partition, leader, isr, ..Default::default() })
}

fn unknown_topic(name: &str) -> ControllerError {
    ControllerError::new(ResponseError::UnknownTopicOrPartition, format!("unknown topic {name}"))
}

fn check_broker_epoch<'a>(
    image: &'a MetadataImage,
    node_id: i32,
    broker_epoch: i64,
) -> Result<&'a crate::image::BrokerRegistration, ControllerError> {
    match image.brokers.get(&node_id) {
        None => Err(ControllerError::new(ResponseError::BrokerIdNotRegistered, format!("broker {node_id} is not registered"))),
        Some(broker) if broker.broker_epoch != broker_epoch => Err(ControllerError::new(
            ResponseError::StaleBrokerEpoch,
            format!("broker {node_id}: epoch {broker_epoch} is not the current {}", broker.broker_epoch),
        )),
        Some(broker) => Ok(broker),
    }
}

/// The next block of producer ids: from the image's next id (or `first_id_at_least`,
/// if higher), `PRODUCER_ID_BLOCK_SIZE` long. The record moves the cluster's next id
/// past the block, so no block is handed out twice, whichever node is the controller.
fn allocate_producer_ids(
    image: &MetadataImage,
    broker_id: i32,
    broker_epoch: i64,
    first_id_at_least: i64,
) -> Result<Decision, ControllerError> {
    // Kafka answers STALE_BROKER_EPOCH for an unknown broker too (ClusterControlManager.checkBrokerEpoch).
    check_broker_epoch(image, broker_id, broker_epoch).map_err(|e| {
        if e.code == ResponseError::BrokerIdNotRegistered.code() {
            ControllerError::new(ResponseError::StaleBrokerEpoch, e.message)
        } else {
            e
        }
    })?;
    let first_producer_id = image.next_producer_id.max(first_id_at_least);
    let next_producer_id = first_producer_id
        .checked_add(PRODUCER_ID_BLOCK_SIZE)
        .ok_or_else(|| ControllerError::new(ResponseError::UnknownServerError, "producer ids exhausted: the next block would pass the int64 limit"))?;
    Ok(Decision {
        records: vec![MetadataRecord::ProducerIds { broker_id, broker_epoch, next_producer_id }],
        response: ControllerResponse::ProducerIds { first_producer_id, count: PRODUCER_ID_BLOCK_SIZE },
    })
}

/// A new partition: the leader is the first unfenced replica, the ISR the unfenced ones.
fn new_partition(image: &MetadataImage, topic_id: Uuid, partition: i32, replicas: &[i32]) -> MetadataRecord {
    let isr: Vec<i32> = replicas.iter().copied().filter(|r| image.is_unfenced(*r)).collect();
    MetadataRecord::Partition(PartitionRecord {
        topic_id,
        partition,
        replicas: replicas.to_vec(),
        leader: isr.first().copied().unwrap_or(NO_LEADER),
        isr,
        leader_epoch: 0,
        partition_epoch: 0,
    })
}

/// Kafka's topic name rules.
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    let invalid = |why: &str| ControllerError::new(ResponseError::InvalidTopicException, format!("Topic name \"{name}\" is illegal, {why}"));
    if name.is_empty() {
        return Err(invalid("it can't be empty"));
    }
    if name == "." || name == ".." {
        return Err(invalid("it can't be '.' or '..'"));
    }
    if name.len() > 249 {
        return Err(invalid("it can't be longer than 249 characters"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-') {
        return Err(invalid("it contains a character other than ASCII alphanumerics, '.', '_' and '-'"));
    }
    Ok(())
}

fn validate_assignments(
    image: &MetadataImage,
    assignments: &[Vec<i32>],
    replication_factor: Option<usize>,
) -> Result<(), ControllerError> {
    let invalid = |message: String| ControllerError::new(ResponseError::InvalidReplicaAssignment, message);
    if assignments.is_empty() {
        return Err(invalid("no partitions in the assignment".into()));
    }
    let expected = replication_factor.unwrap_or(assignments[0].len());
    for (partition, replicas) in assignments.iter().enumerate() {
        if replicas.is_empty() {
            return Err(invalid(format!("partition {partition} has no replicas")));
        }
        if replicas.len() != expected {
            return Err(invalid(format!(
                "partition {partition} has {} replicas; all partitions must have {expected}",
                replicas.len()
            )));
        }
        if replicas.iter().collect::<BTreeSet<_>>().len() != replicas.len() {
            return Err(invalid(format!("partition {partition} names a replica twice: {replicas:?}")));
        }
        if let Some(unknown) = replicas.iter().find(|r| !image.brokers.contains_key(r)) {
            return Err(invalid(format!("partition {partition}: broker {unknown} is not registered")));
        }
        if !replicas.iter().any(|r| image.is_unfenced(*r)) {
            return Err(invalid(format!(
                "All brokers specified in the partition assignment for partition {partition} are fenced or in controlled shutdown."
            )));
        }
    }
    Ok(())
}

/// Rack-aware placement with balanced leaders: unfenced brokers in rack-alternating
/// order (one from each rack in turn); each partition's leader is the broker leading
/// the fewest partitions so far (the cursor rotates among equals); its followers are
/// the next brokers in that order, other racks first.
pub fn place_replicas(
    image: &MetadataImage,
    first_partition: i32,
    num_partitions: i32,
    replication_factor: i16,
) -> Result<Vec<Vec<i32>>, ControllerError> {
    let mut by_rack: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for broker in image.unfenced_brokers() {
        by_rack.entry(broker.rack.as_deref().unwrap_or("")).or_default().push(broker.node_id);
    }
    let live: usize = by_rack.values().map(Vec::len).sum();
    if replication_factor as usize > live || live == 0 {
        return Err(ControllerError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only {live} broker(s) are registered."
            ),
        ));
    }
    let mut order: Vec<i32> = Vec::with_capacity(live);
    for round in 0.. {
        let before = order.len();
        for brokers in by_rack.values() {
            if let Some(b) = brokers.get(round) {
                order.push(*b);
            }
        }
        if order.len() == before {
            break;
        }
    }
    let rack_of = |id: i32| image.brokers.get(&id).and_then(|b| b.rack.clone());
    let mut leader_count: HashMap<i32, usize> = order.iter().map(|b| (*b, 0)).collect();
    for topic in image.topics.values() {
        for p in topic.partitions.values() {
            if let Some(count) = leader_count.get_mut(&p.leader) {
                *count += 1;
            }
        }
    }
    let mut cursor = (first_partition as usize) % live;
    let mut result = Vec::with_capacity(num_partitions.max(0) as usize);
    for _ in 0..num_partitions {
        let leader_pos = (0..live)
            .map(|i| (cursor + i) % live)
            .min_by_key(|pos| leader_count[&order[*pos]])
            .unwrap_or(cursor);
        let leader = order[leader_pos];
        *leader_count.entry(leader).or_default() += 1;
        cursor = (leader_pos + 1) % live;
        let mut replicas = vec![leader];
        let mut racks = vec![rack_of(leader)];
        let candidates: Vec<i32> = (1..live).map(|i| order[(leader_pos + i) % live]).collect();
        for candidate in &candidates {
            if replicas.len() == replication_factor as usize {
                break;
            }
            if !racks.contains(&rack_of(*candidate)) {
                replicas.push(*candidate);
                racks.push(rack_of(*candidate));
            }
        }
        for candidate in &candidates {
            if replicas.len() == replication_factor as usize {
                break;
            }
            if !replicas.contains(candidate) {
                replicas.push(*candidate);
            }
        }
        result.push(replicas);
    }
    Ok(result)
}

#[cfg(test)]
mod tests;
