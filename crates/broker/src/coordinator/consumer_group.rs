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
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use uuid::Uuid;

use super::assignor::{self, Assignment, AssignmentSpec, TopicInfo};

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
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatAnswer {
    pub member_id: String,
    pub member_epoch: i32,
    /// Sent when the member asked for everything or its assignment changed.
    pub assignment: Option<Assignment>,
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
        self.reconcile(&member_id, req.owned.as_ref(), now);
        let member = self.members.get(&member_id).ok_or(ResponseError::UnknownMemberId)?;
        let changed = member.assigned != before;
        Ok(HeartbeatAnswer {
            member_id: member.id.clone(),
            member_epoch: member.epoch,
            assignment: (full_request || changed).then(|| member.assigned.clone()),
        })
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
        let mut member = ConsumerMember {
            id: member_id.clone(),
            instance_id: req.instance_id.clone(),
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            epoch: 0,
            previous_epoch: 0,
            state: MemberState::Stable,
            rebalance_timeout: Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64),
            subscribed_topic_names: Vec::new(),
            subscribed_topic_regex: None,
            server_assignor: None,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            last_heartbeat: now,
            revoking_since: None,
        };
        if let Some(instance) = &req.instance_id {
            if let Some(previous_id) = self.static_members.get(instance).cloned() {
                let previous = self.members.get(&previous_id).ok_or(ResponseError::UnknownMemberId)?;
                if previous.epoch != LEAVE_GROUP_STATIC_EPOCH && previous_id != member_id {
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
                        names.extend(topics.keys().filter(|t| re.is_match(t)).cloned());
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
        let doomed: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                now.duration_since(m.last_heartbeat) > session_timeout
                    || m.revoking_since.is_some_and(|since| now.duration_since(since) > m.rebalance_timeout)
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &doomed {
            tracing::info!(group = %self.id, member = %id, "consumer group member expired or failed to revoke in time");
            self.remove_member(id);
        }
        !doomed.is_empty()
    }

    /// OffsetCommit/OffsetFetch check for members of this group.
    pub fn validate_member_epoch(&self, member_id: &str, epoch: i32, stale_error: ResponseError) -> Result<(), ResponseError> {
        if epoch < 0 && member_id.is_empty() {
            // Outside the group protocol (admin tools, assign()): only while nobody is in the group.
            return if self.members.is_empty() { Ok(()) } else { Err(ResponseError::UnknownMemberId) };
        }
        let member = self.members.get(member_id).ok_or(ResponseError::UnknownMemberId)?;
        if member.epoch != epoch {
            return Err(stale_error);
        }
        Ok(())
    }

    pub fn subscribed_topic_names(&self) -> BTreeSet<String> {
        self.subscribed_topics.keys().cloned().collect()
    }
}

impl ConsumerMember {
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
