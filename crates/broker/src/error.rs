//! Kafka error codes as the handlers use them, and the mapping from storage
//! errors to the code a client expects.

use kafka_protocol::error::ResponseError;
use runnel_storage::{BatchError, StorageError};

/// An error to put in a response: Kafka's code and, where the response has
/// room for one, a message for the user.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ResponseError,
    pub message: Option<String>,
}

impl ApiError {
    pub fn new(code: ResponseError, message: impl Into<String>) -> Self {
        ApiError { code, message: Some(message.into()) }
    }
    pub fn bare(code: ResponseError) -> Self {
        ApiError { code, message: None }
    }
    pub fn code(&self) -> i16 {
        self.code.code()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(m) => write!(f, "{:?}: {m}", self.code),
            None => write!(f, "{:?}", self.code),
        }
    }
}

impl From<&BatchError> for ApiError {
    fn from(e: &BatchError) -> Self {
        let code = match e {
            BatchError::Corrupt(_) => ResponseError::CorruptMessage,
            BatchError::TooLarge { .. } => ResponseError::MessageTooLarge,
            BatchError::Invalid(_) => ResponseError::InvalidRecord,
            BatchError::UnsupportedCompression(_) => ResponseError::UnsupportedCompressionType,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<&StorageError> for ApiError {
    fn from(e: &StorageError) -> Self {
        match e {
            StorageError::OffsetOutOfRange { .. } => ApiError::new(ResponseError::OffsetOutOfRange, e.to_string()),
            StorageError::Batch(b) => b.into(),
            StorageError::Config(c) => ApiError::new(ResponseError::InvalidConfig, c.to_string()),
            StorageError::Io { .. } | StorageError::Corrupt { .. } | StorageError::Locked { .. } => {
                ApiError::new(ResponseError::KafkaStorageError, e.to_string())
            }
        }
    }
}
