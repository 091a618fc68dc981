//! strata-overlayfs: the merged view of read-only lower layers and one writable upper layer, served
//! through FUSE with the kernel overlayfs's semantics.

pub mod copyup;
pub mod dirs;
pub mod files;
pub mod fs;
pub mod inodes;
pub mod layers;
pub mod options;
pub mod ovl;
pub mod server;
pub mod stats;
#[allow(unsafe_code)]
pub mod sys;
pub mod write;

pub use options::{Config, OptionsError, WhiteoutForm};
pub use server::{
    FuseMountOptions, MountError, ServeError, Server, cleanup_stale, mount, open_and_mount_fuse,
    serve_fd,
};
pub use stats::OpStats;
