//! The local stack: every function's handlers mounted in one process, behind local
//! stand-ins for API Gateway (HTTP API payload 2.0 and the WebSocket API), with the
//! queue consumers and schedules running in-process on embedded adapters.
//!
//! Each HTTP request and WebSocket frame is turned into the exact event JSON Lambda
//! would receive and parsed by the same code Lambda uses (`lambda_http::request::from_str`
//! and `aws_lambda_events`), so the handlers cannot tell the hosts apart.

pub mod accounts;
pub mod audit_verify;
pub mod events;
pub mod http_gateway;
pub mod mounts;
pub mod openapi;
pub mod rewrap;
pub mod stack;
pub mod workers;
pub mod ws_gateway;

pub use stack::Stack;
