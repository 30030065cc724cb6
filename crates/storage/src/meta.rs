//! Durable topic metadata (id, partition count, config overrides), so that
//! topics and their configs survive restarts. Every write is atomic: temp
//! file, fsync, rename, fsync of the directory.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use std::sync::{Mutex, MutexGuard};

use crate::error::{Result, StorageError};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicMeta {
    pub name: String,
    /// Kafka topic id (UUID bytes).
    pub topic_id: [u8; 16],
    pub partitions: u32,
    /// Topic-level config overrides by Kafka config name.
    pub configs: BTreeMap<String, String>,
}

/// The store of all topics' metadata under `<data-dir>/meta/`.
pub struct MetaStore {
    topics_dir: PathBuf,
    values_path: PathBuf,
    values: Mutex<BTreeMap<String, String>>,
}

/// A poisoned lock only means another thread panicked mid-update of a map we replace whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes `data` to `path` atomically and durably.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().ok_or_else(|| StorageError::io(path, std::io::Error::other("no parent directory")))?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
    file.write_all(data).map_err(|e| StorageError::io(&tmp, e))?;
    file.sync_all().map_err(|e| StorageError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| StorageError::io(path, e))?;
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StorageError::io(dir, e))
}

impl MetaStore {
    /// Opens (creating if needed) the store and loads every topic.
    pub fn open(data_dir: &Path) -> Result<(MetaStore, Vec<TopicMeta>)> {
        let meta_dir = data_dir.join("meta");
        let topics_dir = meta_dir.join("topics");
        std::fs::create_dir_all(&topics_dir).map_err(|e| StorageError::io(&topics_dir, e))?;
        let values_path = meta_dir.join("values.json");
        let values = match std::fs::read(&values_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
                path: values_path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(StorageError::io(&values_path, e)),
        };
        let mut topics = Vec::new();
        let entries = std::fs::read_dir(&topics_dir).map_err(|e| StorageError::io(&topics_dir, e))?;
        for entry in entries {
            let path = entry.map_err(|e| StorageError::io(&topics_dir, e))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| StorageError::io(&path, e))?;
            let topic: TopicMeta = serde_json::from_slice(&bytes)
                .map_err(|e| StorageError::Corrupt { path: path.clone(), reason: e.to_string() })?;
            topics.push(topic);
        }
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((MetaStore { topics_dir, values_path, values: Mutex::new(values) }, topics))
    }

    fn topic_path(&self, name: &str) -> PathBuf {
        // Kafka topic names are [a-zA-Z0-9._-], so they are safe file names.
        self.topics_dir.join(format!("{name}.json"))
    }

    /// Creates or replaces one topic's metadata durably.
    pub fn put(&self, topic: &TopicMeta) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(topic).map_err(|e| StorageError::io(self.topic_path(&topic.name), std::io::Error::other(e)))?;
        write_atomically(&self.topic_path(&topic.name), &bytes)
    }

    /// Removes one topic's metadata durably (no error if absent).
    pub fn remove(&self, name: &str) -> Result<()> {
        let path = self.topic_path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.topics_dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(path, e)),
        }
    }

    /// Reads a small named value (e.g. the cluster id) durably stored.
    pub fn get_value(&self, key: &str) -> Result<Option<String>> {
        Ok(lock(&self.values).get(key).cloned())
    }

    /// Writes a small named value durably.
    pub fn put_value(&self, key: &str, value: &str) -> Result<()> {
        let mut values = lock(&self.values);
        let mut next = values.clone();
        next.insert(key.to_string(), value.to_string());
        let bytes = serde_json::to_vec_pretty(&next).map_err(|e| StorageError::io(&self.values_path, std::io::Error::other(e)))?;
        write_atomically(&self.values_path, &bytes)?;
        *values = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_values_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (store, topics) = MetaStore::open(dir.path()).unwrap();
        assert!(topics.is_empty());
        let mut configs = BTreeMap::new();
        configs.insert("retention.ms".to_string(), "1000".to_string());
        let t = TopicMeta { name: "orders.v1".into(), topic_id: [7; 16], partitions: 3, configs };
        store.put(&t).unwrap();
        store.put_value("cluster.id", "abc").unwrap();
        drop(store);
        let (store, topics) = MetaStore::open(dir.path()).unwrap();
        assert_eq!(topics, vec![t]);
        assert_eq!(store.get_value("cluster.id").unwrap().as_deref(), Some("abc"));
        store.remove("orders.v1").unwrap();
        store.remove("orders.v1").unwrap();
        let (_, topics) = MetaStore::open(dir.path()).unwrap();
        assert!(topics.is_empty());
    }
}
