//! Implementations of the ports: `aws` for Lambda, `local` for the local stack and tests.

pub mod aws;
pub mod links;
pub mod local;
pub mod scan;
pub mod unavailable;
