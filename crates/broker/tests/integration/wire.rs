//! Wire-level tests: an in-process broker on a loopback port, driven over TCP
//! with requests encoded by the kafka-protocol crate. They complement the
//! black-box tests in `tests/` (real third-party clients) with exact checks
//! of fields clients rely on.


use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use crate::common::{record_batch as batch, start_broker, topic_name, Client};
use indexmap::IndexMap;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

fn produce_request(topic: &str, acks: i16, records: Bytes) -> ProduceRequest {
    ProduceRequest::default().with_acks(acks).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default()
        .with_name(topic_name(topic))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(records))])])
}

fn fetch_request(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default().with_topic(topic_name(topic)).with_partitions(vec![
            FetchPartition::default().with_partition(0).with_fetch_offset(offset).with_partition_max_bytes(1 << 20),
        ])])
}

async fn create_topic(client: &mut Client, name: &str) {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name(name)))]))
        .with_allow_auto_topic_creation(true);
    let resp = client.request(12, &req).await;
    assert_eq!(resp.topics[0].error_code, 0, "auto-create {name}");
}

#[tokio::test]
async fn high_watermark_is_last_offset_plus_one_with_multi_record_batches() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    create_topic(&mut client, "hw").await;
    for acks in [1i16, -1] {
        let resp = client.request(9, &produce_request("hw", acks, batch(&["a", "b", "c"]))).await;
        assert_eq!(resp.responses[0].partition_responses[0].error_code, 0, "{:?}", resp.responses[0].partition_responses[0].error_message);
    }
    let resp = client.request(12, &fetch_request("hw", 0, 100)).await;
    let partition = &resp.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.high_watermark, 6);
    let mut records = partition.records.clone().unwrap();
    let sets = RecordBatchDecoder::decode_all(&mut records).unwrap();
    let offsets: Vec<i64> = sets.iter().flat_map(|s| s.records.iter().map(|r| r.offset)).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4, 5]);
    // A fetch in the middle of a batch returns the whole batch; the client skips.
    let resp = client.request(12, &fetch_request("hw", 4, 100)).await;
    let mut records = resp.responses[0].partitions[0].records.clone().unwrap();
    let first = RecordBatchDecoder::decode(&mut records).unwrap();
    assert_eq!(first.records[0].offset, 3);
    broker.shutdown().await;
}

#[tokio::test]
async fn fetch_long_poll_wakes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut producer = Client::connect(broker.local_addr).await;
    create_topic(&mut producer, "poll").await;
    let mut consumer = Client::connect(broker.local_addr).await;
    let started = std::time::Instant::now();
    let fetch = tokio::spawn(async move {
        let resp = consumer.request(12, &fetch_request("poll", 0, 10_000)).await;
        (resp, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    producer.request(9, &produce_request("poll", 1, batch(&["x"]))).await;
    let (resp, waited) = fetch.await.unwrap();
    assert!(waited < Duration::from_secs(5), "fetch should wake on the append, waited {waited:?}");
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 1);
    broker.shutdown().await;
}

#[tokio::test]
async fn corrupt_and_oversize_batches_are_refused_and_nothing_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[("message.max.bytes", "200")]).await;
    let mut client = Client::connect(broker.local_addr).await;
    create_topic(&mut client, "bad").await;
    let mut corrupt = BytesMut::from(&batch(&["hello"])[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let resp = client.request(9, &produce_request("bad", 1, corrupt.freeze())).await;
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 2, "CORRUPT_MESSAGE");
    let big = "x".repeat(500);
    let resp = client.request(9, &produce_request("bad", 1, batch(&[&big]))).await;
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 10, "MESSAGE_TOO_LARGE");
    let resp = client.request(9, &produce_request("missing", 1, batch(&["x"]))).await;
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    let resp = client.request(12, &fetch_request("bad", 0, 0)).await;
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 0);
    broker.shutdown().await;
}

#[tokio::test]
async fn malformed_frames_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let addr = broker.local_addr;
    // Metadata v1 whose topic array claims 2^31-1 entries in a 20-byte frame.
    let mut forged = BytesMut::new();
    forged.put_i32(0);
    forged.put_i16(3);
    forged.put_i16(1);
    forged.put_i32(1);
    forged.put_i16(-1);
    forged.put_i32(i32::MAX);
    let len = forged.len() as i32 - 4;
    forged[0..4].copy_from_slice(&len.to_be_bytes());
    let attacks: Vec<Vec<u8>> = vec![
        forged.to_vec(),
        vec![0x7f, 0xff, 0xff, 0xff, 0, 1, 2],
        vec![0xff, 0xff, 0xff, 0xff],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0, 0, 0, 8, 0x7f, 0x00, 0, 0, 0, 0, 0, 1],
    ];
    for attack in attacks {
        let mut bad = Client::connect(addr).await;
        bad.send_raw(&attack).await;
        assert!(bad.read_frame().await.is_none(), "broker should close after {attack:?}");
    }
    let mut good = Client::connect(addr).await;
    // v3 names the client's software (KIP-511: an empty name is refused).
    let hello = ApiVersionsRequest::default()
        .with_client_software_name(kafka_protocol::protocol::StrBytes::from_static_str("wire-test"))
        .with_client_software_version(kafka_protocol::protocol::StrBytes::from_static_str("1"));
    let resp = good.request(3, &hello).await;
    assert_eq!(resp.error_code, 0);
    broker.shutdown().await;
}

#[tokio::test]
async fn unsupported_api_versions_version_gets_a_v0_answer() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    // ApiVersions v99 with a v2 header: the broker answers in v0 format.
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    frame.put_i16(18);
    frame.put_i16(99);
    frame.put_i32(42);
    frame.put_i16(-1);
    frame.put_u8(0);
    let len = frame.len() as i32 - 4;
    frame[0..4].copy_from_slice(&len.to_be_bytes());
    client.send_raw(&frame).await;
    let mut resp = client.read_frame().await.expect("an answer");
    assert_eq!(resp.get_i32(), 42);
    let body = ApiVersionsResponse::decode(&mut resp, 0).unwrap();
    assert_eq!(body.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(body.api_keys.iter().any(|k| k.api_key == 18 && k.max_version == 4));
    broker.shutdown().await;
}

#[tokio::test]
async fn acknowledged_records_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    create_topic(&mut client, "keep").await;
    for _ in 0..10 {
        let resp = client.request(9, &produce_request("keep", -1, batch(&["a", "b"]))).await;
        assert_eq!(resp.responses[0].partition_responses[0].error_code, 0, "{:?}", resp.responses[0].partition_responses[0].error_message);
    }
    drop(client);
    broker.shutdown().await;
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    let resp = client.request(12, &fetch_request("keep", 0, 0)).await;
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 20);
    broker.shutdown().await;
}


fn idempotent_batch(producer_id: i64, epoch: i16, base_sequence: i32, values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: base_sequence + i as i32,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(v.to_string())),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: Compression::None }).unwrap();
    buf.freeze()
}

#[tokio::test]
async fn idempotent_retries_are_deduplicated_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    create_topic(&mut client, "idem").await;
    let first = idempotent_batch(42, 0, 0, &["a", "b"]);
    let resp = client.request(9, &produce_request("idem", -1, first.clone())).await;
    assert_eq!(resp.responses[0].partition_responses[0].base_offset, 0);
    // The same batch again (a retry): same offsets, nothing appended.
    let resp = client.request(9, &produce_request("idem", -1, first.clone())).await;
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(resp.responses[0].partition_responses[0].base_offset, 0);
    // A gap in the sequence is refused.
    let resp = client.request(9, &produce_request("idem", -1, idempotent_batch(42, 0, 5, &["x"]))).await;
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");
    drop(client);
    broker.shutdown().await;
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    let resp = client.request(9, &produce_request("idem", -1, first)).await;
    assert_eq!(resp.responses[0].partition_responses[0].base_offset, 0, "the retry is recognised after the restart");
    let resp = client.request(12, &fetch_request("idem", 0, 0)).await;
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 2);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_batch_cut_by_partition_max_bytes_fills_the_answer_as_kafka_does() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    create_topic(&mut client, "fill").await;
    let value = "v".repeat(300);
    let one = batch(&[&value, &value, &value]);
    for _ in 0..3 {
        let resp = client.request(9, &produce_request("fill", 1, one.clone())).await;
        assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    }
    // Room for one batch and a half: Kafka slices its log at max_bytes, so
    // the answer carries the first batch whole and the start of the second.
    let limit = one.len() + one.len() / 2;
    let mut request = fetch_request("fill", 0, 0);
    request.topics[0].partitions[0].partition_max_bytes = limit as i32;
    let resp = client.request(12, &request).await;
    let records = resp.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(records.len(), limit, "the answer is exactly partition_max_bytes long");
    // (From byte 16 on: the broker stamps the base offset and the partition leader epoch.)
    assert_eq!(&records[16..one.len()], &one[16..], "the first batch arrives whole");
    let mut whole = records.slice(..one.len());
    let decoded = RecordBatchDecoder::decode(&mut whole).unwrap();
    assert_eq!(decoded.records.len(), 3);
    // The next fetch, from the first record the client could not read, gets the second batch whole.
    let mut request = fetch_request("fill", 3, 0);
    request.topics[0].partitions[0].partition_max_bytes = limit as i32;
    let resp = client.request(12, &request).await;
    let mut records = resp.responses[0].partitions[0].records.clone().unwrap();
    let decoded = RecordBatchDecoder::decode(&mut records).unwrap();
    assert_eq!(decoded.records[0].offset, 3);
    // A limit below the first batch still returns that batch whole (KIP-74), nothing more.
    let mut request = fetch_request("fill", 0, 0);
    request.topics[0].partitions[0].partition_max_bytes = 10;
    let resp = client.request(12, &request).await;
    assert_eq!(resp.responses[0].partitions[0].records.as_ref().map(|r| r.len()), Some(one.len()));
    // The high watermark bounds the slice: a limit past the log end returns every batch whole.
    let mut request = fetch_request("fill", 0, 0);
    request.topics[0].partitions[0].partition_max_bytes = (one.len() * 10) as i32;
    let resp = client.request(12, &request).await;
    assert_eq!(resp.responses[0].partitions[0].records.as_ref().map(|r| r.len()), Some(one.len() * 3));
    broker.shutdown().await;
}
