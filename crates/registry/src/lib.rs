//! Berth's OCI distribution-spec client: image references, authentication (anonymous, Basic, Bearer
//! tokens, auth files), pulling manifests and blobs with digest checks, resume and retries, and pushing
//! blobs (with cross-repository mounts and chunked uploads) and manifests.

pub mod auth;
pub mod blob;
pub mod client;
pub mod config;
pub mod digest;
pub mod error;
pub mod manifest;
pub mod push;
pub mod reference;
mod tls;

pub use auth::{AuthFile, Challenge, Credentials};
pub use client::{Client, Stats};
pub use config::{ClientOptions, RetryPolicy};
pub use digest::Digest;
pub use error::{Error, Result};
pub use manifest::{Manifest, ManifestHead};
pub use push::BlobPush;
pub use reference::{Reference, Repository};
