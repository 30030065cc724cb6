//! Produce, Fetch, ListOffsets, InitProducerId.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
#[allow(unused_imports)]
use crate::msg::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use uuid::Uuid;

use super::{case, Case};
use crate::ctx::{batch, batch_with, s, Ctx, Rule, BASE_TIMESTAMP};

fn list_offsets_request(topic: &str, partition: i32, timestamp: i64) -> ListOffsetsRequest {
    ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
        .with_name(TopicName(s(topic)))
        .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(partition).with_timestamp(timestamp)])])
}

fn delete_records(ctx: &mut Ctx, topic: &str, offset: i64) -> anyhow::Result<()> {
    let request = DeleteRecordsRequest::default().with_timeout_ms(30_000).with_topics(vec![DeleteRecordsTopic::default()
        .with_name(TopicName(s(topic)))
        .with_partitions(vec![DeleteRecordsPartition::default().with_partition_index(0).with_offset(offset)])]);
    let response = ctx.send(&request)?;
    let code = response.topics[0].partitions[0].error_code;
    anyhow::ensure!(code == 0, "DeleteRecords failed with {code}");
    Ok(())
}

/// Produces `bytes` as the probe.
fn produce_probe(ctx: &mut Ctx, topic: &str, partition: i32, bytes: Bytes, acks: i16) -> anyhow::Result<()> {
    let request = ctx.produce_request(topic, partition, bytes, acks);
    ctx.probe("probe", &request)?;
    Ok(())
}

/// The partition states ListOffsets is probed on.
#[derive(Clone, Copy, Debug)]
enum State {
    Empty,
    FiveRecords,
    /// Five records, the first three deleted (log start offset 3).
    Truncated,
    /// Five records, all deleted (log start = high watermark = 5).
    AllDeleted,
}

fn prepare(ctx: &mut Ctx, base: &str, state: State) -> anyhow::Result<String> {
    let name = ctx.name(base);
    ctx.create_topic(&name, 1, &[])?;
    match state {
        State::Empty => {}
        State::FiveRecords => {
            ctx.produce(&name, 0, 5)?;
        }
        State::Truncated => {
            ctx.produce(&name, 0, 5)?;
            delete_records(ctx, &name, 3)?;
        }
        State::AllDeleted => {
            ctx.produce(&name, 0, 5)?;
            delete_records(ctx, &name, 5)?;
        }
    }
    Ok(name)
}

pub fn cases() -> Vec<Case> {
    let mut cases = vec![
        case("produce.acks_all", |ctx| {
            let name = ctx.name("p-all");
            ctx.create_topic(&name, 1, &[])?;
            produce_probe(ctx, &name, 0, batch(3, 0), -1)?;
            produce_probe(ctx, &name, 0, batch(2, 3), -1)
        }),
        case("produce.acks_1", |ctx| {
            let name = ctx.name("p-one");
            ctx.create_topic(&name, 1, &[])?;
            produce_probe(ctx, &name, 0, batch(3, 0), 1)
        }),
        case("produce.invalid_acks", |ctx| {
            let name = ctx.name("p-acks2");
            ctx.create_topic(&name, 1, &[])?;
            produce_probe(ctx, &name, 0, batch(1, 0), 2)
        }),
        case("produce.unknown_topic", |ctx| {
            let name = ctx.name("p-unknown");
            produce_probe(ctx, &name, 0, batch(1, 0), -1)
        }),
        case("produce.unknown_partition", |ctx| {
            let name = ctx.name("p-unknown-part");
            ctx.create_topic(&name, 1, &[])?;
            produce_probe(ctx, &name, 5, batch(1, 0), -1)
        }),
        case("produce.deleted_topic", |ctx| {
            let name = ctx.name("p-deleted");
            ctx.create_topic(&name, 1, &[])?;
            ctx.delete_topic(&name)?;
            produce_probe(ctx, &name, 0, batch(1, 0), -1)
        }),
        case("produce.bad_crc", |ctx| {
            let name = ctx.name("p-crc");
            ctx.create_topic(&name, 1, &[])?;
            let mut bytes = BytesMut::from(&batch(2, 0)[..]);
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff; // inside the CRC-covered records
            produce_probe(ctx, &name, 0, bytes.freeze(), -1)?;
            ctx.probe("offsets_after", &list_offsets_request(&name, 0, -1))?;
            Ok(())
        }),
        case("produce.magic_1", |ctx| {
            let name = ctx.name("p-magic1");
            ctx.create_topic(&name, 1, &[])?;
            let mut bytes = BytesMut::from(&batch(1, 0)[..]);
            bytes[16] = 1; // magic byte of a v2 batch header
            produce_probe(ctx, &name, 0, bytes.freeze(), -1)
        }),
        case("produce.magic_3", |ctx| {
            let name = ctx.name("p-magic3");
            ctx.create_topic(&name, 1, &[])?;
            let mut bytes = BytesMut::from(&batch(1, 0)[..]);
            bytes[16] = 3;
            produce_probe(ctx, &name, 0, bytes.freeze(), -1)
        }),
        case("produce.truncated_batch", |ctx| {
            let name = ctx.name("p-trunc");
            ctx.create_topic(&name, 1, &[])?;
            let bytes = batch(3, 0);
            produce_probe(ctx, &name, 0, bytes.slice(..bytes.len() - 5), -1)
        }),
        case("produce.empty_records", |ctx| {
            let name = ctx.name("p-empty");
            ctx.create_topic(&name, 1, &[])?;
            produce_probe(ctx, &name, 0, Bytes::new(), -1)
        }),
        case("produce.batch_larger_than_max_message_bytes", |ctx| {
            let name = ctx.name("p-large");
            ctx.create_topic(&name, 1, &[("max.message.bytes", "100")])?;
            produce_probe(ctx, &name, 0, batch(20, 0), -1)?;
            ctx.probe("offsets_after", &list_offsets_request(&name, 0, -1))?;
            Ok(())
        }),
        case("produce.log_append_time", |ctx| {
            let name = ctx.name("p-lat");
            ctx.create_topic(&name, 1, &[("message.timestamp.type", "LogAppendTime")])?;
            produce_probe(ctx, &name, 0, batch(2, 0), -1)
        }),
        case("produce.timestamp_too_old", |ctx| {
            // Our timestamps are from 2023: a 1 h window refuses them. Each
            // record's message names the broker's clock: compare presence.
            ctx.rule("*.batch_index_error_message", Rule::Presence);
            let name = ctx.name("p-old");
            ctx.create_topic(&name, 1, &[("message.timestamp.before.max.ms", "3600000")])?;
            produce_probe(ctx, &name, 0, batch(2, 0), -1)
        }),
        case("produce.timestamp_too_new", |ctx| {
            // message.timestamp.after.max.ms (default 1 h): records from
            // further in the future are refused.
            ctx.rule("*.batch_index_error_message", Rule::Presence);
            let name = ctx.name("p-new");
            ctx.create_topic(&name, 1, &[])?;
            let far_future = future_batch();
            produce_probe(ctx, &name, 0, far_future, -1)
        }),
        case("produce.v13_unknown_topic_id", |ctx| {
            let name = ctx.name("p-unknown-id");
            let mut request = ctx.produce_request(&name, 0, batch(1, 0), -1);
            request.topic_data[0].topic_id = Uuid::from_u128(0xdead_beef);
            ctx.probe_v("probe", &request, 13)?;
            Ok(())
        }),
        case("produce.v13_by_topic_id", |ctx| {
            let name = ctx.name("p-by-id");
            ctx.create_topic(&name, 1, &[])?;
            let request = ctx.produce_request(&name, 0, batch(2, 0), -1);
            ctx.probe_v("probe", &request, 13)?;
            Ok(())
        }),
        case("produce.two_partitions_one_unknown", |ctx| {
            let name = ctx.name("p-mixed");
            ctx.create_topic(&name, 1, &[])?;
            let mut request = ctx.produce_request(&name, 0, batch(1, 0), -1);
            let mut other = request.topic_data[0].partition_data[0].clone();
            other.index = 3;
            request.topic_data[0].partition_data.push(other);
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("fetch.from_start", |ctx| {
            let name = ctx.name("f-start");
            ctx.create_topic(&name, 1, &[])?;
            ctx.produce(&name, 0, 3)?;
            let request = ctx.fetch_request(&name, 0, 0, 1 << 20, 1 << 20);
            ctx.probe_fetch("probe", &request)?;
            Ok(())
        }),
        case("fetch.from_middle_of_batch", |ctx| {
            let name = ctx.name("f-mid");
            ctx.create_topic(&name, 1, &[])?;
            ctx.produce(&name, 0, 5)?;
            let request = ctx.fetch_request(&name, 0, 2, 1 << 20, 1 << 20);
            ctx.probe_fetch("probe", &request)?;
            Ok(())
        }),
        case("fetch.at_high_watermark", |ctx| {
            let name = ctx.name("f-hw");
            ctx.create_topic(&name, 1, &[])?;
            ctx.produce(&name, 0, 3)?;
            let request = ctx.fetch_request(&name, 0, 3, 1 << 20, 1 << 20);
            ctx.probe_fetch("probe", &request)?;
            Ok(())
        }),
        case("fetch.beyond_high_watermark", |ctx| {
            let name = ctx.name("f-beyond");
            ctx.create_topic(&name, 1, &[])?;
            ctx.produce(&name, 0, 3)?;
            let request = ctx.fetch_request(&name, 0, 10, 1 << 20, 1 << 20);
            ctx.probe_fetch("probe", &request)?;
            Ok(())
        }),
        case("fetch.below_log_start", |ctx| {
            let name = ctx.name("f-below");
            ctx.create_topic(&name, 1, &[])?;
            ctx.produce(&name, 0, 5)?;
            delete_records(ctx, &name, 3)?;
            let request = ctx.fetch_request(&name, 0, 1, 1 << 20, 1 << 20);
            ctx.probe_fetch("probe", &request)?;
            Ok(())
        }),
        case("fetch.at_log_start_after_delete", |ctx| {
            let name = ctx.name("f-logstart");
            ctx.create_topic(&name, 1, &[])?;
            ctx.produce(&name, 0, 2)?;
            ctx.produce(&name, 0, 3)?;
            delete_records(ctx, &name, 3)?;
            let request = ctx.fetch_request(&name, 0, 3, 1 << 20, 1 << 20);
            ctx.probe_fetch("probe", &request)?;
            Ok(())
        }),
        case("fetch.negative_offset", |ctx| {
            let name = ctx.name("f-neg");
            ctx.create_topic(&name, 1, &[])?;
            ctx.produce(&name, 0, 1)?;
            let request = ctx.fetch_request(&name, 0, -1, 1 << 20, 1 << 20);
            ctx.probe_fetch("probe", &request)?;
            Ok(())
        }),
        case("fetch.partition_max_bytes_smaller_than_batch", |ctx| {
            // KIP-74: the first batch is returned whole even if larger than the limits.
            let name = ctx.name("f-small");
            ctx.create_topic(&name, 1, &[])?;
            ctx.produce(&name, 0, 5)?;
            ctx.produce(&name, 0, 5)?;
            let request = ctx.fetch_request(&name, 0, 0, 1 << 20, 10);
            ctx.probe_fetch("probe", &request)?;
            Ok(())
        }),
        case("fetch.max_bytes_smaller_than_batch", |ctx| {
            let name = ctx.name("f-small-total");
            ctx.create_topic(&name, 1, &[])?;
            ctx.produce(&name, 0, 5)?;
            ctx.produce(&name, 0, 5)?;
            let request = ctx.fetch_request(&name, 0, 0, 10, 1 << 20);
            ctx.probe_fetch("probe", &request)?;
            Ok(())
        }),
        case("fetch.empty_partition", |ctx| {
            let name = ctx.name("f-empty");
            ctx.create_topic(&name, 1, &[])?;
            let request = ctx.fetch_request(&name, 0, 0, 1 << 20, 1 << 20);
            ctx.probe_fetch("probe", &request)?;
            Ok(())
        }),
        case("fetch.unknown_topic_by_name", |ctx| {
            let name = ctx.name("f-unknown");
            let request = ctx.fetch_request(&name, 0, 0, 1 << 20, 1 << 20);
            ctx.probe_fetch_v("probe", &request, 12)?;
            Ok(())
        }),
        case("fetch.unknown_topic_id", |ctx| {
            let name = ctx.name("f-unknown-id");
            let mut request = ctx.fetch_request(&name, 0, 0, 1 << 20, 1 << 20);
            request.topics[0].topic_id = Uuid::from_u128(0xabcdef);
            ctx.probe_fetch_v("probe", &request, 13)?;
            Ok(())
        }),
        case("fetch.unknown_partition", |ctx| {
            let name = ctx.name("f-unknown-part");
            ctx.create_topic(&name, 1, &[])?;
            let request = ctx.fetch_request(&name, 4, 0, 1 << 20, 1 << 20);
            ctx.probe_fetch("probe", &request)?;
            Ok(())
        }),
        case("fetch.v12_by_name", |ctx| {
            let name = ctx.name("f-v12");
            ctx.create_topic(&name, 1, &[])?;
            ctx.produce(&name, 0, 2)?;
            let request = ctx.fetch_request(&name, 0, 0, 1 << 20, 1 << 20);
            ctx.probe_fetch_v("probe", &request, 12)?;
            Ok(())
        }),
        case("fetch.read_committed", |ctx| {
            let name = ctx.name("f-rc");
            ctx.create_topic(&name, 1, &[])?;
            ctx.produce(&name, 0, 2)?;
            let request = ctx.fetch_request(&name, 0, 0, 1 << 20, 1 << 20).with_isolation_level(1);
            ctx.probe_fetch("probe", &request)?;
            Ok(())
        }),
        case("fetch.compressed_gzip_roundtrip", |ctx| {
            let name = ctx.name("f-gzip");
            ctx.create_topic(&name, 1, &[])?;
            produce_probe(ctx, &name, 0, batch_with(4, 0, Compression::Gzip), -1)?;
            let request = ctx.fetch_request(&name, 0, 0, 1 << 20, 1 << 20);
            ctx.probe_fetch("fetch", &request)?;
            Ok(())
        }),
        case("fetch.session_unknown_id", |ctx| {
            // An incremental fetch in a session the broker never created.
            let name = ctx.name("f-session");
            ctx.create_topic(&name, 1, &[])?;
            let request = ctx.fetch_request(&name, 0, 0, 1 << 20, 1 << 20).with_session_id(12345).with_session_epoch(1);
            ctx.probe_fetch("probe", &request)?;
            Ok(())
        }),
        case("fetch.new_session", |ctx| {
            let name = ctx.name("f-newsession");
            ctx.create_topic(&name, 1, &[])?;
            let request = ctx.fetch_request(&name, 0, 0, 1 << 20, 1 << 20).with_session_id(0).with_session_epoch(0);
            ctx.probe_fetch("probe", &request)?;
            Ok(())
        }),
        case("list_offsets.duplicate_partition", |ctx| {
            let name = ctx.name("lo-dup");
            ctx.create_topic(&name, 1, &[])?;
            let mut request = list_offsets_request(&name, 0, -1);
            let copy = request.topics[0].partitions[0].clone();
            request.topics[0].partitions.push(copy);
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("fetch.two_partitions_one_unknown", |ctx| {
            let name = ctx.name("f-mixed");
            ctx.create_topic(&name, 1, &[])?;
            ctx.produce(&name, 0, 2)?;
            let mut request = ctx.fetch_request(&name, 0, 0, 1 << 20, 1 << 20);
            let mut other = request.topics[0].partitions[0].clone();
            other.partition = 5;
            request.topics[0].partitions.push(other);
            ctx.probe_fetch("probe", &request)?;
            Ok(())
        }),
        case("list_offsets.unknown_topic", |ctx| {
            let name = ctx.name("lo-unknown");
            ctx.probe("probe", &list_offsets_request(&name, 0, -1))?;
            Ok(())
        }),
        case("list_offsets.unknown_partition", |ctx| {
            let name = ctx.name("lo-unknown-part");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &list_offsets_request(&name, 3, -1))?;
            Ok(())
        }),
        case("list_offsets.v1_latest", |ctx| {
            let name = ctx.name("lo-v1");
            ctx.create_topic(&name, 1, &[])?;
            ctx.produce(&name, 0, 2)?;
            ctx.probe_v("probe", &list_offsets_request(&name, 0, -1), 1)?;
            Ok(())
        }),
        case("list_offsets.read_committed_latest", |ctx| {
            let name = ctx.name("lo-rc");
            ctx.create_topic(&name, 1, &[])?;
            ctx.produce(&name, 0, 2)?;
            ctx.probe("probe", &list_offsets_request(&name, 0, -1).with_isolation_level(1))?;
            Ok(())
        }),
        case("list_offsets.log_append_time_by_timestamp", |ctx| {
            let name = ctx.name("lo-lat");
            ctx.create_topic(&name, 1, &[("message.timestamp.type", "LogAppendTime")])?;
            ctx.produce(&name, 0, 3)?;
            // Append times are each broker's clock; whether one is set is compared.
            ctx.rule("*.timestamp", Rule::Presence);
            ctx.probe("earliest_ts", &list_offsets_request(&name, 0, BASE_TIMESTAMP))?;
            ctx.probe("max_ts", &list_offsets_request(&name, 0, -3))?;
            Ok(())
        }),
        case("init_producer_id.idempotent", |ctx| {
            let request = InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(60_000).with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
            let response = ctx.send_until_ready(&request, 10, |r| r.error_code)?;
            ctx.record("probe", &response)?;
            Ok(())
        }),
        case("init_producer_id.transactional", |ctx| {
            let txn = ctx.name("txn");
            let request = InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(s(&txn))))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
            // As a client does: find the transaction coordinator, then ask it.
            let find = FindCoordinatorRequest::default().with_key_type(1).with_coordinator_keys(vec![s(&txn)]);
            let found = ctx.send_until_ready(&find, 10, |r| r.coordinators.first().map_or(0, |c| c.error_code))?;
            ctx.record("find_coordinator_error", &found.coordinators.first().map(|c| c.error_code))?;
            let response = ctx.send_until_ready(&request, 10, |r| r.error_code)?;
            ctx.record("probe", &response)?;
            Ok(())
        }),
        case("describe_producers.unknown_topic", |ctx| {
            let name = ctx.name("dp-missing");
            ctx.probe("probe", &describe_producers(&name, &[0]))?;
            Ok(())
        }),
        case("describe_producers.no_producers", |ctx| {
            // Records without a producer id leave no producer state.
            let name = ctx.name("dp-plain");
            ctx.create_topic(&name, 2, &[])?;
            let produce = ctx.produce_request(&name, 0, batch(2, 0), -1);
            ctx.send(&produce)?;
            ctx.probe("probe", &describe_producers(&name, &[0, 1, 7]))?;
            Ok(())
        }),
        case("describe_producers.idempotent", |ctx| {
            let name = ctx.name("dp-idem");
            ctx.create_topic(&name, 1, &[])?;
            let request = InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(60_000).with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
            let issued = ctx.send_until_ready(&request, 10, |r| r.error_code)?;
            for first in [0, 3] {
                let records = idempotent_batch(issued.producer_id.0, issued.producer_epoch, 3, first);
                let produce = ctx.produce_request(&name, 0, records, -1);
                let produced = ctx.send(&produce)?;
                anyhow::ensure!(produced.responses[0].partition_responses[0].error_code == 0, "idempotent produce failed");
            }
            ctx.probe("probe", &describe_producers(&name, &[0]))?;
            Ok(())
        }),
        case("init_producer_id.unknown_producer_epoch_bump", |ctx| {
            // KIP-360: bumping the epoch of a producer id the broker never issued.
            let request = InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(60_000).with_producer_id(ProducerId(987_654)).with_producer_epoch(3);
            let response = ctx.send_until_ready(&request, 10, |r| r.error_code)?;
            ctx.record("probe", &response)?;
            Ok(())
        }),
    ];
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        cases.push(case(format!("produce.compressed.{codec:?}").to_lowercase(), move |ctx| {
            let name = ctx.name(&format!("p-{codec:?}").to_lowercase());
            ctx.create_topic(&name, 1, &[])?;
            produce_probe(ctx, &name, 0, batch_with(3, 0, codec), -1)?;
            ctx.probe("offsets_after", &list_offsets_request(&name, 0, -1))?;
            Ok(())
        }));
    }
    // Every special timestamp and a few real ones, on each partition state.
    let timestamps: &[(&str, i64)] = &[
        ("latest", -1),
        ("earliest", -2),
        ("max_timestamp", -3),
        ("earliest_local", -4),
        ("latest_tiered", -5),
        ("first_record_ts", BASE_TIMESTAMP),
        ("between_records_ts", BASE_TIMESTAMP + 1500),
        ("after_last_ts", BASE_TIMESTAMP + 60_000),
        ("before_first_ts", 1),
    ];
    for state in [State::Empty, State::FiveRecords, State::Truncated, State::AllDeleted] {
        for &(label, timestamp) in timestamps {
            let state_label = format!("{state:?}").to_lowercase();
            cases.push(case(format!("list_offsets.{state_label}.{label}"), move |ctx| {
                let name = prepare(ctx, &format!("lo-{state_label}-{label}").replace('_', "-"), state)?;
                ctx.probe("probe", &list_offsets_request(&name, 0, timestamp))?;
                Ok(())
            }));
        }
    }
    cases
}

fn describe_producers(topic: &str, partitions: &[i32]) -> DescribeProducersRequest {
    DescribeProducersRequest::default().with_topics(vec![kafka_protocol::messages::describe_producers_request::TopicRequest::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_indexes(partitions.to_vec())])
}

/// `count` records of one idempotent producer, sequences `first`.., one batch.
fn idempotent_batch(producer_id: i64, producer_epoch: i16, count: usize, first: usize) -> Bytes {
    let records: Vec<Record> = (first..first + count)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: (i - first) as i64,
            sequence: i as i32,
            timestamp: BASE_TIMESTAMP + 1000 * i as i64,
            key: None,
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encoding a record batch");
    buf.freeze()
}

/// Two records an hour and a day past the broker's clock (default
/// message.timestamp.after.max.ms is one hour).
fn future_batch() -> Bytes {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let records: Vec<Record> = [now + 2 * 3_600_000, now + 24 * 3_600_000]
        .iter()
        .enumerate()
        .map(|(i, &timestamp)| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp,
            key: None,
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encoding a record batch");
    buf.freeze()
}
