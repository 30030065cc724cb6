//! `runnel produce TOPIC`: one record per stdin line (or NUL-delimited or
//! length-prefixed record); values are bytes, not necessarily UTF-8.

use std::io::BufRead;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::codec::{self, Format};
use crate::{client_config, parse_key_value, wire, ClientArgs};

#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    /// The topic to write to.
    pub topic: String,
    /// Split each record at the first SEP into key and value (text, base64 and hex input).
    #[arg(long, short = 'K')]
    pub key_separator: Option<String>,
    /// Write to this partition instead of partitioning by key.
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    /// Acknowledgements to wait for: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = ["0", "1", "all", "-1"])]
    pub acks: String,
    /// Compression codec of the batches.
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    pub compression: String,
    /// Record header KEY=VALUE (repeatable).
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    /// How records are read from stdin: text (the bytes of each record as they
    /// are), base64 or hex (key and value each encoded), raw (length-prefixed:
    /// i32 key length, key, i32 value length, value; -1 = null; what
    /// `consume --format raw` writes).
    #[arg(long, default_value = "text", value_parser = ["text", "base64", "hex", "raw"])]
    pub format: String,
    /// Records are NUL-terminated instead of newline-terminated (text, base64, hex).
    #[arg(long, short = 'z')]
    pub null_delimited: bool,
}

/// Fails at once, naming the topic, when it does not exist (and the broker
/// does not create it), instead of letting the producer time out.
async fn check_topic(args: &ClientArgs, p: &ProduceArgs) -> Result<()> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(p.topic.clone()))))]))
        .with_allow_auto_topic_creation(true);
    let response = wire::exchange(&args.brokers, &request).await.map_err(|e| anyhow!("cannot reach the broker at {}: {e}", args.brokers))?;
    let topic = response.topics.first().ok_or_else(|| anyhow!("the broker sent no metadata for topic {:?}", p.topic))?;
    match ResponseError::try_from_code(topic.error_code) {
        None => {}
        Some(ResponseError::UnknownTopicOrPartition) => bail!("topic {:?} does not exist", p.topic),
        // Just auto-created: the leader is being elected; the producer waits for it.
        Some(ResponseError::LeaderNotAvailable) => return Ok(()),
        Some(e) => bail!("topic {:?}: {e}", p.topic),
    }
    if let Some(part) = p.partition {
        if !topic.partitions.iter().any(|q| q.partition_index == part) {
            bail!("topic {:?} has no partition {part} ({} partitions)", p.topic, topic.partitions.len());
        }
    }
    Ok(())
}

/// The next input record's key and value, or None at the end of input.
fn next_record(input: &mut impl BufRead, p: &ProduceArgs, format: Format) -> Result<Option<(Option<Vec<u8>>, Option<Vec<u8>>)>> {
    if format == Format::Raw {
        let Some(key) = codec::read_length_prefixed(input, true)? else { return Ok(None) };
        let value = codec::read_length_prefixed(input, false)?.ok_or_else(|| anyhow!("input ends after a key"))?;
        return Ok(Some((key, value)));
    }
    let delimiter = if p.null_delimited { b'\0' } else { b'\n' };
    let mut record = Vec::new();
    if input.read_until(delimiter, &mut record).context("reading stdin")? == 0 {
        return Ok(None);
    }
    if record.last() == Some(&delimiter) {
        record.pop();
    }
    let (key, value) = match p.key_separator.as_deref().map(str::as_bytes) {
        Some(sep) if !sep.is_empty() => match record.windows(sep.len()).position(|w| w == sep) {
            Some(at) => (Some(record[..at].to_vec()), record[at + sep.len()..].to_vec()),
            None => (None, record),
        },
        _ => (None, record),
    };
    let key = key.map(|k| format.decode(&k)).transpose()?;
    Ok(Some((key, Some(format.decode(&value)?))))
}

pub async fn run(args: &ClientArgs, p: ProduceArgs) -> Result<()> {
    let format = Format::parse(&p.format)?;
    if crate::wire::can_connect() {
        // With security settings only librdkafka knows (OAUTHBEARER), the producer's own errors say it instead.
        check_topic(args, &p).await?;
    }
    let producer: FutureProducer = client_config(args)?
        .set("acks", &p.acks)
        .set("compression.type", &p.compression)
        // The Java client's partitioner, so keys land where Java producers put them.
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .context("creating the producer")?;
    let headers: Vec<(String, String)> = p.headers.iter().map(|h| parse_key_value(h)).collect::<Result<_>>()?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut pending = Vec::new();
    let mut number = 0u64;
    // A bad record stops the input, but the records before it are still delivered and counted.
    let mut input_error = None;
    loop {
        number += 1;
        let (key, value) = match next_record(&mut input, &p, format) {
            Ok(Some(record)) => record,
            Ok(None) => break,
            Err(e) => {
                input_error = Some(e.context(format!("input record {number}")));
                break;
            }
        };
        let mut owned = OwnedHeaders::new();
        for (k, v) in &headers {
            owned = owned.insert(Header { key: k, value: Some(v.as_bytes()) });
        }
        // Enqueue in stdin order (librdkafka keeps that order per partition); only delivery is awaited later.
        let mut record: FutureRecord<'_, Vec<u8>, Vec<u8>> = FutureRecord::to(&p.topic).headers(owned);
        if let Some(v) = &value {
            record = record.payload(v);
        }
        if let Some(k) = &key {
            record = record.key(k);
        }
        if let Some(part) = p.partition {
            record = record.partition(part);
        }
        let delivery = loop {
            match producer.send_result(record) {
                Ok(delivery) => break delivery,
                Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => bail!("record to {:?} not queued: {e}", p.topic),
            }
        };
        pending.push(delivery);
    }
    let total = pending.len();
    for delivery in pending {
        delivery
            .await
            .map_err(|_| anyhow!("the producer shut down before delivery"))?
            .map_err(|(e, _)| anyhow!("record to {:?} not delivered (broker {}): {e}", p.topic, args.brokers))?;
    }
    eprintln!("produced {total} record{}", if total == 1 { "" } else { "s" });
    match input_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
