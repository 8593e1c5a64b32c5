//! Errors of the registry client, worded for the person who ran the command.

use std::io;

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong while talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image reference could not be parsed.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The text given.
        reference: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A digest string is malformed or uses an unsupported algorithm.
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        /// The text given.
        digest: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The registry answered 401.
    #[error("authentication required by {registry}: {detail}")]
    Unauthorized {
        /// Registry host.
        registry: String,
        /// What the registry or the client says about it.
        detail: String,
    },
    /// The registry answered 403.
    #[error("access denied by {registry}: {detail}")]
    Denied {
        /// Registry host.
        registry: String,
        /// What the registry says about it.
        detail: String,
    },
    /// The manifest (tag or digest) does not exist.
    #[error("manifest unknown: {reference} does not exist in {registry}")]
    ManifestUnknown {
        /// Registry host.
        registry: String,
        /// `repository:tag` or `repository@digest`.
        reference: String,
    },
    /// The blob does not exist in the repository.
    #[error("blob unknown: {digest} does not exist in {registry}/{repository}")]
    BlobUnknown {
        /// Registry host.
        registry: String,
        /// Repository name.
        repository: String,
        /// Blob digest.
        digest: String,
    },
    /// The repository does not exist.
    #[error("repository {repository} does not exist in {registry}")]
    NameUnknown {
        /// Registry host.
        registry: String,
        /// Repository name.
        repository: String,
    },
    /// The registry answered 429.
    #[error("{registry} is rate limiting requests (429 Too Many Requests){}", retry_after_text(*.retry_after))]
    TooManyRequests {
        /// Registry host.
        registry: String,
        /// Seconds the registry asked us to wait, from `Retry-After`.
        retry_after: Option<u64>,
    },
    /// The host could not be reached (refused, DNS, timeout).
    #[error("cannot reach registry {registry}: {detail}")]
    Unreachable {
        /// Registry host.
        registry: String,
        /// Low-level cause.
        detail: String,
    },
    /// The TLS handshake failed (unknown CA, wrong name, plain-HTTP server, client certificate refused).
    #[error("TLS connection to {registry} failed: {detail} ({hint})")]
    Tls {
        /// Registry host.
        registry: String,
        /// Low-level cause.
        detail: String,
        /// What to do about it.
        hint: String,
    },
    /// Downloaded content does not hash to the digest it was asked for.
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch {
        /// The digest asked for.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// Any other unexpected HTTP status.
    #[error("{method} {url} failed with HTTP {status}: {detail}")]
    Http {
        /// Request method.
        method: String,
        /// Request URL.
        url: String,
        /// Status code.
        status: u16,
        /// Registry error text.
        detail: String,
    },
    /// The registry answered something that breaks the protocol.
    #[error("protocol error from {registry}: {detail}")]
    Protocol {
        /// Registry host.
        registry: String,
        /// What was wrong.
        detail: String,
    },
    /// Credentials / auth file problems.
    #[error("auth file {path}: {detail}")]
    AuthFile {
        /// The file.
        path: String,
        /// What was wrong.
        detail: String,
    },
    /// Invalid client configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Local I/O (the sink, the auth file, a CA file).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn retry_after_text(s: Option<u64>) -> String {
    match s {
        Some(s) => format!("; retry after {s} s"),
        None => String::new(),
    }
}

impl Error {
    /// Wraps an I/O error with context.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The HTTP status this error stands for, when it came from one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Unauthorized { .. } => Some(401),
            Error::Denied { .. } => Some(403),
            Error::ManifestUnknown { .. }
            | Error::BlobUnknown { .. }
            | Error::NameUnknown { .. } => Some(404),
            Error::TooManyRequests { .. } => Some(429),
            Error::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}
