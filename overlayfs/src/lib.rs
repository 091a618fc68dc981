//! strata-overlayfs: the merged view of read-only lower layers and one writable upper layer, served
//! through FUSE with the kernel overlayfs's semantics.

pub mod copyup;
pub mod dirs;
pub mod errline;
pub mod files;
pub mod fs;
pub mod idmap;
pub mod inodes;
pub mod layers;
pub mod options;
pub mod ovl;
pub mod placement;
pub mod server;
pub mod stats;
#[allow(unsafe_code)]
pub mod sys;
pub mod write;

pub use idmap::{IdMap, IdRange};
pub use options::{Config, OptionsError, WhiteoutForm};
pub use server::{
    FuseMountOptions, MountError, PreparedOverlay, ServeError, Server, cleanup_stale, mount,
    mount_fuse_fd, open_and_mount_fuse, open_dev_fuse, serve_fd,
};
pub use stats::OpStats;
