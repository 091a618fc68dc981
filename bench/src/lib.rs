//! strata-bench: what each kernel building block of a container costs, and how long whole containers take
//! to start under strata, crun, runc and Docker.

#[allow(unsafe_code)]
pub mod sys;
