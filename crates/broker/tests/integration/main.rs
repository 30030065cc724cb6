//! The broker's TCP tests, one module per area, in one test binary: each
//! binary links the whole broker, and eight of them cost CI minutes of
//! compiling (about 160 s each on the 2-core machine) for nothing.

// Forged array counts in the malformed-frame tests are answered, not aborted
// on (the broker binary installs the same allocator).
#[global_allocator]
static ALLOCATOR: runnel_broker::alloc_guard::GuardedAllocator = runnel_broker::alloc_guard::GuardedAllocator;

mod common;
mod config_wire;
mod consumer_group_commits;
mod consumer_group_regex;
mod every_version;
mod fetch_sessions;
mod kafka_parity;
mod replication;
mod wire;
