//! strata: a minimal container runtime built from namespaces, cgroups and pivot_root into a layered rootfs.

pub mod image;
#[allow(unsafe_code)]
pub mod sys;

pub mod container;
pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod security;
pub mod spec;
pub mod state;
