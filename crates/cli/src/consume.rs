//! `runnel consume TOPIC`: prints records as text, JSON lines, base64, hex or
//! a length-prefixed binary stream.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use crate::codec::{self, Format};
use crate::group::parse_datetime;
use crate::{client_config, ClientArgs, BROKER_TIMEOUT};

#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    /// The topic to read.
    pub topic: String,
    /// Start at the earliest offset (with --group: in partitions the group has
    /// no committed offset for). Default: only records produced from now on.
    #[arg(long)]
    pub from_beginning: bool,
    /// Consume as a member of this group, committing the offsets of printed records.
    #[arg(long, short = 'g')]
    pub group: Option<String>,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    pub max_messages: Option<u64>,
    /// Stop after this many milliseconds without a new record, counted from
    /// when the partitions are assigned (joining a group does not count) or
    /// from the last record.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Read only this partition.
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    /// Where to start in each partition read: earliest, latest, N (absolute),
    /// -N (N records before the end), @MS or @ISO-8601 (first record at or
    /// after that time). Reads without group assignment; with --group the
    /// group only receives the commits.
    #[arg(long, short = 'o', allow_hyphen_values = true, value_name = "OFFSET")]
    pub offset: Option<String>,
    /// text (the value's bytes as they are), json (one object per record;
    /// non-UTF-8 keys/values as key_base64/value_base64), base64 or hex
    /// (key, value and header values encoded), raw (length-prefixed binary:
    /// i32 key length, key, i32 value length, value; -1 = null).
    #[arg(long, default_value = "text", value_parser = ["text", "json", "base64", "hex", "raw"])]
    pub format: String,
    /// Fields printed per record in text/base64/hex format, comma-separated, in
    /// this order: timestamp, partition, offset, headers, key, value (default: value).
    #[arg(long, value_delimiter = ',', value_parser = ["timestamp", "partition", "offset", "headers", "key", "value"])]
    pub print: Vec<String>,
    /// Also print the key (same as --print key,value).
    #[arg(long)]
    pub print_key: bool,
    /// Separator between printed fields.
    #[arg(long, default_value = "\t")]
    pub key_separator: String,
}

/// Where a partition read starts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Start {
    Earliest,
    Latest,
    At(i64),
    BeforeEnd(i64),
    Timestamp(i64),
}

fn parse_start(text: &str) -> Result<Start> {
    let t = text.trim();
    Ok(match t {
        "earliest" | "beginning" => Start::Earliest,
        "latest" | "end" => Start::Latest,
        _ if t.starts_with('@') => Start::Timestamp(parse_datetime(&t[1..])?),
        _ => match t.parse::<i64>() {
            Ok(n) if n >= 0 => Start::At(n),
            Ok(n) => Start::BeforeEnd(n.checked_neg().ok_or_else(|| anyhow!("--offset {t} is out of range"))?),
            Err(_) => bail!("--offset {t:?}: expected earliest, latest, N, -N, @MS or @ISO-8601"),
        },
    })
}

/// The fields a text-like record line shows, in Kafka's console consumer order.
#[derive(Debug, Default)]
struct Fields {
    timestamp: bool,
    partition: bool,
    offset: bool,
    headers: bool,
    key: bool,
    value: bool,
}

impl Fields {
    fn from_args(c: &ConsumeArgs) -> Fields {
        let has = |f: &str| c.print.iter().any(|p| p == f);
        let mut fields = Fields {
            timestamp: has("timestamp"),
            partition: has("partition"),
            offset: has("offset"),
            headers: has("headers"),
            key: has("key") || c.print_key,
            value: has("value"),
        };
        if c.print.is_empty() {
            fields.value = true;
        }
        fields
    }
}

fn write_record(out: &mut impl Write, c: &ConsumeArgs, format: Format, fields: &Fields, m: &BorrowedMessage<'_>) -> std::io::Result<()> {
    match format {
        Format::Raw => {
            codec::write_length_prefixed(out, m.key())?;
            codec::write_length_prefixed(out, m.payload())
        }
        Format::Json => writeln!(out, "{}", json_record(m)),
        Format::Text | Format::Base64 | Format::Hex => {
            let sep = c.key_separator.as_bytes();
            let mut parts: Vec<Vec<u8>> = Vec::new();
            if fields.timestamp {
                parts.push(match m.timestamp() {
                    rdkafka::Timestamp::CreateTime(t) => format!("CreateTime:{t}"),
                    rdkafka::Timestamp::LogAppendTime(t) => format!("LogAppendTime:{t}"),
                    rdkafka::Timestamp::NotAvailable => "NO_TIMESTAMP".to_string(),
                }
                .into_bytes());
            }
            if fields.partition {
                parts.push(format!("Partition:{}", m.partition()).into_bytes());
            }
            if fields.offset {
                parts.push(format!("Offset:{}", m.offset()).into_bytes());
            }
            if fields.headers {
                let mut shown = Vec::new();
                if let Some(headers) = m.headers() {
                    for (i, h) in headers.iter().enumerate() {
                        if i > 0 {
                            shown.push(b',');
                        }
                        shown.extend_from_slice(h.key.as_bytes());
                        shown.push(b':');
                        shown.extend_from_slice(&codec::encode_or_null(format, h.value));
                    }
                }
                parts.push(if shown.is_empty() { b"NO_HEADERS".to_vec() } else { shown });
            }
            if fields.key {
                parts.push(codec::encode_or_null(format, m.key()));
            }
            if fields.value {
                parts.push(codec::encode_or_null(format, m.payload()));
            }
            let line = parts.join(sep);
            out.write_all(&line)?;
            out.write_all(b"\n")
        }
    }
}

fn json_record(m: &BorrowedMessage<'_>) -> String {
    let mut fields = vec![
        format!("\"topic\":{}", codec::json_string(m.topic())),
        format!("\"partition\":{}", m.partition()),
        format!("\"offset\":{}", m.offset()),
        format!("\"timestamp\":{}", m.timestamp().to_millis().unwrap_or(-1)),
        codec::json_bytes_field("key", m.key()),
        codec::json_bytes_field("value", m.payload()),
    ];
    let mut text_headers = Vec::new();
    let mut binary_headers = Vec::new();
    if let Some(headers) = m.headers() {
        for h in headers.iter() {
            match h.value.map(std::str::from_utf8) {
                None => text_headers.push(format!("{}:null", codec::json_string(h.key))),
                Some(Ok(v)) => text_headers.push(format!("{}:{}", codec::json_string(h.key), codec::json_string(v))),
                Some(Err(_)) => binary_headers.push(format!("{}:\"{}\"", codec::json_string(h.key), codec::encode_base64(h.value.unwrap_or_default()))),
            }
        }
    }
    fields.push(format!("\"headers\":{{{}}}", text_headers.join(",")));
    if !binary_headers.is_empty() {
        fields.push(format!("\"headers_base64\":{{{}}}", binary_headers.join(",")));
    }
    format!("{{{}}}", fields.join(","))
}

/// Tracks group assignments: when the first one arrived, and the start
/// positions resolved for partitions the group had no committed offset for.
struct GroupContext {
    from_beginning: bool,
    assigned_at: Mutex<Option<Instant>>,
    /// Resolved start positions still to be committed by the main loop.
    to_commit: Mutex<Vec<(String, i32, i64)>>,
    rebalance_error: Mutex<Option<String>>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let outcome = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // Not fatal: the consumer still starts by auto.offset.reset, only the next run may start later.
                if let Err(e) = self.resolve_uncommitted_starts(consumer, tpl) {
                    eprintln!("warning: start positions of the group's new partitions not resolved: {e:#}");
                }
                let result = if cooperative { consumer.incremental_assign(tpl) } else { consumer.assign(tpl) };
                self.assigned_at.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(Instant::now);
                result
            }
            _ => {
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
        };
        if let Err(e) = outcome {
            *self.rebalance_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("applying the group's assignment: {e}"));
        }
    }
}

impl GroupContext {
    /// For each assigned partition without a committed offset, start at its
    /// current beginning or end explicitly and remember that offset, so it is
    /// committed: a later run then continues from there instead of jumping to
    /// the end again and skipping what was produced in between.
    fn resolve_uncommitted_starts(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) -> Result<()> {
        if tpl.count() == 0 {
            return Ok(());
        }
        let committed = consumer.committed_offsets(tpl.clone(), BROKER_TIMEOUT).context("reading the group's committed offsets")?;
        let mut resolved = Vec::new();
        for e in committed.elements() {
            if let Offset::Offset(_) = e.offset() {
                continue;
            }
            let (low, high) = consumer
                .fetch_watermarks(e.topic(), e.partition(), BROKER_TIMEOUT)
                .with_context(|| format!("offsets of {}:{}", e.topic(), e.partition()))?;
            resolved.push((e.topic().to_string(), e.partition(), if self.from_beginning { low } else { high }));
        }
        for (topic, partition, offset) in &resolved {
            tpl.set_partition_offset(topic, *partition, Offset::Offset(*offset)).context("setting a start offset")?;
        }
        self.to_commit.lock().unwrap_or_else(|p| p.into_inner()).extend(resolved);
        Ok(())
    }
}

/// Commits the current stored offsets; "nothing to commit" is success (auto-commit already did it).
fn commit_stored(consumer: &BaseConsumer<GroupContext>, group: &str) -> Result<()> {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
        Err(e) => Err(anyhow!("committing offsets of group {group:?}: {e}")),
    }
}

fn commit_resolved_starts(consumer: &BaseConsumer<GroupContext>, group: &str) -> Result<()> {
    let pending: Vec<(String, i32, i64)> = std::mem::take(&mut *consumer.context().to_commit.lock().unwrap_or_else(|p| p.into_inner()));
    if pending.is_empty() {
        return Ok(());
    }
    let mut list = TopicPartitionList::new();
    for (t, p, o) in &pending {
        list.add_partition_offset(t, *p, Offset::Offset(*o)).context("listing start offsets")?;
    }
    // Not fatal (e.g. a rebalance raced it): this run is unaffected, only the next one may start later.
    if let Err(e) = consumer.commit(&list, CommitMode::Sync) {
        eprintln!("warning: start offsets of group {group:?} not committed: {e}");
    }
    Ok(())
}

/// A start position as librdkafka understands it for `partition`.
fn start_offset(consumer: &BaseConsumer<GroupContext>, topic: &str, partition: i32, start: Start) -> Result<Offset> {
    Ok(match start {
        Start::Earliest => Offset::Beginning,
        Start::Latest => Offset::End,
        Start::At(n) => Offset::Offset(n),
        Start::BeforeEnd(n) => Offset::OffsetTail(n),
        Start::Timestamp(ms) => {
            let mut query = TopicPartitionList::new();
            query.add_partition_offset(topic, partition, Offset::Offset(ms)).context("querying by time")?;
            let found = consumer.offsets_for_times(query, BROKER_TIMEOUT).with_context(|| format!("offsets of {topic}:{partition} by time"))?;
            match found.elements().first().map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Offset::Offset(o),
                // No record at or after that time: only new ones.
                _ => Offset::End,
            }
        }
    })
}

pub async fn run(args: &ClientArgs, c: ConsumeArgs) -> Result<()> {
    let format = Format::parse(&c.format)?;
    let start = c.offset.as_deref().map(parse_start).transpose()?;
    let fields = Fields::from_args(&c);
    let group = c.group.clone().unwrap_or_else(|| format!("runnel-cli-{}", std::process::id()));
    let context = GroupContext {
        from_beginning: c.from_beginning,
        assigned_at: Mutex::new(None),
        to_commit: Mutex::new(Vec::new()),
        rebalance_error: Mutex::new(None),
    };
    let consumer: BaseConsumer<GroupContext> = client_config(args)?
        .set("group.id", &group)
        .set("enable.auto.commit", if c.group.is_some() { "true" } else { "false" })
        // Offsets are stored by hand after a record is printed, so a group commits exactly what was shown.
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", if c.from_beginning { "earliest" } else { "latest" })
        .create_with_context(context)
        .context("creating the consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(&c.topic), BROKER_TIMEOUT)
        .map_err(|e| anyhow!("cannot reach the broker at {}: {e}", args.brokers))?;
    let topic = metadata.topics().first().ok_or_else(|| anyhow!("no metadata for topic {:?}", c.topic))?;
    if topic.error().is_some() || topic.partitions().is_empty() {
        bail!("topic {:?} does not exist", c.topic);
    }
    let subscribed = c.group.is_some() && c.partition.is_none() && start.is_none();
    // When the idle timer (--timeout-ms) starts; for a group member, at its first assignment.
    let mut idle_since = None;
    if subscribed {
        consumer.subscribe(&[&c.topic]).context("subscribing")?;
    } else {
        let start = start.unwrap_or(if c.from_beginning { Start::Earliest } else { Start::Latest });
        if let Some(only) = c.partition {
            if !topic.partitions().iter().any(|p| p.id() == only) {
                bail!("topic {:?} has no partition {only}", c.topic);
            }
        }
        let mut list = TopicPartitionList::new();
        for p in topic.partitions() {
            if c.partition.is_none_or(|only| only == p.id()) {
                list.add_partition_offset(&c.topic, p.id(), start_offset(&consumer, &c.topic, p.id(), start)?).context("assigning")?;
            }
        }
        consumer.assign(&list).context("assigning partitions")?;
        idle_since = Some(Instant::now());
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
    // A member that never gets an assignment (e.g. more members than partitions) still stops.
    let join_allowance = Duration::from_secs(30);
    let started = Instant::now();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut count = 0u64;
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if c.max_messages.is_some_and(|max| count >= max) {
            break;
        }
        if let Some(e) = consumer.context().rebalance_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bail!("group {group:?}: {e}");
        }
        if idle_since.is_none() {
            idle_since = *consumer.context().assigned_at.lock().unwrap_or_else(|p| p.into_inner());
        }
        if let Some(t) = c.timeout_ms {
            let timer_start = idle_since.unwrap_or(started);
            let limit = Duration::from_millis(t) + if idle_since.is_none() { join_allowance } else { Duration::ZERO };
            if timer_start.elapsed() >= limit {
                break;
            }
        }
        let polled = consumer.poll(Duration::from_millis(100));
        // The assignment arrives inside poll: commit its resolved start offsets before any record is shown.
        commit_resolved_starts(&consumer, &group)?;
        match polled {
            None => {
                out.flush().context("writing stdout")?;
                continue;
            }
            Some(Err(e)) => bail!("consuming {:?}: {e}", c.topic),
            Some(Ok(m)) => {
                write_record(&mut out, &c, format, &fields, &m).context("writing stdout")?;
                // Flushed before the offset is stored, so a commit never covers a record not yet shown.
                out.flush().context("writing stdout")?;
                if c.group.is_some() {
                    consumer.store_offset_from_message(&m).context("storing the consumed offset")?;
                }
                count += 1;
                idle_since = Some(Instant::now());
            }
        }
    }
    out.flush().ok();
    if c.group.is_some() && count > 0 {
        commit_stored(&consumer, &group)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_start_offsets() {
        assert_eq!(parse_start("earliest").unwrap(), Start::Earliest);
        assert_eq!(parse_start("latest").unwrap(), Start::Latest);
        assert_eq!(parse_start("42").unwrap(), Start::At(42));
        assert_eq!(parse_start("-3").unwrap(), Start::BeforeEnd(3));
        assert_eq!(parse_start("@1000").unwrap(), Start::Timestamp(1000));
        assert_eq!(parse_start("@1970-01-01T00:00:01Z").unwrap(), Start::Timestamp(1000));
        assert!(parse_start("soon").is_err());
    }
}
