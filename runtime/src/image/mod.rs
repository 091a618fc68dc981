//! Images: a content-addressed layer store, importers for `docker save` and OCI image-layout archives,
//! safe layer extraction, and deterministic generators for the test images.
//!
//! Data flows one way: archive ([`archive`]) → verified layer streams → [`extract`] into a staging dir →
//! renamed into the [`Store`] → an [`ImageRecord`] that the rootfs backends turn into overlay lower dirs.

pub mod archive;
pub mod digest;
pub mod extract;
pub mod store;
pub mod testimages;

pub use digest::Digest;
pub use store::{ImageConfig, ImageRecord, Layer, Store};

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong with images. Each variant renders as one line naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Archive(String),
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    Entry {
        layer: String,
        entry: String,
        reason: String,
    },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("no image named {0:?} in the store")]
    NotFound(String),
    #[error("image name {0:?} matches several images; use a longer id")]
    Ambiguous(String),
    #[error("invalid image name {0:?}")]
    InvalidName(String),
    #[error("store at {path}: {reason}")]
    Store { path: PathBuf, reason: String },
    #[error("test image: {0}")]
    TestImage(String),
}

impl ImageError {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
        let context = context.into();
        move |source| ImageError::Io { context, source }
    }
}
