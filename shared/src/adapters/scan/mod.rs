//! Adapters of the scanner port: clamd over TCP, and the built-in local default.

mod builtin;
mod clamd;

pub use builtin::{parse_blocklist, BuiltinScanner, EICAR_SIGNATURE};
pub use clamd::{clamd_limits, parse_reply, Clamd};
