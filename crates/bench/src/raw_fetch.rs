//! Catch-up read with plain Fetch requests that do not parse records.
//!
//! librdkafka decodes every record on one thread per broker connection, and
//! on this machine that thread, not the broker, limits the consume row. This
//! reader shows what the broker itself serves: it sends Fetch v12 requests
//! with the Java consumer's default sizes (`fetch.max.bytes` 50 MiB,
//! `max.partition.fetch.bytes` 1 MiB), decodes the responses with
//! kafka-protocol (record bytes stay slices of the received frame) and only
//! reads each batch header to count records and find the next offset.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use runnel_storage::batch::{BatchHeader, BATCH_HEADER_LEN};

use crate::report::Row;

const FETCH_VERSION: i16 = 12;
const MAX_RESPONSE: usize = 64 << 20;

/// Reads `count` records of every partition of `topic` from offset 0.
pub fn catch_up(bootstrap: &str, topic: &str, partitions: i32, size: usize, count: usize, system: &str) -> Result<Row> {
    let mut stream = TcpStream::connect(bootstrap).with_context(|| format!("connecting to {bootstrap}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut next: Vec<i64> = vec![0; partitions.max(0) as usize];
    let deadline = Instant::now() + Duration::from_secs(300);
    let (mut received, mut bytes) = (0usize, 0usize);
    // The connection is up and needs no handshake: time from the first request.
    let started = Instant::now();
    let mut correlation_id = 0;
    while received < count {
        if Instant::now() > deadline {
            bail!("raw fetch got {received} of {count} records in 300 s");
        }
        correlation_id += 1;
        let response = fetch(&mut stream, correlation_id, topic, &next)?;
        for topic_response in response.responses {
            for partition in topic_response.partitions {
                if partition.error_code != 0 {
                    bail!("fetch of {topic}-{} failed with error code {}", partition.partition_index, partition.error_code);
                }
                let Some(slot) = next.get_mut(partition.partition_index as usize) else {
                    bail!("fetch answered for unknown partition {}", partition.partition_index);
                };
                let (records, batch_bytes, next_offset) = walk_batches(partition.records.unwrap_or_default(), *slot);
                received += records;
                bytes += batch_bytes;
                *slot = next_offset;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let workload = format!("fetch catch-up {size} B, {partitions}p (raw Fetch, records not parsed)");
    if bytes < count * size {
        bail!("raw fetch read {bytes} bytes of batches for {count} records of {size} B");
    }
    Ok(Row::new(system, workload, count as u64, (count * size) as u64, seconds, None))
}

fn fetch(stream: &mut TcpStream, correlation_id: i32, topic: &str, next: &[i64]) -> Result<FetchResponse> {
    let partitions = next
        .iter()
        .enumerate()
        .map(|(i, &offset)| {
            FetchPartition::default().with_partition(i as i32).with_fetch_offset(offset).with_partition_max_bytes(1 << 20)
        })
        .collect();
    let request = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(partitions)]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(FETCH_VERSION)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("runnel-bench")));
    let header_version = FetchRequest::header_version(FETCH_VERSION);
    let mut body = BytesMut::new();
    header.encode(&mut body, header_version)?;
    request.encode(&mut body, FETCH_VERSION)?;
    let mut frame = BytesMut::with_capacity(4 + body.len());
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    stream.write_all(&frame).context("sending fetch")?;

    let mut len = [0u8; 4];
    stream.read_exact(&mut len).context("reading fetch response length")?;
    let len = i32::from_be_bytes(len);
    if len < 0 || len as usize > MAX_RESPONSE {
        bail!("fetch response length {len} is out of range");
    }
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).context("reading fetch response")?;
    let mut buf = Bytes::from(buf);
    let header = ResponseHeader::decode(&mut buf, FetchResponse::header_version(FETCH_VERSION))?;
    if header.correlation_id != correlation_id {
        bail!("response for correlation id {} while waiting for {correlation_id}", header.correlation_id);
    }
    Ok(FetchResponse::decode(&mut buf, FETCH_VERSION)?)
}

/// Counts the records of the whole batches in `records` at or after
/// `from_offset`; returns (records, bytes, next offset). A batch cut off at
/// the end of the response is left for the next fetch.
fn walk_batches(mut records: Bytes, from_offset: i64) -> (usize, usize, i64) {
    let (mut count, mut bytes, mut next) = (0usize, 0usize, from_offset);
    while let Ok(header) = BatchHeader::parse(&records) {
        let total = header.total_size();
        if total < BATCH_HEADER_LEN || records.len() < total {
            break;
        }
        if header.last_offset() >= next {
            count += header.record_count.max(0) as usize;
            bytes += total;
            next = header.next_offset();
        }
        records.advance(total);
    }
    (count, bytes, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_storage::batch::LOG_OVERHEAD;

    fn batch(base_offset: i64, records: i32) -> Vec<u8> {
        let mut b = vec![0u8; BATCH_HEADER_LEN + 10];
        b[0..8].copy_from_slice(&base_offset.to_be_bytes());
        let length = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&length.to_be_bytes());
        b[23..27].copy_from_slice(&(records - 1).to_be_bytes());
        b[57..61].copy_from_slice(&records.to_be_bytes());
        b
    }

    #[test]
    fn counts_whole_batches_and_skips_ones_already_read() {
        let mut data = batch(0, 5);
        data.extend(batch(5, 3));
        data.extend(&batch(8, 2)[..30]); // cut off
        let (count, _, next) = walk_batches(Bytes::from(data.clone()), 0);
        assert_eq!((count, next), (8, 8));
        let (count, _, next) = walk_batches(Bytes::from(data), 5);
        assert_eq!((count, next), (3, 8));
    }
}
