//! Connection limits (Kafka's `ConnectionQuotas`): how many client
//! connections the broker holds in all (`max.connections`), per listener
//! (`listener.name.<name>.max.connections`), per address
//! (`max.connections.per.ip` and its overrides), and how fast it accepts new
//! ones (`max.connection.creation.rate`, KIP-612).
//!
//! As in Kafka, a listener at its limit stops accepting (new connections wait
//! in the kernel's accept queue) instead of refusing, while an address over
//! its own limit has the new connection closed at once. The idle limit
//! (`connections.max.idle.ms`) is enforced by each connection (`network.rs`).

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::config::{BrokerConfigError, ConnectionLimitsConfig, UNLIMITED_CONNECTIONS};

/// The broker's connection counts and the limits they are held to.
pub struct ConnectionQuotas {
    max_connections: usize,
    max_per_ip: usize,
    per_ip_overrides: HashMap<IpAddr, usize>,
    listener_max: HashMap<String, usize>,
    /// The inter-broker listener, exempt from `max.connections` when it is not the only one.
    protected_listener: Option<String>,
    counts: Mutex<Counts>,
    slot_freed: Notify,
    broker_rate: Option<Mutex<CreationRate>>,
    listener_rates: HashMap<String, Mutex<CreationRate>>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_listener: HashMap<String, usize>,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ip} already has the configured maximum of {limit} connections")]
pub struct TooManyConnections {
    pub ip: IpAddr,
    pub limit: usize,
}

/// One admitted connection's place in the counts; dropping it frees the place.
pub struct ConnectionPermit {
    quotas: Arc<ConnectionQuotas>,
    listener: String,
    ip: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        {
            let mut counts = self.quotas.counts.lock();
            counts.total = counts.total.saturating_sub(1);
            if let Some(n) = counts.per_listener.get_mut(&self.listener) {
                *n = n.saturating_sub(1);
            }
            if let Some(n) = counts.per_ip.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.per_ip.remove(&self.ip);
                }
            }
        }
        self.quotas.slot_freed.notify_waiters();
    }
}

/// New connections per second, smoothed as a virtual schedule (GCRA): each
/// accepted connection books the next `1/rate` of time; a listener whose
/// bookings run more than a second ahead waits until they don't.
struct CreationRate {
    interval: Duration,
    booked_until: Instant,
}

impl CreationRate {
    fn new(rate: u32) -> Option<CreationRate> {
        (rate > 0 && rate < i32::MAX as u32)
            .then(|| CreationRate { interval: Duration::from_secs(1) / rate, booked_until: Instant::now() })
    }

    /// Books one connection; how long the listener should wait before accepting another.
    fn record(&mut self, now: Instant) -> Duration {
        self.booked_until = self.booked_until.max(now) + self.interval;
        self.booked_until.saturating_duration_since(now + Duration::from_secs(1))
    }
}

impl ConnectionQuotas {
    /// The quotas of these settings; `inter_broker_listener` with `listener_count` > 1
    /// is exempt from `max.connections`. Host names in the per-address overrides are
    /// resolved here, as Kafka does at start.
    pub fn new(
        config: &ConnectionLimitsConfig,
        inter_broker_listener: Option<&str>,
        listener_count: usize,
    ) -> Result<ConnectionQuotas, BrokerConfigError> {
        if config.max_connections_per_ip == 0 && config.max_connections_per_ip_overrides.is_empty() {
            return Err(BrokerConfigError::Invalid {
                name: "max.connections.per.ip".into(),
                value: "0".into(),
                reason: "can be zero only when max.connections.per.ip.overrides is set".into(),
            });
        }
        let mut per_ip_overrides = HashMap::new();
        for (host, &limit) in &config.max_connections_per_ip_overrides {
            let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => (host.as_str(), 0)
                    .to_socket_addrs()
                    .map_err(|e| BrokerConfigError::Invalid {
                        name: "max.connections.per.ip.overrides".into(),
                        value: host.clone(),
                        reason: format!("cannot resolve the host: {e}"),
                    })?
                    .map(|a| a.ip())
                    .collect(),
            };
            for ip in addresses {
                per_ip_overrides.insert(ip, limit);
            }
        }
        let listener_rates = config
            .listener_max_connection_creation_rate
            .iter()
            .filter_map(|(name, &rate)| Some((name.clone(), Mutex::new(CreationRate::new(rate)?))))
            .collect();
        Ok(ConnectionQuotas {
            max_connections: config.max_connections,
            max_per_ip: config.max_connections_per_ip,
            per_ip_overrides,
            listener_max: config.listener_max_connections.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            protected_listener: inter_broker_listener.filter(|_| listener_count > 1).map(str::to_ascii_lowercase),
            counts: Mutex::new(Counts::default()),
            slot_freed: Notify::new(),
            broker_rate: CreationRate::new(config.max_connection_creation_rate).map(Mutex::new),
            listener_rates,
        })
    }

    /// No limits at all (tests and tools that start a broker in-process).
    pub fn unlimited() -> ConnectionQuotas {
        ConnectionQuotas::new(&ConnectionLimitsConfig::default(), None, 1).unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }

    fn listener_limit(&self, listener: &str) -> usize {
        self.listener_max.get(listener).copied().unwrap_or(UNLIMITED_CONNECTIONS)
    }

    fn has_slot(&self, listener: &str) -> bool {
        let counts = self.counts.lock();
        let on_listener = counts.per_listener.get(listener).copied().unwrap_or(0);
        let protected = self.protected_listener.as_deref() == Some(listener);
        on_listener < self.listener_limit(listener) && (protected || counts.total < self.max_connections)
    }

    /// Waits until `listener` (lower-case name) may accept another connection.
    pub async fn wait_for_slot(&self, listener: &str) {
        let mut logged = false;
        loop {
            let freed = self.slot_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.has_slot(listener) {
                return;
            }
            if !logged {
                tracing::info!(listener, "connection limit reached (max.connections); new connections wait until one closes");
                logged = true;
            }
            freed.await;
        }
    }

    /// Counts a new connection from `ip` on `listener`, or refuses it when its
    /// address already has its limit.
    pub fn admit(self: &Arc<Self>, listener: &str, ip: IpAddr) -> Result<ConnectionPermit, TooManyConnections> {
        let limit = self.per_ip_overrides.get(&ip).copied().unwrap_or(self.max_per_ip);
        let mut counts = self.counts.lock();
        let from_ip = counts.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= limit {
            return Err(TooManyConnections { ip, limit });
        }
        counts.per_ip.insert(ip, from_ip + 1);
        *counts.per_listener.entry(listener.to_string()).or_default() += 1;
        counts.total += 1;
        Ok(ConnectionPermit { quotas: self.clone(), listener: listener.to_string(), ip })
    }

    /// Records an accepted connection against the creation rates; how long
    /// `listener` waits before accepting the next one.
    pub fn record_creation(&self, listener: &str) -> Duration {
        let now = Instant::now();
        let broker = self.broker_rate.as_ref().map_or(Duration::ZERO, |rate| rate.lock().record(now));
        let own = self.listener_rates.get(listener).map_or(Duration::ZERO, |rate| rate.lock().record(now));
        broker.max(own)
    }

    /// Is `listener` the inter-broker listener (exempt from `max.connections` and address quotas)?
    pub fn is_protected(&self, listener: &str) -> bool {
        self.protected_listener.as_deref() == Some(listener)
    }

    /// Open connections on `listener` (lower-case name), and in all.
    pub fn open_connections(&self, listener: &str) -> (usize, usize) {
        let counts = self.counts.lock();
        (counts.per_listener.get(listener).copied().unwrap_or(0), counts.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(apply: impl FnOnce(&mut ConnectionLimitsConfig)) -> Arc<ConnectionQuotas> {
        let mut config = ConnectionLimitsConfig::default();
        apply(&mut config);
        Arc::new(ConnectionQuotas::new(&config, Some("plaintext"), 2).expect("valid limits"))
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn an_address_over_its_limit_is_refused_until_one_of_its_connections_closes() {
        let quotas = quotas(|c| {
            c.max_connections_per_ip = 2;
            c.max_connections_per_ip_overrides.insert("10.0.0.2".into(), 3);
        });
        let first = quotas.admit("client", A).expect("first");
        let _second = quotas.admit("client", A).expect("second");
        assert_eq!(quotas.admit("client", A).err(), Some(TooManyConnections { ip: A, limit: 2 }));
        // The override raises B's limit; other addresses are unaffected by A's count.
        let _b: Vec<_> = (0..3).map(|_| quotas.admit("client", B).expect("override")).collect();
        assert!(quotas.admit("client", B).is_err());
        drop(first);
        let _again = quotas.admit("client", A).expect("a place freed by a closed connection");
        assert_eq!(quotas.open_connections("client"), (5, 5));
    }

    #[test]
    fn zero_per_ip_needs_overrides() {
        let mut config = ConnectionLimitsConfig { max_connections_per_ip: 0, ..Default::default() };
        assert!(ConnectionQuotas::new(&config, None, 1).is_err());
        config.max_connections_per_ip_overrides.insert("127.0.0.1".into(), 1);
        let quotas = Arc::new(ConnectionQuotas::new(&config, None, 1).expect("valid"));
        assert!(quotas.admit("client", A).is_err(), "only the named addresses may connect");
        quotas.admit("client", "127.0.0.1".parse().expect("ip")).expect("named");
    }

    #[tokio::test]
    async fn a_listener_at_max_connections_waits_for_a_slot_and_the_inter_broker_listener_does_not() {
        let quotas = quotas(|c| c.max_connections = 1);
        let held = quotas.admit("client", A).expect("first");
        let waiting = tokio::time::timeout(Duration::from_millis(100), quotas.wait_for_slot("client")).await;
        assert!(waiting.is_err(), "no slot while the one connection is open");
        tokio::time::timeout(Duration::from_millis(100), quotas.wait_for_slot("plaintext")).await.expect("protected listener");
        let (quotas2, waiter) = (quotas.clone(), tokio::spawn(async move { quotas.wait_for_slot("client").await }));
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken when a connection closes").expect("task");
        assert_eq!(quotas2.open_connections("client"), (0, 0));
    }

    #[test]
    fn listener_limits_apply_to_their_listener_only() {
        let quotas = quotas(|c| {
            c.listener_max_connections.insert("client".into(), 1);
        });
        let _held = quotas.admit("client", A).expect("first");
        assert!(!quotas.has_slot("client"));
        assert!(quotas.has_slot("other"));
    }

    #[test]
    fn the_creation_rate_delays_accepts_beyond_a_second_of_bookings() {
        let mut rate = CreationRate::new(10).expect("limited");
        let now = Instant::now();
        let delays: Vec<Duration> = (0..12).map(|_| rate.record(now)).collect();
        assert!(delays[..10].iter().all(|d| d.is_zero()), "a second's worth is accepted at once: {delays:?}");
        assert_eq!(delays[10], Duration::from_millis(100));
        assert_eq!(delays[11], Duration::from_millis(200));
        assert!(CreationRate::new(i32::MAX as u32).is_none(), "Kafka's default is no limit");
    }
}
