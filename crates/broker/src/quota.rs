//! Client quota enforcement (KIP-13 / KIP-55 / KIP-219; Kafka's `ClientQuotaManager`):
//! each client's produce and fetch byte rates, measured over `quota.window.num`
//! samples of `quota.window.size.seconds`, against the `producer_byte_rate` /
//! `consumer_byte_rate` the applied cluster image gives it (the quotas are set with
//! AlterClientQuotas, `runnel_controller::quota`, which also holds Kafka's
//! (user, client-id) precedence). A client over its quota is throttled, never
//! refused: its answer carries `throttle_time_ms` = (rate − quota) / quota × the
//! measured window, as Kafka computes it, and the connection reads no further
//! request for that long (KIP-219: Produce v6+ and Fetch v8+; older versions get
//! the answer itself that much later). Every appended record stays appended.
//!
//! A throttled fetch is answered empty (its bytes not counted) and the consumer
//! reads the same records again after the throttle, as with Kafka; a consumer's
//! fetch carries at most its quota over `samples − 1` windows.
//!
//! `request_percentage` (KIP-124) limits the time the broker spends on a
//! client's requests, in percent of one thread: each request's handler time
//! (the time its futures are polled, so not time spent waiting for replicas,
//! fsync or new data) is recorded, and a client over its quota gets
//! `throttle_time_ms` in its answer and its connection muted for that long, on
//! every API version (Kafka delays the answer itself for versions before
//! KIP-219). ApiVersions, SASL, follower fetches and WriteTxnMarkers are
//! exempt, as Kafka exempts them.
//! Differences from Kafka: produce counts the record bytes of the request (Kafka
//! the whole request); an incremental fetch session answered empty while
//! throttled may skip telling the client of a high-watermark change that came
//! with no records.
//!
//! `controller_mutation_rate` (KIP-599) is a token bucket of partitions created
//! or deleted (CreateTopics, CreatePartitions, DeleteTopics), refilled at the
//! quota and holding `quota.window.num × quota.window.size.seconds` of it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runnel_controller::quota::{self, ClientQuotas};

/// The rates a client quota limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    Produce,
    Fetch,
    /// Request handler time, in percent of one thread (KIP-124's `request_percentage`).
    Request,
}

impl QuotaKind {
    pub fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => quota::PRODUCER_BYTE_RATE,
            QuotaKind::Fetch => quota::CONSUMER_BYTE_RATE,
            QuotaKind::Request => quota::REQUEST_PERCENTAGE,
        }
    }
}

/// Kafka's `Rate` over a `SampledStat`: up to `samples` windows, each opened by
/// the first value recorded after the previous one's `window` elapsed.
#[derive(Debug)]
struct SampledRate {
    /// (window start, total recorded in it), oldest first.
    windows: VecDeque<(Instant, f64)>,
    last_recorded: Instant,
}

impl SampledRate {
    fn new(now: Instant) -> Self {
        SampledRate { windows: VecDeque::new(), last_recorded: now }
    }

    fn purge(&mut self, now: Instant, samples: usize, window: Duration) {
        let span = window * samples as u32;
        while self.windows.front().is_some_and(|(start, _)| now.saturating_duration_since(*start) >= span) {
            self.windows.pop_front();
        }
    }

    fn record(&mut self, value: f64, now: Instant, samples: usize, window: Duration) {
        self.purge(now, samples, window);
        self.last_recorded = now;
        match self.windows.back_mut() {
            Some((start, total)) if now.saturating_duration_since(*start) < window => *total += value,
            _ => {
                self.windows.push_back((now, value));
                while self.windows.len() > samples {
                    self.windows.pop_front();
                }
            }
        }
    }

    /// The time the rate is measured over (Kafka's `Rate.windowSize`): since the
    /// oldest window's start, but at least `samples − 1` whole windows, so that a
    /// new client is not judged on its first burst alone.
    fn elapsed(&self, now: Instant, samples: usize, window: Duration) -> Duration {
        let mut elapsed = self.windows.front().map(|(start, _)| now.saturating_duration_since(*start)).unwrap_or_default();
        let full = (elapsed.as_nanos() / window.as_nanos().max(1)) as usize;
        let min_full = samples.saturating_sub(1);
        if full < min_full {
            elapsed += window * (min_full - full) as u32;
        }
        elapsed
    }

    /// Per second.
    fn measure(&mut self, now: Instant, samples: usize, window: Duration) -> f64 {
        self.purge(now, samples, window);
        let total: f64 = self.windows.iter().map(|(_, v)| v).sum();
        let elapsed = self.elapsed(now, samples, window).as_secs_f64();
        if elapsed <= 0.0 {
            0.0
        } else {
            total / elapsed
        }
    }
}

/// How long a client measured at `rate` against `quota` is throttled: Kafka's
/// `QuotaUtils.throttleTime`, (rate − quota) / quota × the measured window.
pub fn throttle_time(rate: f64, quota: f64, window: Duration) -> Duration {
    if quota <= 0.0 || rate <= quota {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(((rate - quota) / quota * window.as_secs_f64()).min(i32::MAX as f64 / 1000.0))
}

/// Handler time as Kafka's request quota counts it (`nanosToPercentage`): a
/// rate of 100 per second is one thread kept busy.
pub fn time_as_percentage(busy: Duration) -> f64 {
    busy.as_nanos() as f64 * 100.0 / 1e9
}

/// Sensors idle this long are dropped (Kafka's quota sensors expire after an hour).
const SENSOR_EXPIRY: Duration = Duration::from_secs(3600);

/// Every client's measured rates (Kafka's `ClientQuotaManager`, one per quota type).
pub struct ClientQuotaManager {
    samples: usize,
    window: Duration,
    /// (kind, user tag, client-id tag) → rate. A tag is empty when the quota that
    /// applies does not name that entity type: a `user=alice` quota is shared by
    /// all of alice's clients, a `client-id=<default>` one is each client id's own.
    sensors: Mutex<HashMap<(QuotaKind, String, String), SampledRate>>,
    records: std::sync::atomic::AtomicU64,
    /// Connection creation rates by client address (`connection_creation_rate` on `ip` entities, KIP-612).
    ip_connections: Mutex<HashMap<std::net::IpAddr, SampledRate>>,
    /// Controller mutation token buckets (KIP-599) by (user tag, client-id tag): (tokens, when last refilled).
    mutation_buckets: Mutex<HashMap<(String, String), (f64, Instant)>>,
}

impl std::fmt::Debug for ClientQuotaManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientQuotaManager").field("samples", &self.samples).field("window", &self.window).finish_non_exhaustive()
    }
}

/// The quota user of a principal: `User:alice` → `alice` (`ANONYMOUS` unauthenticated, as Kafka).
pub fn quota_user(principal: &str) -> &str {
    principal.strip_prefix("User:").unwrap_or(principal)
}

/// (kind, user tag, client-id tag): the tags of the entity types the quota that applies names.
fn sensor_key(kind: QuotaKind, entity: &quota::QuotaEntity, user: &str, client_id: &str) -> (QuotaKind, String, String) {
    let names = |entity_type: &str| entity.iter().any(|(t, _)| t == entity_type);
    (
        kind,
        if names(quota::USER) { user.to_string() } else { String::new() },
        if names(quota::CLIENT_ID) { client_id.to_string() } else { String::new() },
    )
}

impl ClientQuotaManager {
    pub fn new(samples: usize, window: Duration) -> Self {
        ClientQuotaManager {
            samples: samples.max(1),
            window: window.max(Duration::from_millis(1)),
            sensors: Mutex::new(HashMap::new()),
            records: Default::default(),
            ip_connections: Mutex::new(HashMap::new()),
            mutation_buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Records `bytes` for the client and returns how long it is to be throttled
    /// (zero without a quota or within it).
    pub fn record(&self, kind: QuotaKind, quotas: &ClientQuotas, principal: &str, client_id: &str, bytes: usize, now: Instant) -> Duration {
        self.record_value(kind, quotas, principal, client_id, bytes as f64, now)
    }

    /// Records `value` (bytes, or for [`QuotaKind::Request`] percent-seconds of
    /// handler time, see [`time_as_percentage`]) and returns the throttle.
    pub fn record_value(&self, kind: QuotaKind, quotas: &ClientQuotas, principal: &str, client_id: &str, value: f64, now: Instant) -> Duration {
        let user = quota_user(principal);
        let Some((entity, limit)) = quota::resolve(quotas, Some(user), client_id, kind.key()) else {
            return Duration::ZERO;
        };
        let key = sensor_key(kind, &entity, user, client_id);
        let mut sensors = self.sensors.lock().unwrap_or_else(|e| e.into_inner());
        if self.records.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 4096 == 0 {
            sensors.retain(|_, rate| now.saturating_duration_since(rate.last_recorded) < SENSOR_EXPIRY);
        }
        let rate = sensors.entry(key).or_insert_with(|| SampledRate::new(now));
        rate.record(value, now, self.samples, self.window);
        let measured = rate.measure(now, self.samples, self.window);
        throttle_time(measured, limit, rate.elapsed(now, self.samples, self.window))
    }

    /// Records a new connection from `ip` against its `connection_creation_rate`
    /// (the address's own quota, else the `ip=<default>` one; KIP-612). Over the
    /// quota the connection is not counted and the answer is how long to hold it
    /// before closing it (Kafka's delayed close, at most one quota window); zero
    /// admits it.
    pub fn record_ip_connection(&self, quotas: &ClientQuotas, ip: std::net::IpAddr, now: Instant) -> Duration {
        let Some(limit) = ip_connection_rate(quotas, ip) else {
            return Duration::ZERO;
        };
        let mut rates = self.ip_connections.lock().unwrap_or_else(|e| e.into_inner());
        if rates.len() > 4096 {
            rates.retain(|_, rate| now.saturating_duration_since(rate.last_recorded) < SENSOR_EXPIRY);
        }
        let rate = rates.entry(ip).or_insert_with(|| SampledRate::new(now));
        rate.record(1.0, now, self.samples, self.window);
        let measured = rate.measure(now, self.samples, self.window);
        let throttle = throttle_time(measured, limit, rate.elapsed(now, self.samples, self.window)).min(self.window);
        if !throttle.is_zero() {
            rate.record(-1.0, now, self.samples, self.window);
        }
        throttle
    }

    /// The client's `controller_mutation_rate` for one CreateTopics,
    /// CreatePartitions or DeleteTopics request, if a quota applies (KIP-599).
    /// `strict` (CreateTopics v6+, CreatePartitions v3+, DeleteTopics v5+): a
    /// topic asked for once the budget is spent is refused with
    /// THROTTLING_QUOTA_EXCEEDED; older versions are always served and throttled.
    pub fn mutation_quota(&self, quotas: &ClientQuotas, principal: &str, client_id: &str, strict: bool) -> Option<MutationQuota> {
        let user = quota_user(principal);
        let (entity, limit) = quota::resolve(quotas, Some(user), client_id, quota::CONTROLLER_MUTATION_RATE)?;
        let (_, user_tag, client_tag) = sensor_key(QuotaKind::Request, &entity, user, client_id);
        Some(MutationQuota { key: (user_tag, client_tag), limit, strict })
    }

    /// Kafka's `TokenBucket`: up to `limit × samples × window` tokens, refilled at `limit` a second.
    fn mutation_tokens<R>(&self, quota: &MutationQuota, now: Instant, change: impl FnOnce(&mut f64) -> R) -> R {
        let burst = quota.limit * self.samples as f64 * self.window.as_secs_f64();
        let mut buckets = self.mutation_buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, refilled) = buckets.entry(quota.key.clone()).or_insert((burst, now));
        *tokens = (*tokens + quota.limit * now.saturating_duration_since(*refilled).as_secs_f64()).min(burst);
        *refilled = now;
        change(tokens)
    }

    /// Records `mutations` (partitions created or deleted). Strict: refused,
    /// without recording, when the budget was already spent before them.
    pub fn record_mutations(&self, quota: &MutationQuota, mutations: usize, now: Instant) -> Result<(), Duration> {
        let limit = quota.limit;
        self.mutation_tokens(quota, now, |tokens| {
            if quota.strict && *tokens < 0.0 {
                return Err(Duration::from_secs_f64((-*tokens / limit).min(i32::MAX as f64 / 1000.0)));
            }
            *tokens -= mutations as f64;
            Ok(())
        })
    }

    /// How long the client is throttled after its request: until its tokens are back to zero.
    pub fn mutation_throttle(&self, quota: &MutationQuota, now: Instant) -> Duration {
        let limit = quota.limit;
        self.mutation_tokens(quota, now, |tokens| {
            if *tokens < 0.0 && limit > 0.0 {
                Duration::from_secs_f64((-*tokens / limit).min(i32::MAX as f64 / 1000.0))
            } else {
                Duration::ZERO
            }
        })
    }

    /// Takes back bytes recorded for an answer that was not sent (Kafka's `unrecordQuotaSensor`).
    pub fn unrecord(&self, kind: QuotaKind, quotas: &ClientQuotas, principal: &str, client_id: &str, bytes: usize, now: Instant) {
        let user = quota_user(principal);
        let Some((entity, _)) = quota::resolve(quotas, Some(user), client_id, kind.key()) else { return };
        let key = sensor_key(kind, &entity, user, client_id);
        if let Some(rate) = self.sensors.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&key) {
            rate.record(-(bytes as f64), now, self.samples, self.window);
        }
    }

    /// The most bytes one answer may carry for the client (Kafka's
    /// `getMaxValueInQuotaWindow`: the quota over `samples − 1` windows); `None` without a quota.
    pub fn max_value_in_window(&self, kind: QuotaKind, quotas: &ClientQuotas, principal: &str, client_id: &str) -> Option<usize> {
        let (_, limit) = quota::resolve(quotas, Some(quota_user(principal)), client_id, kind.key())?;
        let windows = self.samples.saturating_sub(1).max(1) as f64;
        Some((limit * windows * self.window.as_secs_f64()).clamp(1.0, i32::MAX as f64) as usize)
    }
}

/// A client's controller mutation quota for one request (see [`ClientQuotaManager::mutation_quota`]).
#[derive(Debug, Clone)]
pub struct MutationQuota {
    key: (String, String),
    limit: f64,
    pub strict: bool,
}

/// The `connection_creation_rate` that applies to `ip`: the quota of an `ip`
/// entity naming that address, else of the default `ip` entity.
fn ip_connection_rate(quotas: &ClientQuotas, ip: std::net::IpAddr) -> Option<f64> {
    if quotas.is_empty() {
        return None;
    }
    let mut default = None;
    for (entity, keys) in quotas {
        let [(entity_type, name)] = entity.as_slice() else { continue };
        if entity_type != quota::IP {
            continue;
        }
        let Some(value) = keys.get(quota::CONNECTION_CREATION_RATE) else { continue };
        match name {
            Some(name) if name.parse::<std::net::IpAddr>().ok() == Some(ip) => return Some(value.0),
            None => default = Some(value.0),
            Some(_) => {}
        }
    }
    default
}

/// A connection's mute (Kafka's channel muting on throttle): no request is read
/// from it before `until`.
#[derive(Debug, Default)]
pub struct ThrottleGate {
    until: Mutex<Option<Instant>>,
}

impl ThrottleGate {
    pub fn mute_for(&self, duration: Duration) {
        let until = Instant::now() + duration;
        let mut current = self.until.lock().unwrap_or_else(|e| e.into_inner());
        if current.is_none_or(|c| c < until) {
            *current = Some(until);
        }
    }

    /// When the connection may be read again, if it is muted now.
    pub fn muted_until(&self) -> Option<Instant> {
        let mut current = self.until.lock().unwrap_or_else(|e| e.into_inner());
        match *current {
            Some(until) if until > Instant::now() => Some(until),
            _ => {
                *current = None;
                None
            }
        }
    }
}

/// Shared by the reader and the request handlers of one connection.
pub type SharedGate = Arc<ThrottleGate>;

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_controller::quota::QuotaValue;

    fn quotas(entity: &[(&str, Option<&str>)], key: &str, value: f64) -> ClientQuotas {
        let mut q = ClientQuotas::new();
        let entity = entity.iter().map(|(t, n)| (t.to_string(), n.map(str::to_string))).collect();
        q.entry(entity).or_default().insert(key.to_string(), QuotaValue(value));
        q
    }

    #[test]
    fn rate_counts_at_least_the_full_window() {
        let start = Instant::now();
        let w = Duration::from_secs(1);
        let mut rate = SampledRate::new(start);
        rate.record(1000.0, start, 11, w);
        // A first burst is spread over the 10 whole windows a new client is judged on.
        assert!((rate.measure(start, 11, w) - 100.0).abs() < 1e-6);
        // 20 s on, steady 100/s for 11 windows: measured over the 11 windows, not the 10 minimum.
        let mut rate = SampledRate::new(start);
        for s in 0..20u64 {
            rate.record(100.0, start + Duration::from_secs(s), 11, w);
        }
        let now = start + Duration::from_millis(19_500);
        let measured = rate.measure(now, 11, w);
        assert!((measured - 1100.0 / 10.5).abs() < 1e-6, "{measured}");
        // Old windows are forgotten.
        assert_eq!(rate.measure(start + Duration::from_secs(60), 11, w), 0.0);
    }

    #[test]
    fn throttle_is_kafkas_formula() {
        assert_eq!(throttle_time(100.0, 100.0, Duration::from_secs(10)), Duration::ZERO);
        assert_eq!(throttle_time(150.0, 100.0, Duration::from_secs(10)), Duration::from_secs(5));
        assert_eq!(throttle_time(300.0, 100.0, Duration::from_secs(11)), Duration::from_secs(22));
    }

    #[test]
    fn a_client_over_its_quota_is_throttled_and_others_are_not() {
        let manager = ClientQuotaManager::new(11, Duration::from_secs(1));
        let q = quotas(&[("client-id", Some("slow"))], quota::PRODUCER_BYTE_RATE, 1000.0);
        let now = Instant::now();
        // 10 windows' worth at once is within the quota; more is throttled.
        assert_eq!(manager.record(QuotaKind::Produce, &q, "User:ANONYMOUS", "slow", 10_000, now), Duration::ZERO);
        let throttle = manager.record(QuotaKind::Produce, &q, "User:ANONYMOUS", "slow", 5_000, now);
        assert_eq!(throttle, Duration::from_secs(5), "(1500 − 1000) / 1000 × 10 s");
        assert_eq!(manager.record(QuotaKind::Produce, &q, "User:ANONYMOUS", "fast", 1 << 30, now), Duration::ZERO);
        assert_eq!(manager.record(QuotaKind::Fetch, &q, "User:ANONYMOUS", "slow", 1 << 30, now), Duration::ZERO);
        assert_eq!(manager.max_value_in_window(QuotaKind::Produce, &q, "User:ANONYMOUS", "slow"), Some(10_000));
        assert_eq!(manager.max_value_in_window(QuotaKind::Fetch, &q, "User:ANONYMOUS", "slow"), None);
    }

    #[test]
    fn a_default_client_quota_is_each_clients_own_and_a_user_quota_is_shared() {
        let manager = ClientQuotaManager::new(11, Duration::from_secs(1));
        let now = Instant::now();
        let q = quotas(&[("client-id", None)], quota::CONSUMER_BYTE_RATE, 1000.0);
        assert_eq!(manager.record(QuotaKind::Fetch, &q, "User:ANONYMOUS", "a", 10_000, now), Duration::ZERO);
        assert_eq!(manager.record(QuotaKind::Fetch, &q, "User:ANONYMOUS", "b", 10_000, now), Duration::ZERO);
        let q = quotas(&[("user", Some("alice"))], quota::CONSUMER_BYTE_RATE, 1000.0);
        assert_eq!(manager.record(QuotaKind::Fetch, &q, "User:alice", "a", 10_000, now), Duration::ZERO);
        assert!(manager.record(QuotaKind::Fetch, &q, "User:alice", "b", 10_000, now) > Duration::ZERO);
    }

    #[test]
    fn connections_over_an_ip_creation_rate_are_held_then_closed() {
        let manager = ClientQuotaManager::new(2, Duration::from_secs(1));
        let a: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let b: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        let mut q = quotas(&[("ip", Some("10.0.0.1"))], quota::CONNECTION_CREATION_RATE, 3.0);
        q.extend(quotas(&[("ip", None)], quota::CONNECTION_CREATION_RATE, 100.0));
        let now = Instant::now();
        let throttles: Vec<Duration> = (0..5).map(|_| manager.record_ip_connection(&q, a, now)).collect();
        assert!(throttles[..3].iter().all(|t| t.is_zero()), "a window's worth is admitted: {throttles:?}");
        assert!(throttles[3] > Duration::ZERO && throttles[3] <= Duration::from_secs(1), "{throttles:?}");
        assert!(throttles[4] > Duration::ZERO, "a refused connection is not counted, the next is refused too");
        assert!((0..50).all(|_| manager.record_ip_connection(&q, b, now).is_zero()), "the default quota is each address's own");
        let later = now + Duration::from_secs(3);
        assert!(manager.record_ip_connection(&q, a, later).is_zero(), "the rate falls as windows pass");
        assert_eq!(manager.record_ip_connection(&ClientQuotas::new(), a, now), Duration::ZERO);
    }

    #[test]
    fn controller_mutations_spend_a_token_bucket() {
        let manager = ClientQuotaManager::new(2, Duration::from_secs(1));
        let q = quotas(&[("client-id", Some("admin"))], quota::CONTROLLER_MUTATION_RATE, 10.0);
        let strict = manager.mutation_quota(&q, "User:ANONYMOUS", "admin", true).expect("quota");
        assert!(manager.mutation_quota(&q, "User:ANONYMOUS", "other", true).is_none());
        let now = Instant::now();
        // A burst of 2 windows × 10: 20 mutations, then one request more may overdraw it.
        assert_eq!(manager.record_mutations(&strict, 15, now), Ok(()));
        assert_eq!(manager.mutation_throttle(&strict, now), Duration::ZERO);
        assert_eq!(manager.record_mutations(&strict, 15, now), Ok(()), "the budget was not spent before this one");
        assert_eq!(manager.mutation_throttle(&strict, now), Duration::from_millis(1000), "10 tokens short at 10/s");
        assert_eq!(manager.record_mutations(&strict, 1, now), Err(Duration::from_millis(1000)));
        let later = now + Duration::from_millis(1500);
        assert_eq!(manager.record_mutations(&strict, 1, later), Ok(()), "refilled at 10 a second");
        let permissive = manager.mutation_quota(&q, "User:ANONYMOUS", "admin", false).expect("quota");
        assert_eq!(manager.record_mutations(&permissive, 50, later), Ok(()), "older versions are served and throttled");
        assert!(manager.mutation_throttle(&permissive, later) > Duration::from_secs(4));
    }

    #[test]
    fn a_gate_mutes_until_its_latest_deadline() {
        let gate = ThrottleGate::default();
        assert!(gate.muted_until().is_none());
        gate.mute_for(Duration::from_secs(5));
        let until = gate.muted_until().expect("muted");
        gate.mute_for(Duration::from_millis(1));
        assert_eq!(gate.muted_until(), Some(until), "a shorter throttle does not shorten the mute");
    }
}
