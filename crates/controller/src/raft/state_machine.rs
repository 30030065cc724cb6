//! The Raft state machine: committed metadata batches applied to the `MetadataImage`,
//! published on a watch channel. Snapshots are the serialized image, kept in
//! `snapshot.json` (fsynced, replaced atomically) and restored on start.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{BasicNode, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError, StoredMembership};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{write_file_atomically, Entry, LogId, NodeId, StorageError, TypeConfig};
use crate::image::MetadataImage;

type Meta = SnapshotMeta<NodeId, BasicNode>;

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: Meta,
    image: MetadataImage,
}

#[derive(Clone)]
struct StoredSnapshot {
    meta: Meta,
    data: Vec<u8>,
}

pub struct StateMachineStore {
    dir: PathBuf,
    last_applied: Option<LogId>,
    last_membership: StoredMembership<NodeId, BasicNode>,
    image: Arc<MetadataImage>,
    image_tx: watch::Sender<Arc<MetadataImage>>,
    current_snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
    snapshot_counter: Arc<AtomicU64>,
}

pub struct SnapshotBuilder {
    dir: PathBuf,
    last_applied: Option<LogId>,
    last_membership: StoredMembership<NodeId, BasicNode>,
    image: Arc<MetadataImage>,
    current_snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
    snapshot_counter: Arc<AtomicU64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn snapshot_path(dir: &Path) -> PathBuf {
    dir.join("snapshot.json")
}

fn persist(dir: &Path, meta: &Meta, image: &MetadataImage) -> std::io::Result<()> {
    let file = SnapshotFile { meta: meta.clone(), image: image.clone() };
    let bytes = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
    write_file_atomically(&snapshot_path(dir), &bytes, true)
}

impl StateMachineStore {
    /// Opens the state machine at its last snapshot (or empty); openraft then re-applies
    /// the committed log entries after it.
    pub fn open(dir: &Path) -> std::io::Result<(StateMachineStore, watch::Receiver<Arc<MetadataImage>>)> {
        std::fs::create_dir_all(dir)?;
        let (meta, image, stored) = match std::fs::read(snapshot_path(dir)) {
            Ok(bytes) => {
                let file: SnapshotFile = serde_json::from_slice(&bytes).map_err(|e| {
                    std::io::Error::other(format!("{}: {e}", snapshot_path(dir).display()))
                })?;
                let data = serde_json::to_vec(&file.image).map_err(std::io::Error::other)?;
                (Some(file.meta.clone()), file.image, Some(StoredSnapshot { meta: file.meta, data }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, MetadataImage::default(), None),
            Err(e) => return Err(e),
        };
        let image = Arc::new(image);
        let (image_tx, image_rx) = watch::channel(image.clone());
        Ok((
            StateMachineStore {
                dir: dir.to_path_buf(),
                last_applied: meta.as_ref().and_then(|m| m.last_log_id),
                last_membership: meta.map(|m| m.last_membership).unwrap_or_default(),
                image,
                image_tx,
                current_snapshot: Arc::new(Mutex::new(stored)),
                snapshot_counter: Arc::new(AtomicU64::new(0)),
            },
            image_rx,
        ))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let data = serde_json::to_vec(&*self.image).map_err(|e| StorageIOError::read_state_machine(&e))?;
        let snapshot_id = match self.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, self.snapshot_counter.fetch_add(1, Ordering::Relaxed)),
            None => format!("empty-{}", self.snapshot_counter.fetch_add(1, Ordering::Relaxed)),
        };
        let meta = Meta { last_log_id: self.last_applied, last_membership: self.last_membership.clone(), snapshot_id };
        persist(&self.dir, &meta, &self.image).map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        *lock(&self.current_snapshot) = Some(StoredSnapshot { meta: meta.clone(), data: data.clone() });
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership<NodeId, BasicNode>), StorageError> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => {
                    let image = Arc::make_mut(&mut self.image);
                    for record in &batch.records {
                        if let Err(e) = image.apply(record) {
                            // Every node skips the same record, so the images stay equal.
                            tracing::error!(log_index = entry.log_id.index, ?record, "{e}");
                        }
                    }
                }
                EntryPayload::Membership(membership) => {
                    self.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                }
            }
            responses.push(());
        }
        if let Some(last) = self.last_applied {
            Arc::make_mut(&mut self.image).applied_log_index = last.index;
        }
        self.image_tx.send_replace(self.image.clone());
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            dir: self.dir.clone(),
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
            image: self.image.clone(),
            current_snapshot: self.current_snapshot.clone(),
            snapshot_counter: self.snapshot_counter.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<Cursor<Vec<u8>>>) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let image: MetadataImage = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        persist(&self.dir, meta, &image).map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        self.image = Arc::new(MetadataImage { applied_log_index: meta.last_log_id.map_or(0, |id| id.index), ..image });
        self.image_tx.send_replace(self.image.clone());
        *lock(&self.current_snapshot) = Some(StoredSnapshot { meta: meta.clone(), data });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(lock(&self.current_snapshot)
            .clone()
            .map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}
