//! Server-side partition assignors for the consumer group protocol
//! (KIP-848): `uniform` (balanced and sticky) and `range` (contiguous
//! ranges per topic). They map members to partitions; the coordinator then
//! reconciles each member towards its share without double ownership.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

pub const UNIFORM: &str = "uniform";
pub const RANGE: &str = "range";
/// The assignors this broker offers, the default first.
pub const ASSIGNORS: [&str; 2] = [UNIFORM, RANGE];

/// A subscribed topic as the assignor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub id: Uuid,
    pub partitions: i32,
}

/// What an assignor needs: each member's resolved topics, the topics, and
/// the previous target (for stickiness).
pub struct AssignmentSpec<'a> {
    pub members: &'a BTreeMap<String, BTreeSet<String>>,
    pub topics: &'a BTreeMap<String, TopicInfo>,
    pub previous: &'a BTreeMap<String, Assignment>,
}

pub fn assign(assignor: &str, spec: &AssignmentSpec) -> BTreeMap<String, Assignment> {
    match assignor {
        RANGE => range(spec),
        _ => uniform(spec),
    }
}

/// Each topic's partitions split into contiguous ranges over its
/// subscribers, in member-id order; the first `n % m` members get one more.
fn range(spec: &AssignmentSpec) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = spec.members.keys().map(|m| (m.clone(), Assignment::new())).collect();
    for (name, topic) in spec.topics {
        let subscribers: Vec<&String> = spec.members.iter().filter(|(_, t)| t.contains(name)).map(|(m, _)| m).collect();
        if subscribers.is_empty() {
            continue;
        }
        let (n, m) = (topic.partitions.max(0) as usize, subscribers.len());
        let mut next = 0usize;
        for (i, member) in subscribers.iter().enumerate() {
            let share = n / m + usize::from(i < n % m);
            if share > 0 {
                let partitions = out.entry((*member).clone()).or_default().entry(topic.id).or_default();
                partitions.extend((next..next + share).map(|p| p as i32));
            }
            next += share;
        }
    }
    out
}

/// Balanced across members (counts differ by at most one where
/// subscriptions allow), keeping partitions where they were whenever that
/// stays within balance.
fn uniform(spec: &AssignmentSpec) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = spec.members.keys().map(|m| (m.clone(), Assignment::new())).collect();
    if spec.members.is_empty() {
        return out;
    }
    let by_id: BTreeMap<Uuid, &String> = spec.topics.iter().map(|(name, t)| (t.id, name)).collect();
    let eligible = |member: &str, topic_id: &Uuid| {
        by_id.get(topic_id).is_some_and(|name| spec.members.get(member).is_some_and(|subs| subs.contains(*name)))
    };
    let wanted: Vec<(Uuid, i32)> = spec
        .topics
        .iter()
        .filter(|(name, _)| spec.members.values().any(|subs| subs.contains(*name)))
        .flat_map(|(_, t)| (0..t.partitions.max(0)).map(move |p| (t.id, p)))
        .collect();
    let quota = wanted.len().div_ceil(spec.members.len());
    let mut counts: BTreeMap<&String, usize> = spec.members.keys().map(|m| (m, 0)).collect();
    let mut owner: BTreeMap<(Uuid, i32), String> = BTreeMap::new();
    let valid: BTreeSet<(Uuid, i32)> = wanted.iter().copied().collect();
    // 1. Stickiness: keep previous partitions up to the quota.
    for (member, previous) in spec.previous {
        let Some(count) = counts.get_mut(member) else { continue };
        for (topic_id, partitions) in previous {
            for &p in partitions {
                if *count < quota && valid.contains(&(*topic_id, p)) && eligible(member, topic_id) && !owner.contains_key(&(*topic_id, p)) {
                    owner.insert((*topic_id, p), member.clone());
                    *count += 1;
                }
            }
        }
    }
    // 2. The rest to the least-loaded eligible member.
    for &(topic_id, p) in &wanted {
        if owner.contains_key(&(topic_id, p)) {
            continue;
        }
        let pick = counts.iter().filter(|(m, _)| eligible(m, &topic_id)).min_by_key(|(m, c)| (**c, (**m).clone())).map(|(m, _)| (*m).clone());
        if let Some(member) = pick {
            if let Some(c) = counts.get_mut(&member) {
                *c += 1;
            }
            owner.insert((topic_id, p), member);
        }
    }
    // 3. Even out what stickiness skewed (heterogeneous subscriptions): move one
    //    partition at a time from the most to the least loaded member that can take it.
    for _ in 0..wanted.len() {
        let mut moved = false;
        let loads: Vec<(String, usize)> = counts.iter().map(|(m, c)| ((*m).clone(), *c)).collect();
        'search: for (heavy, heavy_count) in loads.iter().rev() {
            for (light, light_count) in &loads {
                if heavy_count <= &(light_count + 1) {
                    continue;
                }
                if let Some((&key, _)) = owner.iter().find(|(k, m)| *m == heavy && eligible(light, &k.0)) {
                    owner.insert(key, light.clone());
                    if let Some(c) = counts.get_mut(heavy) {
                        *c -= 1;
                    }
                    if let Some(c) = counts.get_mut(light) {
                        *c += 1;
                    }
                    moved = true;
                    break 'search;
                }
            }
        }
        if !moved {
            break;
        }
    }
    for ((topic_id, p), member) in owner {
        out.entry(member).or_default().entry(topic_id).or_default().insert(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_members(members: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        members.iter().map(|(m, t)| (m.to_string(), t.iter().map(|s| s.to_string()).collect())).collect()
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(|p| p.len()).sum()
    }

    #[test]
    fn uniform_balances_covers_and_sticks() {
        let t = Uuid::new_v4();
        let topics: BTreeMap<String, TopicInfo> = [("t".to_string(), TopicInfo { id: t, partitions: 6 })].into();
        let members = spec_members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let first = assign(UNIFORM, &AssignmentSpec { members: &members, topics: &topics, previous: &BTreeMap::new() });
        assert!(first.values().all(|a| count(a) == 2));
        let union: BTreeSet<i32> = first.values().flat_map(|a| a[&t].iter().copied()).collect();
        assert_eq!(union, (0..6).collect());
        // c leaves: a and b keep what they had and split c's partitions.
        let members = spec_members(&[("a", &["t"]), ("b", &["t"])]);
        let second = assign(UNIFORM, &AssignmentSpec { members: &members, topics: &topics, previous: &first });
        assert!(first["a"][&t].is_subset(&second["a"][&t]) && first["b"][&t].is_subset(&second["b"][&t]));
        assert_eq!(count(&second["a"]) + count(&second["b"]), 6);
        assert_eq!(count(&second["a"]), 3);
    }

    #[test]
    fn more_members_than_partitions_leaves_some_idle() {
        let t = Uuid::new_v4();
        let topics: BTreeMap<String, TopicInfo> = [("t".to_string(), TopicInfo { id: t, partitions: 2 })].into();
        let members = spec_members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        for assignor in ASSIGNORS {
            let out = assign(assignor, &AssignmentSpec { members: &members, topics: &topics, previous: &BTreeMap::new() });
            let counts: Vec<usize> = out.values().map(count).collect();
            assert_eq!(counts.iter().sum::<usize>(), 2, "{assignor}");
            assert_eq!(counts.iter().filter(|c| **c == 0).count(), 1, "{assignor}");
        }
    }

    #[test]
    fn range_gives_contiguous_ranges_and_respects_subscriptions() {
        let (t, u) = (Uuid::new_v4(), Uuid::new_v4());
        let topics: BTreeMap<String, TopicInfo> =
            [("t".to_string(), TopicInfo { id: t, partitions: 5 }), ("u".to_string(), TopicInfo { id: u, partitions: 2 })].into();
        let members = spec_members(&[("a", &["t", "u"]), ("b", &["t"])]);
        let out = assign(RANGE, &AssignmentSpec { members: &members, topics: &topics, previous: &BTreeMap::new() });
        assert_eq!(out["a"][&t], [0, 1, 2].into());
        assert_eq!(out["b"][&t], [3, 4].into());
        assert_eq!(out["a"][&u], [0, 1].into());
        assert!(!out["b"].contains_key(&u));
        let uni = assign(UNIFORM, &AssignmentSpec { members: &members, topics: &topics, previous: &BTreeMap::new() });
        assert!(!uni["b"].contains_key(&u), "only subscribers get a topic's partitions");
        assert_eq!(count(&uni["a"]) + count(&uni["b"]), 7);
        assert!(count(&uni["a"]).abs_diff(count(&uni["b"])) <= 1);
    }
}
