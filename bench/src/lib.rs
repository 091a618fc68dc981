//! strata-bench: what each kernel building block of a container costs, and how long whole containers take
//! to start under strata, crun, runc, Docker and podman.

pub mod cases;
pub mod compare;
pub mod conditions;
pub mod meta;
pub mod page_cache;
pub mod phases;
pub mod podman;
pub mod recorder;
pub mod report;
pub mod stats;
pub mod subjects;
#[allow(unsafe_code)]
pub mod sys;
