//! A case's view of one broker: a connection, the request versions both
//! brokers share, setup helpers, and the probes whose answers are compared.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::*;
#[allow(unused_imports)]
use crate::msg::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use uuid::Uuid;

use crate::cases::Case;
use crate::client::Conn;
use crate::tree::{flatten_debug, glob_match, Flat};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    Kafka,
    Runnel,
}

/// What a field's value is reduced to before comparing.
#[derive(Clone, Copy)]
pub enum Rule {
    /// Dropped: the field legitimately differs (wording, broker-local paths).
    Ignore,
    /// Only "unset" (None, -1, "", nil uuid) or "<set>" is compared: ids,
    /// hosts and timestamps differ between brokers, but whether they are set
    /// must not.
    Presence,
}

/// Rules for every case, by the field's name (its last path component).
const FIELD_RULES: &[(&str, Rule)] = &[
    ("error_message", Rule::Presence),
    ("cluster_id", Rule::Presence),
    ("controller_id", Rule::Presence),
    ("node_id", Rule::Presence),
    ("leader_id", Rule::Presence),
    ("replica_nodes", Rule::Presence),
    ("isr_nodes", Rule::Presence),
    ("offline_replicas", Rule::Presence),
    ("host", Rule::Presence),
    ("port", Rule::Presence),
    ("topic_id", Rule::Presence),
    ("member_id", Rule::Presence),
    ("leader", Rule::Presence),
    ("producer_id", Rule::Presence),
    ("session_id", Rule::Presence),
    ("log_append_time_ms", Rule::Presence),
    ("client_host", Rule::Presence),
];

/// Waits (at most 60 s) until the broker's group coordinator serves: Kafka
/// creates and loads `__consumer_offsets` on first use, answering
/// COORDINATOR_NOT_AVAILABLE / NOT_COORDINATOR until then.
pub fn warm_up_groups(addr: &str) -> Result<()> {
    let mut conn = Conn::connect(addr)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let request = FindCoordinatorRequest::default()
            .with_coordinator_keys(vec![s("runnel-conformance-warm-up")]);
        let response = conn.send(&request, 4)?;
        let ready = response.coordinators.iter().all(|c| c.error_code == 0);
        if ready {
            let commit = OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s("runnel-conformance-warm-up")))
                .with_topics(None)]);
            let fetched = conn.send(&commit, 8)?;
            if fetched.groups.iter().all(|g| g.error_code == 0) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{addr}'s group coordinator is not available after 60 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Request versions both brokers accept, and what Runnel advertises.
pub struct Versions {
    common: BTreeMap<i16, i16>,
    pub runnel_advertised: BTreeMap<i16, (i16, i16)>,
    pub kafka_advertised: BTreeMap<i16, (i16, i16)>,
}

fn advertised(addr: &str) -> Result<BTreeMap<i16, (i16, i16)>> {
    let mut conn = Conn::connect(addr)?;
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("runnel-conformance"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    let response = conn.send(&request, 3).with_context(|| format!("ApiVersions to {addr}"))?;
    if response.error_code != 0 {
        bail!("{addr} answered ApiVersions with error {}", response.error_code);
    }
    Ok(response.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect())
}

/// For each API: the highest version the crate, Kafka and (if it advertises
/// the API) Runnel all speak, so both brokers get byte-identical requests.
pub fn common_versions(kafka: &str, runnel: &str) -> Result<Versions> {
    let kafka_advertised = advertised(kafka)?;
    let runnel_advertised = advertised(runnel)?;
    let mut common = BTreeMap::new();
    for key in ApiKey::iter() {
        let crate_max = key.valid_versions().max;
        let mut max = crate_max;
        for side in [&kafka_advertised, &runnel_advertised] {
            if let Some(&(_, side_max)) = side.get(&(key as i16)) {
                max = max.min(side_max);
            }
        }
        common.insert(key as i16, max);
    }
    Ok(Versions { common, runnel_advertised, kafka_advertised })
}

pub struct Outcome {
    pub flat: Flat,
    pub errors: Vec<String>,
}

pub struct Ctx<'a> {
    pub side: Side,
    addr: String,
    conn: Conn,
    nonce: &'a str,
    pub versions: &'a Versions,
    topic_ids: HashMap<String, Uuid>,
    flat: Flat,
    rules: Vec<(String, Rule)>,
}

impl<'a> Ctx<'a> {
    pub fn run_case(case: &Case, side: Side, addr: &str, nonce: &'a str, versions: &'a Versions, raw: bool) -> Outcome {
        let mut errors = Vec::new();
        let mut ctx = match Conn::connect(addr) {
            Ok(conn) => Ctx {
                side,
                addr: addr.to_string(),
                conn,
                nonce,
                versions,
                topic_ids: HashMap::new(),
                flat: Flat::new(),
                rules: Vec::new(),
            },
            Err(e) => {
                let flat = Flat::from([("case_error".to_string(), "<failed>".to_string())]);
                return Outcome { flat, errors: vec![format!("{e:#}")] };
            }
        };
        if let Err(e) = (case.run)(&mut ctx) {
            // Which step failed is compared; the error's wording is printed.
            ctx.flat.insert("case_error".to_string(), "<failed>".to_string());
            errors.push(format!("{e:#}"));
        }
        let flat = if raw { ctx.flat } else { ctx.normalised() };
        Outcome { flat, errors }
    }

    fn normalised(&self) -> Flat {
        let mut out = Flat::new();
        'fields: for (path, value) in &self.flat {
            let mut value = value.clone();
            let field = last_field(path);
            let case_rule = self.rules.iter().find(|(pattern, _)| glob_match(pattern, path)).map(|(_, rule)| *rule);
            let rule = case_rule.or_else(|| FIELD_RULES.iter().find(|(name, _)| *name == field).map(|(_, rule)| *rule));
            match rule {
                Some(Rule::Ignore) => continue 'fields,
                Some(Rule::Presence) => value = presence(&value),
                None => {}
            }
            out.insert(path.clone(), value);
        }
        out
    }

    /// Adds a normalisation rule for this case's fields matching `pattern`
    /// (a glob over the flattened path, e.g. `probe.results[*].configs[*].value`).
    pub fn rule(&mut self, pattern: &str, rule: Rule) {
        self.rules.push((pattern.to_string(), rule));
    }

    /// A name unique to this run, the same on both brokers.
    pub fn name(&self, base: &str) -> String {
        format!("conf-{base}-{}", self.nonce)
    }

    pub fn version(&self, key: ApiKey) -> i16 {
        self.versions.common.get(&(key as i16)).copied().unwrap_or(key.valid_versions().max)
    }

    /// Another connection to the same broker (e.g. a second group member).
    pub fn new_conn(&self) -> Result<Conn> {
        Conn::connect(&self.addr)
    }

    /// Sends at the highest common version.
    pub fn send<R>(&mut self, request: &R) -> Result<R::Response>
    where
        R: Request + Encodable + HeaderVersion + Message,
        R::Response: Decodable + HeaderVersion,
    {
        let version = self.version(ApiKey::try_from(R::KEY).map_err(|_| anyhow::anyhow!("unknown api key"))?);
        self.conn.send(request, version)
    }

    pub fn send_v<R>(&mut self, request: &R, version: i16) -> Result<R::Response>
    where
        R: Request + Encodable + HeaderVersion,
        R::Response: Decodable + HeaderVersion,
    {
        self.conn.send(request, version)
    }

    /// Sends until the answer's error code is not a retriable "not ready yet"
    /// one (COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE,
    /// NOT_COORDINATOR), for at most `seconds`: what a client does.
    pub fn send_until_ready<R>(&mut self, request: &R, seconds: u64, error_code: impl Fn(&R::Response) -> i16) -> Result<R::Response>
    where
        R: Request + Encodable + HeaderVersion + Message,
        R::Response: Decodable + HeaderVersion,
    {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let response = self.send(request)?;
            if ![14, 15, 16].contains(&error_code(&response)) || Instant::now() > deadline {
                return Ok(response);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends a request whose answer is compared, under `label`.
    pub fn probe<R>(&mut self, label: &str, request: &R) -> Result<R::Response>
    where
        R: Request + Encodable + HeaderVersion + Message,
        R::Response: Decodable + HeaderVersion + Debug,
    {
        let response = self.send(request).with_context(|| format!("probe {label}"))?;
        self.record(label, &response)?;
        Ok(response)
    }

    pub fn probe_v<R>(&mut self, label: &str, request: &R, version: i16) -> Result<R::Response>
    where
        R: Request + Encodable + HeaderVersion,
        R::Response: Decodable + HeaderVersion + Debug,
    {
        let response = self.send_v(request, version).with_context(|| format!("probe {label} v{version}"))?;
        self.record(label, &response)?;
        Ok(response)
    }

    /// Compares an arbitrary value (e.g. a summary of a response).
    pub fn record(&mut self, label: &str, value: &impl Debug) -> Result<()> {
        flatten_debug(label, &format!("{value:?}"), &mut self.flat)
    }

    /// A fetch probe: records are compared as offsets, keys and values (their
    /// batches' timestamps and producer fields are the broker's business).
    pub fn probe_fetch(&mut self, label: &str, request: &FetchRequest) -> Result<FetchResponse> {
        self.probe_fetch_v(label, request, self.version(ApiKey::Fetch))
    }

    pub fn probe_fetch_v(&mut self, label: &str, request: &FetchRequest, version: i16) -> Result<FetchResponse> {
        let mut response = self.send_v(request, version).with_context(|| format!("probe {label} v{version}"))?;
        let original = response.clone();
        for topic in &mut response.responses {
            for partition in &mut topic.partitions {
                if let Some(records) = partition.records.take() {
                    partition.records = Some(Bytes::from(summarize_records(records)));
                }
            }
        }
        self.record(label, &response)?;
        Ok(original)
    }

    pub fn topic_id(&self, topic: &str) -> Uuid {
        self.topic_ids.get(topic).copied().unwrap_or_default()
    }

    pub fn create_topics_request(name: &str, partitions: i32, configs: &[(&str, &str)]) -> CreateTopicsRequest {
        let topic = CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            );
        CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(30_000)
    }

    /// Creates a topic and waits until every partition has a leader.
    pub fn create_topic(&mut self, name: &str, partitions: i32, configs: &[(&str, &str)]) -> Result<()> {
        let response = self.send(&Self::create_topics_request(name, partitions, configs))?;
        for topic in &response.topics {
            if topic.error_code != 0 {
                bail!("creating {name}: error {} {:?}", topic.error_code, topic.error_message);
            }
        }
        self.wait_topic(name, partitions)
    }

    pub fn wait_topic(&mut self, name: &str, partitions: i32) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let response = self.send(&metadata_request(&[name], false))?;
            if let Some(topic) = response.topics.first() {
                if let Some(id) = Some(topic.topic_id).filter(|id| !id.is_nil()) {
                    self.topic_ids.insert(name.to_string(), id);
                }
                let ready = topic.error_code == 0
                    && topic.partitions.len() == partitions as usize
                    && topic.partitions.iter().all(|p| p.error_code == 0 && p.leader_id.0 >= 0);
                if ready && self.partitions_serve(name, partitions)? {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("topic {name} has no leaders after 20 s: {response:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether every partition answers ListOffsets: Kafka's metadata can name
    /// a leader a moment before that leader serves the partition.
    fn partitions_serve(&mut self, name: &str, partitions: i32) -> Result<bool> {
        let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(s(name)))
            .with_partitions((0..partitions).map(|p| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(-1)).collect())]);
        let response = self.send(&request)?;
        Ok(response.topics.iter().all(|t| t.partitions.iter().all(|p| p.error_code == 0)))
    }

    /// Waits until the topic is gone from the metadata (deletion is
    /// asynchronous in Kafka).
    pub fn delete_topic(&mut self, name: &str) -> Result<()> {
        let request = DeleteTopicsRequest::default()
            .with_topic_names(vec![TopicName(StrBytes::from_string(name.to_string()))])
            .with_topics(vec![DeleteTopicState::default().with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))])
            .with_timeout_ms(30_000);
        let response = self.send(&request)?;
        for topic in &response.responses {
            if topic.error_code != 0 {
                bail!("deleting {name}: error {}", topic.error_code);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let response = self.send(&metadata_request(&[name], false))?;
            if response.topics.first().is_some_and(|t| t.error_code == 3) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("topic {name} still listed 20 s after deletion");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn produce_request(&self, topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
        ProduceRequest::default().with_acks(acks).with_timeout_ms(30_000).with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_topic_id(self.topic_id(topic))
            .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(records))])])
    }

    /// Produces `count` records (keys k0.., values v0.., timestamps from
    /// BASE_TIMESTAMP) and fails unless the broker accepted them.
    pub fn produce(&mut self, topic: &str, partition: i32, count: usize) -> Result<ProduceResponse> {
        let request = self.produce_request(topic, partition, batch(count, 0), -1);
        let response = self.send(&request)?;
        for t in &response.responses {
            for p in &t.partition_responses {
                if p.error_code != 0 {
                    bail!("producing to {topic}-{partition}: error {}", p.error_code);
                }
            }
        }
        Ok(response)
    }

    pub fn fetch_request(&self, topic: &str, partition: i32, offset: i64, max_bytes: i32, partition_max_bytes: i32) -> FetchRequest {
        FetchRequest::default().with_max_wait_ms(0).with_min_bytes(1).with_max_bytes(max_bytes).with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_topic_id(self.topic_id(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(partition_max_bytes)])])
    }
}

pub const BASE_TIMESTAMP: i64 = 1_700_000_000_000;

/// One uncompressed batch of `count` records, keys `k{first+i}`, values
/// `v{first+i}`, timestamps BASE_TIMESTAMP + 1000 * (first + i).
pub fn batch(count: usize, first: usize) -> Bytes {
    batch_with(count, first, Compression::None)
}

pub fn batch_with(count: usize, first: usize, compression: Compression) -> Bytes {
    let records: Vec<Record> = (first..first + count)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: (i - first) as i64,
            // The encoder starts a new batch whenever offset - sequence
            // changes; this keeps all records in one batch with base sequence -1.
            sequence: (i - first) as i32 - 1,
            timestamp: BASE_TIMESTAMP + 1000 * i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("v{i}"))),
            headers: IndexMap::new(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression };
    // Encoding records we built ourselves cannot fail for want of input.
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encoding a record batch");
    buf.freeze()
}

fn summarize_records(mut records: Bytes) -> String {
    if records.is_empty() {
        return "<empty>".to_string();
    }
    match RecordBatchDecoder::decode_all(&mut records) {
        Ok(sets) => {
            let mut out = Vec::new();
            for set in sets {
                for r in set.records {
                    let key = r.key.map(|k| String::from_utf8_lossy(&k).into_owned()).unwrap_or_default();
                    let value = r.value.map(|v| String::from_utf8_lossy(&v).into_owned()).unwrap_or_default();
                    out.push(format!("{}:{key}={value}", r.offset));
                }
            }
            out.join(" ")
        }
        // A partial trailing batch (max_bytes smaller than a batch) is legal.
        Err(_) => format!("<undecodable {} bytes>", records.len()),
    }
}

pub fn metadata_request(topics: &[&str], auto_create: bool) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(
            topics
                .iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(t.to_string())))))
                .collect(),
        ))
        .with_allow_auto_topic_creation(auto_create)
}

pub fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// The field a flattened path ends in (`a[0].isr_nodes[1]` -> `isr_nodes`);
/// a list's `.len` is kept as its own field, so counts are always compared.
fn last_field(path: &str) -> &str {
    let last = path.rsplit('.').next().unwrap_or(path);
    last.split('[').next().unwrap_or(last)
}

fn presence(value: &str) -> String {
    const UNSET: &[&str] = &["None", "-1", "\"\"", "00000000-0000-0000-0000-000000000000"];
    if UNSET.contains(&value) {
        value.to_string()
    } else {
        "<set>".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_is_one_batch_with_all_records() {
        let mut bytes = batch(3, 4);
        let info = RecordBatchDecoder::decode_batch_info(&mut bytes.clone()).unwrap();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].record_count, 3);
        assert_eq!(info[0].min_offset, 0);
        assert_eq!(info[0].base_sequence, -1);
        assert_eq!(summarize_records(bytes.split_off(0)), "0:k4=v4 1:k5=v5 2:k6=v6");
    }

    #[test]
    fn presence_keeps_unset_values() {
        assert_eq!(presence("None"), "None");
        assert_eq!(presence("-1"), "-1");
        assert_eq!(presence("\"\""), "\"\"");
        assert_eq!(presence("\"boom\""), "<set>");
        assert_eq!(presence("7"), "<set>");
        assert_eq!(last_field("a.b[0].isr_nodes[1]"), "isr_nodes");
        assert_eq!(last_field("a.isr_nodes.len"), "len");
    }
}
