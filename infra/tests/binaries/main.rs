//! The `docare-local` package's binaries as a developer or an operator runs them, in one
//! test binary (one link step): `env!("CARGO_BIN_EXE_…")` needs them in this package.

mod audit_verify;
mod cli;
mod rewrap;
