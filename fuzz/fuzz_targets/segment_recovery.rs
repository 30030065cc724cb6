#![no_main]
//! A partition directory after a crash: the input (after one flags byte) is
//! written as the only segment file, `00000000000000000000.log`, and
//! `storage::Log::open` recovers it as the broker does at start-up. Flags bit 0:
//! the last shutdown was clean (`.clean-shutdown`: batches are walked, not
//! CRC-checked); bit 1: an index entry every batch (`index.interval.bytes` 1).
//!
//! Recovery must not panic and must leave a valid prefix of the input: whole
//! batches (CRC-checked unless the shutdown was clean) whose offsets ascend,
//! the log end just past the last of them, every cut byte in the quarantine
//! file; and opening the recovered log again must cut nothing.

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use runnel_storage::batch::{check_stored_batch, BatchHeader, BATCH_HEADER_LEN};
use runnel_storage::log::for_each_batch;
use runnel_storage::{Log, LogConfig};

const SEGMENT: &str = "00000000000000000000.log";

fn scratch_dir() -> tempfile::TempDir {
    // tmpfs when there is one: recovery fsyncs, and the fuzzer opens thousands of logs a second.
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("a temporary directory")
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, segment)) = data.split_first() else {
        return;
    };
    let clean = flags & 1 != 0;
    let config = LogConfig { index_interval_bytes: if flags & 2 != 0 { 1 } else { 4096 }, ..LogConfig::default() };
    let tmp = scratch_dir();
    let dir = tmp.path().join("topic-0");
    std::fs::create_dir_all(&dir).expect("partition directory");
    std::fs::write(dir.join(SEGMENT), segment).expect("segment file");
    if clean {
        std::fs::write(dir.join(".clean-shutdown"), b"").expect("clean-shutdown marker");
    }

    let mut log = Log::open(&dir, config.clone()).expect("recovery opens any segment file");
    let kept = std::fs::read(dir.join(SEGMENT)).expect("the recovered segment");
    assert!(segment.starts_with(&kept), "recovery changed bytes it kept");

    // What was kept: whole batches, ascending offsets, CRC-valid unless the shutdown was clean.
    let mut pos = 0;
    let mut end = 0i64;
    let mut batches = 0;
    while pos < kept.len() {
        let header = BatchHeader::parse(&kept[pos..]).expect("a whole batch header");
        assert_eq!(header.magic, 2);
        let size = header.total_size();
        assert!(size >= BATCH_HEADER_LEN && pos + size <= kept.len(), "a kept batch does not fit: {header:?}");
        if !clean {
            check_stored_batch(&kept[pos..pos + size]).expect("a kept batch passes the CRC check");
        }
        assert!(header.base_offset >= end, "offsets go backwards at {pos}");
        end = header.next_offset();
        batches += 1;
        pos += size;
    }
    assert_eq!(log.log_end_offset(), end, "the log end is not past the last kept batch");
    let mut walked = 0;
    for_each_batch(&log, 0, |_| walked += 1).expect("the recovered log reads");
    assert_eq!(walked, batches);

    // Every cut byte is in the quarantine file.
    let cut = &segment[kept.len()..];
    match log.quarantined() {
        [] => assert!(cut.is_empty(), "{} bytes cut without quarantine", cut.len()),
        [q] => {
            assert_eq!(q.cut_at as usize, kept.len());
            assert_eq!(std::fs::read(&q.quarantine_file).expect("the quarantine file"), cut);
        }
        more => panic!("{} quarantines of one segment", more.len()),
    }

    // Recovering the recovered log (with its indexes now, after a clean close) cuts nothing.
    log.close().expect("close");
    drop(log);
    let again = Log::open(&dir, config).expect("reopen");
    assert!(again.quarantined().is_empty(), "a second recovery cut the recovered log");
    assert_eq!(again.log_end_offset(), end);
});
