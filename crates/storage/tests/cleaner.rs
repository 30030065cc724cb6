//! Log compaction: a property test against a model (random keyed records,
//! tombstones, codecs, idempotent batches, segment rolls, cleanings and
//! reopens), the crash-safety of the swap (a kill at each step), and the
//! bounded offset map. Batches are built and read back with kafka-protocol's
//! record codec, independently of the cleaner's own record walk.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use proptest::prelude::*;
use runnel_storage::batch::{check_stored_batch, validate_batches, BatchHeader};
use runnel_storage::cleaner::{swap_name, CleanerConfig, Throttler, CLEANED_SUFFIX};
use runnel_storage::{Log, LogConfig};

const DAY_MS: i64 = 86_400_000;

/// One appended record as the model keeps it.
#[derive(Debug, Clone, PartialEq)]
struct Appended {
    key: Option<u8>,
    value: Option<Vec<u8>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A producer batch (base offset 0) of `records` (key, value), with kafka-protocol's encoder.
fn encode(
    records: &[(Option<u8>, Option<Vec<u8>>)],
    codec: Compression,
    producer: Option<(i64, i32)>,
    ts: i64,
) -> Vec<u8> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: producer.map(|p| p.0).unwrap_or(-1),
            producer_epoch: if producer.is_some() { 0 } else { -1 },
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset - sequence stays the same.
            sequence: producer.map(|p| p.1).unwrap_or(-1) + i as i32,
            timestamp: ts + i as i64,
            key: key.map(|k| Bytes::from(vec![b'k', k])),
            value: value.clone().map(Bytes::from),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: codec,
        },
    )
    .unwrap();
    buf.to_vec()
}

/// Every batch of the log, from its start: (header, decoded records).
fn read_log(log: &Log) -> Vec<(BatchHeader, Vec<Record>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let bytes = log
            .read_plan(offset, log.log_end_offset(), 1 << 20, true)
            .unwrap()
            .read()
            .unwrap();
        if bytes.is_empty() {
            break;
        }
        let mut pos = 0;
        while pos < bytes.len() {
            let header =
                check_stored_batch(&bytes[pos..]).expect("every stored batch passes its CRC");
            let mut one = Bytes::copy_from_slice(&bytes[pos..pos + header.total_size()]);
            let records = RecordBatchDecoder::decode(&mut one)
                .expect("every stored batch decodes")
                .records;
            pos += header.total_size();
            offset = header.next_offset();
            out.push((header, records));
        }
    }
    out
}

/// The model's latest record of every key (keyless records never count).
fn latest_by_key(model: &BTreeMap<i64, Appended>) -> BTreeMap<u8, (i64, Option<Vec<u8>>)> {
    let mut latest = BTreeMap::new();
    for (&offset, record) in model {
        if let Some(key) = record.key {
            latest.insert(key, (offset, record.value.clone()));
        }
    }
    latest
}

fn key_of(record: &Record) -> Option<u8> {
    record.key.as_ref().map(|k| k[1])
}

/// What must hold of any log, cleaned or not: records read back are the
/// ones appended at their offsets, in strictly increasing offsets, and
/// every key's latest record is there (a tombstone may be gone, but then
/// so is every older record of its key).
fn check_against_model(log: &Log, model: &BTreeMap<i64, Appended>) -> Vec<(i64, Record)> {
    let batches = read_log(log);
    let mut records = Vec::new();
    let mut last = -1;
    for (header, recs) in &batches {
        assert!(
            header.base_offset > last,
            "batches in increasing order, without overlap"
        );
        for r in recs {
            assert!(
                r.offset > last,
                "offsets strictly increase: {} after {last}",
                r.offset
            );
            assert!(
                r.offset >= header.base_offset && r.offset <= header.last_offset(),
                "record inside its batch's offsets"
            );
            last = r.offset;
            let appended = model
                .get(&r.offset)
                .unwrap_or_else(|| panic!("offset {} was never appended", r.offset));
            assert_eq!(key_of(r), appended.key, "key at offset {}", r.offset);
            assert_eq!(
                r.value.as_ref().map(|v| v.to_vec()),
                appended.value,
                "value at offset {}",
                r.offset
            );
            records.push((r.offset, r.clone()));
        }
        last = last.max(header.last_offset());
    }
    let mut read_latest: BTreeMap<u8, i64> = BTreeMap::new();
    for (offset, r) in &records {
        if let Some(k) = key_of(r) {
            read_latest.insert(k, *offset);
        }
    }
    for (key, (offset, value)) in latest_by_key(model) {
        match (read_latest.get(&key), value) {
            (Some(&read), _) => assert_eq!(
                read, offset,
                "key {key}: the latest record read is the latest appended"
            ),
            (None, None) => {} // a tombstone removed with its key's history
            (None, Some(_)) => panic!("key {key}: its latest value (offset {offset}) is gone"),
        }
    }
    records
}

#[derive(Debug, Clone)]
enum Op {
    /// Records (key or none, value or tombstone), codec, idempotent or not, whether to roll first.
    Append {
        records: Vec<(Option<u8>, Option<Vec<u8>>)>,
        codec: u8,
        idempotent: bool,
        roll: bool,
    },
    Clean {
        expire_tombstones: bool,
        tiny_map: bool,
    },
    Reopen {
        clean_shutdown: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let record = (
        prop::option::weighted(0.95, 0u8..8),
        prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 0..20)),
    );
    prop_oneof![
        6 => (prop::collection::vec(record, 1..6), 0u8..5, any::<bool>(), prop::bool::weighted(0.3))
            .prop_map(|(records, codec, idempotent, roll)| Op::Append { records, codec, idempotent, roll }),
        2 => (any::<bool>(), prop::bool::weighted(0.2)).prop_map(|(expire_tombstones, tiny_map)| Op::Clean { expire_tombstones, tiny_map }),
        1 => any::<bool>().prop_map(|clean_shutdown| Op::Reopen { clean_shutdown }),
    ]
}

fn codec(n: u8) -> Compression {
    match n {
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        _ => Compression::None,
    }
}

fn compacted() -> LogConfig {
    LogConfig {
        cleanup_policy: "compact".into(),
        segment_ms: 1_000,
        segment_bytes: 1_500,
        index_interval_bytes: 100,
        delete_retention_ms: DAY_MS,
        ..LogConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn compaction_keeps_the_latest_record_of_every_key(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), compacted()).unwrap();
        let mut model: BTreeMap<i64, Appended> = BTreeMap::new();
        let start = now_ms();
        let mut clock = start;
        let mut sequence = 0i32;
        let mut last_idempotent_batch = None;
        // Tombstones below this offset may have expired in an earlier pass.
        let mut expired_below = 0i64;
        for op in ops {
            match op {
                Op::Append { records, codec: c, idempotent, roll } => {
                    // segment.ms = 1 s: a jump of a second rolls the active segment.
                    clock += if roll { 1_000 } else { 1 };
                    let producer = idempotent.then_some((7, sequence));
                    let mut bytes = encode(&records, codec(c), producer, clock);
                    validate_batches(&bytes, usize::MAX).unwrap();
                    let info = log.append(&mut bytes, 0, clock).unwrap();
                    if idempotent {
                        sequence += records.len() as i32;
                        last_idempotent_batch = Some(info.first_offset);
                    }
                    for (i, (key, value)) in records.into_iter().enumerate() {
                        model.insert(info.first_offset + i as i64, Appended { key, value });
                    }
                }
                Op::Clean { expire_tombstones, tiny_map } => {
                    // Expired: a clock far past every segment's last write + delete.retention.ms.
                    let now = if expire_tombstones { clock + 10 * DAY_MS } else { clock };
                    let config = CleanerConfig { dedupe_buffer_size: if tiny_map { 24 * 8 } else { 1 << 20 }, ..CleanerConfig::default() };
                    let stats = log.clean(&config, now, log.log_end_offset()).unwrap();
                    if expire_tombstones {
                        expired_below = log.log_end_offset();
                    }
                    let records = check_against_model(&log, &model);
                    if let Some(stats) = stats {
                        // Below where the map reached, each key appears at most once...
                        let mut seen = std::collections::HashSet::new();
                        for (offset, r) in records.iter().filter(|(o, _)| *o < stats.cleaned_up_to) {
                            if let Some(k) = key_of(r) {
                                prop_assert!(seen.insert(k), "key {} twice below {} (offset {})", k, stats.cleaned_up_to, offset);
                            } else {
                                prop_assert!(false, "a keyless record survived cleaning at {}", offset);
                            }
                            // ...and an expired tombstone that is its key's latest record is gone.
                            let latest = latest_by_key(&model)[&key_of(r).unwrap()].0;
                            if expire_tombstones && r.value.is_none() && latest == *offset {
                                prop_assert!(false, "expired tombstone kept at {}", offset);
                            }
                        }
                        if !expire_tombstones {
                            for (key, (offset, value)) in latest_by_key(&model) {
                                if value.is_none() && offset >= expired_below {
                                    prop_assert!(records.iter().any(|(o, _)| *o == offset), "tombstone of key {} at {} removed before delete.retention.ms", key, offset);
                                }
                            }
                        }
                        // An idempotent producer's last batch stays, even emptied.
                        if let Some(base) = last_idempotent_batch {
                            let batches = read_log(&log);
                            prop_assert!(batches.iter().any(|(h, _)| h.base_offset == base && h.producer_id == 7), "producer's last batch at {} kept", base);
                        }
                    }
                }
                Op::Reopen { clean_shutdown } => {
                    if clean_shutdown {
                        log.close().unwrap();
                    }
                    drop(log);
                    log = Log::open(dir.path(), compacted()).unwrap();
                    check_against_model(&log, &model);
                }
            }
        }
        check_against_model(&log, &model);
        let end = log.log_end_offset();
        drop(log);
        let log = Log::open(dir.path(), compacted()).unwrap();
        prop_assert_eq!(log.log_end_offset(), end);
        check_against_model(&log, &model);
    }
}

/// A log of 40 keyed updates per key over 10 keys in small segments.
fn filled_log(dir: &std::path::Path) -> (Log, BTreeMap<i64, Appended>) {
    let mut log = Log::open(dir, compacted()).unwrap();
    let mut model = BTreeMap::new();
    let mut clock = now_ms();
    for round in 0..40u8 {
        clock += 300;
        let records: Vec<_> = (0..10u8)
            .map(|k| {
                (
                    Some(k),
                    if round == 39 && k == 3 {
                        None
                    } else {
                        Some(vec![round; 8])
                    },
                )
            })
            .collect();
        let mut bytes = encode(&records, Compression::None, None, clock);
        let info = log.append(&mut bytes, 0, clock).unwrap();
        for (i, (key, value)) in records.into_iter().enumerate() {
            model.insert(info.first_offset + i as i64, Appended { key, value });
        }
    }
    assert!(log.segment_count() > 4);
    (log, model)
}

fn files(dir: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    out
}

/// A kill at each step of the swap leaves files that recovery turns into a
/// log with every live record: before the commit point the old segments,
/// after it the cleaned ones.
#[test]
fn a_crash_at_any_step_of_the_swap_loses_no_live_record() {
    for step in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, model) = filled_log(dir.path());
        // Larger segments from now on: the cleaner merges the small ones into one group.
        log.set_config(LogConfig {
            segment_bytes: 100_000,
            ..compacted()
        });
        let before = check_against_model(&log, &model).len();
        let end = log.log_end_offset();
        let task = log
            .prepare_cleaning(now_ms(), end)
            .unwrap()
            .expect("dirty segments to clean");
        let cleaned = task
            .run(
                &CleanerConfig::default(),
                now_ms(),
                &mut Throttler::new(f64::MAX),
            )
            .unwrap()
            .expect("something cleaned");
        drop(log); // killed: no clean shutdown
        let group = &cleaned.groups[0];
        assert!(group.sources.len() > 1, "one group of several segments");
        let swap = dir
            .path()
            .join(swap_name(group.base_offset, group.end_offset));
        if step >= 1 {
            // The commit point: the cleaned file renamed to its swap name.
            std::fs::rename(&group.cleaned_path, &swap).unwrap();
        }
        if step >= 2 {
            // Some of the replaced segments' index files deleted.
            for index in files(dir.path(), ".index").iter().take(2) {
                std::fs::remove_file(index).unwrap();
            }
        }
        if step >= 3 {
            // The first replaced segment's log file deleted too.
            let _ = std::fs::remove_file(dir.path().join(format!("{:020}.log", group.base_offset)));
        }
        if step >= 4 {
            // Every replaced log file deleted, the swap not yet renamed.
            for (base, _) in &group.sources {
                let _ = std::fs::remove_file(dir.path().join(format!("{base:020}.log")));
            }
        }
        let log = Log::open(dir.path(), compacted()).unwrap();
        assert!(
            files(dir.path(), CLEANED_SUFFIX).is_empty(),
            "step {step}: .cleaned files are removed"
        );
        assert!(
            files(dir.path(), ".swap").is_empty(),
            "step {step}: swaps are completed"
        );
        assert_eq!(log.log_end_offset(), end, "step {step}");
        let records = check_against_model(&log, &model);
        let after = records.len();
        if step == 0 {
            assert_eq!(
                after, before,
                "before the commit point the old segments stay"
            );
        } else {
            assert!(
                after < before,
                "step {step}: the committed swap is completed ({after} of {before} records)"
            );
            let replaced_left: Vec<_> = group.sources[1..]
                .iter()
                .filter(|(base, _)| dir.path().join(format!("{base:020}.log")).exists())
                .collect();
            assert!(
                replaced_left.is_empty(),
                "step {step}: replaced segments left on disk: {replaced_left:?}"
            );
            // No replaced segment survives beside the cleaned one: no stale record comes back.
            let mut seen = std::collections::HashSet::new();
            for (offset, r) in records.iter().filter(|(o, _)| *o < group.end_offset) {
                assert!(
                    seen.insert(key_of(r)),
                    "step {step}: a replaced record of key {:?} came back at {offset}",
                    key_of(r)
                );
            }
        }
        // And the log cleans on from there.
        let mut log = log;
        log.clean(&CleanerConfig::default(), now_ms(), end).unwrap();
        check_against_model(&log, &model);
    }
}

/// A dedupe buffer too small for the dirty section cleans up to where the
/// keys fit, and the next pass goes on from there.
#[test]
fn a_small_offset_map_cleans_in_several_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, model) = filled_log(dir.path());
    let end = log.log_end_offset();
    // 10 keys per batch; 24 * 12 bytes at 0.9 load = 10 entries: exactly one batch's keys.
    let config = CleanerConfig {
        dedupe_buffer_size: 24 * 12,
        ..CleanerConfig::default()
    };
    let mut passes = 0;
    let mut reached = Vec::new();
    while let Some(stats) = log.clean(&config, now_ms(), end).unwrap() {
        passes += 1;
        reached.push(stats.cleaned_up_to);
        check_against_model(&log, &model);
        assert!(passes < 100, "cleaning converges");
    }
    assert!(passes > 1, "several passes: {reached:?}");
    assert!(
        reached.windows(2).all(|w| w[0] < w[1]),
        "each pass goes further: {reached:?}"
    );
}

/// Keyless records are what a compacted topic refuses (and what the cleaner drops).
#[test]
fn keyless_records_are_found_in_compressed_batches() {
    let bytes = encode(
        &[
            (Some(1), Some(vec![1])),
            (None, Some(vec![2])),
            (Some(2), None),
        ],
        Compression::Zstd,
        None,
        0,
    );
    let validated = validate_batches(&bytes, usize::MAX).unwrap();
    assert_eq!(
        runnel_storage::cleaner::keyless_records(&bytes, &validated.headers).unwrap(),
        vec![1]
    );
}

/// The throttle holds the cleaner to log.cleaner.io.max.bytes.per.second.
#[test]
fn the_throttler_keeps_the_rate() {
    let mut throttler = Throttler::new(1_000_000.0);
    let started = std::time::Instant::now();
    for _ in 0..10 {
        throttler.add(20_000);
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_millis(190),
        "200 kB at 1 MB/s takes 0.2 s, took {elapsed:?}"
    );
}

/// A transactional batch of producer `pid` (epoch 0) from sequence `seq`: (key, value) records.
fn encode_txn(records: &[(u8, &[u8])], pid: i64, seq: i32, ts: i64) -> Vec<u8> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: seq + i as i32,
            timestamp: ts + i as i64,
            key: Some(Bytes::from(vec![b'k', *key])),
            value: Some(Bytes::copy_from_slice(value)),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: Compression::None }).unwrap();
    buf.to_vec()
}

/// A COMMIT or ABORT marker of producer `pid` (a control batch of one record).
fn marker(pid: i64, commit: bool, ts: i64) -> Vec<u8> {
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: pid,
        producer_epoch: 0,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: ts,
        key: Some(Bytes::from(vec![0, 0, 0, commit as u8])),
        value: Some(Bytes::from(vec![0, 0, 0, 0, 0, 0])),
        headers: IndexMap::new(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &[record], &RecordEncodeOptions { version: 2, compression: Compression::None }).unwrap();
    buf.to_vec()
}

/// Key → value of the data records left in the log, in offset order; and the markers: (offset, producer, commit).
#[allow(clippy::type_complexity)]
fn live_records(log: &Log) -> (Vec<(i64, u8, Vec<u8>)>, Vec<(i64, i64, bool)>) {
    let mut data = Vec::new();
    let mut markers = Vec::new();
    for (header, records) in read_log(log) {
        for r in records {
            if header.is_control() {
                markers.push((r.offset, header.producer_id, r.key.as_ref().is_some_and(|k| k[3] == 1)));
            } else {
                data.push((r.offset, r.key.as_ref().map(|k| k[1]).unwrap(), r.value.map(|v| v.to_vec()).unwrap_or_default()));
            }
        }
    }
    (data, markers)
}

#[test]
fn compaction_removes_aborted_records_keeps_committed_ones_and_then_their_markers() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compacted()).unwrap();
    let mut clock = now_ms();
    let (aborting, committing) = (7, 8);
    let append = |log: &mut Log, mut bytes: Vec<u8>, clock: &mut i64| {
        *clock += 2_000; // past segment.ms: most appends start a segment
        log.append(&mut bytes, 0, *clock).unwrap().first_offset
    };
    // An aborted transaction: k1=aborted, k2=aborted, then its ABORT marker.
    let first = append(&mut log, encode_txn(&[(1, b"aborted"), (2, b"aborted")], aborting, 0, clock), &mut clock);
    let abort_at = append(&mut log, marker(aborting, false, clock), &mut clock);
    log.add_aborted_txn(runnel_storage::AbortedTxn { producer_id: aborting, first_offset: first, last_offset: abort_at, last_stable_offset: first })
        .unwrap();
    // A committed transaction of another producer, and one of the same producer after its abort.
    append(&mut log, encode_txn(&[(1, b"committed-1")], committing, 0, clock), &mut clock);
    append(&mut log, marker(committing, true, clock), &mut clock);
    append(&mut log, encode_txn(&[(2, b"committed-2")], aborting, 2, clock), &mut clock);
    append(&mut log, marker(aborting, true, clock), &mut clock);
    append(&mut log, encode(&[(Some(3), Some(b"plain".to_vec()))], Compression::None, None, clock), &mut clock);
    let end = log.log_end_offset();

    // Everything is past delete.retention.ms, so only "a batch of the transaction was seen" keeps a marker.
    let later = clock + 2 * DAY_MS;
    let config = CleanerConfig::default();
    let stats = log.clean(&config, later, end).unwrap().expect("a cleaning pass");
    assert_eq!(stats.aborted_records_removed, 2, "{stats:?}");
    let (data, markers) = live_records(&log);
    let values: Vec<(u8, &[u8])> = data.iter().map(|(_, k, v)| (*k, v.as_slice())).collect();
    assert_eq!(values, vec![(1, &b"committed-1"[..]), (2, b"committed-2"), (3, b"plain")], "the aborted records are gone");
    assert!(markers.contains(&(abort_at, aborting, false)), "the ABORT marker outlives its records by one pass: {markers:?}");
    assert_eq!(log.aborted_txns(0, end).len(), 1);

    // A later pass, with newer records superseding the committed ones: the
    // ABORT marker (no batch left) goes, so do the COMMIT markers whose
    // records were superseded — except each producer's last batch.
    append(&mut log, encode(&[(Some(1), Some(b"newer-1".to_vec())), (Some(2), Some(b"newer-2".to_vec()))], Compression::None, None, clock), &mut clock);
    append(&mut log, encode(&[(Some(4), Some(b"filler".to_vec()))], Compression::None, None, clock), &mut clock);
    let end = log.log_end_offset();
    let stats = log.clean(&config, later + 10_000, end).unwrap().expect("a second pass");
    let (data, markers) = live_records(&log);
    let keys: Vec<u8> = data.iter().map(|(_, k, _)| *k).collect();
    assert_eq!(keys, vec![3, 1, 2, 4], "the committed values were superseded");
    assert!(!markers.iter().any(|m| m.0 == abort_at), "the ABORT marker went once its records were gone: {markers:?} {stats:?}");
    // Each producer's last batch is its COMMIT marker: kept for its epoch.
    assert_eq!(markers.iter().map(|m| m.1).collect::<Vec<_>>(), vec![committing, aborting], "{markers:?}");

    // The transaction index survives the merge of segments and a reopen.
    drop(log);
    let log = Log::open(dir.path(), compacted()).unwrap();
    let aborted = log.aborted_txns(0, log.log_end_offset());
    assert_eq!(aborted.len(), 1, "{aborted:?}");
    assert_eq!((aborted[0].producer_id, aborted[0].last_offset), (aborting, abort_at));
}

#[test]
fn an_aborted_transaction_before_the_cleaned_range_does_not_condemn_a_later_one() {
    // The producer's aborted transaction's marker lies before the second
    // pass's range; its later, committed transaction must stay.
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compacted()).unwrap();
    let mut clock = now_ms();
    let pid = 5;
    let append = |log: &mut Log, mut bytes: Vec<u8>, clock: &mut i64| {
        *clock += 2_000;
        log.append(&mut bytes, 0, *clock).unwrap().first_offset
    };
    let first = append(&mut log, encode_txn(&[(1, b"aborted")], pid, 0, clock), &mut clock);
    let abort_at = append(&mut log, marker(pid, false, clock), &mut clock);
    log.add_aborted_txn(runnel_storage::AbortedTxn { producer_id: pid, first_offset: first, last_offset: abort_at, last_stable_offset: first }).unwrap();
    // Enough records after the marker that a pass cleans them in several
    // groups (segment.bytes), the later ones starting after the marker.
    for i in 0..40u8 {
        append(&mut log, encode(&[(Some(10 + i), Some(vec![i; 60]))], Compression::None, None, clock), &mut clock);
    }
    let config = CleanerConfig::default();
    log.clean(&config, clock, log.log_end_offset()).unwrap().expect("first pass");
    append(&mut log, encode_txn(&[(2, b"committed")], pid, 1, clock), &mut clock);
    append(&mut log, marker(pid, true, clock), &mut clock);
    append(&mut log, encode(&[(Some(9), Some(b"y".to_vec()))], Compression::None, None, clock), &mut clock);
    log.clean(&config, clock, log.log_end_offset()).unwrap().expect("second pass");
    let (data, _) = live_records(&log);
    assert!(data.iter().any(|(_, k, v)| *k == 2 && v == b"committed"), "{data:?}");
    assert!(!data.iter().any(|(_, _, v)| v == b"aborted"), "{data:?}");
}
