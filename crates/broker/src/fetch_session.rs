//! Incremental fetch sessions (KIP-227): Kafka's `FetchSessionCache`.
//!
//! A consumer that opens a session (Fetch v7+, epoch 0) is answered with a
//! session id; its later fetches (epoch 1, 2, …) name only the partitions
//! whose fetch position changed, and the answer lists only the partitions
//! with something new: records, a moved high watermark, log start offset or
//! last stable offset, or an error. The broker still reads every partition of
//! the session on each fetch. This module holds the sessions and decides what
//! goes into an answer; it knows nothing of the network or of logs.
//!
//! The cache has `max.incremental.fetch.session.cache.slots` sessions. A new
//! session takes the place of one unused for two minutes, or of the smallest
//! session if it is larger; otherwise it is refused (session id 0), and the
//! client goes on with full fetches, as with Kafka.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use uuid::Uuid;

/// "No session" in requests and responses.
pub const INVALID_SESSION_ID: i32 = 0;
/// A full fetch that opens a new session.
pub const INITIAL_EPOCH: i32 = 0;
/// A full fetch without a session (closes the named one, if any).
pub const FINAL_EPOCH: i32 = -1;
/// Kafka's `MIN_INCREMENTAL_FETCH_SESSION_EVICTION_MS`: a session unused for
/// this long can be evicted by any new one.
const EVICTION_AGE: Duration = Duration::from_millis(120_000);

/// How a fetch names a topic: by id from Fetch v13, by name before.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TopicKey {
    Id(Uuid),
    Name(String),
}

/// One partition of a session.
pub type SessionPartition = (TopicKey, i32);

/// What the client asked of a partition: where to read and how much.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchPosition {
    pub fetch_offset: i64,
    pub max_bytes: usize,
}

/// What an answer said of a partition, to decide whether the next
/// incremental answer must mention it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionView {
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub has_records: bool,
}

/// Last values sent to the client: (high watermark, last stable offset, log start offset).
type SentState = (i64, i64, i64);

#[derive(Debug)]
struct CachedPartition {
    position: FetchPosition,
    last_sent: Option<SentState>,
}

impl CachedPartition {
    /// Whether an incremental answer must carry this partition; records what it carried.
    fn must_respond(&mut self, view: &PartitionView) -> bool {
        let state = (view.high_watermark, view.last_stable_offset, view.log_start_offset);
        if view.error_code != 0 {
            // Forget what was sent, so the partition is sent again once the error is gone.
            self.last_sent = None;
            return true;
        }
        let changed = self.last_sent != Some(state);
        self.last_sent = Some(state);
        changed || view.has_records
    }
}

#[derive(Debug)]
struct Session {
    /// The epoch the next incremental fetch must carry.
    next_epoch: i32,
    partitions: IndexMap<SessionPartition, CachedPartition>,
    last_used: Instant,
}

/// Kafka's `nextEpoch`: epochs wrap from i32::MAX back to 1, never to 0 or -1.
fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        return epoch;
    }
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

pub struct FetchSessionCache {
    max_slots: usize,
    sessions: Mutex<HashMap<i32, Session>>,
}

impl FetchSessionCache {
    pub fn new(max_slots: usize) -> Self {
        FetchSessionCache { max_slots, sessions: Mutex::new(HashMap::new()) }
    }

    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes a session (a full fetch naming it).
    pub fn remove(&self, session_id: i32) {
        if let Some(session) = self.sessions.lock().remove(&session_id) {
            let incremental_fetches = session.next_epoch - 1;
            tracing::debug!(session_id, incremental_fetches, "fetch session closed");
        }
    }

    /// Opens a session with the partitions of a full answer and what it said
    /// of them. Returns the new session id, or [`INVALID_SESSION_ID`] when
    /// the cache has no room for it.
    pub fn create(&self, partitions: Vec<(SessionPartition, FetchPosition, PartitionView)>, now: Instant) -> i32 {
        if self.max_slots == 0 {
            return INVALID_SESSION_ID;
        }
        let mut sessions = self.sessions.lock();
        if sessions.len() >= self.max_slots && !evict_one(&mut sessions, partitions.len(), now) {
            tracing::debug!(partitions = partitions.len(), "fetch session cache full; answering without a session");
            return INVALID_SESSION_ID;
        }
        let id = loop {
            let candidate = (Uuid::new_v4().as_u128() as i32) & i32::MAX;
            if candidate != INVALID_SESSION_ID && !sessions.contains_key(&candidate) {
                break candidate;
            }
        };
        let partitions: IndexMap<_, _> = partitions
            .into_iter()
            .map(|(key, position, view)| {
                let last_sent = (view.error_code == 0).then_some((view.high_watermark, view.last_stable_offset, view.log_start_offset));
                (key, CachedPartition { position, last_sent })
            })
            .collect();
        tracing::debug!(session_id = id, partitions = partitions.len(), "fetch session created");
        sessions.insert(id, Session { next_epoch: 1, partitions, last_used: now });
        id
    }

    /// Applies an incremental fetch to its session: checks the epoch, adds or
    /// updates the named partitions, drops the forgotten ones. Returns every
    /// partition of the session with its fetch position, in session order —
    /// all of them are read for the answer.
    pub fn update(
        &self,
        session_id: i32,
        epoch: i32,
        changed: Vec<(SessionPartition, FetchPosition)>,
        forgotten: Vec<SessionPartition>,
        now: Instant,
    ) -> Result<Vec<(SessionPartition, FetchPosition)>, ResponseError> {
        let mut sessions = self.sessions.lock();
        let session = sessions.get_mut(&session_id).ok_or(ResponseError::FetchSessionIdNotFound)?;
        if session.next_epoch != epoch {
            tracing::debug!(session_id, expected = session.next_epoch, got = epoch, "fetch session epoch mismatch");
            return Err(ResponseError::InvalidFetchSessionEpoch);
        }
        for key in forgotten {
            session.partitions.shift_remove(&key);
        }
        for (key, position) in changed {
            match session.partitions.get_mut(&key) {
                Some(cached) => cached.position = position,
                None => {
                    session.partitions.insert(key, CachedPartition { position, last_sent: None });
                }
            }
        }
        session.next_epoch = next_epoch(session.next_epoch);
        session.last_used = now;
        Ok(session.partitions.iter().map(|(k, c)| (k.clone(), c.position)).collect())
    }

    /// Decides which partitions an incremental answer carries (`views` in the
    /// order [`update`](Self::update) returned). Partitions that returned
    /// records move to the end of the session, so that under `max_bytes`
    /// every partition gets its turn. None when the session is gone
    /// (evicted while the fetch waited).
    pub fn select(&self, session_id: i32, views: &[(SessionPartition, PartitionView)]) -> Option<Vec<bool>> {
        let mut sessions = self.sessions.lock();
        let session = sessions.get_mut(&session_id)?;
        let mut selected = Vec::with_capacity(views.len());
        let mut served = Vec::new();
        for (key, view) in views {
            let include = match session.partitions.get_mut(key) {
                Some(cached) => cached.must_respond(view),
                // Forgotten by a later request: nothing to say.
                None => false,
            };
            if include && view.has_records {
                served.push(key.clone());
            }
            selected.push(include);
        }
        for key in served {
            if let Some(cached) = session.partitions.shift_remove(&key) {
                session.partitions.insert(key, cached);
            }
        }
        Some(selected)
    }
}

/// Makes room for a new session of `new_size` partitions, as Kafka does: the
/// least recently used session if it is stale, else the smallest session
/// (oldest first among equals) if the new one is larger. False if neither.
fn evict_one(sessions: &mut HashMap<i32, Session>, new_size: usize, now: Instant) -> bool {
    let stale = sessions
        .iter()
        .filter(|(_, s)| now.saturating_duration_since(s.last_used) >= EVICTION_AGE)
        .min_by_key(|(_, s)| s.last_used)
        .map(|(id, _)| *id);
    let victim = stale.or_else(|| {
        sessions
            .iter()
            .min_by_key(|(_, s)| (s.partitions.len(), s.last_used))
            .filter(|(_, s)| s.partitions.len() < new_size)
            .map(|(id, _)| *id)
    });
    match victim {
        Some(id) => {
            sessions.remove(&id);
            tracing::debug!(session_id = id, "fetch session evicted");
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> SessionPartition {
        (TopicKey::Name("t".into()), p)
    }

    fn pos(offset: i64) -> FetchPosition {
        FetchPosition { fetch_offset: offset, max_bytes: 1024 }
    }

    fn view(hw: i64, has_records: bool) -> PartitionView {
        PartitionView { error_code: 0, high_watermark: hw, last_stable_offset: hw, log_start_offset: 0, has_records }
    }

    #[test]
    fn incremental_answers_carry_only_changes() {
        let cache = FetchSessionCache::new(10);
        let now = Instant::now();
        let id = cache.create(vec![(key(0), pos(0), view(5, true)), (key(1), pos(0), view(0, false))], now);
        assert_ne!(id, INVALID_SESSION_ID);

        // Epoch 1: partition 0 moved on; nothing new anywhere.
        let all = cache.update(id, 1, vec![(key(0), pos(5))], vec![], now).unwrap();
        assert_eq!(all, vec![(key(0), pos(5)), (key(1), pos(0))]);
        let views = vec![(key(0), view(5, false)), (key(1), view(0, false))];
        assert_eq!(cache.select(id, &views), Some(vec![false, false]));

        // Epoch 2: partition 1 got records; it is carried, and moves to the end.
        cache.update(id, 2, vec![], vec![], now).unwrap();
        let views = vec![(key(0), view(5, false)), (key(1), view(3, true))];
        assert_eq!(cache.select(id, &views), Some(vec![false, true]));
        let all = cache.update(id, 3, vec![], vec![], now).unwrap();
        assert_eq!(all.iter().map(|(k, _)| k.1).collect::<Vec<_>>(), vec![0, 1]);

        // A wrong epoch, an unknown session.
        assert_eq!(cache.update(id, 3, vec![], vec![], now), Err(ResponseError::InvalidFetchSessionEpoch));
        assert_eq!(cache.update(id + 1, 1, vec![], vec![], now), Err(ResponseError::FetchSessionIdNotFound));
    }

    #[test]
    fn errors_are_always_carried_and_resent_when_cleared() {
        let cache = FetchSessionCache::new(10);
        let now = Instant::now();
        let id = cache.create(vec![(key(0), pos(0), view(5, false))], now);
        cache.update(id, 1, vec![], vec![], now).unwrap();
        let error = PartitionView { error_code: 3, ..view(5, false) };
        assert_eq!(cache.select(id, &[(key(0), error)]), Some(vec![true]));
        cache.update(id, 2, vec![], vec![], now).unwrap();
        assert_eq!(cache.select(id, &[(key(0), error)]), Some(vec![true]));
        cache.update(id, 3, vec![], vec![], now).unwrap();
        // The error is gone: sent once more, though the high watermark is what it was.
        assert_eq!(cache.select(id, &[(key(0), view(5, false))]), Some(vec![true]));
    }

    #[test]
    fn forgotten_partitions_leave_the_session() {
        let cache = FetchSessionCache::new(10);
        let now = Instant::now();
        let id = cache.create(vec![(key(0), pos(0), view(0, false)), (key(1), pos(0), view(0, false))], now);
        let all = cache.update(id, 1, vec![(key(2), pos(7))], vec![key(0)], now).unwrap();
        assert_eq!(all, vec![(key(1), pos(0)), (key(2), pos(7))]);
    }

    #[test]
    fn a_full_cache_evicts_stale_then_smaller_sessions() {
        let cache = FetchSessionCache::new(1);
        let start = Instant::now();
        let small = cache.create(vec![(key(0), pos(0), view(0, false))], start);
        assert_ne!(small, INVALID_SESSION_ID);
        // Same size, not stale: refused.
        assert_eq!(cache.create(vec![(key(0), pos(0), view(0, false))], start), INVALID_SESSION_ID);
        // Larger: takes the small one's place.
        let large = cache.create(vec![(key(0), pos(0), view(0, false)), (key(1), pos(0), view(0, false))], start);
        assert_ne!(large, INVALID_SESSION_ID);
        assert_eq!(cache.update(small, 1, vec![], vec![], start), Err(ResponseError::FetchSessionIdNotFound));
        // Stale: any new session may take its place.
        let later = start + EVICTION_AGE + Duration::from_secs(1);
        let newer = cache.create(vec![(key(0), pos(0), view(0, false))], later);
        assert_ne!(newer, INVALID_SESSION_ID);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn epochs_wrap_past_max() {
        assert_eq!(next_epoch(1), 2);
        assert_eq!(next_epoch(i32::MAX), 1);
        assert_eq!(next_epoch(-1), -1);
    }
}
