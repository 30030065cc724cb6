//! `runnel produce TOPIC`: one record per stdin line.

use std::io::BufRead;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::{client_config, parse_key_value, ClientArgs};

#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    pub topic: String,
    /// Split each line at the first SEP into key and value.
    #[arg(long, short = 'K')]
    pub key_separator: Option<String>,
    /// Write to this partition instead of partitioning by key.
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    /// 0, 1 or all.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Record header KEY=VALUE (repeatable).
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
}

pub async fn run(args: &ClientArgs, p: ProduceArgs) -> Result<()> {
    if !matches!(p.acks.as_str(), "0" | "1" | "all" | "-1") {
        bail!("--acks must be 0, 1 or all, not {:?}", p.acks);
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
    let mut pending = Vec::new();
    for line in stdin.lock().lines() {
        let line = line.context("reading stdin")?;
        let (key, value) = match &p.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(k.to_string()), v.to_string()),
                None => (None, line),
            },
            None => (None, line),
        };
        let mut owned = OwnedHeaders::new();
        for (k, v) in &headers {
            owned = owned.insert(Header { key: k, value: Some(v.as_bytes()) });
        }
        // Enqueue in stdin order (librdkafka keeps that order per partition); only delivery is awaited later.
        let mut record: FutureRecord<'_, String, String> = FutureRecord::to(&p.topic).payload(&value).headers(owned);
        if let Some(k) = &key {
            record = record.key(k);
        }
        if let Some(part) = p.partition {
            record = record.partition(part);
        }
        let mut record = record;
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
    Ok(())
}
