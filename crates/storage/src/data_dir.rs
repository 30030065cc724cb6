//! The data directory: its lock file (one broker per directory) and where
//! each partition's log lives (`<data-dir>/<topic>-<partition>/`).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};

/// Where the cluster metadata quorum keeps its Raft log (Kafka's name): never a topic's partition.
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";

/// Kafka's per-partition file naming the topic id the log belongs to, so a
/// partition directory identifies its topic even without the topic metadata.
pub const PARTITION_METADATA_FILE: &str = "partition.metadata";

/// Writes `partition.metadata` (Kafka's format: `version: 0` and the topic id
/// in URL-safe base64) durably into a partition directory.
pub fn write_partition_metadata(partition_dir: &Path, topic_id: [u8; 16]) -> Result<()> {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(topic_id);
    crate::meta::write_atomically(&partition_dir.join(PARTITION_METADATA_FILE), format!("version: 0\ntopic_id: {encoded}\n").as_bytes())
}

/// The topic id in a partition directory's `partition.metadata`: None when the
/// file is absent (directories written before it existed), an error when it
/// cannot be read or parsed.
pub fn read_partition_metadata(partition_dir: &Path) -> Result<Option<[u8; 16]>> {
    use base64::Engine as _;
    let path = partition_dir.join(PARTITION_METADATA_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(&path, e)),
    };
    let corrupt = |reason: &str| StorageError::Corrupt { path: path.clone(), reason: reason.to_string() };
    let mut version = None;
    let mut topic_id = None;
    for line in text.lines() {
        match line.split_once(':').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("version", v)) => version = Some(v.to_string()),
            Some(("topic_id", v)) => topic_id = Some(v.to_string()),
            _ => {}
        }
    }
    if version.as_deref() != Some("0") {
        return Err(corrupt("unsupported or missing version (expected 0)"));
    }
    let encoded = topic_id.ok_or_else(|| corrupt("no topic_id"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.as_bytes())
        .map_err(|e| corrupt(&format!("topic_id is not base64: {e}")))?;
    let id: [u8; 16] = bytes.try_into().map_err(|_| corrupt("topic_id is not 16 bytes"))?;
    Ok(Some(id))
}

/// An open, exclusively locked data directory. The lock (flock on
/// `<data-dir>/.lock`) is released when this is dropped or the process dies.
pub struct DataDir {
    root: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates the directory if needed and takes the lock, or fails with
    /// [`StorageError::Locked`] naming the directory.
    pub fn open(root: &Path) -> Result<DataDir> {
        std::fs::create_dir_all(root).map_err(|e| StorageError::io(root, e))?;
        let lock_path = root.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StorageError::io(&lock_path, e))?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            let reason = if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                "another runnel process is using it".to_string()
            } else {
                err.to_string()
            };
            return Err(StorageError::Locked { path: root.to_path_buf(), reason });
        }
        Ok(DataDir { root: root.to_path_buf(), _lock: lock })
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
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.root).map_err(|e| StorageError::io(&self.root, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io(&self.root, e))?;
            if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let name = entry.file_name().to_string_lossy().to_string();
            if name == METADATA_LOG_DIR {
                continue;
            }
            if let Some((topic, partition)) = name.rsplit_once('-') {
                if let Ok(p) = partition.parse::<i32>() {
                    if !topic.is_empty() && p >= 0 {
                        out.push((topic.to_string(), p, entry.path()));
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_log_directory_is_not_a_partition() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        std::fs::create_dir(tmp.path().join(METADATA_LOG_DIR)).unwrap();
        std::fs::create_dir(dir.partition_dir("orders", 0)).unwrap();
        let found: Vec<(String, i32)> = dir.list_partition_dirs().unwrap().into_iter().map(|(t, p, _)| (t, p)).collect();
        assert_eq!(found, vec![("orders".to_string(), 0)]);
    }

    #[test]
    fn partition_metadata_round_trips_in_kafkas_format() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(read_partition_metadata(tmp.path()).unwrap(), None);
        let id = [0x8fu8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xff];
        write_partition_metadata(tmp.path(), id).unwrap();
        let text = std::fs::read_to_string(tmp.path().join(PARTITION_METADATA_FILE)).unwrap();
        assert_eq!(text, "version: 0\ntopic_id: jwECAwQFBgcICQoLDA0O_w\n");
        assert_eq!(read_partition_metadata(tmp.path()).unwrap(), Some(id));
        std::fs::write(tmp.path().join(PARTITION_METADATA_FILE), "version: 0\ntopic_id: !!\n").unwrap();
        assert!(matches!(read_partition_metadata(tmp.path()), Err(StorageError::Corrupt { .. })));
    }

    #[test]
    fn a_second_open_is_refused_while_the_first_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::open(dir.path()).unwrap();
        assert!(matches!(DataDir::open(dir.path()), Err(StorageError::Locked { .. })));
        drop(first);
        assert!(DataDir::open(dir.path()).is_ok());
    }

    #[test]
    fn partition_dirs_are_parsed_at_the_last_dash() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        std::fs::create_dir_all(data.partition_dir("my-topic.v2", 3)).unwrap();
        std::fs::create_dir_all(dir.path().join("meta")).unwrap();
        let found = data.list_partition_dirs().unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].0.as_str(), found[0].1), ("my-topic.v2", 3));
    }
}
