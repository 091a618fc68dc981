//! strata: a minimal container runtime built from namespaces, cgroups and pivot_root into a layered rootfs.

pub mod cgroups;
pub mod container;
pub mod hostinfo;
pub mod image;
pub mod namespaces;
pub mod network;
pub mod oci;
pub mod process;
pub mod rootfs;
pub mod security;
pub mod spec;
pub mod state;
#[allow(unsafe_code)]
pub mod sys;
#[cfg(test)]
mod test_support;
