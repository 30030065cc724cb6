//! One group under the consumer group protocol (KIP-848,
//! ConsumerGroupHeartbeat): the broker computes the target assignment with a
//! server-side assignor and moves each member towards it one heartbeat at a
//! time, so that no partition is ever owned by two members and members that
//! keep a partition never stop consuming it (no stop-the-world rebalance).
//!
//! Epochs, as in Kafka: the *group epoch* grows with every membership or
//! subscription change; the *assignment epoch* is the group epoch the target
//! assignment was computed for; a member's *epoch* reaches the assignment
//! epoch once it has revoked what it must give up. A partition given up by
//! one member is handed to its new owner only after the old owner has
//! acknowledged the revocation (or left, or was fenced).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use uuid::Uuid;

use super::assignor::{self, Assignment, AssignmentSpec, TopicInfo};
use super::consumer_protocol;
use super::group::Group;

pub const LEAVE_GROUP_EPOCH: i32 = -1;
pub const LEAVE_GROUP_STATIC_EPOCH: i32 = -2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Stable,
    /// Must revoke `pending_revocation` before moving to the next epoch.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions others still own.
    UnreleasedPartitions,
}

/// Which topics a member's principal may DESCRIBE, asked when its regex is
/// resolved (KAFKA-18813: a regex subscription gets only those topics).
#[derive(Clone)]
pub struct TopicFilter(pub Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl TopicFilter {
    pub fn allows(&self, topic: &str) -> bool {
        (self.0)(topic)
    }
}

impl std::fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TopicFilter")
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    previous_epoch: i32,
    pub state: MemberState,
    pub rebalance_timeout: Duration,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub assigned: Assignment,
    pub pending_revocation: Assignment,
    last_heartbeat: Instant,
    /// When the member entered UnrevokedPartitions: it is fenced if it takes longer than its rebalance timeout.
    revoking_since: Option<Instant>,
    /// Set for a member that speaks the classic protocol (JoinGroup/SyncGroup/Heartbeat)
    /// in this group: online migration (KIP-848) keeps classic and consumer members together.
    pub classic: Option<ClassicMember>,
    /// The topics its regex may resolve to (None: every topic; no authorizer).
    pub describable: Option<TopicFilter>,
}

/// A classic-protocol member of a consumer group (Kafka's ClassicMemberMetadata,
/// plus the member's timers). Its generation is its member epoch.
#[derive(Debug, Clone)]
pub struct ClassicMember {
    /// From its JoinGroup: a classic member keeps its own session timeout.
    pub session_timeout: Duration,
    /// (name, metadata) in the member's order of preference; the first is the one it is told to use.
    pub protocols: Vec<(String, Bytes)>,
    /// Told to rejoin: it is fenced unless it rejoins by then (its rebalance timeout).
    join_deadline: Option<Instant>,
    /// Joined: it is fenced unless it syncs by then (its rebalance timeout).
    sync_deadline: Option<Instant>,
}

impl ClassicMember {
    pub fn protocol_name(&self) -> &str {
        self.protocols.first().map(|(name, _)| name.as_str()).unwrap_or_default()
    }

    /// The embedded consumer protocol version its assignments are written in.
    fn assignment_version(&self) -> i16 {
        self.protocols.first().and_then(|(_, metadata)| consumer_protocol::version_of(metadata).ok()).unwrap_or(0)
    }
}

/// A classic JoinGroup into a consumer group, after the coordinator decided the member id.
#[derive(Debug, Clone)]
pub struct ClassicJoin {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub subscription: consumer_protocol::Subscription,
}

/// What the classic member is told: its generation (= member epoch) and the protocol to use.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassicJoinAnswer {
    pub member_id: String,
    pub generation: i32,
    pub protocol_name: String,
    /// A static consumer-protocol member this join replaced (its instance id came back as a classic member).
    pub replaced_consumer_member: bool,
}

/// `group.consumer.migration.policy`: which online conversions between the
/// classic and the consumer group protocol are allowed (empty groups always convert).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MigrationPolicy {
    #[default]
    Bidirectional,
    Upgrade,
    Downgrade,
    Disabled,
}

impl MigrationPolicy {
    pub const NAMES: [&'static str; 4] = ["bidirectional", "upgrade", "downgrade", "disabled"];

    /// Case-insensitive, as Kafka's validator.
    pub fn parse(value: &str) -> Option<MigrationPolicy> {
        match value.to_ascii_lowercase().as_str() {
            "bidirectional" => Some(MigrationPolicy::Bidirectional),
            "upgrade" => Some(MigrationPolicy::Upgrade),
            "downgrade" => Some(MigrationPolicy::Downgrade),
            "disabled" => Some(MigrationPolicy::Disabled),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MigrationPolicy::Bidirectional => "bidirectional",
            MigrationPolicy::Upgrade => "upgrade",
            MigrationPolicy::Downgrade => "downgrade",
            MigrationPolicy::Disabled => "disabled",
        }
    }

    pub fn upgrade_enabled(self) -> bool {
        matches!(self, MigrationPolicy::Bidirectional | MigrationPolicy::Upgrade)
    }

    pub fn downgrade_enabled(self) -> bool {
        matches!(self, MigrationPolicy::Bidirectional | MigrationPolicy::Downgrade)
    }
}

/// A ConsumerGroupHeartbeat as the state machine sees it (fields are None
/// when unchanged since the previous heartbeat).
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
    /// The topics the heartbeat's principal may DESCRIBE (with an authorizer).
    pub describable: Option<TopicFilter>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatAnswer {
    pub member_id: String,
    pub member_epoch: i32,
    /// Sent when the member asked for everything or its assignment changed.
    pub assignment: Option<Assignment>,
}

/// A classic member of a group going back to the classic protocol.
#[derive(Debug, Clone)]
pub struct DowngradedMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
}

/// The broker's topics, as the group needs them: name → (id, partitions).
pub type TopicsView = BTreeMap<String, TopicInfo>;

pub struct ConsumerGroup {
    pub id: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    static_members: HashMap<String, String>,
    pub target: BTreeMap<String, Assignment>,
    /// Subscribed topics as of the last epoch bump; a change (new topic, more partitions) bumps the epoch.
    subscribed_topics: BTreeMap<String, TopicInfo>,
    pub assignor_name: String,
}

fn subset(owned: &Assignment, of: &Assignment) -> bool {
    owned.iter().all(|(t, ps)| ps.is_empty() || of.get(t).is_some_and(|have| ps.is_subset(have)))
}

fn overlaps(a: &Assignment, b: &Assignment) -> bool {
    a.iter().any(|(t, ps)| b.get(t).is_some_and(|other| !ps.is_disjoint(other)))
}

impl ConsumerGroup {
    pub fn new(id: String) -> ConsumerGroup {
        ConsumerGroup {
            id,
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            target: BTreeMap::new(),
            subscribed_topics: BTreeMap::new(),
            assignor_name: assignor::UNIFORM.to_string(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Kafka's consumer group states.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.group_epoch {
            "Assigning"
        } else if self.members.values().any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The epoch of the member that currently owns a partition (assigned or
    /// still revoking), if any.
    fn owner_epoch(&self, topic: &Uuid, partition: i32, except: &str) -> Option<i32> {
        self.members.values().filter(|m| m.id != except).find_map(|m| {
            let owns = |a: &Assignment| a.get(topic).is_some_and(|p| p.contains(&partition));
            (owns(&m.assigned) || owns(&m.pending_revocation)).then_some(m.epoch)
        })
    }

    pub fn heartbeat(&mut self, req: Heartbeat, topics: &TopicsView, now: Instant) -> Result<HeartbeatAnswer, ResponseError> {
        if req.member_epoch == LEAVE_GROUP_EPOCH || req.member_epoch == LEAVE_GROUP_STATIC_EPOCH {
            return self.leave(&req);
        }
        if req.member_epoch < 0 {
            return Err(ResponseError::InvalidRequest);
        }
        let full_request = req.member_epoch == 0
            || (req.rebalance_timeout_ms != -1 && req.subscribed_topic_names.is_some() && req.owned.is_some());
        let member_id = if req.member_epoch == 0 {
            self.join(&req, now)?
        } else {
            let member = self.members.get(&req.member_id).ok_or(ResponseError::UnknownMemberId)?;
            // A member one epoch behind whose partitions are a subset of its assignment
            // only missed our last answer; anything else must rejoin from scratch.
            if req.member_epoch > member.epoch
                || (req.member_epoch < member.epoch
                    && (req.member_epoch != member.previous_epoch || !req.owned.as_ref().is_some_and(|o| subset(o, &member.assigned))))
            {
                return Err(ResponseError::FencedMemberEpoch);
            }
            req.member_id.clone()
        };
        let before = self.members.get(&member_id).map(|m| m.assigned.clone()).unwrap_or_default();
        let mut bump = false;
        if let Some(member) = self.members.get_mut(&member_id) {
            member.last_heartbeat = now;
            member.client_id = req.client_id.clone();
            member.client_host = req.client_host.clone();
            if req.rack_id.is_some() {
                member.rack_id = req.rack_id.clone();
            }
            if req.rebalance_timeout_ms >= 0 {
                member.rebalance_timeout = Duration::from_millis(req.rebalance_timeout_ms as u64);
            }
            if let Some(names) = &req.subscribed_topic_names {
                let mut names = names.clone();
                names.sort();
                names.dedup();
                bump |= names != member.subscribed_topic_names;
                member.subscribed_topic_names = names;
            }
            if let Some(regex) = &req.subscribed_topic_regex {
                let regex = (!regex.is_empty()).then(|| regex.clone());
                bump |= regex != member.subscribed_topic_regex;
                member.subscribed_topic_regex = regex;
            }
            if let Some(name) = &req.server_assignor {
                bump |= Some(name) != member.server_assignor.as_ref();
                member.server_assignor = Some(name.clone());
            }
        }
        if let Some(member) = self.members.get_mut(&member_id) {
            // A member speaking the consumer protocol is no longer a classic one.
            member.classic = None;
            // The latest heartbeat's principal decides what its regex resolves to.
            member.describable = req.describable.clone();
        }
        self.settle(&member_id, bump, req.owned.as_ref(), topics, now);
        let member = self.members.get(&member_id).ok_or(ResponseError::UnknownMemberId)?;
        let changed = member.assigned != before;
        Ok(HeartbeatAnswer {
            member_id: member.id.clone(),
            member_epoch: member.epoch,
            assignment: (full_request || changed).then(|| member.assigned.clone()),
        })
    }

    /// Bumps the group epoch if the member's subscription (`bump`) or the
    /// subscribed topics' metadata changed, recomputes the target if it is
    /// behind, and moves the member one step towards it.
    fn settle(&mut self, member_id: &str, mut bump: bool, owned: Option<&Assignment>, topics: &TopicsView, now: Instant) {
        let resolved = self.resolve_subscriptions(topics);
        let subscribed: BTreeMap<String, TopicInfo> = resolved
            .values()
            .flatten()
            .filter_map(|name| topics.get(name).map(|t| (name.clone(), t.clone())))
            .collect();
        if subscribed != self.subscribed_topics {
            self.subscribed_topics = subscribed;
            bump = true;
        }
        if bump {
            self.group_epoch += 1;
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target(&resolved);
        }
        self.reconcile(member_id, owned, now);
    }

    /// A member joining (epoch 0): new, or a static member taking over its
    /// instance's place, or a known member starting over.
    fn join(&mut self, req: &Heartbeat, now: Instant) -> Result<String, ResponseError> {
        if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
            return Err(ResponseError::InvalidRequest);
        }
        if req.rebalance_timeout_ms < 0 {
            return Err(ResponseError::InvalidRequest);
        }
        if let Some(name) = &req.server_assignor {
            if !assignor::ASSIGNORS.contains(&name.as_str()) {
                return Err(ResponseError::UnsupportedAssignor);
            }
        }
        let member_id = if req.member_id.is_empty() { Uuid::new_v4().to_string() } else { req.member_id.clone() };
        let mut member =
            ConsumerMember::joining(member_id.clone(), req.instance_id.clone(), Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64), now);
        if let Some(instance) = &req.instance_id {
            if let Some(previous_id) = self.static_members.get(instance).cloned() {
                let previous = self.members.get(&previous_id).ok_or(ResponseError::UnknownMemberId)?;
                // A classic incarnation may always be replaced (Kafka checks the release only between consumer members).
                if previous.epoch != LEAVE_GROUP_STATIC_EPOCH && previous_id != member_id && previous.classic.is_none() {
                    return Err(ResponseError::UnreleasedInstanceId);
                }
                // The new incarnation inherits the assignment and epoch (KIP-848 static membership).
                if let Some(previous) = self.members.remove(&previous_id) {
                    member.epoch = if previous.epoch == LEAVE_GROUP_STATIC_EPOCH { previous.previous_epoch.max(0) } else { previous.epoch };
                    member.previous_epoch = member.epoch;
                    member.assigned = previous.assigned;
                    member.pending_revocation = previous.pending_revocation;
                    member.subscribed_topic_names = previous.subscribed_topic_names;
                    member.subscribed_topic_regex = previous.subscribed_topic_regex;
                    member.server_assignor = previous.server_assignor;
                    member.state = previous.state;
                    if let Some(target) = self.target.remove(&previous_id) {
                        self.target.insert(member_id.clone(), target);
                    }
                }
            }
            self.static_members.insert(instance.clone(), member_id.clone());
        } else if let Some(existing) = self.members.remove(&member_id) {
            // Rejoining with epoch 0 means it owns nothing any more.
            member.subscribed_topic_names = existing.subscribed_topic_names;
            member.subscribed_topic_regex = existing.subscribed_topic_regex;
            member.server_assignor = existing.server_assignor;
        }
        // The subscription recorded by the caller bumps the group epoch when it is new.
        self.members.insert(member_id.clone(), member);
        Ok(member_id)
    }

    fn leave(&mut self, req: &Heartbeat) -> Result<HeartbeatAnswer, ResponseError> {
        let member_id = if self.members.contains_key(&req.member_id) {
            req.member_id.clone()
        } else {
            req.instance_id.as_ref().and_then(|i| self.static_members.get(i)).cloned().ok_or(ResponseError::UnknownMemberId)?
        };
        if req.member_epoch == LEAVE_GROUP_STATIC_EPOCH {
            // A static member leaving for a restart keeps its place until its session expires.
            if let Some(member) = self.members.get_mut(&member_id) {
                if member.epoch >= 0 {
                    member.previous_epoch = member.epoch;
                }
                member.epoch = LEAVE_GROUP_STATIC_EPOCH;
            }
        } else {
            self.remove_member(&member_id);
        }
        Ok(HeartbeatAnswer { member_id, member_epoch: req.member_epoch, assignment: None })
    }

    pub fn remove_member(&mut self, member_id: &str) {
        if let Some(member) = self.members.remove(member_id) {
            if let Some(instance) = &member.instance_id {
                if self.static_members.get(instance).is_some_and(|m| m == member_id) {
                    self.static_members.remove(instance);
                }
            }
            self.target.remove(member_id);
            self.group_epoch += 1;
        }
    }

    /// Each member's topics: its names plus, for a regex subscription, every
    /// matching topic. Internal topics match too, as in Kafka, whose
    /// coordinator resolves a regex against every topic in the metadata.
    fn resolve_subscriptions(&self, topics: &TopicsView) -> BTreeMap<String, BTreeSet<String>> {
        self.members
            .values()
            .map(|m| {
                let mut names: BTreeSet<String> = m.subscribed_topic_names.iter().cloned().collect();
                if let Some(pattern) = &m.subscribed_topic_regex {
                    if let Ok(re) = regex::Regex::new(&format!("^(?:{pattern})$")) {
                        let describable = |t: &str| m.describable.as_ref().is_none_or(|filter| filter.allows(t));
                        names.extend(topics.keys().filter(|t| re.is_match(t) && describable(t)).cloned());
                    }
                }
                (m.id.clone(), names)
            })
            .collect()
    }

    fn compute_target(&mut self, resolved: &BTreeMap<String, BTreeSet<String>>) {
        // The most requested assignor among members wins; uniform by default.
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.server_assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        if let Some((name, _)) = votes.iter().max_by_key(|(_, v)| **v) {
            self.assignor_name = name.to_string();
        }
        let spec = AssignmentSpec { members: resolved, topics: &self.subscribed_topics, previous: &self.target };
        self.target = assignor::assign(&self.assignor_name, &spec);
        self.assignment_epoch = self.group_epoch;
        tracing::debug!(group = %self.id, epoch = self.group_epoch, assignor = %self.assignor_name, "computed target assignment");
    }

    /// Moves a member one step towards its target (Kafka's current
    /// assignment builder): revoke first, then take what is free.
    fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now: Instant) {
        let Some(member) = self.members.get(member_id) else { return };
        let still_owns_revoked = |pending: &Assignment| owned.is_none_or(|o| overlaps(o, pending));
        let from_epoch = match member.state {
            MemberState::Stable if member.epoch == self.assignment_epoch => return,
            MemberState::UnrevokedPartitions if still_owns_revoked(&member.pending_revocation) => return,
            MemberState::UnrevokedPartitions => member.epoch + 1,
            _ => member.epoch,
        };
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let current = member.assigned.clone();
        let mut kept = Assignment::new();
        let mut revoke = Assignment::new();
        let mut gain = Assignment::new();
        let mut unreleased = false;
        let topics: BTreeSet<Uuid> = target.keys().chain(current.keys()).copied().collect();
        for topic in topics {
            let want = target.get(&topic).cloned().unwrap_or_default();
            let have = current.get(&topic).cloned().unwrap_or_default();
            let keep: BTreeSet<i32> = have.intersection(&want).copied().collect();
            let give_up: BTreeSet<i32> = have.difference(&keep).copied().collect();
            let mut take = BTreeSet::new();
            for p in want.difference(&keep) {
                if self.owner_epoch(&topic, *p, member_id).is_some() {
                    unreleased = true;
                } else {
                    take.insert(*p);
                }
            }
            if !keep.is_empty() {
                kept.insert(topic, keep);
            }
            if !give_up.is_empty() {
                revoke.insert(topic, give_up);
            }
            if !take.is_empty() {
                gain.insert(topic, take);
            }
        }
        let target_epoch = self.assignment_epoch;
        let Some(member) = self.members.get_mut(member_id) else { return };
        if !revoke.is_empty() && still_owns_revoked(&revoke) {
            member.state = MemberState::UnrevokedPartitions;
            member.set_epoch(from_epoch);
            member.assigned = kept;
            member.pending_revocation = revoke;
            member.revoking_since.get_or_insert(now);
            return;
        }
        for (topic, partitions) in gain {
            kept.entry(topic).or_default().extend(partitions);
        }
        member.state = if unreleased { MemberState::UnreleasedPartitions } else { MemberState::Stable };
        member.set_epoch(target_epoch);
        member.assigned = kept;
        member.pending_revocation = Assignment::new();
        member.revoking_since = None;
    }

    /// Session expiry and revocation deadlines; returns whether anything changed.
    pub fn tick(&mut self, now: Instant, session_timeout: Duration) -> bool {
        let doomed = self.expired_members(now, session_timeout);
        for id in &doomed {
            self.remove_member(id);
        }
        !doomed.is_empty()
    }

    /// Members to fence: a consumer-protocol member whose session expired or
    /// that revoked too slowly (its rebalance timeout); a classic member whose
    /// own session expired or that did not rejoin / sync within its rebalance
    /// timeout after being told to.
    pub fn expired_members(&self, now: Instant, session_timeout: Duration) -> Vec<String> {
        let past = |deadline: Option<Instant>| deadline.is_some_and(|d| now >= d);
        let doomed: Vec<String> = self
            .members
            .values()
            .filter(|m| match &m.classic {
                None => {
                    now.duration_since(m.last_heartbeat) > session_timeout
                        || m.revoking_since.is_some_and(|since| now.duration_since(since) > m.rebalance_timeout)
                }
                Some(c) => now.duration_since(m.last_heartbeat) > c.session_timeout || past(c.join_deadline) || past(c.sync_deadline),
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &doomed {
            tracing::info!(group = %self.id, member = %id, "consumer group member expired, or missed its revocation, join or sync deadline");
        }
        doomed
    }

    /// Whether removing `leaving` leaves a non-empty group of classic members
    /// only: then the group can go back to the classic protocol (downgrade).
    pub fn only_classic_members_remain_without(&self, leaving: &[String]) -> bool {
        let mut remaining = self.members.values().filter(|m| !leaving.contains(&m.id)).peekable();
        remaining.peek().is_some() && remaining.all(|m| m.classic.is_some())
    }

    pub fn has_classic_members(&self) -> bool {
        self.members.values().any(|m| m.classic.is_some())
    }

    /// Whether a classic JoinGroup's protocols fit the group: the consumer
    /// protocol type, and a protocol every classic member supports.
    pub fn supports_classic_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type != "consumer" || protocols.is_empty() {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            self.members.values().filter_map(|m| m.classic.as_ref()).all(|c| c.protocols.iter().any(|(n, _)| n == name))
        })
    }

    /// The member a classic request names: by static instance (whose member id
    /// must match, else FENCED_INSTANCE_ID), or by member id.
    fn classic_member_id(&self, member_id: &str, instance_id: Option<&str>) -> Result<String, ResponseError> {
        match instance_id {
            Some(instance) => match self.static_members.get(instance) {
                None => Err(ResponseError::UnknownMemberId),
                Some(known) if known != member_id => Err(ResponseError::FencedInstanceId),
                Some(known) => Ok(known.clone()),
            },
            None if self.members.contains_key(member_id) => Ok(member_id.to_string()),
            None => Err(ResponseError::UnknownMemberId),
        }
    }

    /// A classic member's JoinGroup (Kafka's classicGroupJoinToConsumerGroup):
    /// the member is created or updated from its subscription, the target is
    /// recomputed if needed, and it is reconciled with the partitions it says
    /// it still owns. It is answered at once: no join barrier, the assignment
    /// comes with its SyncGroup.
    pub fn classic_join(&mut self, req: ClassicJoin, topics: &TopicsView, now: Instant) -> ClassicJoinAnswer {
        let member_id = req.member_id.clone();
        let mut replaced_consumer_member = false;
        let mut bump = false;
        if !self.members.contains_key(&member_id) {
            let mut member = ConsumerMember::joining(member_id.clone(), req.instance_id.clone(), req.rebalance_timeout, now);
            let previous_id = req.instance_id.as_ref().and_then(|i| self.static_members.get(i)).cloned();
            if let Some(previous) = previous_id.and_then(|id| self.members.remove(&id)) {
                // A static member's new incarnation takes over its assignment (KIP-345).
                replaced_consumer_member = previous.classic.is_none();
                member.assigned = previous.assigned;
                member.pending_revocation = previous.pending_revocation;
                member.state = previous.state;
                member.subscribed_topic_names = previous.subscribed_topic_names;
                if let Some(target) = self.target.remove(&previous.id) {
                    self.target.insert(member_id.clone(), target);
                }
            } else {
                bump = true;
            }
            if let Some(instance) = &req.instance_id {
                self.static_members.insert(instance.clone(), member_id.clone());
            }
            self.members.insert(member_id.clone(), member);
        }
        if let Some(member) = self.members.get_mut(&member_id) {
            let mut names = req.subscription.topics.clone();
            names.sort();
            names.dedup();
            bump |= names != member.subscribed_topic_names || member.subscribed_topic_regex.is_some();
            member.subscribed_topic_names = names;
            // Classic members cannot subscribe by regex.
            member.subscribed_topic_regex = None;
            if req.subscription.rack_id.is_some() {
                member.rack_id = req.subscription.rack_id.clone();
            }
            member.rebalance_timeout = req.rebalance_timeout;
            member.client_id = req.client_id.clone();
            member.client_host = req.client_host.clone();
            member.last_heartbeat = now;
            member.classic = Some(ClassicMember {
                session_timeout: req.session_timeout,
                protocols: req.protocols.clone(),
                join_deadline: None,
                sync_deadline: Some(now + req.rebalance_timeout),
            });
        }
        self.settle(&member_id, bump, Some(&req.subscription.owned), topics, now);
        let (generation, protocol_name) = self
            .members
            .get(&member_id)
            .map(|m| (m.epoch, m.classic.as_ref().map(|c| c.protocol_name().to_string()).unwrap_or_default()))
            .unwrap_or_default();
        ClassicJoinAnswer { member_id, generation, protocol_name, replaced_consumer_member }
    }

    /// Kafka's checks for a classic member's SyncGroup and Heartbeat: it is
    /// known (FENCED_INSTANCE_ID for a replaced static incarnation), speaks the
    /// classic protocol, and its generation is its member epoch.
    fn classic_member_mut(&mut self, member_id: &str, instance_id: Option<&str>, generation: i32) -> Result<&mut ConsumerMember, ResponseError> {
        let id = self.classic_member_id(member_id, instance_id)?;
        let member = self.members.get_mut(&id).ok_or(ResponseError::UnknownMemberId)?;
        if member.classic.is_none() {
            return Err(ResponseError::UnknownMemberId);
        }
        if member.epoch != generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(member)
    }

    /// A classic member's SyncGroup: its current assignment, in its embedded
    /// protocol's version. REBALANCE_IN_PROGRESS if the target moved on since it
    /// joined (unless it is still revoking: it must finish that first).
    pub fn classic_sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol: (Option<&str>, Option<&str>),
        topics: &TopicsView,
        now: Instant,
    ) -> Result<(String, Bytes), ResponseError> {
        let assignment_epoch = self.assignment_epoch;
        let member = self.classic_member_mut(member_id, instance_id, generation)?;
        let Some(classic) = member.classic.as_mut() else { return Err(ResponseError::UnknownMemberId) };
        let (protocol_type, protocol_name) = protocol;
        if protocol_type.is_some_and(|t| t != "consumer") || protocol_name.is_some_and(|n| n != classic.protocol_name()) {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        if assignment_epoch > member.epoch && member.state != MemberState::UnrevokedPartitions {
            classic.join_deadline.get_or_insert(now + member.rebalance_timeout);
            return Err(ResponseError::RebalanceInProgress);
        }
        classic.sync_deadline = None;
        member.last_heartbeat = now;
        let version = classic.assignment_version();
        Ok((classic.protocol_name().to_string(), consumer_protocol::encode_assignment(&member.assigned, topics, version)))
    }

    /// Recomputes the target assignment if membership or topics changed since
    /// it was computed. A group of classic members only needs this: their
    /// heartbeats reconcile nobody, so nothing else would.
    pub fn refresh_target(&mut self, topics: &TopicsView, now: Instant) {
        self.settle("", false, None, topics, now);
    }

    /// A JoinGroup naming a member (rather than asking for a new id) must name
    /// the static instance's current member.
    pub fn check_classic_rejoin(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), ResponseError> {
        match instance_id {
            Some(_) => self.classic_member_id(member_id, instance_id).map(|_| ()),
            None => Ok(()),
        }
    }

    /// The member a leave names: by id, else by static instance.
    pub fn member_for(&self, member_id: &str, instance_id: Option<&str>) -> Option<String> {
        if self.members.contains_key(member_id) {
            return Some(member_id.to_string());
        }
        instance_id.and_then(|i| self.static_members.get(i)).cloned()
    }

    /// A classic member's Heartbeat: REBALANCE_IN_PROGRESS tells it to rejoin
    /// when the target moved past its epoch, when it must revoke partitions,
    /// or when the partitions it waits for have been released.
    pub fn classic_heartbeat(&mut self, member_id: &str, instance_id: Option<&str>, generation: i32, now: Instant) -> Result<(), ResponseError> {
        let assignment_epoch = self.assignment_epoch;
        let id = self.classic_member_mut(member_id, instance_id, generation)?.id.clone();
        let waiting = self.waiting_on_unreleased_partition(&id);
        let Some(member) = self.members.get_mut(&id) else { return Err(ResponseError::UnknownMemberId) };
        member.last_heartbeat = now;
        let rejoin = member.epoch < assignment_epoch
            || member.state == MemberState::UnrevokedPartitions
            || (member.state == MemberState::UnreleasedPartitions && !waiting);
        if rejoin {
            let deadline = now + member.rebalance_timeout;
            if let Some(classic) = member.classic.as_mut() {
                classic.join_deadline.get_or_insert(deadline);
            }
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Whether some partition of the member's target is still owned by another member.
    fn waiting_on_unreleased_partition(&self, member_id: &str) -> bool {
        let Some(member) = self.members.get(member_id) else { return false };
        if member.state != MemberState::UnreleasedPartitions {
            return false;
        }
        let Some(target) = self.target.get(member_id) else { return false };
        target.iter().any(|(topic, partitions)| {
            partitions.iter().any(|p| {
                !member.assigned.get(topic).is_some_and(|a| a.contains(p)) && self.owner_epoch(topic, *p, member_id).is_some()
            })
        })
    }

    /// LeaveGroup from the classic API: each member by id, or by static
    /// instance (its member id, if given, must match). Returns the per-member
    /// answers and the ids of the members to fence.
    pub fn classic_leave(&self, members: &[(String, Option<String>)]) -> (Vec<Result<(), ResponseError>>, Vec<String>) {
        let mut leaving = Vec::new();
        let results = members
            .iter()
            .map(|(member_id, instance)| {
                let id = match instance {
                    None => self.members.contains_key(member_id).then(|| member_id.clone()).ok_or(ResponseError::UnknownMemberId)?,
                    Some(instance) => {
                        let known = self.static_members.get(instance).ok_or(ResponseError::UnknownMemberId)?;
                        if !member_id.is_empty() && known != member_id {
                            return Err(ResponseError::FencedInstanceId);
                        }
                        known.clone()
                    }
                };
                if !leaving.contains(&id) {
                    leaving.push(id);
                }
                Ok(())
            })
            .collect();
        (results, leaving)
    }

    /// The group a classic group becomes when a consumer-protocol member joins
    /// it (Kafka's ConsumerGroup.fromClassicGroup): group and assignment epoch
    /// = the generation, every member Stable at that epoch with its last
    /// assignment as both current and target assignment, carried as a classic
    /// member. Errors say why the classic group cannot be converted.
    pub fn from_classic(classic: &Group, topics: &TopicsView, now: Instant) -> Result<ConsumerGroup, String> {
        let mut group = ConsumerGroup::new(classic.id.clone());
        group.group_epoch = classic.generation;
        group.assignment_epoch = classic.generation;
        for m in classic.members.values() {
            let assigned = consumer_protocol::decode_assignment(&m.assignment, topics)?;
            // Before its first rebalance completed the group has no protocol yet: each member's first choice.
            let metadata = match &classic.protocol_name {
                Some(protocol) => m.metadata_for(protocol),
                None => m.protocols.first().map(|(_, metadata)| metadata.clone()).unwrap_or_default(),
            };
            let subscription = consumer_protocol::decode_subscription(&metadata, topics)?;
            let mut names = subscription.topics;
            names.sort();
            names.dedup();
            if let Some(instance) = &m.instance_id {
                group.static_members.insert(instance.clone(), m.id.clone());
            }
            group.target.insert(m.id.clone(), assigned.clone());
            group.members.insert(
                m.id.clone(),
                ConsumerMember {
                    rack_id: subscription.rack_id,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    epoch: classic.generation,
                    previous_epoch: classic.generation,
                    subscribed_topic_names: names,
                    assigned,
                    classic: Some(ClassicMember { session_timeout: m.session_timeout, protocols: m.protocols.clone(), join_deadline: None, sync_deadline: None }),
                    ..ConsumerMember::joining(m.id.clone(), m.instance_id.clone(), m.rebalance_timeout, now)
                },
            );
        }
        // The topics the members subscribe to now; only a later change bumps the epoch.
        let resolved = group.resolve_subscriptions(topics);
        group.subscribed_topics = resolved.values().flatten().filter_map(|name| topics.get(name).map(|t| (name.clone(), t.clone()))).collect();
        Ok(group)
    }

    /// The classic members to build a classic group from when the group
    /// goes back to the classic protocol (Kafka's ClassicGroup.fromConsumerGroup):
    /// every member but `leaving`, each with its target assignment encoded in
    /// its embedded protocol's version.
    pub fn to_classic_members(&self, leaving: &[String], topics: &TopicsView) -> Vec<DowngradedMember> {
        let empty = Assignment::new();
        self.members
            .values()
            .filter(|m| !leaving.contains(&m.id))
            .filter_map(|m| {
                let classic = m.classic.as_ref()?;
                let target = self.target.get(&m.id).unwrap_or(&empty);
                Some(DowngradedMember {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout: classic.session_timeout,
                    rebalance_timeout: m.rebalance_timeout,
                    protocols: classic.protocols.clone(),
                    assignment: consumer_protocol::encode_assignment(target, topics, classic.assignment_version()),
                })
            })
            .collect()
    }

    /// OffsetCommit/OffsetFetch check for members of this group.
    pub fn validate_member_epoch(&self, member_id: &str, epoch: i32, stale_error: ResponseError) -> Result<(), ResponseError> {
        if epoch < 0 && member_id.is_empty() {
            // Outside the group protocol (admin tools, assign()): only while nobody is in the group.
            return if self.members.is_empty() { Ok(()) } else { Err(ResponseError::UnknownMemberId) };
        }
        let member = self.members.get(member_id).ok_or(ResponseError::UnknownMemberId)?;
        if member.epoch != epoch {
            // A classic member's epoch is its generation (as Kafka: ILLEGAL_GENERATION for it).
            return Err(if member.classic.is_some() { ResponseError::IllegalGeneration } else { stale_error });
        }
        Ok(())
    }

    /// Validates an OffsetCommit (`api_version`) or a TxnOffsetCommit
    /// (`transactional`) as Kafka's consumer group does: a member of the
    /// consumer protocol must use OffsetCommit v9+ (UNSUPPORTED_VERSION), and
    /// a stale epoch is STALE_MEMBER_EPOCH for it — also in TxnOffsetCommit,
    /// where clients abort the transaction and retry on it — and
    /// ILLEGAL_GENERATION for a classic member.
    pub fn validate_commit(&self, member_id: &str, epoch: i32, api_version: i16, transactional: bool) -> Result<(), ResponseError> {
        if epoch < 0 && member_id.is_empty() {
            return self.validate_member_epoch(member_id, epoch, ResponseError::StaleMemberEpoch);
        }
        let member = self.members.get(member_id).ok_or(ResponseError::UnknownMemberId)?;
        if !transactional && member.classic.is_none() && api_version < 9 {
            return Err(ResponseError::UnsupportedVersion);
        }
        self.validate_member_epoch(member_id, epoch, ResponseError::StaleMemberEpoch)
    }

    pub fn subscribed_topic_names(&self) -> BTreeSet<String> {
        self.subscribed_topics.keys().cloned().collect()
    }
}

impl ConsumerMember {
    /// A member that has just joined: epoch 0, nothing subscribed or assigned.
    fn joining(id: String, instance_id: Option<String>, rebalance_timeout: Duration, now: Instant) -> ConsumerMember {
        ConsumerMember {
            id,
            instance_id,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            epoch: 0,
            previous_epoch: 0,
            state: MemberState::Stable,
            rebalance_timeout,
            subscribed_topic_names: Vec::new(),
            subscribed_topic_regex: None,
            server_assignor: None,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            last_heartbeat: now,
            revoking_since: None,
            classic: None,
            describable: None,
        }
    }

    fn set_epoch(&mut self, epoch: i32) {
        if epoch != self.epoch {
            self.previous_epoch = self.epoch;
            self.epoch = epoch;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(partitions: i32) -> (TopicsView, Uuid) {
        let id = Uuid::new_v4();
        ([("t".to_string(), TopicInfo { id, partitions })].into(), id)
    }

    fn join(member: &str) -> Heartbeat {
        Heartbeat {
            member_id: member.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(vec!["t".into()]),
            owned: Some(Assignment::new()),
            ..Default::default()
        }
    }

    fn beat(member: &str, epoch: i32, owned: &Assignment) -> Heartbeat {
        Heartbeat { member_id: member.into(), member_epoch: epoch, rebalance_timeout_ms: -1, owned: Some(owned.clone()), ..Default::default() }
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(|p| p.len()).sum()
    }

    #[test]
    fn a_second_member_gets_partitions_only_after_the_first_revokes_them() {
        let now = Instant::now();
        let (view, t) = topics(4);
        let mut g = ConsumerGroup::new("g".into());
        let a = g.heartbeat(join("a"), &view, now).unwrap();
        assert_eq!((a.member_epoch, count(a.assignment.as_ref().unwrap())), (1, 4));
        let a_owned = a.assignment.unwrap();
        let b = g.heartbeat(join("b"), &view, now).unwrap();
        assert_eq!(b.member_epoch, 2);
        assert_eq!(count(b.assignment.as_ref().unwrap()), 0, "a still owns everything");
        assert_eq!(g.state_name(), "Reconciling");
        // a is asked to give up two partitions and keeps consuming the other two.
        let a2 = g.heartbeat(beat("a", 1, &a_owned), &view, now).unwrap();
        assert_eq!(a2.member_epoch, 1, "epoch moves on only after the revocation");
        let kept = a2.assignment.unwrap();
        assert_eq!(count(&kept), 2);
        // b asks again: still nothing, a has not confirmed.
        let b2 = g.heartbeat(beat("b", 2, &Assignment::new()), &view, now).unwrap();
        assert!(b2.assignment.is_none());
        // a confirms (owns only what it kept): epoch 2; now b gets the released two.
        let a3 = g.heartbeat(beat("a", 1, &kept), &view, now).unwrap();
        assert_eq!(a3.member_epoch, 2);
        let b3 = g.heartbeat(beat("b", 2, &Assignment::new()), &view, now).unwrap();
        let b_owned = b3.assignment.unwrap();
        assert_eq!(count(&b_owned), 2);
        assert!(!overlaps(&b_owned, &kept));
        assert_eq!(b_owned.keys().next(), Some(&t));
        assert_eq!(g.state_name(), "Stable");
    }

    #[test]
    fn fencing_leaving_and_expiry() {
        let now = Instant::now();
        let (view, _) = topics(2);
        let mut g = ConsumerGroup::new("g".into());
        let a = g.heartbeat(join("a"), &view, now).unwrap();
        let owned = a.assignment.unwrap();
        assert_eq!(g.heartbeat(beat("a", 7, &owned), &view, now), Err(ResponseError::FencedMemberEpoch));
        assert_eq!(g.heartbeat(beat("zz", 1, &owned), &view, now), Err(ResponseError::UnknownMemberId));
        assert_eq!(g.validate_member_epoch("a", 1, ResponseError::StaleMemberEpoch), Ok(()));
        assert_eq!(g.validate_member_epoch("a", 0, ResponseError::StaleMemberEpoch), Err(ResponseError::StaleMemberEpoch));
        // A stale epoch in a transactional commit is STALE_MEMBER_EPOCH (clients abort and retry on it);
        // OffsetCommit below v9 cannot speak for a consumer-protocol member at all.
        assert_eq!(g.validate_commit("a", 0, 8, true), Err(ResponseError::StaleMemberEpoch));
        assert_eq!(g.validate_commit("a", 1, 8, true), Ok(()));
        assert_eq!(g.validate_commit("a", 1, 8, false), Err(ResponseError::UnsupportedVersion));
        assert_eq!(g.validate_commit("a", 1, 9, false), Ok(()));
        assert_eq!(g.validate_commit("zz", 1, 9, false), Err(ResponseError::UnknownMemberId));
        let _b = g.heartbeat(join("b"), &view, now).unwrap();
        // a never heartbeats again: after the session timeout b gets everything.
        let later = now + Duration::from_secs(10);
        g.heartbeat(beat("b", 2, &Assignment::new()), &view, later).unwrap();
        assert!(g.tick(later, Duration::from_secs(5)));
        let b = g.heartbeat(beat("b", 2, &Assignment::new()), &view, later).unwrap();
        assert_eq!(count(&b.assignment.unwrap()), 2);
        let left = g.heartbeat(Heartbeat { member_id: "b".into(), member_epoch: -1, ..Default::default() }, &view, later).unwrap();
        assert_eq!(left.member_epoch, -1);
        assert!(g.is_empty());
        let mut bad = join("c");
        bad.server_assignor = Some("nope".into());
        assert_eq!(g.heartbeat(bad, &view, later), Err(ResponseError::UnsupportedAssignor));
    }

    #[test]
    fn regex_subscriptions_follow_new_topics() {
        let now = Instant::now();
        let (mut view, _) = topics(1);
        let mut g = ConsumerGroup::new("g".into());
        let mut req = join("a");
        req.subscribed_topic_names = None;
        req.subscribed_topic_regex = Some("t|u.*".into());
        let a = g.heartbeat(req, &view, now).unwrap();
        assert_eq!(count(a.assignment.as_ref().unwrap()), 1);
        view.insert("u1".into(), TopicInfo { id: Uuid::new_v4(), partitions: 3 });
        view.insert("__consumer_offsets".into(), TopicInfo { id: Uuid::new_v4(), partitions: 1 });
        let a2 = g.heartbeat(beat("a", a.member_epoch, &a.assignment.unwrap()), &view, now).unwrap();
        assert_eq!(count(&a2.assignment.unwrap()), 4, "the new matching topic is assigned");
    }

    #[test]
    fn a_regex_matching_an_internal_topic_is_assigned_it() {
        // Kafka resolves a regex against every topic, internal ones included
        // (franz-go's Test848RegexBrokerResolves checks exactly this).
        let now = Instant::now();
        let (mut view, _) = topics(1);
        view.insert("__consumer_offsets".into(), TopicInfo { id: Uuid::new_v4(), partitions: 2 });
        let mut g = ConsumerGroup::new("g".into());
        let mut req = join("a");
        req.subscribed_topic_names = None;
        req.subscribed_topic_regex = Some("t|__consumer_offsets".into());
        let a = g.heartbeat(req, &view, now).unwrap();
        assert_eq!(count(a.assignment.as_ref().unwrap()), 3, "t's one partition and both of __consumer_offsets");
    }

    #[test]
    fn a_regex_resolves_only_to_topics_its_principal_may_describe() {
        let now = Instant::now();
        let (mut view, _) = topics(1);
        view.insert("u-open".into(), TopicInfo { id: Uuid::new_v4(), partitions: 2 });
        view.insert("u-secret".into(), TopicInfo { id: Uuid::new_v4(), partitions: 4 });
        let allowed = Arc::new(std::sync::Mutex::new(vec!["u-open".to_string()]));
        let filter = {
            let allowed = allowed.clone();
            TopicFilter(Arc::new(move |t: &str| allowed.lock().unwrap().iter().any(|a| a == t)))
        };
        let mut g = ConsumerGroup::new("g".into());
        let mut req = join("a");
        req.subscribed_topic_names = None;
        req.subscribed_topic_regex = Some("u-.*".into());
        req.describable = Some(filter.clone());
        let a = g.heartbeat(req, &view, now).unwrap();
        assert_eq!(count(a.assignment.as_ref().unwrap()), 2, "u-open only: u-secret is not describable");
        // An ACL granted later is seen at the next heartbeat.
        allowed.lock().unwrap().push("u-secret".into());
        let mut next = beat("a", a.member_epoch, &a.assignment.unwrap());
        next.describable = Some(filter);
        let a2 = g.heartbeat(next, &view, now).unwrap();
        assert_eq!(count(&a2.assignment.unwrap()), 6);
    }

    /// A consumer-protocol subscription to "t" (v1: with owned partitions).
    fn subscription(owned: &[i32]) -> Bytes {
        use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition;
        use kafka_protocol::messages::{ConsumerProtocolSubscription, TopicName};
        use kafka_protocol::protocol::{Encodable, StrBytes};
        let body = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t")])
            .with_owned_partitions(vec![TopicPartition::default().with_topic(TopicName(StrBytes::from_static_str("t"))).with_partitions(owned.to_vec())]);
        let mut buf = bytes::BytesMut::new();
        bytes::BufMut::put_i16(&mut buf, 1);
        body.encode(&mut buf, 1).unwrap();
        buf.freeze()
    }

    fn classic_join(member: &str, owned: &[i32], view: &TopicsView) -> ClassicJoin {
        let metadata = subscription(owned);
        ClassicJoin {
            member_id: member.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(20),
            protocols: vec![("cooperative-sticky".into(), metadata.clone())],
            subscription: consumer_protocol::decode_subscription(&metadata, view).unwrap(),
        }
    }

    /// A stable classic group whose one member "k" owns all of t's partitions.
    fn stable_classic_group(view: &TopicsView, now: Instant) -> Group {
        use super::super::group::{JoinRequest, JoinResult, SyncResult};
        let mut classic = Group::new("g".into());
        let req = JoinRequest {
            member_id: String::new(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(20),
            protocol_type: "consumer".into(),
            protocols: vec![("cooperative-sticky".into(), subscription(&[]))],
            require_known_member_id: false,
            supports_skip_assignment: true,
        };
        let JoinResult::Wait(mut rx) = classic.join(req, now, Duration::ZERO) else { panic!("the first join waits for the rebalance") };
        let joined = rx.try_recv().unwrap();
        let all: Assignment = [(view["t"].id, (0..view["t"].partitions).collect())].into();
        let bytes = consumer_protocol::encode_assignment(&all, view, 1);
        let SyncResult::Now(synced) = classic.sync(&joined.member_id, None, joined.generation, vec![(joined.member_id.clone(), bytes)], now) else {
            panic!("the leader's sync answers at once")
        };
        assert!(synced.error.is_none());
        classic
    }

    fn partitions_of(bytes: &Bytes, view: &TopicsView) -> BTreeSet<i32> {
        consumer_protocol::decode_assignment(bytes, view).unwrap().into_values().flatten().collect()
    }

    #[test]
    fn an_upgraded_classic_member_hands_partitions_over_only_after_revoking_them() {
        let now = Instant::now();
        let (view, t) = topics(4);
        let classic = stable_classic_group(&view, now);
        let k = classic.members.keys().next().unwrap().clone();
        let mut g = ConsumerGroup::from_classic(&classic, &view, now).unwrap();
        assert_eq!((g.group_epoch, g.assignment_epoch, g.state_name()), (1, 1, "Stable"));
        assert_eq!(count(&g.members[&k].assigned), 4);
        // A consumer-protocol member joins: it must wait for k's revocation.
        let c = g.heartbeat(join("c"), &view, now).unwrap();
        assert_eq!((c.member_epoch, count(c.assignment.as_ref().unwrap())), (2, 0));
        assert_eq!(g.classic_heartbeat(&k, None, 1, now), Err(ResponseError::RebalanceInProgress), "k must rejoin");
        assert_eq!(g.classic_heartbeat(&k, None, 2, now), Err(ResponseError::IllegalGeneration));
        // k rejoins still owning everything (cooperative): it keeps two and must revoke two.
        let joined = g.classic_join(classic_join(&k, &[0, 1, 2, 3], &view), &view, now);
        assert_eq!((joined.generation, joined.protocol_name.as_str()), (1, "cooperative-sticky"));
        let (_, kept) = g.classic_sync(&k, None, 1, (Some("consumer"), Some("cooperative-sticky")), &view, now).unwrap();
        let kept = partitions_of(&kept, &view);
        assert_eq!(kept.len(), 2);
        assert_eq!(g.classic_heartbeat(&k, None, 1, now), Err(ResponseError::RebalanceInProgress), "revocation pending");
        let c2 = g.heartbeat(beat("c", 2, &Assignment::new()), &view, now).unwrap();
        assert!(c2.assignment.is_none(), "nothing is free before k revoked");
        // k revoked and rejoins owning only what it kept: now c gets the rest, disjoint.
        let owned: Vec<i32> = kept.iter().copied().collect();
        let joined = g.classic_join(classic_join(&k, &owned, &view), &view, now);
        assert_eq!(joined.generation, 2);
        let (_, mine) = g.classic_sync(&k, None, 2, (None, None), &view, now).unwrap();
        assert_eq!(partitions_of(&mine, &view), kept);
        let c3 = g.heartbeat(beat("c", 2, &Assignment::new()), &view, now).unwrap();
        let theirs: BTreeSet<i32> = c3.assignment.unwrap()[&t].clone();
        assert_eq!(theirs.len(), 2);
        assert!(theirs.is_disjoint(&kept));
        assert_eq!(g.classic_heartbeat(&k, None, 2, now), Ok(()));
        assert_eq!(g.state_name(), "Stable");
        // Protocol checks of SyncGroup.
        assert_eq!(g.classic_sync(&k, None, 2, (Some("connect"), None), &view, now), Err(ResponseError::InconsistentGroupProtocol));
        assert_eq!(g.classic_sync(&k, None, 2, (None, Some("range")), &view, now), Err(ResponseError::InconsistentGroupProtocol));
        assert_eq!(g.classic_sync("c", None, 2, (None, None), &view, now), Err(ResponseError::UnknownMemberId), "c speaks the consumer protocol");
    }

    #[test]
    fn classic_members_are_fenced_by_their_own_session_and_their_join_and_sync_deadlines() {
        let now = Instant::now();
        let (view, _) = topics(2);
        let mut g = ConsumerGroup::new("g".into());
        g.heartbeat(join("c"), &view, now).unwrap();
        let joined = g.classic_join(classic_join("k", &[], &view), &view, now);
        let group_session = Duration::from_secs(45);
        // Joined but never synced: fenced at its rebalance timeout (20 s), though its session (10 s) is refreshed.
        let later = now + Duration::from_secs(8);
        assert_eq!(g.classic_heartbeat("k", None, joined.generation, later), Ok(()));
        let (c_epoch, c_owned) = (g.members["c"].epoch, g.members["c"].assigned.clone());
        g.heartbeat(beat("c", c_epoch, &c_owned), &view, later).unwrap();
        assert!(g.expired_members(now + Duration::from_secs(15), group_session).is_empty());
        assert_eq!(g.expired_members(now + Duration::from_secs(21), group_session), vec!["k".to_string()]);
        // Synced, then silent: its own 10 s session, not the group's 45 s.
        g.classic_sync("k", None, joined.generation, (None, None), &view, now).unwrap();
        assert!(g.expired_members(now + Duration::from_secs(9), group_session).is_empty());
        assert_eq!(g.expired_members(now + Duration::from_secs(11), group_session), vec!["k".to_string()]);
        assert!(g.only_classic_members_remain_without(&["c".to_string()]));
        assert!(!g.only_classic_members_remain_without(&[]));
        assert!(!g.only_classic_members_remain_without(&["c".to_string(), "k".to_string()]), "nobody remains");
        let (results, leaving) = g.classic_leave(&[("k".into(), None), ("nobody".into(), None)]);
        assert_eq!(results, vec![Ok(()), Err(ResponseError::UnknownMemberId)]);
        assert_eq!(leaving, vec!["k".to_string()]);
    }

    #[test]
    fn a_downgrade_gives_each_classic_member_its_target_and_rebalances() {
        use super::super::group::GroupState;
        let now = Instant::now();
        let (view, t) = topics(4);
        let classic = stable_classic_group(&view, now);
        let k = classic.members.keys().next().unwrap().clone();
        let mut g = ConsumerGroup::from_classic(&classic, &view, now).unwrap();
        g.heartbeat(join("c"), &view, now).unwrap();
        let members = g.to_classic_members(&["c".to_string()], &view);
        assert_eq!(members.len(), 1);
        assert_eq!(partitions_of(&members[0].assignment, &view), g.target[&k][&t]);
        let back = Group::downgraded("g".into(), g.group_epoch, members, true, now);
        assert_eq!((back.state, back.generation, back.protocol_name.as_deref()), (GroupState::PreparingRebalance, 2, Some("cooperative-sticky")));
        assert_eq!(back.members[&k].session_timeout, Duration::from_secs(10), "the classic session timeout is kept");
    }

    #[test]
    fn classic_groups_of_other_protocols_or_with_custom_assignor_data_are_not_converted() {
        let now = Instant::now();
        let (view, _) = topics(2);
        let mut classic = stable_classic_group(&view, now);
        let k = classic.members.keys().next().unwrap().clone();
        let mut with_user_data = bytes::BytesMut::new();
        bytes::BufMut::put_i16(&mut with_user_data, 0);
        use kafka_protocol::protocol::Encodable;
        kafka_protocol::messages::ConsumerProtocolAssignment::default()
            .with_user_data(Some(Bytes::from_static(b"custom")))
            .encode(&mut with_user_data, 0)
            .unwrap();
        classic.members.get_mut(&k).unwrap().assignment = with_user_data.freeze();
        assert!(ConsumerGroup::from_classic(&classic, &view, now).is_err());
        classic.members.get_mut(&k).unwrap().protocols = vec![("cooperative-sticky".into(), Bytes::from_static(b"\xff"))];
        assert!(ConsumerGroup::from_classic(&classic, &view, now).is_err());
    }

    #[test]
    fn a_static_member_leaving_temporarily_is_replaced_by_its_next_incarnation() {
        let now = Instant::now();
        let (view, _) = topics(3);
        let mut g = ConsumerGroup::new("g".into());
        let mut first = join("m1");
        first.instance_id = Some("i".into());
        let a = g.heartbeat(first, &view, now).unwrap();
        let owned = a.assignment.clone().unwrap();
        assert_eq!(count(&owned), 3);
        // While the instance is still active, a second incarnation is refused.
        let mut twin = join("m2");
        twin.instance_id = Some("i".into());
        assert_eq!(g.heartbeat(twin.clone(), &view, now), Err(ResponseError::UnreleasedInstanceId));
        // Leaving with epoch -2 keeps its place; the next incarnation inherits it without a new epoch.
        let leave = Heartbeat { member_id: "m1".into(), member_epoch: LEAVE_GROUP_STATIC_EPOCH, instance_id: Some("i".into()), ..Default::default() };
        g.heartbeat(leave, &view, now).unwrap();
        let epoch_before = g.group_epoch;
        let b = g.heartbeat(twin, &view, now).unwrap();
        assert_eq!((b.member_id.as_str(), b.member_epoch), ("m2", a.member_epoch));
        assert_eq!(b.assignment, Some(owned));
        assert_eq!(g.group_epoch, epoch_before, "no rebalance");
        assert!(!g.members.contains_key("m1"));
    }
}
