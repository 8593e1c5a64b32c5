//! Berth's OCI image library.
//!
//! - [`digest`]: validated `sha256:<hex>` digests and hashing adapters.
//! - [`store`]: a content-addressed blob store (`blobs/sha256/<hex>`) with atomic, verified writes.
//! - [`formats`]: OCI and Docker schema 2 manifests, indexes, image configs, layer media types,
//!   platform selection.
//! - [`unpack`]: streaming, hardened layer unpacking into a directory for overlayfs stacking.
//! - [`layout`]: OCI image layout directories and docker-archive (`docker save`) tarballs.
//! - [`snapshot`]: a container root from a layer stack: an overlay mount, or a copy where overlay fails.

pub mod digest;
pub mod error;
pub mod formats;
pub mod layout;
pub mod snapshot;
pub mod store;
pub mod unpack;

pub use digest::Digest;
pub use error::{Error, Result};
pub use store::{BlobStore, BlobWriter};
