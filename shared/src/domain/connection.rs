//! WebSocket connections.

/// API Gateway closes a WebSocket connection after two hours at most; a stored
/// connection expires with it.
pub const CONNECTION_TTL_SECS: i64 = 2 * 60 * 60;
