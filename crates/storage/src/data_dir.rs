//! The data directory: its lock file (one broker per directory) and where
//! each partition's log lives (`<data-dir>/<topic>-<partition>/`).

use std::path::{Path, PathBuf};

use crate::error::Result;

/// An open, exclusively locked data directory. The lock (flock on
/// `<data-dir>/.lock`) is released when this is dropped or the process dies.
pub struct DataDir {
    root: PathBuf,
    _lock: std::fs::File,
}

impl DataDir {
    /// Creates the directory if needed and takes the lock, or fails with
    /// [`crate::StorageError::Locked`] naming the directory.
    pub fn open(root: &Path) -> Result<DataDir> {
        let _ = root;
        todo!("storage helper")
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The directory of one partition's log.
    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.root.join(format!("{topic}-{partition}"))
    }
    /// Partition directories found on disk: (topic, partition, path).
    pub fn list_partition_dirs(&self) -> Result<Vec<(String, i32, PathBuf)>> {
        todo!("storage helper")
    }
}
