//! The admin listener: `/metrics`, `/healthz`, `/reload` and the store API (plain HTTP, one request per connection).
//!
//! With `CERTGATE_ADMIN_TOKEN` set, every request but `GET /healthz` (left
//! open for load balancers) needs `Authorization: Bearer <token>`; 401 otherwise.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

use crate::admin::api::{self, ApiRequest, ApiResponse, MAX_BODY, PASSWORD_HEADER};
use crate::control::Control;
use crate::http::{parse_request, BodyKind, Parsed, Request};

const MAX_HEAD: usize = 16 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(10);

fn response(status: u16, content_type: &str, body: &str) -> BytesMut {
    response_with(status, content_type, body, "")
}

/// `extra` is zero or more complete header lines (`Name: value\r\n`).
fn response_with(status: u16, content_type: &str, body: &str, extra: &str) -> BytesMut {
    let mut out = BytesMut::with_capacity(160 + body.len());
    let length = if status == 204 {
        String::new()
    } else {
        format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        )
    };
    out.put_slice(
        format!(
            "HTTP/1.1 {status} {}\r\n{length}{extra}Connection: close\r\n\r\n",
            crate::http::reason_phrase(status),
        )
        .as_bytes(),
    );
    out.put_slice(body.as_bytes());
    out
}

fn json(r: &ApiResponse) -> BytesMut {
    response(r.status, "application/json", &r.body)
}

/// Answer one admin request.
pub fn route(control: &Control, method: &str, path: &str) -> BytesMut {
    let path = path.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => {
            response(200, "text/plain; version=0.0.4", &control.render_metrics())
        }
        ("GET", "/healthz") if control.draining() => response(503, "text/plain", "draining\n"),
        ("GET", "/healthz") => response(200, "text/plain", "ok\n"),
        ("POST", "/reload") => match control.reload() {
            Ok(generation) => response(
                200,
                "text/plain",
                &format!("reloaded: generation {generation}\n"),
            ),
            Err(e) => response(
                500,
                "text/plain",
                &format!("reload failed, previous configuration kept: {e}\n"),
            ),
        },
        (_, "/metrics" | "/healthz" | "/reload") => {
            response(405, "text/plain", "method not allowed\n")
        }
        _ => response(404, "text/plain", "not found\n"),
    }
}

/// The 401 answer when `req` lacks the configured bearer token (`/healthz` is always open).
fn unauthorized(control: &Control, req: &Request) -> Option<BytesMut> {
    let path = req.target.split('?').next().unwrap_or("");
    let token = control
        .shared
        .config
        .admin_token
        .as_ref()
        .map(|t| t.0.as_str());
    if path == "/healthz" || api::authorized(token, req.header("authorization")) {
        return None;
    }
    let r = ApiResponse::error(
        401,
        format!(
            "{path}: missing or wrong bearer token (Authorization: Bearer <CERTGATE_ADMIN_TOKEN>)"
        ),
    );
    Some(response_with(
        401,
        "application/json",
        &r.body,
        "WWW-Authenticate: Bearer realm=\"certgate admin\"\r\n",
    ))
}

/// Answer one admin request with its body: authentication, then the store
/// and CRL API, then the plain endpoints.
pub fn route_request(control: &Control, req: &Request, body: &[u8]) -> BytesMut {
    if let Some(denied) = unauthorized(control, req) {
        return denied;
    }
    let path = req.target.split('?').next().unwrap_or("");
    let password = match req.header(PASSWORD_HEADER).map(std::str::from_utf8) {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(_)) => {
            return json(&ApiResponse::error(
                400,
                format!("{PASSWORD_HEADER}: the password must be UTF-8"),
            ))
        }
    };
    let api_req = ApiRequest {
        method: &req.method,
        path,
        password,
        body,
    };
    match api::handle(
        control.store().map(|s| s.as_ref()),
        control.crl_admin(),
        &api_req,
    ) {
        Some(r) => json(&r),
        None => route(control, &req.method, path),
    }
}

async fn serve_one(mut sock: TcpStream, control: Arc<Control>) {
    let mut buf = BytesMut::with_capacity(4096);
    let (req, head_len) = loop {
        match parse_request(&buf, MAX_HEAD) {
            Ok(Parsed::Complete { head, len }) => break (head, len),
            Ok(Parsed::Partial) => {}
            Err(e) => {
                let _ = sock
                    .write_all(&response(e.status(), "text/plain", "bad request\n"))
                    .await;
                return;
            }
        }
        match tokio::time::timeout(READ_TIMEOUT, sock.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    };
    // Before reading any body: an unauthenticated client gets 401 at once.
    if let Some(denied) = unauthorized(&control, &req) {
        let _ = sock.write_all(&denied).await;
        let _ = sock.shutdown().await;
        return;
    }
    let body_len = match req.body {
        BodyKind::None | BodyKind::CloseDelimited => 0,
        BodyKind::ContentLength(n) if n > MAX_BODY as u64 => {
            let r = ApiResponse::error(
                413,
                format!("request body of {n} bytes is over the admin limit of {MAX_BODY} bytes"),
            );
            let _ = sock.write_all(&json(&r)).await;
            let _ = sock.shutdown().await;
            return;
        }
        BodyKind::ContentLength(n) => n as usize,
        BodyKind::Chunked => {
            let r = ApiResponse::error(
                411,
                "send the body with Content-Length (chunked uploads are not accepted)",
            );
            let _ = sock.write_all(&json(&r)).await;
            let _ = sock.shutdown().await;
            return;
        }
    };
    if body_len > 0 && req.expect_continue && buf.len() < head_len + body_len {
        let _ = sock.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
    }
    let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    while buf.len() < head_len + body_len {
        match tokio::time::timeout_at(deadline, sock.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    }
    let body = &buf[head_len..head_len + body_len];
    // A store change blocks this (single-threaded, admin-only) runtime for its
    // fsyncs and snapshot build: milliseconds, and changes are serialised anyway.
    let out = route_request(&control, &req, body);
    let _ = sock.write_all(&out).await;
    let _ = sock.shutdown().await;
}

/// Accept admin connections forever.
pub async fn run(listener: TcpListener, control: Arc<Control>) {
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                tokio::spawn(serve_one(sock, Arc::clone(&control)));
            }
            Err(e) => {
                debug!("admin accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
