//! The provider endpoint (being written).
use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::error::ApiError;
use crate::server::{Body, Server};

pub async fn handle(_s: &Server, _req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    Err(ApiError::new(
        404,
        "NotFound",
        "the provider endpoint is not served yet",
    ))
}
