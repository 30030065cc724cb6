//! `runnel consume TOPIC`: prints records as text or JSON lines.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::{client_config, ClientArgs, BROKER_TIMEOUT};

#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Start at the earliest offset (default: only new records).
    #[arg(long)]
    pub from_beginning: bool,
    /// Consume as a member of this group, committing offsets.
    #[arg(long, short = 'g')]
    pub group: Option<String>,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    pub max_messages: Option<u64>,
    /// Stop after this many milliseconds without a new record.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Read only this partition (with --offset: from that offset).
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    #[arg(long, short = 'o', requires = "partition")]
    pub offset: Option<i64>,
    /// text or json.
    #[arg(long, default_value = "text")]
    pub format: String,
    /// Print KEY<SEP>VALUE in text format.
    #[arg(long)]
    pub print_key: bool,
    #[arg(long, default_value = "\t")]
    pub key_separator: String,
}

fn json_escape(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "null".to_string(),
        Some(b) => {
            let s = String::from_utf8_lossy(b);
            let mut out = String::with_capacity(s.len() + 2);
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
    }
}

fn format_message(c: &ConsumeArgs, m: &BorrowedMessage<'_>) -> String {
    if c.format == "json" {
        let headers = m
            .headers()
            .map(|h| h.iter().map(|h| format!("{}:{}", json_escape(Some(h.key.as_bytes())), json_escape(h.value))).collect::<Vec<_>>().join(","))
            .unwrap_or_default();
        format!(
            "{{\"topic\":{},\"partition\":{},\"offset\":{},\"timestamp\":{},\"key\":{},\"value\":{},\"headers\":{{{headers}}}}}",
            json_escape(Some(m.topic().as_bytes())),
            m.partition(),
            m.offset(),
            m.timestamp().to_millis().unwrap_or(-1),
            json_escape(m.key()),
            json_escape(m.payload()),
        )
    } else {
        let value = String::from_utf8_lossy(m.payload().unwrap_or_default());
        if c.print_key {
            format!("{}{}{value}", String::from_utf8_lossy(m.key().unwrap_or_default()), c.key_separator)
        } else {
            value.into_owned()
        }
    }
}

pub async fn run(args: &ClientArgs, c: ConsumeArgs) -> Result<()> {
    if c.format != "text" && c.format != "json" {
        bail!("--format must be text or json");
    }
    let group = c.group.clone().unwrap_or_else(|| format!("runnel-cli-{}", std::process::id()));
    let consumer: BaseConsumer = client_config(args)?
        .set("group.id", &group)
        .set("enable.auto.commit", if c.group.is_some() { "true" } else { "false" })
        // Offsets are stored by hand after a record is printed, so a group commits exactly what was shown.
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", if c.from_beginning { "earliest" } else { "latest" })
        .create()
        .context("creating the consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(&c.topic), BROKER_TIMEOUT)
        .map_err(|e| anyhow!("cannot reach the broker at {}: {e}", args.brokers))?;
    let topic = metadata.topics().first().ok_or_else(|| anyhow!("no metadata for topic {:?}", c.topic))?;
    if topic.error().is_some() || topic.partitions().is_empty() {
        bail!("topic {:?} does not exist", c.topic);
    }
    if c.group.is_some() && c.partition.is_none() {
        consumer.subscribe(&[&c.topic]).context("subscribing")?;
    } else {
        let start = match c.offset {
            Some(o) => Offset::Offset(o),
            None if c.from_beginning => Offset::Beginning,
            None => Offset::End,
        };
        let mut list = TopicPartitionList::new();
        for p in topic.partitions() {
            if c.partition.is_none_or(|only| only == p.id()) {
                list.add_partition_offset(&c.topic, p.id(), start).context("assigning")?;
            }
        }
        consumer.assign(&list).context("assigning partitions")?;
    }
    // Ctrl-C / SIGTERM end the loop, so the group gets our commit and a LeaveGroup instead of a session timeout.
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let term = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term => {}
            }
            stop.store(true, Ordering::Relaxed);
        });
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut count = 0u64;
    let mut last_record = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if c.max_messages.is_some_and(|max| count >= max) {
            break;
        }
        if c.timeout_ms.is_some_and(|t| last_record.elapsed() >= Duration::from_millis(t)) {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(e)) => bail!("consuming {:?}: {e}", c.topic),
            Some(Ok(m)) => {
                writeln!(out, "{}", format_message(&c, &m)).context("writing stdout")?;
                if c.group.is_some() {
                    consumer.store_offset_from_message(&m).context("storing the consumed offset")?;
                }
                count += 1;
                last_record = Instant::now();
            }
        }
    }
    out.flush().ok();
    if c.group.is_some() && count > 0 {
        consumer
            .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
            .map_err(|e| anyhow!("committing offsets of group {group:?}: {e}"))?;
    }
    Ok(())
}
