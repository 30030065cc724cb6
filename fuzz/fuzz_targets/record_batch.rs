#![no_main]
//! A produce request's records as the produce path receives them:
//! `storage::batch::validate_batches` (framing, magic 2, CRC-32C, the
//! `max.message.bytes` bound, codec, record counts). What it accepts then goes
//! through `assign_offsets` as `Log::append` does, after which every batch must
//! pass the recovery check (`check_stored_batch`) and take exactly the offsets
//! validation counted.

use libfuzzer_sys::fuzz_target;
use runnel_storage::batch::{assign_offsets, check_stored_batch, validate_batches};

/// Kafka's default `max.message.bytes` (1 MiB + the record batch overhead).
const MAX_BATCH_BYTES: usize = 1_048_588;

fuzz_target!(|data: &[u8]| {
    let Ok(validated) = validate_batches(data, MAX_BATCH_BYTES) else {
        return;
    };
    assert!(!validated.headers.is_empty());
    let mut stored = data.to_vec();
    let first_offset = 1_000;
    // LogAppendTime rewrites the timestamp and the CRC; CreateTime keeps the producer's CRC.
    let log_append_time = (data.len() % 2 == 0).then_some(1_700_000_000_000);
    let last = assign_offsets(&mut stored, first_offset, 7, log_append_time);
    assert_eq!(last, first_offset + validated.offset_count - 1, "offsets assigned != offsets validated");
    let mut pos = 0;
    let mut next = first_offset;
    for header in &validated.headers {
        let size = header.total_size();
        let end = pos + size;
        assert!(end <= stored.len(), "a validated batch runs past the buffer");
        let stored_header = check_stored_batch(&stored[pos..end]).expect("an accepted batch is a valid stored batch");
        assert_eq!(stored_header.base_offset, next);
        next = stored_header.next_offset();
        pos = end;
    }
    assert_eq!(pos, stored.len(), "validation accepted trailing bytes");
});
