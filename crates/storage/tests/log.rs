//! Log behaviour: append/read/roll/recover/truncate/retention, as unit tests
//! and as a property test against a simple in-memory model.

use std::collections::BTreeMap;

use proptest::prelude::*;
use runnel_storage::batch::{crc32c, validate_batches, BatchHeader};
use runnel_storage::{Log, LogConfig, StorageError, TimestampType};

/// Builds a valid, uncompressed magic-v2 batch of `values` (base offset 0).
fn batch(values: &[Vec<u8>], timestamp: i64) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let byte = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    let mut records = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let mut body = vec![0u8]; // attributes
        varint(&mut body, i as i64); // timestamp delta
        varint(&mut body, i as i64); // offset delta
        varint(&mut body, -1); // null key
        varint(&mut body, value.len() as i64);
        body.extend_from_slice(value);
        varint(&mut body, 0); // no headers
        varint(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let count = values.len() as i32;
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes()); // crc placeholder
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(count - 1).to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&(timestamp + count as i64 - 1).to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(&records);
    let crc = crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn values(n: usize, tag: u8) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![tag; 10 + i]).collect()
}

fn append(log: &mut Log, n: usize, ts: i64) -> (i64, i64) {
    let mut b = batch(&values(n, 7), ts);
    validate_batches(&b, usize::MAX).expect("test batches are valid");
    let info = log.append(&mut b, 0, ts).unwrap();
    (info.first_offset, info.last_offset)
}

/// Base offsets of the batches a read starting at `offset` returns.
fn read_batches(log: &Log, offset: i64, max_bytes: usize) -> Vec<BatchHeader> {
    let bytes = log.read_plan(offset, log.log_end_offset(), max_bytes, true).unwrap().read().unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let h = BatchHeader::parse(&bytes[pos..]).unwrap();
        pos += h.total_size();
        out.push(h);
    }
    assert_eq!(pos, bytes.len(), "reads return whole batches");
    out
}

fn small_segments() -> LogConfig {
    LogConfig { segment_bytes: 600, index_interval_bytes: 100, ..LogConfig::default() }
}

#[test]
fn offsets_are_dense_across_rolls_and_reads_find_the_containing_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    let mut expected = 0;
    for i in 0..40 {
        let (first, last) = append(&mut log, 1 + i % 4, 1_000 + i as i64);
        assert_eq!(first, expected);
        expected = last + 1;
    }
    assert!(log.segment_count() > 3, "small segments roll");
    assert_eq!(log.log_end_offset(), expected);
    for offset in 0..expected {
        let first = read_batches(&log, offset, 1)[0];
        assert!(first.base_offset <= offset && offset <= first.last_offset(), "offset {offset} in {first:?}");
    }
    assert!(read_batches(&log, expected, 1000).is_empty());
    assert!(matches!(log.read_plan(expected + 1, i64::MAX, 10, true), Err(StorageError::OffsetOutOfRange { .. })));
}

#[test]
fn reopen_after_close_and_after_crash_keeps_everything_synced() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = Log::open(dir.path(), small_segments()).unwrap();
        for i in 0..20 {
            append(&mut log, 3, i);
        }
        log.close().unwrap();
    }
    {
        let mut log = Log::open(dir.path(), small_segments()).unwrap();
        assert_eq!(log.log_end_offset(), 60);
        append(&mut log, 2, 100);
        log.flush().unwrap();
        // Dropped without close: a crash.
    }
    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.log_end_offset(), 62);
    assert_eq!(read_batches(&log, 61, 1)[0].base_offset, 60);
}

#[test]
fn torn_and_corrupt_tails_are_truncated() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
        for i in 0..5 {
            append(&mut log, 2, i);
        }
    }
    let segment = dir.path().join("00000000000000000000.log");
    let good_len = std::fs::metadata(&segment).unwrap().len();
    // A half-written batch at the end.
    let extra = batch(&values(3, 9), 50);
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes.extend_from_slice(&extra[..extra.len() / 2]);
    std::fs::write(&segment, &bytes).unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), good_len);
    assert!(log.quarantined()[0].torn_write_only, "a half-written last batch is a routine torn write");
    assert_eq!(log.quarantined()[0].bytes as usize, extra.len() / 2);
    drop(log);
    // A flipped byte inside the last batch: CRC catches it, the batch goes.
    let mut bytes = std::fs::read(&segment).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x55;
    std::fs::write(&segment, &bytes).unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), 8);
}

/// Files in `dir` whose name contains `.quarantine-`.
fn quarantine_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".quarantine-"))
        .collect();
    out.sort();
    out
}

/// Ten batches of two records in the active segment, written without a clean
/// close; returns the segment's bytes and each batch's start position.
fn ten_batches_after_a_crash(dir: &std::path::Path) -> (Vec<u8>, Vec<usize>) {
    let mut log = Log::open(dir, LogConfig::default()).unwrap();
    for i in 0..10 {
        append(&mut log, 2, i);
    }
    log.flush().unwrap();
    drop(log); // no close: an unclean shutdown
    let bytes = std::fs::read(dir.join("00000000000000000000.log")).unwrap();
    let mut starts = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        starts.push(pos);
        pos += BatchHeader::parse(&bytes[pos..]).unwrap().total_size();
    }
    assert_eq!(starts.len(), 10);
    (bytes, starts)
}

#[test]
fn a_corrupt_first_batch_is_cut_with_everything_after_it_moved_verbatim_into_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let (original, starts) = ten_batches_after_a_crash(dir.path());
    let segment = dir.path().join("00000000000000000000.log");
    let mut damaged = original.clone();
    damaged[starts[0] + 70] ^= 0x01; // inside the first batch's records: CRC-covered
    std::fs::write(&segment, &damaged).unwrap();

    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), 0, "offsets stay dense: the log ends before the corrupt batch");
    let files = quarantine_files(dir.path());
    assert_eq!(files.len(), 1, "one quarantine file beside the segment");
    assert_eq!(std::fs::read(&files[0]).unwrap(), damaged, "every cut byte is kept verbatim");
    let report = &log.quarantined()[0];
    assert!(!report.torn_write_only);
    assert_eq!((report.cut_at, report.bytes, report.first_lost_offset), (0, damaged.len() as u64, 0));
    let intact: Vec<i64> = report.intact.iter().map(|b| b.header.base_offset).collect();
    assert_eq!(intact, (1..10).map(|i| i * 2).collect::<Vec<_>>(), "the 9 later batches are found intact");

    // The coordinator's choice for its own topic: append the intact ones again, with new offsets.
    assert_eq!(log.salvage_quarantined(0, 99).unwrap(), 9);
    assert_eq!(log.log_end_offset(), 18);
    let batches = read_batches(&log, 0, usize::MAX);
    assert_eq!(batches.iter().map(|b| b.base_offset).collect::<Vec<_>>(), (0..9).map(|i| i * 2).collect::<Vec<_>>());
    assert_eq!(log.salvage_quarantined(0, 99).unwrap(), 0, "salvaged once only");
    drop(log);
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), 18, "the salvaged batches are valid after another crash");
    assert_eq!(quarantine_files(dir.path()).len(), 1, "the quarantine file is never deleted");
}

#[test]
fn intact_batches_are_found_even_when_the_corrupt_batch_length_field_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let (original, starts) = ten_batches_after_a_crash(dir.path());
    let mut damaged = original.clone();
    damaged[starts[3] + 11] ^= 0x04; // batch 4's length field (not CRC-covered)
    std::fs::write(dir.path().join("00000000000000000000.log"), &damaged).unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), 6, "batches before the damage stay");
    let report = &log.quarantined()[0];
    assert_eq!((report.cut_at, report.first_lost_offset), (starts[3] as u64, 6));
    let intact: Vec<i64> = report.intact.iter().map(|b| b.header.base_offset).collect();
    assert_eq!(intact, vec![8, 10, 12, 14, 16, 18], "resynchronised on the next valid batch");
    assert_eq!(std::fs::read(&quarantine_files(dir.path())[0]).unwrap(), &damaged[starts[3]..]);
}

#[test]
fn retention_by_time_and_size_and_delete_records() {
    // A compacted-only topic keeps every record whatever its age.
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_segments();
    config.retention_ms = 10_000;
    config.cleanup_policy = "compact".into();
    let mut log = Log::open(dir.path(), config.clone()).unwrap();
    for i in 0..30 {
        append(&mut log, 2, 1_000 + i);
    }
    assert_eq!(log.enforce_retention(100_000).unwrap().segments_deleted, 0);
    assert_eq!(log.log_start_offset(), 0);

    let dir = tempfile::tempdir().unwrap();
    config.cleanup_policy = "compact,delete".into();
    let mut log = Log::open(dir.path(), config.clone()).unwrap();
    for i in 0..30 {
        append(&mut log, 2, 1_000 + i);
    }
    let before = log.segment_count();
    // Everything is older than retention: all segments go, the end offset stays.
    let outcome = log.enforce_retention(100_000).unwrap();
    assert!(outcome.segments_deleted >= before - 1);
    assert_eq!(log.log_start_offset(), 60);
    assert_eq!(log.log_end_offset(), 60);
    append(&mut log, 1, 200_000);
    assert_eq!(log.log_end_offset(), 61);

    let dir = tempfile::tempdir().unwrap();
    let mut config = small_segments();
    config.retention_bytes = 1_200;
    let mut log = Log::open(dir.path(), config).unwrap();
    for i in 0..40 {
        append(&mut log, 2, i);
    }
    log.enforce_retention(0).unwrap();
    assert!(log.size_bytes() < 1_200 + 600, "size retention keeps about retention.bytes");
    assert!(log.log_start_offset() > 0);

    let start = log.log_start_offset();
    let new_start = log.delete_records_before(start + 5).unwrap();
    assert_eq!(new_start, start + 5);
    assert!(matches!(log.read_plan(start, i64::MAX, 100, true), Err(StorageError::OffsetOutOfRange { .. })));
    drop(log);
}

#[test]
fn log_append_time_and_timestamp_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { timestamp_type: TimestampType::LogAppendTime, ..LogConfig::default() };
    let mut log = Log::open(dir.path(), config).unwrap();
    let mut b = batch(&values(2, 1), 5);
    let info = log.append(&mut b, 0, 777_000).unwrap();
    assert_eq!(info.log_append_time, 777_000);
    let stored = read_batches(&log, 0, 1000)[0];
    assert!(stored.is_log_append_time());
    assert_eq!(stored.max_timestamp, 777_000);
    validate_batches(&{
        let mut copy = log.read_plan(0, 10, 1000, true).unwrap().read().unwrap().to_vec();
        copy[0..8].copy_from_slice(&0i64.to_be_bytes());
        copy
    }, usize::MAX)
    .expect("CRC was recomputed after stamping LogAppendTime");

    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    append(&mut log, 4, 1_000); // timestamps 1000..1003
    append(&mut log, 4, 2_000); // 2000..2003
    assert_eq!(log.offset_for_timestamp(1_002).unwrap(), Some((2, 1_002)));
    assert_eq!(log.offset_for_timestamp(1_500).unwrap(), Some((4, 2_000)));
    assert_eq!(log.offset_for_timestamp(9_999).unwrap(), None);
    assert_eq!(log.max_timestamp_and_offset().unwrap(), Some((7, 2_003)));
}

#[test]
fn group_commit_sync_jobs_cover_appends_and_survive_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    assert!(log.sync_job().is_none());
    append(&mut log, 2, 1);
    let job = log.sync_job().expect("unsynced data");
    assert_eq!(job.up_to_offset, 2);
    for i in 0..20 {
        append(&mut log, 2, i);
    }
    job.run().unwrap();
    log.mark_synced(job.up_to_offset);
    assert!(log.durable_offset() >= 2);
    let job = log.sync_job().unwrap();
    job.run().unwrap();
    log.mark_synced(job.up_to_offset);
    log.mark_synced(1); // an older job finishing late never moves durability back
    assert_eq!(log.durable_offset(), log.log_end_offset());
}

#[test]
fn truncate_to_cuts_at_a_batch_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    for i in 0..30 {
        append(&mut log, 3, i);
    }
    log.truncate_to(31).unwrap();
    assert_eq!(log.log_end_offset(), 30, "offset 31 is inside the batch 30..32");
    let (first, _) = append(&mut log, 1, 99);
    assert_eq!(first, 30);
}

fn append_in_epoch(log: &mut Log, n: usize, ts: i64, epoch: i32) -> (i64, i64) {
    let mut b = batch(&values(n, 7), ts);
    validate_batches(&b, usize::MAX).expect("test batches are valid");
    let info = log.append(&mut b, epoch, ts).unwrap();
    (info.first_offset, info.last_offset)
}

/// Every byte of `log` from `offset` to its end, as whole batches.
fn all_bytes_from(log: &Log, mut offset: i64) -> Vec<u8> {
    let mut out = Vec::new();
    while offset < log.log_end_offset() {
        let bytes = log.read_plan(offset, log.log_end_offset(), 1 << 20, true).unwrap().read().unwrap();
        let mut pos = 0;
        while pos < bytes.len() {
            let h = BatchHeader::parse(&bytes[pos..]).unwrap();
            pos += h.total_size();
            offset = h.next_offset();
        }
        out.extend_from_slice(&bytes);
    }
    out
}

fn epoch_entries(log: &Log) -> Vec<(i32, i64)> {
    log.leader_epochs().entries().iter().map(|e| (e.epoch, e.start_offset)).collect()
}

#[test]
fn leader_epochs_are_recorded_on_append_checkpointed_and_rebuilt_without_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("leader-epoch-checkpoint");
    {
        let mut log = Log::open(dir.path(), small_segments()).unwrap();
        for i in 0..10 {
            append_in_epoch(&mut log, 3, i, 0); // offsets 0..30
        }
        for i in 0..10 {
            append_in_epoch(&mut log, 2, i, 4); // 30..50
        }
        append_in_epoch(&mut log, 1, 0, 7); // 50
        assert_eq!(epoch_entries(&log), vec![(0, 0), (4, 30), (7, 50)]);
        assert_eq!(std::fs::read_to_string(&checkpoint).unwrap(), "0\n3\n0 0\n4 30\n7 50\n", "Kafka's file format");
        assert_eq!(log.end_offset_for_epoch(0), (0, 30));
        assert_eq!(log.end_offset_for_epoch(5), (4, 50));
        assert_eq!(log.end_offset_for_epoch(7), (7, 51));
        assert_eq!(log.end_offset_for_epoch(8), (-1, -1));
        log.close().unwrap();
    }
    // A data directory from before epochs were tracked has no checkpoint: rebuilt from the batch headers.
    std::fs::remove_file(&checkpoint).unwrap();
    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert!(log.segment_count() > 2);
    assert_eq!(epoch_entries(&log), vec![(0, 0), (4, 30), (7, 50)]);
    assert_eq!(std::fs::read_to_string(&checkpoint).unwrap(), "0\n3\n0 0\n4 30\n7 50\n");
    drop(log);
    // An unreadable checkpoint is rebuilt too, not trusted and not fatal.
    std::fs::write(&checkpoint, "0\n5\ngarbage").unwrap();
    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(epoch_entries(&log), vec![(0, 0), (4, 30), (7, 50)]);
}

#[test]
fn truncate_to_spans_segments_trims_epochs_and_a_crash_before_the_checkpoint_is_repaired_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    for i in 0..10 {
        append_in_epoch(&mut log, 3, i, 1); // 0..30
    }
    for i in 0..10 {
        append_in_epoch(&mut log, 3, i, 2); // 30..60
    }
    let segments_before = log.segment_count();
    assert_eq!(log.truncate_to(20).unwrap(), 18, "offset 20 is inside the batch 18..21");
    assert!(log.segment_count() < segments_before);
    assert_eq!(log.log_end_offset(), 18);
    assert_eq!(epoch_entries(&log), vec![(1, 0)]);
    assert_eq!(log.durable_offset(), 18);
    // Appends continue at the cut under a new epoch; reads see only the new batches after it.
    assert_eq!(append_in_epoch(&mut log, 2, 0, 3), (18, 19));
    assert_eq!(epoch_entries(&log), vec![(1, 0), (3, 18)]);
    assert_eq!(read_batches(&log, 18, 1000).len(), 1);
    // A crash between a truncation and its checkpoint: the checkpoint names an epoch past the log end.
    log.flush().unwrap();
    drop(log);
    std::fs::write(dir.path().join("leader-epoch-checkpoint"), "0\n3\n1 0\n3 18\n5 25\n").unwrap();
    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.log_end_offset(), 20);
    assert_eq!(epoch_entries(&log), vec![(1, 0), (3, 18)]);
}

#[test]
fn truncating_at_the_log_end_drops_an_epoch_that_appended_nothing() {
    // A replica led epoch 4 without appending (it lost leadership at once) and now
    // follows a leader that never saw epoch 4: the leader tells it to truncate to its
    // own log end. The empty epoch must go, or the next fetch names it again.
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    for i in 0..4 {
        append_in_epoch(&mut log, 3, i, 2); // 0..12
    }
    log.assign_epoch_start(4).unwrap();
    assert_eq!(log.latest_epoch(), Some(4));
    assert_eq!(log.truncate_to(12).unwrap(), 12);
    assert_eq!(log.latest_epoch(), Some(2));
    assert_eq!(epoch_entries(&log), vec![(2, 0)]);
    // Beyond the end: nothing else changes.
    assert_eq!(log.truncate_to(50).unwrap(), 12);
    assert_eq!(epoch_entries(&log), vec![(2, 0)]);
    drop(log);
    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(epoch_entries(&log), vec![(2, 0)], "the trimmed cache was checkpointed");
}

#[test]
fn truncate_fully_and_start_at_empties_the_log_and_an_interrupted_one_is_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    for i in 0..6 {
        append_in_epoch(&mut log, 3, i, 2); // 0..18, several segments
    }
    assert!(log.segment_count() > 1);
    log.truncate_fully_and_start_at(40).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset(), log.segment_count()), (40, 40, 1));
    assert_eq!(epoch_entries(&log), vec![]);
    assert!(all_bytes_from(&log, 40).is_empty());
    // The next append (a follower's, at the leader's offsets) lands at 40.
    append_in_epoch(&mut log, 2, 100, 5);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (40, 42));
    drop(log);
    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (40, 42));
    assert_eq!(epoch_entries(&log), vec![(5, 40)]);
    drop(log);

    // A crash after the new start offset was written but before the old segments
    // went: the checkpoint lies past the log end, and open finishes the truncation.
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    for i in 0..6 {
        append_in_epoch(&mut log, 3, i, 2);
    }
    drop(log);
    std::fs::write(dir.path().join("log-start-offset"), b"40").unwrap();
    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset(), log.segment_count()), (40, 40, 1));
    assert_eq!(epoch_entries(&log), vec![]);
}

#[test]
fn append_as_follower_keeps_the_leaders_offsets_and_epochs_byte_for_byte() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = Log::open(leader_dir.path(), small_segments()).unwrap();
    for i in 0..12 {
        append_in_epoch(&mut leader, 1 + (i % 3) as usize, i, if i < 6 { 2 } else { 5 });
    }
    let mut follower = Log::open(follower_dir.path(), small_segments()).unwrap();
    // Copied in pieces, as fetches would.
    let mut offset = 0;
    while offset < leader.log_end_offset() {
        let chunk = leader.read_plan(offset, leader.log_end_offset(), 100, true).unwrap().read().unwrap();
        let info = follower.append_as_follower(&chunk).unwrap();
        assert_eq!(info.first_offset, offset);
        offset = info.last_offset + 1;
    }
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(all_bytes_from(&follower, 0), all_bytes_from(&leader, 0));
    assert_eq!(epoch_entries(&follower), epoch_entries(&leader));

    // Refused, and nothing appended: an overlap, a flipped bit, a torn batch.
    // (A gap is not refused: a compacted leader's batches have gaps between them, as in Kafka.)
    let end = follower.log_end_offset();
    let mut next = batch(&values(2, 1), 5);
    next[0..8].copy_from_slice(&(end - 1).to_be_bytes());
    let err = follower.append_as_follower(&next).unwrap_err().to_string();
    assert!(err.contains(&format!("expects at least {end}")), "{err}");
    next[0..8].copy_from_slice(&end.to_be_bytes());
    let mut flipped = next.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(follower.append_as_follower(&flipped).unwrap_err().to_string().contains("CRC"));
    let mut two = next.clone();
    two.extend_from_slice(&next[..20]);
    assert!(follower.append_as_follower(&two).is_err(), "a torn second batch refuses the whole append");
    assert!(follower.append_as_follower(&[]).is_err());
    assert_eq!(follower.log_end_offset(), end);
    assert_eq!(follower.append_as_follower(&next).unwrap().first_offset, end, "the right batch is taken");
}

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    Read(u16),
    Reopen { crash: bool },
    DeleteRecords(u16),
    Retention,
    Truncate(u16),
    NewEpoch,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..6).prop_map(Op::Append),
        3 => any::<u16>().prop_map(Op::Read),
        1 => any::<bool>().prop_map(|crash| Op::Reopen { crash }),
        1 => any::<u16>().prop_map(Op::DeleteRecords),
        1 => Just(Op::Retention),
        1 => any::<u16>().prop_map(Op::Truncate),
        1 => Just(Op::NewEpoch),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Against a model (batch base → last offset and leader epoch): offsets
    /// stay dense, reads return whole batches covering the requested offset,
    /// nothing flushed is lost across clean or crash reopens or truncations,
    /// and every epoch still in the log ends where the next one starts.
    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { segment_bytes: 400, index_interval_bytes: 64, retention_bytes: 2_000, ..LogConfig::default() };
        let mut log = Log::open(dir.path(), config.clone()).unwrap();
        let mut batches: BTreeMap<i64, (i64, i32)> = BTreeMap::new(); // base → (last, epoch)
        let mut start = 0i64;
        let mut end = 0i64;
        let mut epoch = 0i32;
        for op in ops {
            match op {
                Op::Append(n) => {
                    let (first, last) = append_in_epoch(&mut log, n, end, epoch);
                    prop_assert_eq!(first, end);
                    prop_assert_eq!(last, end + n as i64 - 1);
                    batches.insert(first, (last, epoch));
                    end = last + 1;
                }
                Op::Read(r) => {
                    if end > start {
                        let offset = start + (r as i64 % (end - start));
                        let got = read_batches(&log, offset, 200);
                        prop_assert!(!got.is_empty());
                        prop_assert!(got[0].base_offset <= offset && offset <= got[0].last_offset());
                        for h in &got {
                            prop_assert_eq!(batches.get(&h.base_offset), Some(&(h.last_offset(), h.partition_leader_epoch)));
                        }
                    }
                }
                Op::Reopen { crash } => {
                    let epochs_before = log.leader_epochs().entries().to_vec();
                    if crash {
                        log.flush().unwrap();
                        drop(log);
                    } else {
                        log.close().unwrap();
                        drop(log);
                    }
                    log = Log::open(dir.path(), config.clone()).unwrap();
                    prop_assert_eq!(log.log_end_offset(), end);
                    prop_assert_eq!(log.log_start_offset(), start);
                    prop_assert_eq!(log.leader_epochs().entries(), &epochs_before[..]);
                }
                Op::DeleteRecords(d) => {
                    if end > start {
                        let target = start + (d as i64 % (end - start + 1));
                        start = log.delete_records_before(target).unwrap();
                        prop_assert_eq!(start, target);
                    }
                }
                Op::Retention => {
                    log.enforce_retention(0).unwrap();
                    prop_assert!(log.log_start_offset() >= start);
                    start = log.log_start_offset();
                    prop_assert_eq!(log.log_end_offset(), end);
                }
                Op::Truncate(t) => {
                    let target = start + (t as i64 % (end - start + 1));
                    // The batch holding the target goes whole.
                    let cut = batches.iter().find(|(_, (last, _))| *last >= target).map(|(&b, _)| b).unwrap_or(end);
                    batches.retain(|&b, _| b < cut);
                    end = log.truncate_to(target).unwrap();
                    prop_assert_eq!(end, cut.max(log.log_start_offset().min(cut)));
                    start = start.min(end);
                    prop_assert_eq!(log.log_start_offset(), start);
                }
                Op::NewEpoch => epoch += 1,
            }
            // Each epoch of a batch still in the log ends where the next epoch begins (or at the log end).
            let live: Vec<(i64, i32)> = batches.iter().filter(|(_, (last, _))| *last >= start).map(|(&b, &(_, e))| (b, e)).collect();
            for (i, &(_, e)) in live.iter().enumerate() {
                let next_start = live[i..].iter().find(|&&(_, later)| later > e).map(|&(b, _)| b).unwrap_or(end);
                prop_assert_eq!(log.end_offset_for_epoch(e), (e, next_start), "epoch {} in {:?}", e, live);
            }
        }
    }
}

/// Found by `log_matches_model` in CI: after DeleteRecords into a batch and a
/// truncation below the log start, the log is empty but its segment still
/// holds the deleted batches; reopening must not take their epochs back.
#[test]
fn reopen_ignores_epochs_of_batches_below_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_bytes: 400, index_interval_bytes: 64, retention_bytes: 2_000, ..LogConfig::default() };
    let mut log = Log::open(dir.path(), config.clone()).unwrap();
    append_in_epoch(&mut log, 3, 0, 0);
    append_in_epoch(&mut log, 1, 3, 0);
    append_in_epoch(&mut log, 5, 4, 0);
    assert_eq!(log.delete_records_before(5).unwrap(), 5);
    assert_eq!(log.truncate_to(5).unwrap(), 4, "the batch holding offset 5 goes whole");
    let before = log.leader_epochs().entries().to_vec();
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), config).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (4, 4));
    assert_eq!(log.leader_epochs().entries(), &before[..]);
}
