//! The crate's error type.

use std::io;

use crate::digest::Digest;

/// Everything that can go wrong in `berth-image`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A string that is not `sha256:<64 lowercase hex>`.
    #[error("invalid digest {value:?}: {reason}")]
    InvalidDigest {
        /// The rejected text.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Content whose digest is not the one it was expected to have.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest the caller asked for.
        expected: Digest,
        /// The digest of the bytes actually received.
        actual: Digest,
    },
    /// A blob that is not in the store.
    #[error("blob {0} not found")]
    BlobNotFound(Digest),
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// JSON that does not parse as the expected document.
    #[error("invalid {what}: {source}")]
    Json {
        /// Which document.
        what: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A media type this crate does not handle.
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    /// A document that parses but breaks the format's rules.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which document or object.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No manifest in an index matches the requested platform.
    #[error("no manifest for platform {wanted} (available: {available})")]
    NoMatchingPlatform {
        /// The requested platform, `os/arch[/variant]`.
        wanted: String,
        /// The platforms the index offers.
        available: String,
    },
    /// A layer entry that cannot be unpacked (unsafe path, bad type, ...).
    #[error("layer entry {path:?}: {reason}")]
    Entry {
        /// The entry's path as written in the tar.
        path: String,
        /// Why it was refused or failed.
        reason: String,
    },
    /// A layer that unpacks to more bytes than the configured limit.
    #[error("layer exceeds the unpack limit of {0} bytes")]
    SizeLimit(u64),
    /// An image reference (tag) that is not present.
    #[error("reference {0:?} not found")]
    RefNotFound(String),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Attach a context message to an I/O error.
pub(crate) trait IoContext<T> {
    /// Map the error into [`Error::Io`] with `context`.
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|errno| Error::Io {
            context: context(),
            source: io::Error::from(errno),
        })
    }
}

/// Build an [`Error::Invalid`].
pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Invalid {
        what: what.into(),
        reason: reason.into(),
    }
}
