#![no_main]
//! Bytes as a client connection delivers them: the broker's `network::read_frame`
//! cuts them into size-prefixed frames (bounded like `socket.request.max.bytes`)
//! and `apis::decode_frame` parses each frame's API key, version and header and
//! decodes its body with the decoder dispatch uses, for every API and version in
//! `SUPPORTED_APIS`. Must never panic outside the broker's own `catch_unwind`
//! (which closes the connection) nor exhaust memory on a forged array count.

use libfuzzer_sys::fuzz_target;

// As in the broker binary: forged array counts reserve address space, not memory.
#[global_allocator]
static ALLOCATOR: runnel_broker::alloc_guard::GuardedAllocator = runnel_broker::alloc_guard::GuardedAllocator;

/// Frames above this are refused before any allocation (the broker's default is 100 MiB).
const MAX_FRAME: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    runnel_fuzz::run_with_caught_panics(|| {
        let mut stream = data;
        futures::executor::block_on(async {
            // The broker closes the connection at the first bad frame or request.
            while let Ok(Some(frame)) = runnel_broker::network::read_frame(&mut stream, MAX_FRAME).await {
                if runnel_broker::apis::decode_frame(frame).is_err() {
                    break;
                }
            }
        });
    });
});
