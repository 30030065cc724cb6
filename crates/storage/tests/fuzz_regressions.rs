//! Inputs the cargo-fuzz targets (`fuzz/`) crashed on, replayed as ordinary
//! tests. Each input is also kept in its target's seed corpus
//! (`fuzz/seeds/<target>/crash-*`), so every fuzz run starts from it too.

use runnel_storage::{Log, LogConfig};

/// `segment_recovery`: writes `input`'s segment (after the flags byte) into a
/// fresh partition directory and recovers it as the broker does at start-up.
fn recover(input: &[u8]) -> (tempfile::TempDir, Vec<u8>, Log) {
    let (&flags, segment) = input.split_first().expect("a flags byte");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("topic-0");
    std::fs::create_dir_all(&dir).expect("partition directory");
    std::fs::write(dir.join("00000000000000000000.log"), segment).expect("segment");
    if flags & 1 != 0 {
        std::fs::write(dir.join(".clean-shutdown"), b"").expect("marker");
    }
    let config = LogConfig { index_interval_bytes: if flags & 2 != 0 { 1 } else { 4096 }, ..LogConfig::default() };
    let log = Log::open(&dir, config).expect("recovery opens any segment file");
    let kept = std::fs::read(dir.join("00000000000000000000.log")).expect("recovered segment");
    assert!(segment.starts_with(&kept), "recovery changed bytes it kept");
    (tmp, kept, log)
}

/// A batch whose last offset delta is negative (bit rot after a clean
/// shutdown: nothing is CRC-checked then) put the log end below the
/// segment's base, and `Log::open` panicked clamping the log start into
/// `base..=end`: the broker could not start. Recovery now cuts such a batch.
#[test]
fn a_negative_last_offset_delta_is_cut_not_a_panic() {
    let input = include_bytes!("../../../fuzz/seeds/segment_recovery/crash-negative-last-offset-delta");
    let (_tmp, kept, log) = recover(input);
    assert!(kept.len() < input.len() - 1, "the bad batch is cut");
    assert!(log.log_end_offset() >= 0);
    assert!(log.log_start_offset() <= log.log_end_offset());
    assert_eq!(log.quarantined().len(), 1);
}
