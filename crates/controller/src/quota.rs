//! Client quotas (KIP-546; Kafka's `ClientQuotaControlManager` and
//! `ClientQuotasImage`): entities, keys, the checks of an alteration and the
//! DescribeClientQuotas filter. Pure: the controller turns alterations into
//! `ClientQuota` records, the image keeps entity → key → value, and the broker
//! describes and enforces from the image.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};

pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";
pub const CONNECTION_CREATION_RATE: &str = "connection_creation_rate";

/// A quota entity: (entity type, entity name) pairs sorted by type; a `None`
/// name is the type's default entity (`<default>`).
pub type QuotaEntity = Vec<(String, Option<String>)>;

/// The image's quotas: entity → key → value.
pub type ClientQuotas = BTreeMap<QuotaEntity, BTreeMap<String, QuotaValue>>;

/// A quota value. Never NaN (the controller refuses one), so equality is total.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, PartialOrd)]
#[serde(transparent)]
pub struct QuotaValue(pub f64);

impl Eq for QuotaValue {}

/// The image's map as JSON (a list of pairs: JSON object keys are strings only).
pub mod serde_quotas {
    use super::{ClientQuotas, QuotaEntity, QuotaValue};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(quotas: &ClientQuotas, serializer: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(&QuotaEntity, &BTreeMap<String, QuotaValue>)> = quotas.iter().collect();
        pairs.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ClientQuotas, D::Error> {
        let pairs: Vec<(QuotaEntity, BTreeMap<String, QuotaValue>)> = Vec::deserialize(deserializer)?;
        Ok(pairs.into_iter().collect())
    }
}

/// One entity's changes in an AlterClientQuotas: key → new value (`None` removes it).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct QuotaAlteration {
    /// As the request gave it (unsorted, possibly with a duplicate type).
    pub entity: Vec<(String, Option<String>)>,
    pub ops: Vec<(String, Option<f64>)>,
}

/// How a key's value is checked (Kafka's `QuotaConfig` types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyType {
    Long,
    Double,
    Int,
}

fn key_type(entity: &QuotaEntity, key: &str) -> Option<KeyType> {
    let is_ip = entity.iter().any(|(t, _)| t == IP);
    match (is_ip, key) {
        (false, PRODUCER_BYTE_RATE | CONSUMER_BYTE_RATE) => Some(KeyType::Long),
        (false, REQUEST_PERCENTAGE | CONTROLLER_MUTATION_RATE) => Some(KeyType::Double),
        (true, CONNECTION_CREATION_RATE) => Some(KeyType::Int),
        _ => None,
    }
}

fn invalid(message: impl Into<String>) -> (i16, String) {
    (ResponseError::InvalidRequest.code(), message.into())
}

/// Kafka's entity checks: known types, no empty name, and a combination that
/// has keys (user, client-id, user + client-id, or ip alone). A type given twice
/// keeps its last name, as Kafka's request parsing does. Returns the entity
/// sorted by type. Deterministic (the image applies records with it); the ip
/// name is checked by [`alter`].
pub fn validate_entity(entity: &[(String, Option<String>)]) -> Result<QuotaEntity, (i16, String)> {
    if entity.is_empty() {
        return Err(invalid("Invalid empty client quota entity"));
    }
    let mut sorted: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (entity_type, name) in entity {
        if !matches!(entity_type.as_str(), USER | CLIENT_ID | IP) {
            return Err(invalid(format!("Unhandled client quota entity type: {entity_type}")));
        }
        if name.as_deref() == Some("") {
            return Err(invalid(format!("Empty {entity_type} not supported")));
        }
        sorted.insert(entity_type.clone(), name.clone());
    }
    if sorted.contains_key(IP) && sorted.len() > 1 {
        return Err(invalid("Invalid quota entity combination, IP entity shouldnot be combined with User or ClientId"));
    }
    Ok(sorted.into_iter().collect())
}

/// An ip entity's name: an address, or a host name that resolves (as Kafka's `InetAddress.getByName`).
fn valid_ip_entity(name: &str) -> bool {
    use std::net::ToSocketAddrs;
    name.parse::<std::net::IpAddr>().is_ok() || (name, 0).to_socket_addrs().is_ok_and(|mut addrs| addrs.next().is_some())
}

fn validate_value(entity: &QuotaEntity, key: &str, value: f64) -> Result<(), (i16, String)> {
    let Some(kind) = key_type(entity, key) else {
        return Err(invalid(format!("Invalid configuration key {key}")));
    };
    if value.is_nan() || value <= 0.0 {
        return Err(invalid(format!("Quota {key} must be greater than 0")));
    }
    let (max, type_name) = match kind {
        KeyType::Double => return Ok(()),
        KeyType::Long => (i64::MAX as f64, "a LONG"),
        KeyType::Int => (i32::MAX as f64, "an INT"),
    };
    if value.fract() != 0.0 {
        return Err(invalid(format!("{key} cannot be a fractional value.")));
    }
    if value > max {
        return Err(invalid(format!("Proposed value for {key} is too large for {type_name}.")));
    }
    Ok(())
}

/// What an AlterClientQuotas does: per request entry, in order, its error code
/// (0 = done) and message, and the records of the entries without an error
/// (a key whose value does not change gets none; removing an absent key neither).
pub fn alter(quotas: &ClientQuotas, alterations: &[QuotaAlteration]) -> (Vec<(i16, Option<String>)>, Vec<(QuotaEntity, String, Option<f64>)>) {
    let mut results = Vec::with_capacity(alterations.len());
    let mut changes = Vec::new();
    let mut seen: BTreeSet<QuotaEntity> = BTreeSet::new();
    for alteration in alterations {
        let outcome = (|| {
            let entity = validate_entity(&alteration.entity)?;
            // Kafka answers a repeated key with its duplicate-entity message, too.
            let mut keys = BTreeSet::new();
            let repeated_key = alteration.ops.iter().any(|(key, _)| !keys.insert(key.as_str()));
            if !seen.insert(entity.clone()) || repeated_key {
                let entries: Vec<String> =
                    entity.iter().map(|(t, n)| format!("{t}={}", n.as_deref().unwrap_or("null"))).collect();
                return Err(invalid(format!("Ignoring duplicate entity ClientQuotaEntity(entries={{{}}})", entries.join(", "))));
            }
            if let Some((_, Some(ip))) = entity.iter().find(|(t, _)| t == IP) {
                if !valid_ip_entity(ip) {
                    return Err(invalid(format!("{ip} is not a valid IP or resolvable host.")));
                }
            }
            let current = quotas.get(&entity);
            let mut mine = Vec::new();
            for (key, value) in &alteration.ops {
                let old = current.and_then(|c| c.get(key)).map(|v| v.0);
                match value {
                    None => {
                        if old.is_some() {
                            mine.push((entity.clone(), key.clone(), None));
                        }
                    }
                    Some(value) => {
                        validate_value(&entity, key, *value)?;
                        if old != Some(*value) {
                            mine.push((entity.clone(), key.clone(), Some(*value)));
                        }
                    }
                }
            }
            Ok(mine)
        })();
        match outcome {
            Ok(mine) => {
                changes.extend(mine);
                results.push((0, None));
            }
            Err((code, message)) => results.push((code, Some(message))),
        }
    }
    (results, changes)
}

/// `user=alice, client-id=<default>`: an entity as Kafka's tools print it.
pub fn describe_entity(entity: &QuotaEntity) -> String {
    entity
        .iter()
        .map(|(t, n)| format!("{t}={}", n.as_deref().unwrap_or("<default>")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A DescribeClientQuotas filter component (match type 0 = EXACT with `name`,
/// 1 = DEFAULT, 2 = SPECIFIED / any).
#[derive(Clone, Debug, PartialEq)]
pub struct FilterComponent {
    pub entity_type: String,
    pub match_type: i8,
    pub name: Option<String>,
}

pub const MATCH_EXACT: i8 = 0;
pub const MATCH_DEFAULT: i8 = 1;
pub const MATCH_SPECIFIED: i8 = 2;

/// DescribeClientQuotas as Kafka's `ClientQuotasImage.describe`: the entities
/// the filter matches (`strict`: only entities with no other type), or the
/// error code and message of an invalid filter.
pub fn describe<'a>(
    quotas: &'a ClientQuotas,
    components: &[FilterComponent],
    strict: bool,
) -> Result<Vec<(&'a QuotaEntity, &'a BTreeMap<String, QuotaValue>)>, (i16, String)> {
    // type → Some(exact name or None for the default) | None for "any name".
    let mut wanted: BTreeMap<&str, Option<Option<&str>>> = BTreeMap::new();
    for c in components {
        if c.entity_type.is_empty() {
            return Err(invalid("Invalid empty entity type."));
        }
        if wanted.contains_key(c.entity_type.as_str()) {
            return Err(invalid(format!("Entity type {} cannot appear more than once in the filter.", c.entity_type)));
        }
        if !matches!(c.entity_type.as_str(), USER | CLIENT_ID | IP) {
            return Err((ResponseError::UnsupportedVersion.code(), format!("Unsupported entity type {}", c.entity_type)));
        }
        let wants = match (c.match_type, &c.name) {
            (MATCH_EXACT, Some(name)) => Some(Some(name.as_str())),
            (MATCH_EXACT, None) => return Err(invalid("Request specified MATCH_TYPE_EXACT, but set match string to null.")),
            (MATCH_DEFAULT, None) => Some(None),
            (MATCH_DEFAULT, Some(_)) => return Err(invalid("Request specified MATCH_TYPE_DEFAULT, but also specified a match string.")),
            (MATCH_SPECIFIED, None) => None,
            (MATCH_SPECIFIED, Some(_)) => return Err(invalid("Request specified MATCH_TYPE_SPECIFIED, but also specified a match string.")),
            (other, _) => return Err(invalid(format!("Unknown match type {other}"))),
        };
        wanted.insert(c.entity_type.as_str(), wants);
    }
    if wanted.contains_key(IP) && (wanted.contains_key(USER) || wanted.contains_key(CLIENT_ID)) {
        return Err(invalid(
            "Invalid entity filter component combination. IP filter component should not be used with user or clientId filter component.",
        ));
    }
    if wanted.is_empty() && strict {
        return Ok(Vec::new());
    }
    Ok(quotas
        .iter()
        .filter(|(entity, _)| {
            let all_match = wanted.iter().all(|(entity_type, wants)| match entity.iter().find(|(t, _)| t == entity_type) {
                None => false,
                Some((_, name)) => match wants {
                    None => true,
                    Some(want) => name.as_deref() == *want,
                },
            });
            all_match && (!strict || entity.len() == wanted.len())
        })
        .collect())
}

/// The (user, client-id) entities a client's quota comes from, most specific
/// first (Kafka's precedence, docs "Quotas"): the first one with the key wins.
/// `user` is `None` for an unauthenticated client (no user quotas apply).
pub fn precedence(user: Option<&str>, client_id: &str) -> Vec<QuotaEntity> {
    let u = |name: Option<&str>| (USER.to_string(), name.map(str::to_string));
    let c = |name: Option<&str>| (CLIENT_ID.to_string(), name.map(str::to_string));
    let mut order = Vec::with_capacity(8);
    if let Some(user) = user {
        order.push(vec![c(Some(client_id)), u(Some(user))]);
        order.push(vec![c(None), u(Some(user))]);
        order.push(vec![u(Some(user))]);
        order.push(vec![c(Some(client_id)), u(None)]);
        order.push(vec![c(None), u(None)]);
        order.push(vec![u(None)]);
    }
    order.push(vec![c(Some(client_id))]);
    order.push(vec![c(None)]);
    order
}

/// The quota of `key` for a client, by [`precedence`], with the entity it came from.
pub fn resolve(quotas: &ClientQuotas, user: Option<&str>, client_id: &str, key: &str) -> Option<(QuotaEntity, f64)> {
    if quotas.is_empty() {
        return None;
    }
    precedence(user, client_id)
        .into_iter()
        .find_map(|entity| quotas.get(&entity).and_then(|keys| keys.get(key)).map(|v| v.0).map(|v| (entity, v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        pairs.iter().map(|(t, n)| (t.to_string(), n.map(str::to_string))).collect()
    }

    fn apply(quotas: &mut ClientQuotas, changes: Vec<(QuotaEntity, String, Option<f64>)>) {
        for (entity, key, value) in changes {
            let keys = quotas.entry(entity.clone()).or_default();
            match value {
                Some(v) => {
                    keys.insert(key, QuotaValue(v));
                }
                None => {
                    keys.remove(&key);
                    if keys.is_empty() {
                        quotas.remove(&entity);
                    }
                }
            }
        }
    }

    #[test]
    fn entity_checks_follow_kafka() {
        assert_eq!(validate_entity(&[]).unwrap_err().1, "Invalid empty client quota entity");
        assert_eq!(validate_entity(&e(&[("group", Some("g"))])).unwrap_err().0, 42);
        assert_eq!(validate_entity(&e(&[("user", Some(""))])).unwrap_err().1, "Empty user not supported");
        assert_eq!(validate_entity(&e(&[("user", Some("a")), ("user", Some("b"))])).unwrap(), e(&[("user", Some("b"))]));
        assert!(validate_entity(&e(&[("ip", Some("1.2.3.4")), ("user", Some("a"))])).is_err());
        assert!(!valid_ip_entity("no-such-host.invalid"));
        assert!(valid_ip_entity("10.0.0.1"));
        assert_eq!(
            validate_entity(&e(&[("user", Some("a")), ("client-id", None)])).unwrap(),
            e(&[("client-id", None), ("user", Some("a"))])
        );
    }

    #[test]
    fn alter_checks_keys_and_values_and_skips_unchanged() {
        let mut quotas = ClientQuotas::new();
        let alt = |entity, ops: &[(&str, Option<f64>)]| QuotaAlteration {
            entity,
            ops: ops.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        };
        let (results, changes) = alter(
            &quotas,
            &[
                alt(e(&[("client-id", Some("c"))]), &[("producer_byte_rate", Some(1024.0))]),
                alt(e(&[("client-id", Some("d"))]), &[("producer_byte_rate", Some(10.5))]),
                alt(e(&[("client-id", Some("f"))]), &[("consumer_byte_rate", Some(-1.0))]),
                alt(e(&[("client-id", Some("g"))]), &[("consumer_byte_rate", Some(1e30))]),
                alt(e(&[("user", None)]), &[("bogus", Some(1.0))]),
                alt(e(&[("ip", None)]), &[("producer_byte_rate", Some(1.0))]),
                alt(e(&[("ip", Some("10.1.2.3"))]), &[("connection_creation_rate", Some(5.0))]),
                alt(e(&[("user", Some("u"))]), &[("request_percentage", Some(12.5)), ("request_percentage", None)]),
            ],
        );
        let codes: Vec<i16> = results.iter().map(|r| r.0).collect();
        assert_eq!(codes, vec![0, 42, 42, 42, 42, 42, 0, 42]);
        assert_eq!(results[1].1.as_deref(), Some("producer_byte_rate cannot be a fractional value."));
        assert_eq!(results[2].1.as_deref(), Some("Quota consumer_byte_rate must be greater than 0"));
        assert_eq!(results[3].1.as_deref(), Some("Proposed value for consumer_byte_rate is too large for a LONG."));
        assert_eq!(changes.len(), 2);
        apply(&mut quotas, changes);
        // Setting the same value again writes nothing; removing an absent key neither.
        let (results, changes) = alter(
            &quotas,
            &[alt(e(&[("client-id", Some("c"))]), &[("producer_byte_rate", Some(1024.0)), ("consumer_byte_rate", None)])],
        );
        assert_eq!(results, vec![(0, None)]);
        assert!(changes.is_empty());
        let (_, changes) = alter(&quotas, &[alt(e(&[("client-id", Some("c"))]), &[("producer_byte_rate", None)])]);
        apply(&mut quotas, changes);
        assert_eq!(quotas.len(), 1, "the entity goes with its last key");
    }

    fn sample() -> ClientQuotas {
        let mut quotas = ClientQuotas::new();
        for entity in [
            e(&[("user", Some("alice"))]),
            e(&[("user", None)]),
            e(&[("client-id", Some("app"))]),
            e(&[("client-id", None)]),
            e(&[("client-id", Some("app")), ("user", Some("alice"))]),
            e(&[("client-id", None), ("user", Some("alice"))]),
            e(&[("ip", Some("10.0.0.1"))]),
        ] {
            let v = entity.len() as f64 * 100.0 + quotas.len() as f64;
            quotas.entry(entity).or_default().insert(PRODUCER_BYTE_RATE.to_string(), QuotaValue(v));
        }
        quotas
    }

    fn names(found: Vec<(&QuotaEntity, &BTreeMap<String, QuotaValue>)>) -> Vec<String> {
        found.into_iter().map(|(entity, _)| describe_entity(entity)).collect()
    }

    #[test]
    fn describe_filters_as_kafka() {
        let quotas = sample();
        let comp = |t: &str, m: i8, n: Option<&str>| FilterComponent { entity_type: t.into(), match_type: m, name: n.map(Into::into) };
        assert_eq!(describe(&quotas, &[], false).unwrap().len(), 7);
        assert!(describe(&quotas, &[], true).unwrap().is_empty());
        let alice = names(describe(&quotas, &[comp("user", MATCH_EXACT, Some("alice"))], false).unwrap());
        assert_eq!(alice.len(), 3);
        let strict = names(describe(&quotas, &[comp("user", MATCH_EXACT, Some("alice"))], true).unwrap());
        assert_eq!(strict, vec!["user=alice"]);
        let defaults = names(describe(&quotas, &[comp("client-id", MATCH_DEFAULT, None)], false).unwrap());
        assert_eq!(defaults, vec!["client-id=<default>", "client-id=<default>, user=alice"]);
        let any_users = names(describe(&quotas, &[comp("user", MATCH_SPECIFIED, None)], true).unwrap());
        assert_eq!(any_users, vec!["user=<default>", "user=alice"]);
        assert_eq!(describe(&quotas, &[comp("user", MATCH_EXACT, None)], false).unwrap_err().0, 42);
        assert_eq!(describe(&quotas, &[comp("user", 7, None)], false).unwrap_err().0, 42);
        assert_eq!(describe(&quotas, &[comp("group", MATCH_SPECIFIED, None)], false).unwrap_err().0, 35);
        assert_eq!(
            describe(&quotas, &[comp("ip", MATCH_SPECIFIED, None), comp("user", MATCH_SPECIFIED, None)], false).unwrap_err().0,
            42
        );
    }

    #[test]
    fn precedence_is_kafkas() {
        let mut quotas = sample();
        let rate = |q: &ClientQuotas, user: Option<&str>, client: &str| {
            resolve(q, user, client, PRODUCER_BYTE_RATE).map(|(entity, _)| describe_entity(&entity))
        };
        assert_eq!(rate(&quotas, Some("alice"), "app").unwrap(), "client-id=app, user=alice");
        assert_eq!(rate(&quotas, Some("alice"), "other").unwrap(), "client-id=<default>, user=alice");
        assert_eq!(rate(&quotas, Some("bob"), "app").unwrap(), "user=<default>");
        assert_eq!(rate(&quotas, None, "app").unwrap(), "client-id=app");
        assert_eq!(rate(&quotas, None, "x").unwrap(), "client-id=<default>");
        quotas.remove(&e(&[("client-id", None), ("user", Some("alice"))]));
        assert_eq!(rate(&quotas, Some("alice"), "other").unwrap(), "user=alice");
        quotas.remove(&e(&[("user", Some("alice"))]));
        quotas.remove(&e(&[("user", None)]));
        assert_eq!(rate(&quotas, Some("alice"), "other").unwrap(), "client-id=<default>");
        assert_eq!(rate(&quotas, Some("bob"), "app").unwrap(), "client-id=app");
        assert!(resolve(&ClientQuotas::new(), None, "app", PRODUCER_BYTE_RATE).is_none());
    }
}
