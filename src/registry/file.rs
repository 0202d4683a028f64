//! Registry file source: a Eureka payload (XML or JSON, detected from content) read from a
//! file at start and on every refresh. A malformed or unreadable file keeps the last good
//! routing table.

use std::path::Path;

use super::{decode, Publisher, Snapshot};

/// Why the registry file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("cannot read registry file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is larger than `registry.max_payload_size`.
    #[error("registry file {path} is {size} bytes, over the limit of {max} bytes")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        max: usize,
    },
    /// The content is not a Eureka payload.
    #[error("registry file {path}: {source}")]
    Decode {
        /// The file.
        path: String,
        /// The decoder's error.
        source: super::DecodeError,
    },
}

/// Reads and decodes a registry file.
///
/// # Errors
/// [`FileError`] naming the file and the cause.
pub async fn load(path: &Path, max: usize) -> Result<Snapshot, FileError> {
    let name = || path.display().to_string();
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|source| FileError::Read {
            path: name(),
            source,
        })?;
    if meta.len() > max as u64 {
        return Err(FileError::TooLarge {
            path: name(),
            size: meta.len(),
            max,
        });
    }
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|source| FileError::Read {
            path: name(),
            source,
        })?;
    decode(&bytes).map_err(|source| FileError::Decode {
        path: name(),
        source,
    })
}

/// Loads the file once and publishes it; on failure records it (last good table kept).
/// Returns true when a table was published.
pub async fn refresh(path: &Path, max: usize, publisher: &Publisher) -> bool {
    match load(path, max).await {
        Ok(s) => {
            publisher
                .metrics
                .fetches
                .get_or_create(&crate::metrics::OutcomeLabel { outcome: "file" })
                .inc();
            publisher.publish(&s, &path.display().to_string());
            true
        }
        Err(e) => {
            publisher.fail(e.to_string());
            false
        }
    }
}
