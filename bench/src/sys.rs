//! Every `unsafe` call of this crate, each behind a safe function.
