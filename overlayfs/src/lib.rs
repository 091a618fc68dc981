//! strata-overlayfs: the merged view of read-only lower layers and one writable upper layer, served
//! through FUSE with the kernel overlayfs's semantics.

#[allow(unsafe_code)]
pub mod sys;
