//! One module per `strata` subcommand; each turns parsed arguments into library calls.

pub mod image;

/// Exit status for strata's own failures (as `docker run` uses 125), distinct from a container's status.
pub const EXIT_STRATA_ERROR: u8 = 125;
