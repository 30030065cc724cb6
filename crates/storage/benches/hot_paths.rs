//! Micro-benchmarks of the storage hot paths: what a produce costs before
//! the network (batch validation + CRC-32C + offset assignment, log
//! append), and what a fetch costs (offset index lookup, reading stored
//! bytes). Run: `cargo bench -p runnel-storage --bench hot_paths`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use indexmap::IndexMap;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType as WireTimestampType};
use runnel_storage::batch::{assign_offsets, validate_batches};
use runnel_storage::index::OffsetIndex;
use runnel_storage::{Log, LogConfig};

/// A produce request's batch as a client sends it: `count` records of `size` bytes.
fn produce_batch(count: usize, size: usize) -> Vec<u8> {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: WireTimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(format!("key-{i}").into_bytes().into()),
            value: Some(vec![b'x'; size].into()),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: Compression::None })
        .expect("bench setup: encoding a batch");
    buf.to_vec()
}

fn validation(c: &mut Criterion) {
    let batch = produce_batch(100, 1024);
    let mut group = c.benchmark_group("produce_path");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("validate_crc_assign_100x1KiB", |b| {
        b.iter_batched_ref(
            || batch.clone(),
            |buf| {
                let validated = validate_batches(buf, usize::MAX).expect("valid batch");
                black_box(assign_offsets(buf, 1_000, 0, None));
                black_box(validated);
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn append(c: &mut Criterion) {
    let batch = produce_batch(16, 1024);
    let mut group = c.benchmark_group("log");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("append_16x1KiB_no_fsync", |b| {
        b.iter_custom(|iters| {
            // A fresh log every few thousand appends keeps the bench's disk footprint bounded.
            let mut spent = Duration::ZERO;
            let mut done = 0u64;
            while done < iters {
                let dir = tempfile::tempdir().expect("bench setup: tempdir");
                let mut log = Log::open(dir.path(), LogConfig::default()).expect("bench setup: open log");
                let chunk = (iters - done).min(4_000);
                let mut buf = batch.clone();
                let start = Instant::now();
                for _ in 0..chunk {
                    black_box(log.append(&mut buf, 0, 1_700_000_000_000).expect("append"));
                }
                spent += start.elapsed();
                done += chunk;
            }
            spent
        })
    });
    group.finish();
}

fn index_lookup(c: &mut Criterion) {
    let mut index = OffsetIndex::default();
    for i in 0..100_000u32 {
        index.push(i * 16, i * 4096);
    }
    let mut group = c.benchmark_group("fetch_path");
    group.throughput(Throughput::Elements(1));
    let mut probe = 0u32;
    group.bench_function("offset_index_lookup_100k_entries", |b| {
        b.iter(|| {
            probe = probe.wrapping_mul(1_103_515_245).wrapping_add(12_345) % 1_600_000;
            black_box(index.lookup(black_box(probe)))
        })
    });
    group.finish();
}

fn fetch_read(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("bench setup: tempdir");
    let mut log = Log::open(dir.path(), LogConfig::default()).expect("bench setup: open log");
    let batch = produce_batch(16, 1024);
    for _ in 0..4_000 {
        let mut buf = batch.clone();
        log.append(&mut buf, 0, 1_700_000_000_000).expect("bench setup: append");
    }
    let end = log.log_end_offset();
    let mut group = c.benchmark_group("fetch_path");
    group.throughput(Throughput::Bytes(1 << 20));
    let mut probe = 0i64;
    group.bench_function("read_1MiB_from_64MiB_log", |b| {
        b.iter(|| {
            probe = (probe * 7_919 + 1) % (end - 1_200);
            let plan = log.read_plan(probe, i64::MAX, 1 << 20, true).expect("read plan");
            black_box(plan.read().expect("read"))
        })
    });
    group.finish();
}

criterion_group! {
    name = hot_paths;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = validation, append, index_lookup, fetch_read
}
criterion_main!(hot_paths);
