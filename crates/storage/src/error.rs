use std::path::PathBuf;

/// Errors from the storage engine. Every variant carries enough context to
/// say which file or offset was involved.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange { offset: i64, log_start: i64, log_end: i64 },
    #[error("invalid record batch: {0}")]
    Batch(#[from] crate::batch::BatchError),
    #[error("corrupt data in {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("data directory {path} is locked by another process ({reason})")]
    Locked { path: PathBuf, reason: String },
    #[error("invalid config: {0}")]
    Config(#[from] crate::config::ConfigError),
}

impl StorageError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io { path: path.into(), source }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
