//! The built-in echo backend of the zero-configuration mode: answers with what it received.
//!
//! It is a real HTTP/1.1 server on a loopback port, so requests take exactly
//! the path they would take to a real backend.

use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::http::{parse_request, BodyKind, ChunkedTracker, Parsed, Request};

const MAX_HEAD: usize = 64 * 1024;

/// Start the echo backend on its own thread; returns its address.
pub fn start() -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("certgate-echo".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else {
                    return;
                };
                while let Ok((sock, _)) = listener.accept().await {
                    tokio::spawn(serve(sock));
                }
            });
        })?;
    Ok(addr)
}

/// The answer: method, target, every header received, and the body length.
pub fn describe(req: &Request, body_len: u64) -> String {
    let mut s = format!(
        "{} {} HTTP/1.{}\n",
        req.method, req.target, req.minor_version
    );
    for h in &req.headers {
        s.push_str(&h.name);
        s.push_str(": ");
        s.push_str(&String::from_utf8_lossy(&h.value));
        s.push('\n');
    }
    s.push_str(&format!("\nbody length: {body_len}\n"));
    s
}

async fn serve(mut sock: TcpStream) {
    let _ = sock.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        let req = loop {
            match parse_request(&buf, MAX_HEAD) {
                Ok(Parsed::Complete { head, len }) => {
                    buf.advance(len);
                    break head;
                }
                Ok(Parsed::Partial) => {}
                Err(_) => return,
            }
            match sock.read_buf(&mut buf).await {
                Ok(n) if n > 0 => {}
                _ => return,
            }
        };
        // Consume the body, counting it.
        let mut body_len = 0u64;
        match req.body {
            BodyKind::ContentLength(mut rest) => loop {
                let n = rest.min(buf.len() as u64);
                buf.advance(n as usize);
                rest -= n;
                body_len += n;
                if rest == 0 {
                    break;
                }
                if !matches!(sock.read_buf(&mut buf).await, Ok(n) if n > 0) {
                    return;
                }
            },
            BodyKind::Chunked => {
                let mut tracker = ChunkedTracker::new();
                loop {
                    let Ok(p) = tracker.advance(&buf) else { return };
                    body_len += p.consumed as u64;
                    buf.advance(p.consumed);
                    if p.done {
                        break;
                    }
                    if !matches!(sock.read_buf(&mut buf).await, Ok(n) if n > 0) {
                        return;
                    }
                }
            }
            BodyKind::None | BodyKind::CloseDelimited => {}
        }
        let body = describe(&req, body_len);
        let mut answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        // A HEAD answer carries the length but no body. Head and body go out in
        // one write: two small writes would meet Nagle and delayed ACKs.
        if !req.method.eq_ignore_ascii_case("HEAD") {
            answer.push_str(&body);
        }
        if sock.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        if !req.keep_alive {
            return;
        }
    }
}
