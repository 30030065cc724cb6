//! Runnel's storage engine.
//!
//! A partition is a [`Log`]: an ordered list of segments, each a file of Kafka
//! record batches (magic v2) stored exactly as producers sent them, with a
//! sparse offset index and a time index beside it. The on-disk batch format is
//! Kafka's wire format, which is what lets the broker serve fetches straight
//! from the stored bytes.
//!
//! This crate knows nothing of the network: it takes bytes, validates them as
//! record batches, assigns offsets in place, and hands bytes back.

pub mod batch;
pub mod cleaner;
pub mod config;
pub mod data_dir;
pub mod error;
pub mod index;
pub mod leader_epoch;
pub mod log;
pub mod meta;
pub mod quarantine;
pub mod segment;
pub mod txn_index;

pub use batch::{BatchError, BatchHeader, ValidatedBatches};
pub use cleaner::{CleanStats, CleanerConfig};
pub use config::{ConfigError, LogConfig, TimestampType};
pub use data_dir::DataDir;
pub use error::StorageError;
pub use leader_epoch::{EpochEntry, LeaderEpochCache};
pub use log::{AppendInfo, Cleanable, Log, ReadPlan, RetentionOutcome, SyncJob};
pub use txn_index::{AbortedTxn, ControlType};
pub use meta::{MetaStore, TopicMeta};
