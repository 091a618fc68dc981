//! strata: a minimal container runtime built from namespaces, cgroups and pivot_root into a layered rootfs.

pub mod cgroups;
pub mod hostinfo;
pub mod image;
pub mod network;
#[allow(unsafe_code)]
pub mod sys;
