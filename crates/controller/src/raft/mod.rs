//! The metadata log on Raft (openraft 0.9): the type configuration, the log and
//! state-machine storage in `<data dir>/__cluster_metadata-0/`, and the TCP transport
//! between controllers.

use std::io::Cursor;
use std::path::Path;

pub mod log_store;
pub mod network;
pub mod state_machine;

use crate::records::MetadataBatch;

openraft::declare_raft_types!(
    /// Raft node ids are Kafka node ids (`node.id`, non-negative).
    pub TypeConfig:
        D = MetadataBatch,
        R = (),
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;

/// The directory of the metadata log, named as Kafka names it.
pub const METADATA_DIR: &str = "__cluster_metadata-0";

/// Writes `bytes` to `path` so that a crash leaves the old or the new content:
/// a temporary file, fsynced, renamed over, and the directory fsynced (when `durable`).
pub(crate) fn write_file_atomically(path: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        if durable {
            file.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)?;
    if durable {
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
    }
    Ok(())
}

pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32
}
