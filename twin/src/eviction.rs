//! The eviction subresource (being written).
use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::error::ApiError;
use crate::server::{Body, Server};

pub async fn handle(
    _s: &Server,
    _req: Request<Incoming>,
    _ns: &str,
    _name: &str,
) -> Result<Response<Body>, ApiError> {
    Err(ApiError::new(404, "NotFound", "eviction is not served yet"))
}
