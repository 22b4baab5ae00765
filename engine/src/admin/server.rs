//! The admin listener: `GET /metrics`, `GET /healthz`, `POST /reload` (plain HTTP, one request per connection).

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

use crate::control::Control;
use crate::http::{parse_request, Parsed};

const MAX_HEAD: usize = 16 * 1024;

fn response(status: u16, content_type: &str, body: &str) -> BytesMut {
    let mut out = BytesMut::with_capacity(128 + body.len());
    out.put_slice(
        format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            crate::http::reason_phrase(status),
            body.len()
        )
        .as_bytes(),
    );
    out.put_slice(body.as_bytes());
    out
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

async fn serve_one(mut sock: TcpStream, control: Arc<Control>) {
    let mut buf = BytesMut::with_capacity(4096);
    let req = loop {
        match parse_request(&buf, MAX_HEAD) {
            Ok(Parsed::Complete { head, .. }) => break head,
            Ok(Parsed::Partial) => {}
            Err(e) => {
                let _ = sock
                    .write_all(&response(e.status(), "text/plain", "bad request\n"))
                    .await;
                return;
            }
        }
        match tokio::time::timeout(Duration::from_secs(10), sock.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    };
    let out = route(&control, &req.method, &req.target);
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
