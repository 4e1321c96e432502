//! Pod exec and logs (being written).
use std::collections::HashMap;

use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::error::ApiError;
use crate::server::{Body, Server};

pub async fn handle_exec(
    _s: &Server,
    _req: Request<Incoming>,
    _ns: &str,
    _name: &str,
    _q: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    Err(ApiError::new(404, "NotFound", "exec is not served yet"))
}

pub async fn handle_logs(
    _s: &Server,
    _ns: &str,
    _name: &str,
    _q: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    Err(ApiError::new(404, "NotFound", "logs are not served yet"))
}
