//! One consumer group under the classic protocol (JoinGroup / SyncGroup /
//! Heartbeat / LeaveGroup): its state machine, members and generations.
//!
//! The state machine is driven by requests and by [`Group::tick`] with an
//! explicit `now`, so tests control the clock. Answers that must wait (a
//! JoinGroup until the rebalance completes, a follower's SyncGroup until the
//! leader's assignment arrives) are oneshot senders held by the member and
//! fired by the transition that completes them.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;

use super::consumer_group::DowngradedMember;
use super::group_record::{GroupMetadata, MemberMetadata};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The state's name as Kafka reports it (ListGroups, DescribeGroups).
    pub fn kafka_name(&self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a member learns when its JoinGroup completes.
#[derive(Debug, Clone)]
pub struct JoinOutcome {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// All members' (id, instance id, metadata) for the leader; empty for followers.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// JoinGroup v9: a rejoining static leader gets the members but must not re-assign.
    pub skip_assignment: bool,
}

impl JoinOutcome {
    pub fn error(error: ResponseError, member_id: String) -> JoinOutcome {
        JoinOutcome {
            error: Some(error),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id,
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

/// What a member learns when its SyncGroup completes.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    pub fn error(error: ResponseError) -> SyncOutcome {
        SyncOutcome { error: Some(error), protocol_type: None, protocol_name: None, assignment: Bytes::new() }
    }
}

pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    last_heartbeat: Instant,
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
    /// Order of first join, to pick a stable leader.
    join_order: u64,
}

impl Member {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(n, _)| n == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }
}

/// A JoinGroup as the state machine sees it.
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: an unknown member must first get an id (KIP-394).
    pub require_known_member_id: bool,
    /// JoinGroup v9+: the client understands `skip_assignment`.
    pub supports_skip_assignment: bool,
}

pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, waiting for the rejoin, with their expiry.
    pending_members: HashMap<String, Instant>,
    static_members: HashMap<String, String>,
    rebalance_deadline: Option<Instant>,
    /// Kafka's `group.initial.rebalance.delay.ms`: the first rebalance of an empty group waits for more members.
    initial_join_deadline: Option<Instant>,
    next_join_order: u64,
    /// When the group entered its current state (ms since the epoch); offsets of
    /// an empty group expire relative to it.
    pub current_state_timestamp: i64,
    /// The persisted group metadata is out of date (see [`Group::take_dirty`]).
    dirty: bool,
}

pub enum JoinResult {
    /// Answer now (errors, MEMBER_ID_REQUIRED).
    Now(JoinOutcome),
    /// Answer when the rebalance completes.
    Wait(oneshot::Receiver<JoinOutcome>),
}

pub enum SyncResult {
    Now(SyncOutcome),
    Wait(oneshot::Receiver<SyncOutcome>),
}

impl Group {
    pub fn new(id: String) -> Group {
        Group {
            id,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline: None,
            initial_join_deadline: None,
            next_join_order: 0,
            current_state_timestamp: crate::now_ms(),
            dirty: false,
        }
    }

    /// The group as Kafka persists it (group metadata value).
    pub fn snapshot(&self) -> GroupMetadata {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupMetadata {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone(),
            current_state_timestamp: self.current_state_timestamp,
            members: self
                .members
                .values()
                .map(|m| MemberMetadata {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis().min(i32::MAX as u128) as i32,
                    session_timeout_ms: m.session_timeout.as_millis().min(i32::MAX as u128) as i32,
                    subscription: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Rebuilds a group from its persisted metadata after a restart: a group
    /// with members is Stable again and their sessions start afresh.
    pub fn restore(id: String, meta: GroupMetadata, now: Instant) -> Group {
        let mut group = Group::new(id);
        group.generation = meta.generation;
        group.protocol_type = (!meta.protocol_type.is_empty()).then_some(meta.protocol_type);
        group.protocol_name = meta.protocol_name;
        group.leader = meta.leader;
        if meta.current_state_timestamp >= 0 {
            group.current_state_timestamp = meta.current_state_timestamp;
        }
        let protocol = group.protocol_name.clone().unwrap_or_default();
        for (order, m) in meta.members.into_iter().enumerate() {
            if let Some(instance) = &m.instance_id {
                group.static_members.insert(instance.clone(), m.member_id.clone());
            }
            group.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout: Duration::from_millis(m.session_timeout_ms.max(0) as u64),
                    rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64),
                    protocol_type: group.protocol_type.clone().unwrap_or_default(),
                    protocols: vec![(protocol.clone(), m.subscription)],
                    assignment: m.assignment,
                    last_heartbeat: now,
                    join_waiter: None,
                    sync_waiter: None,
                    join_order: order as u64,
                },
            );
        }
        group.next_join_order = group.members.len() as u64;
        group.state = if group.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
        if group.leader.as_ref().is_some_and(|l| !group.members.contains_key(l)) {
            group.leader = group.members.keys().next().cloned();
        }
        group
    }

    /// The classic group a consumer-protocol group becomes when only classic
    /// members remain (KIP-848 online downgrade; Kafka's
    /// ClassicGroup.fromConsumerGroup): generation = the group epoch, each
    /// member with its target assignment, Stable; with `rebalance` the
    /// members are then asked to rejoin. Persisted like any classic group.
    pub fn downgraded(id: String, generation: i32, members: Vec<DowngradedMember>, rebalance: bool, now: Instant) -> Group {
        let mut group = Group::new(id);
        group.generation = generation;
        group.protocol_type = Some("consumer".to_string());
        for (order, m) in members.into_iter().enumerate() {
            if let Some(instance) = &m.instance_id {
                group.static_members.insert(instance.clone(), m.id.clone());
            }
            group.members.insert(
                m.id.clone(),
                Member {
                    id: m.id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout: m.session_timeout,
                    rebalance_timeout: m.rebalance_timeout,
                    protocol_type: "consumer".to_string(),
                    protocols: m.protocols,
                    assignment: m.assignment,
                    last_heartbeat: now,
                    join_waiter: None,
                    sync_waiter: None,
                    join_order: order as u64,
                },
            );
        }
        group.next_join_order = group.members.len() as u64;
        group.protocol_name = group.select_protocol();
        group.leader = group.members.keys().next().cloned();
        group.set_state(if group.members.is_empty() { GroupState::Empty } else { GroupState::Stable });
        group.dirty = true;
        if rebalance && !group.members.is_empty() {
            group.prepare_rebalance(now);
        }
        group
    }

    /// Answers every waiting JoinGroup and SyncGroup with `error` (the group
    /// is becoming a consumer-protocol group: its members must rejoin there).
    pub fn fail_waiting(&mut self, error: ResponseError) {
        for member in self.members.values_mut() {
            if let Some(w) = member.join_waiter.take() {
                let _ = w.send(JoinOutcome::error(error.clone(), member.id.clone()));
            }
            if let Some(w) = member.sync_waiter.take() {
                let _ = w.send(SyncOutcome::error(error.clone()));
            }
        }
    }

    fn set_state(&mut self, state: GroupState) {
        self.state = state;
        self.current_state_timestamp = crate::now_ms();
    }

    /// Whether the group changed in a way that must be persisted (a new stable
    /// assignment, a replaced static member, becoming empty); clears the flag.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending_members.is_empty()
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocols.is_empty() || protocol_type.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        // Some protocol must remain common to every member.
        protocols.iter().any(|(name, _)| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == name)))
    }

    pub fn join(&mut self, req: JoinRequest, now: Instant, initial_delay: Duration) -> JoinResult {
        if self.state == GroupState::Dead {
            return JoinResult::Now(JoinOutcome::error(ResponseError::CoordinatorNotAvailable, req.member_id));
        }
        if !self.supports(&req.protocol_type, &req.protocols) {
            return JoinResult::Now(JoinOutcome::error(ResponseError::InconsistentGroupProtocol, req.member_id));
        }
        if req.member_id.is_empty() {
            if let Some(instance) = req.instance_id.clone() {
                // Static members get their id at once (no MEMBER_ID_REQUIRED round trip);
                // a known instance replaces its previous member id (KIP-345).
                let new_id = format!("{}-{}", instance, uuid::Uuid::new_v4());
                return match self.static_members.get(&instance).cloned() {
                    Some(old_id) => self.replace_static_member(&old_id, new_id, req, now),
                    None => self.add_member_and_rebalance(new_id, req, now, initial_delay),
                };
            }
            let prefix = if req.client_id.is_empty() { "member" } else { req.client_id.as_str() };
            let new_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
            if req.require_known_member_id {
                self.pending_members.insert(new_id.clone(), now + req.session_timeout);
                return JoinResult::Now(JoinOutcome::error(ResponseError::MemberIdRequired, new_id));
            }
            return self.add_member_and_rebalance(new_id, req, now, initial_delay);
        }
        if self.pending_members.remove(&req.member_id).is_some() {
            let id = req.member_id.clone();
            return self.add_member_and_rebalance(id, req, now, initial_delay);
        }
        if let Err(e) = self.validate_member(&req.member_id, req.instance_id.as_deref()) {
            return JoinResult::Now(JoinOutcome::error(e, req.member_id));
        }
        let member_id = req.member_id.clone();
        let Some(member) = self.members.get(&member_id) else {
            return JoinResult::Now(JoinOutcome::error(ResponseError::UnknownMemberId, member_id));
        };
        let same_metadata = member.protocols == req.protocols;
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        match self.state {
            // The member did not get (or lost) its JoinGroup answer: repeat it.
            GroupState::CompletingRebalance if same_metadata => {
                JoinResult::Now(self.current_generation_outcome(&member_id, is_leader, false, None))
            }
            // A follower rejoining with unchanged metadata needs no rebalance; the
            // leader rejoining asks for one (e.g. its topics' metadata changed).
            GroupState::Stable if same_metadata && !is_leader => {
                self.members.get_mut(&member_id).map(|m| m.last_heartbeat = now);
                JoinResult::Now(self.current_generation_outcome(&member_id, false, false, None))
            }
            _ => self.update_member_and_rebalance(req, now, initial_delay),
        }
    }

    /// The answer for a member joining the current generation without a rebalance.
    fn current_generation_outcome(&self, member_id: &str, with_members: bool, skip_assignment: bool, leader: Option<String>) -> JoinOutcome {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        JoinOutcome {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: leader.or_else(|| self.leader.clone()).unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if with_members {
                self.members.values().map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata_for(&protocol))).collect()
            } else {
                Vec::new()
            },
            skip_assignment,
        }
    }

    /// Kafka's member check: a static instance must map to this member id
    /// (else FENCED_INSTANCE_ID); a dynamic member must exist.
    pub fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), ResponseError> {
        match instance_id {
            Some(instance) => match self.static_members.get(instance) {
                None => Err(ResponseError::UnknownMemberId),
                Some(known) if known != member_id => Err(ResponseError::FencedInstanceId),
                Some(_) => Ok(()),
            },
            None if self.members.contains_key(member_id) => Ok(()),
            None => Err(ResponseError::UnknownMemberId),
        }
    }

    fn add_member_and_rebalance(&mut self, member_id: String, mut req: JoinRequest, now: Instant, initial_delay: Duration) -> JoinResult {
        req.member_id = member_id.clone();
        let join_order = self.next_join_order;
        self.next_join_order += 1;
        if let Some(instance) = &req.instance_id {
            self.static_members.insert(instance.clone(), member_id.clone());
        }
        self.members.insert(
            member_id.clone(),
            Member {
                id: member_id.clone(),
                instance_id: req.instance_id.clone(),
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                session_timeout: req.session_timeout,
                rebalance_timeout: req.rebalance_timeout,
                protocol_type: req.protocol_type.clone(),
                protocols: Vec::new(),
                assignment: Bytes::new(),
                last_heartbeat: now,
                join_waiter: None,
                sync_waiter: None,
                join_order,
            },
        );
        self.update_member_and_rebalance(req, now, initial_delay)
    }

    /// Records the member's join (protocols, timeouts, waiting answer) and
    /// moves the group towards (or through) a rebalance.
    fn update_member_and_rebalance(&mut self, req: JoinRequest, now: Instant, initial_delay: Duration) -> JoinResult {
        let member_id = req.member_id.clone();
        let (tx, rx) = oneshot::channel();
        let Some(member) = self.members.get_mut(&member_id) else {
            return JoinResult::Now(JoinOutcome::error(ResponseError::UnknownMemberId, member_id));
        };
        member.protocols = req.protocols;
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.protocol_type = req.protocol_type.clone();
        member.last_heartbeat = now;
        if let Some(old) = member.join_waiter.replace(tx) {
            let _ = old.send(JoinOutcome::error(ResponseError::UnknownMemberId, member_id.clone()));
        }
        if self.protocol_type.is_none() || self.members.len() == 1 {
            self.protocol_type = Some(req.protocol_type);
        }
        match self.state {
            GroupState::PreparingRebalance => {
                if let Some(deadline) = self.initial_join_deadline.as_mut() {
                    // Each newcomer extends the initial delay, bounded by the rebalance timeout.
                    let bound = self.rebalance_deadline.unwrap_or(now);
                    *deadline = (now + initial_delay).min(bound);
                }
            }
            GroupState::Empty => {
                self.prepare_rebalance(now);
                if !initial_delay.is_zero() {
                    let bound = self.rebalance_deadline.unwrap_or(now);
                    self.initial_join_deadline = Some((now + initial_delay).min(bound));
                }
            }
            _ => self.prepare_rebalance(now),
        }
        self.try_complete_join(now);
        JoinResult::Wait(rx)
    }

    /// A static member rejoined with an unknown member id: the new id takes
    /// over the old one's place and assignment. In a stable group whose
    /// protocol choice does not change this needs no rebalance (KIP-345).
    fn replace_static_member(&mut self, old_id: &str, new_id: String, req: JoinRequest, now: Instant) -> JoinResult {
        let Some(mut member) = self.members.remove(old_id) else {
            self.static_members.remove(req.instance_id.as_deref().unwrap_or_default());
            return self.add_member_and_rebalance(new_id, req, now, Duration::ZERO);
        };
        if let Some(w) = member.join_waiter.take() {
            let _ = w.send(JoinOutcome::error(ResponseError::FencedInstanceId, old_id.to_string()));
        }
        if let Some(w) = member.sync_waiter.take() {
            let _ = w.send(SyncOutcome::error(ResponseError::FencedInstanceId));
        }
        let previous_leader = self.leader.clone();
        if previous_leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        member.id = new_id.clone();
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.protocols = req.protocols.clone();
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.last_heartbeat = now;
        self.members.insert(new_id.clone(), member);
        if let Some(instance) = &req.instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        tracing::info!(group = %self.id, old = %old_id, new = %new_id, "static member rejoined with a new member id");
        match self.state {
            GroupState::Stable if self.select_protocol() == self.protocol_name => {
                self.dirty = true;
                let is_leader = self.leader.as_deref() == Some(new_id.as_str());
                let outcome = if req.supports_skip_assignment {
                    self.current_generation_outcome(&new_id, is_leader, is_leader, None)
                } else {
                    // Older clients must not believe they lead (and re-assign): name the previous leader id.
                    self.current_generation_outcome(&new_id, false, false, previous_leader)
                };
                JoinResult::Now(outcome)
            }
            _ => {
                let mut req = req;
                req.member_id = new_id;
                self.update_member_and_rebalance(req, now, Duration::ZERO)
            }
        }
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::CompletingRebalance {
            for member in self.members.values_mut() {
                if let Some(w) = member.sync_waiter.take() {
                    let _ = w.send(SyncOutcome::error(ResponseError::RebalanceInProgress));
                }
            }
        }
        let timeout = self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or(Duration::from_secs(60));
        self.set_state(GroupState::PreparingRebalance);
        self.rebalance_deadline = Some(now + timeout);
        self.initial_join_deadline = None;
    }

    /// Completes the join phase when every member has rejoined (and the
    /// initial delay has passed), or at the rebalance deadline, dropping the
    /// members that did not rejoin.
    fn try_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.pending_members.is_empty() && self.members.values().all(|m| m.join_waiter.is_some());
        let initial_passed = self.initial_join_deadline.is_none_or(|d| now >= d);
        let deadline_passed = self.rebalance_deadline.is_some_and(|d| now >= d);
        if !(all_joined && initial_passed) && !deadline_passed {
            return;
        }
        let stragglers: Vec<String> = self.members.values().filter(|m| m.join_waiter.is_none()).map(|m| m.id.clone()).collect();
        for id in stragglers {
            self.forget_member(&id);
        }
        self.pending_members.clear();
        self.rebalance_deadline = None;
        self.initial_join_deadline = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.to_empty();
            return;
        }
        self.protocol_name = self.select_protocol();
        if self.leader.as_ref().is_none_or(|l| !self.members.contains_key(l)) {
            self.leader = self.members.values().min_by_key(|m| m.join_order).map(|m| m.id.clone());
        }
        self.set_state(GroupState::CompletingRebalance);
        tracing::debug!(group = %self.id, generation = self.generation, members = self.members.len(), "rebalance completed");
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let all: Vec<(String, Option<String>, Bytes)> = self
            .members
            .values()
            .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata_for(&protocol)))
            .collect();
        for member in self.members.values_mut() {
            member.last_heartbeat = now;
            member.assignment = Bytes::new();
            if let Some(w) = member.join_waiter.take() {
                let _ = w.send(JoinOutcome {
                    error: None,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    leader: leader.clone(),
                    member_id: member.id.clone(),
                    members: if member.id == leader { all.clone() } else { Vec::new() },
                    skip_assignment: false,
                });
            }
        }
    }

    /// Kafka's choice: among protocols every member supports, the one most
    /// members list first-most.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| self.members.values().all(|m| m.protocols.iter().any(|(p, _)| p == *n)))
            .collect();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0usize, *c)).collect();
        for member in self.members.values() {
            if let Some(pick) = member.protocols.iter().map(|(n, _)| n).find(|n| candidates.contains(n)) {
                if let Some(v) = votes.iter_mut().find(|(_, c)| *c == pick) {
                    v.0 += 1;
                }
            }
        }
        // Highest vote wins; ties go to the earlier candidate.
        votes.iter().rev().max_by_key(|(v, _)| *v).map(|(_, c)| (*c).clone())
    }

    fn to_empty(&mut self) {
        self.set_state(GroupState::Empty);
        self.dirty = true;
        // The protocol type stays, as in Kafka: it marks a group that used group
        // management, whose offsets expire relative to when it became empty.
        self.protocol_name = None;
        self.leader = None;
    }

    fn forget_member(&mut self, member_id: &str) {
        if let Some(mut member) = self.members.remove(member_id) {
            if let Some(w) = member.join_waiter.take() {
                let _ = w.send(JoinOutcome::error(ResponseError::UnknownMemberId, member_id.to_string()));
            }
            if let Some(w) = member.sync_waiter.take() {
                let _ = w.send(SyncOutcome::error(ResponseError::UnknownMemberId));
            }
            if let Some(instance) = &member.instance_id {
                if self.static_members.get(instance).is_some_and(|m| m == member_id) {
                    self.static_members.remove(instance);
                }
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
    }

    /// Removes a member (left, or its session expired) and rebalances the rest.
    pub fn remove_member(&mut self, member_id: &str, now: Instant) {
        if self.pending_members.remove(member_id).is_some() {
            self.try_complete_join(now);
            return;
        }
        self.forget_member(member_id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.generation += 1;
                    self.to_empty();
                } else {
                    self.prepare_rebalance(now);
                }
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    fn check_member(&self, member_id: &str, instance_id: Option<&str>, generation: i32) -> Result<(), ResponseError> {
        self.validate_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    pub fn sync(&mut self, member_id: &str, instance_id: Option<&str>, generation: i32, assignments: Vec<(String, Bytes)>, now: Instant) -> SyncResult {
        if self.state == GroupState::Dead {
            return SyncResult::Now(SyncOutcome::error(ResponseError::CoordinatorNotAvailable));
        }
        if let Err(e) = self.check_member(member_id, instance_id, generation) {
            return SyncResult::Now(SyncOutcome::error(e));
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => SyncResult::Now(SyncOutcome::error(ResponseError::UnknownMemberId)),
            GroupState::PreparingRebalance => SyncResult::Now(SyncOutcome::error(ResponseError::RebalanceInProgress)),
            GroupState::Stable => SyncResult::Now(self.assignment_of(member_id)),
            GroupState::CompletingRebalance => {
                if let Some(member) = self.members.get_mut(member_id) {
                    member.last_heartbeat = now;
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for member in self.members.values_mut() {
                        member.assignment = given.remove(&member.id).unwrap_or_default();
                    }
                    self.set_state(GroupState::Stable);
                    self.dirty = true;
                    let ids: Vec<String> = self.members.keys().cloned().collect();
                    for id in ids {
                        let outcome = self.assignment_of(&id);
                        if let Some(w) = self.members.get_mut(&id).and_then(|m| m.sync_waiter.take()) {
                            let _ = w.send(outcome);
                        }
                    }
                    SyncResult::Now(self.assignment_of(member_id))
                } else {
                    let (tx, rx) = oneshot::channel();
                    if let Some(member) = self.members.get_mut(member_id) {
                        if let Some(old) = member.sync_waiter.replace(tx) {
                            let _ = old.send(SyncOutcome::error(ResponseError::RebalanceInProgress));
                        }
                    }
                    SyncResult::Wait(rx)
                }
            }
        }
    }

    fn assignment_of(&self, member_id: &str) -> SyncOutcome {
        SyncOutcome {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default(),
        }
    }

    pub fn heartbeat(&mut self, member_id: &str, instance_id: Option<&str>, generation: i32, now: Instant) -> Result<(), ResponseError> {
        match self.state {
            GroupState::Dead => return Err(ResponseError::CoordinatorNotAvailable),
            GroupState::Empty => return Err(ResponseError::UnknownMemberId),
            _ => {}
        }
        self.check_member(member_id, instance_id, generation)?;
        if let Some(member) = self.members.get_mut(member_id) {
            member.last_heartbeat = now;
        }
        if self.state == GroupState::PreparingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// LeaveGroup's check for one member: by id, or by static instance id
    /// (whose mapped id must match a given member id). Returns the member id.
    pub fn resolve_leaving_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<String, ResponseError> {
        match instance_id {
            Some(instance) => match self.static_members.get(instance) {
                None => Err(ResponseError::UnknownMemberId),
                Some(known) if !member_id.is_empty() && known != member_id => Err(ResponseError::FencedInstanceId),
                Some(known) => Ok(known.clone()),
            },
            None if self.members.contains_key(member_id) || self.pending_members.contains_key(member_id) => Ok(member_id.to_string()),
            None => Err(ResponseError::UnknownMemberId),
        }
    }

    /// Session expiry, pending-member expiry and rebalance deadlines.
    pub fn tick(&mut self, now: Instant) {
        self.pending_members.retain(|_, expiry| *expiry > now);
        if matches!(self.state, GroupState::Stable | GroupState::CompletingRebalance | GroupState::PreparingRebalance) {
            // A member waiting in JoinGroup is alive; any other member must keep heartbeating.
            let expired: Vec<String> = self
                .members
                .values()
                .filter(|m| m.join_waiter.is_none() && now.duration_since(m.last_heartbeat) > m.session_timeout)
                .map(|m| m.id.clone())
                .collect();
            for id in expired {
                tracing::info!(group = %self.id, member = %id, "member session expired");
                self.remove_member(&id, now);
            }
        }
        self.try_complete_join(now);
    }

    /// Kafka's offset expiration rule for classic groups: the time an
    /// offset's retention counts from, or None while it must not expire.
    /// Standalone consumers (never joined): the commit time. A group that used
    /// group management and is now empty: when it became empty. A stable
    /// consumer group: the commit time, for topics it no longer subscribes to.
    pub fn offset_expiration_base(&self, topic: &str, commit_timestamp: i64) -> Option<i64> {
        match (&self.protocol_type, self.state) {
            (None, _) => Some(commit_timestamp),
            (Some(_), GroupState::Empty) => {
                Some(if self.current_state_timestamp >= 0 { self.current_state_timestamp } else { commit_timestamp })
            }
            (Some(_), GroupState::Stable) => match self.subscribed_topics() {
                Some(topics) if !topics.contains(topic) => Some(commit_timestamp),
                _ => None,
            },
            _ => None,
        }
    }

    /// Topics the members subscribe to, read from their consumer-protocol
    /// subscriptions; None when the group does not use the consumer protocol.
    pub fn subscribed_topics(&self) -> Option<std::collections::HashSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let mut topics = std::collections::HashSet::new();
        for member in self.members.values() {
            topics.extend(subscription_topics(&member.metadata_for(&protocol)));
        }
        Some(topics)
    }

    /// Whether offsets may be committed by this member/generation, as in
    /// Kafka's classic groups: a generation below zero is a consumer outside
    /// the group protocol (assign(), admin tools), allowed while the group is empty.
    pub fn validate_commit(&self, member_id: &str, instance_id: Option<&str>, generation: i32) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.check_member(member_id, instance_id, generation)?;
        } else {
            return Err(ResponseError::UnknownMemberId);
        }
        // Members commit while a rebalance is being prepared (that is how they commit
        // on revocation); only between the join and the assignment are commits refused.
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }
}

/// Topics of a consumer-protocol subscription (version i16, then an array of
/// i16-length strings); stops quietly at anything malformed.
pub fn subscription_topics(metadata: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(rest) = metadata.get(2..) else { return out };
    let Some(count) = rest.get(..4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]])) else { return out };
    let mut pos = 4usize;
    for _ in 0..count.max(0) {
        let Some(len) = rest.get(pos..pos + 2).map(|b| i16::from_be_bytes([b[0], b[1]])) else { break };
        pos += 2;
        let Some(name) = rest.get(pos..pos + len.max(0) as usize) else { break };
        out.push(String::from_utf8_lossy(name).into_owned());
        pos += len.max(0) as usize;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join_req(member_id: &str) -> JoinRequest {
        JoinRequest {
            member_id: member_id.to_string(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            require_known_member_id: true,
            supports_skip_assignment: true,
        }
    }

    fn joined(result: JoinResult) -> oneshot::Receiver<JoinOutcome> {
        match result {
            JoinResult::Wait(rx) => rx,
            JoinResult::Now(o) => panic!("expected to wait, got {:?}", o.error),
        }
    }

    fn member_id_required(g: &mut Group, now: Instant) -> String {
        match g.join(join_req(""), now, Duration::ZERO) {
            JoinResult::Now(o) => {
                assert_eq!(o.error, Some(ResponseError::MemberIdRequired));
                o.member_id
            }
            JoinResult::Wait(_) => panic!("first join must ask for a member id"),
        }
    }

    #[test]
    fn two_members_join_sync_and_follower_before_leader_gets_its_assignment() {
        let now = Instant::now();
        let mut g = Group::new("g".into());
        let a = member_id_required(&mut g, now);
        let b = member_id_required(&mut g, now);
        let mut ra = joined(g.join(join_req(&a), now, Duration::ZERO));
        assert!(ra.try_recv().is_err(), "waits for b");
        let mut rb = joined(g.join(join_req(&b), now, Duration::ZERO));
        let oa = ra.try_recv().unwrap();
        let ob = rb.try_recv().unwrap();
        assert_eq!(oa.generation, 1);
        assert_eq!(oa.leader, a);
        assert_eq!(oa.members.len(), 2);
        assert!(ob.members.is_empty());
        let mut follower = match g.sync(&b, None, 1, vec![], now) {
            SyncResult::Wait(rx) => rx,
            SyncResult::Now(_) => panic!("follower waits for the leader"),
        };
        let leader = match g.sync(&a, None, 1, vec![(a.clone(), Bytes::from_static(b"A")), (b.clone(), Bytes::from_static(b"B"))], now) {
            SyncResult::Now(o) => o,
            SyncResult::Wait(_) => panic!("leader answers at once"),
        };
        assert_eq!(leader.assignment, Bytes::from_static(b"A"));
        assert_eq!(follower.try_recv().unwrap().assignment, Bytes::from_static(b"B"));
        assert_eq!(g.state, GroupState::Stable);
        // A late follower sync after the leader still gets its assignment.
        match g.sync(&b, None, 1, vec![], now) {
            SyncResult::Now(o) => assert_eq!(o.assignment, Bytes::from_static(b"B")),
            SyncResult::Wait(_) => panic!("stable group answers at once"),
        }
        assert_eq!(g.heartbeat(&a, None, 1, now), Ok(()));
        assert_eq!(g.heartbeat(&a, None, 0, now), Err(ResponseError::IllegalGeneration));
        assert_eq!(g.heartbeat("nobody", None, 1, now), Err(ResponseError::UnknownMemberId));
    }

    #[test]
    fn expired_session_triggers_rebalance_and_heartbeats_say_so() {
        let now = Instant::now();
        let mut g = Group::new("g".into());
        let a = member_id_required(&mut g, now);
        let b = member_id_required(&mut g, now);
        let _ra = joined(g.join(join_req(&a), now, Duration::ZERO));
        let _rb = joined(g.join(join_req(&b), now, Duration::ZERO));
        let _ = g.sync(&a, None, 1, vec![], now);
        let later = now + Duration::from_secs(8);
        assert_eq!(g.heartbeat(&a, None, 1, later), Ok(()));
        let expired = now + Duration::from_secs(11);
        g.tick(expired);
        assert!(!g.members.contains_key(&b), "b stopped heartbeating");
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert_eq!(g.heartbeat(&a, None, 1, expired), Err(ResponseError::RebalanceInProgress));
        assert_eq!(g.validate_commit(&a, None, 1), Ok(()), "commits on revocation are accepted while preparing");
        let mut ra = joined(g.join(join_req(&a), expired, Duration::ZERO));
        let o = ra.try_recv().unwrap();
        assert_eq!((o.generation, o.members.len()), (2, 1));
    }

    #[test]
    fn leaving_last_member_empties_the_group_and_unknown_rejoin_is_refused() {
        let now = Instant::now();
        let mut g = Group::new("g".into());
        let a = member_id_required(&mut g, now);
        let _ra = joined(g.join(join_req(&a), now, Duration::ZERO));
        g.remove_member(&a, now);
        assert_eq!(g.state, GroupState::Empty);
        assert!(matches!(g.join(join_req(&a), now, Duration::ZERO), JoinResult::Now(o) if o.error == Some(ResponseError::UnknownMemberId)));
        assert_eq!(g.validate_commit("", None, -1), Ok(()));
    }

    #[test]
    fn initial_delay_holds_the_first_rebalance() {
        let now = Instant::now();
        let mut g = Group::new("g".into());
        let a = member_id_required(&mut g, now);
        let mut ra = joined(g.join(join_req(&a), now, Duration::from_secs(3)));
        assert!(ra.try_recv().is_err());
        g.tick(now + Duration::from_secs(1));
        assert!(ra.try_recv().is_err());
        g.tick(now + Duration::from_secs(3));
        assert_eq!(ra.try_recv().unwrap().generation, 1);
    }

    #[test]
    fn subscriptions_are_read_from_member_metadata() {
        let metadata = [0u8, 1, 0, 0, 0, 2, 0, 1, b'a', 0, 2, b'b', b'c', 0, 0, 0, 0];
        assert_eq!(subscription_topics(&metadata), vec!["a".to_string(), "bc".to_string()]);
        assert!(subscription_topics(&[0, 1, 0, 0, 0, 9, 0]).is_empty());
    }

    #[test]
    fn incompatible_protocols_are_refused() {
        let now = Instant::now();
        let mut g = Group::new("g".into());
        let a = member_id_required(&mut g, now);
        let _ra = joined(g.join(join_req(&a), now, Duration::ZERO));
        let mut other = join_req("");
        other.protocols = vec![("roundrobin".into(), Bytes::new())];
        other.require_known_member_id = false;
        assert!(matches!(g.join(other, now, Duration::ZERO), JoinResult::Now(o) if o.error == Some(ResponseError::InconsistentGroupProtocol)));
    }

    fn static_join(instance: &str, member_id: &str) -> JoinRequest {
        let mut req = join_req(member_id);
        req.instance_id = Some(instance.to_string());
        req
    }

    #[test]
    fn static_member_rejoining_a_stable_group_keeps_its_assignment_without_rebalance() {
        let now = Instant::now();
        let mut g = Group::new("g".into());
        // Static members get an id at once; no MEMBER_ID_REQUIRED round trip.
        let mut ra = joined(g.join(static_join("ia", ""), now, Duration::ZERO));
        let a = ra.try_recv().unwrap().member_id;
        let mut rb = joined(g.join(static_join("ib", ""), now, Duration::ZERO));
        let mut ra = joined(g.join(static_join("ia", &a), now, Duration::ZERO));
        let b = rb.try_recv().unwrap().member_id;
        assert_eq!(ra.try_recv().unwrap().generation, 2);
        let _ = g.sync(&b, Some("ib"), 2, vec![], now);
        let _ = g.sync(&a, Some("ia"), 2, vec![(a.clone(), Bytes::from_static(b"A")), (b.clone(), Bytes::from_static(b"B"))], now);
        assert_eq!(g.state, GroupState::Stable);
        assert!(g.take_dirty(), "a new stable assignment is persisted");
        // "ib" restarts: a new member id, same generation, same assignment, no rebalance.
        let o = match g.join(static_join("ib", ""), now, Duration::ZERO) {
            JoinResult::Now(o) => o,
            JoinResult::Wait(_) => panic!("a static rejoin into a stable group answers at once"),
        };
        assert_eq!((o.error, o.generation), (None, 2));
        assert_ne!(o.member_id, b);
        assert_eq!(g.state, GroupState::Stable);
        match g.sync(&o.member_id, Some("ib"), 2, vec![], now) {
            SyncResult::Now(s) => assert_eq!(s.assignment, Bytes::from_static(b"B")),
            SyncResult::Wait(_) => panic!("stable"),
        }
        assert!(g.take_dirty(), "the new member id is persisted");
        // The old incarnation is fenced; the other member is undisturbed.
        assert_eq!(g.heartbeat(&b, Some("ib"), 2, now), Err(ResponseError::FencedInstanceId));
        assert_eq!(g.heartbeat(&a, Some("ia"), 2, now), Ok(()));
        // Restoring from the persisted snapshot keeps the group stable with the same members.
        let restored = Group::restore("g".into(), g.snapshot(), now);
        assert_eq!((restored.state, restored.generation), (GroupState::Stable, 2));
        assert_eq!(restored.validate_member(&o.member_id, Some("ib")), Ok(()));
        assert_eq!(restored.members[&o.member_id].assignment, Bytes::from_static(b"B"));
        assert_eq!(restored.leader, g.leader);
    }

    #[test]
    fn static_leader_rejoin_is_told_to_skip_assignment_or_shown_the_old_leader() {
        let now = Instant::now();
        let mut g = Group::new("g".into());
        let mut ra = joined(g.join(static_join("ia", ""), now, Duration::ZERO));
        let a = ra.try_recv().unwrap().member_id;
        let _ = g.sync(&a, Some("ia"), 1, vec![(a.clone(), Bytes::from_static(b"A"))], now);
        let o = match g.join(static_join("ia", ""), now, Duration::ZERO) {
            JoinResult::Now(o) => o,
            JoinResult::Wait(_) => panic!("no rebalance"),
        };
        assert!(o.skip_assignment && o.leader == o.member_id && o.members.len() == 1);
        let mut old_client = static_join("ia", "");
        old_client.supports_skip_assignment = false;
        let previous = o.member_id.clone();
        let o = match g.join(old_client, now, Duration::ZERO) {
            JoinResult::Now(o) => o,
            JoinResult::Wait(_) => panic!("no rebalance"),
        };
        assert!(!o.skip_assignment && o.members.is_empty());
        assert_eq!(o.leader, previous, "an old client must not think it leads");
    }
}
