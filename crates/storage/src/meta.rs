//! Durable topic metadata (id, partition count, config overrides), so that
//! topics and their configs survive restarts. Written atomically
//! (temp file, fsync, rename, fsync of the directory).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::Result;

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
    _private: (),
}

impl MetaStore {
    /// Opens (creating if needed) the store and loads every topic.
    pub fn open(data_dir: &Path) -> Result<(MetaStore, Vec<TopicMeta>)> {
        let _ = data_dir;
        todo!("storage helper")
    }
    /// Creates or replaces one topic's metadata durably.
    pub fn put(&self, topic: &TopicMeta) -> Result<()> {
        let _ = topic;
        todo!("storage helper")
    }
    /// Removes one topic's metadata durably (no error if absent).
    pub fn remove(&self, name: &str) -> Result<()> {
        let _ = name;
        todo!("storage helper")
    }
    /// Reads/writes a small named value (e.g. the next producer id block,
    /// the cluster id) durably.
    pub fn get_value(&self, key: &str) -> Result<Option<String>> {
        let _ = key;
        todo!("storage helper")
    }
    pub fn put_value(&self, key: &str, value: &str) -> Result<()> {
        let _ = (key, value);
        todo!("storage helper")
    }
}
