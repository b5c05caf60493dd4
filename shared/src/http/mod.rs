//! HTTP plumbing shared by every REST function: the request and response types that
//! handlers see, the route table, and pagination. Nothing here knows which host runs it.

pub mod cors;
pub mod openapi;
pub mod pagination;
pub mod request;
pub mod response;
pub mod router;

pub use openapi::RouteDoc;
pub use pagination::{Page, PageRequest};
pub use request::ApiRequest;
pub use response::ApiResponse;
pub use router::{HandlerResult, Router};
