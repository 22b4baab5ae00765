//! A minimal multi-threaded TLS server answering every request with
//! `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok` on keep-alive connections.
//!
//! It exists to measure the load generator's own ceiling and for the integration tests; it is
//! not part of the tool's interface.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use boring::ssl::{SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;

use crate::tls::Wire;

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const RESPONSE_CLOSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

/// How to run the server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Listen address (port 0 picks one).
    pub listen: SocketAddr,
    /// Threads, each with its own event loop on a shared listening socket.
    pub threads: usize,
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server key (PEM).
    pub key: PathBuf,
    /// When set, client certificates are required and verified against this CA bundle.
    pub client_ca: Option<PathBuf>,
    /// CPU for each thread, round-robin.
    pub pin_cpus: Option<Vec<usize>>,
}

/// A running server.
pub struct Server {
    /// The bound address.
    pub addr: SocketAddr,
    /// Connections whose handshake completed.
    pub handshakes: Arc<AtomicU64>,
    /// Requests answered.
    pub requests: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Stops accepting, drops every connection and joins the threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn acceptor(opts: &ServerOptions) -> Result<SslAcceptor, String> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())
        .map_err(|e| format!("TLS context: {e}"))?;
    b.set_certificate_chain_file(&opts.cert)
        .map_err(|e| format!("server certificate {}: {e}", opts.cert.display()))?;
    b.set_private_key_file(&opts.key, SslFiletype::PEM)
        .map_err(|e| format!("server key {}: {e}", opts.key.display()))?;
    b.check_private_key()
        .map_err(|e| format!("server key does not match: {e}"))?;
    if let Some(ca) = &opts.client_ca {
        b.set_ca_file(ca)
            .map_err(|e| format!("client CA {}: {e}", ca.display()))?;
        b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    }
    b.set_session_id_context(b"certgate-loadgen-trivial")
        .map_err(|e| format!("session id context: {e}"))?;
    Ok(b.build())
}

/// Starts the server; it runs until [`Server::stop`] (or drop).
pub fn start(opts: &ServerOptions) -> Result<Server, String> {
    let acceptor = acceptor(opts)?;
    let listener = std::net::TcpListener::bind(opts.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", opts.listen))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("listener: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("listener: {e}"))?;
    let (stop, stop_rx) = watch::channel(false);
    let handshakes = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for i in 0..opts.threads.max(1) {
        let l = listener.try_clone().map_err(|e| format!("listener: {e}"))?;
        let acc = acceptor.clone();
        let mut rx = stop_rx.clone();
        let (hs, rq) = (handshakes.clone(), requests.clone());
        let cpu = opts.pin_cpus.as_ref().map(|c| c[i % c.len()]);
        let t = std::thread::Builder::new()
            .name(format!("trivial-{i}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    let _ = crate::sys::pin_current_thread(cpu);
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async move {
                    let listener = match tokio::net::TcpListener::from_std(l) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("trivial server: {e}");
                            return;
                        }
                    };
                    loop {
                        tokio::select! {
                            r = listener.accept() => {
                                let Ok((tcp, _)) = r else { continue };
                                let _ = tcp.set_nodelay(true);
                                let acc = acc.clone();
                                let (hs, rq) = (hs.clone(), rq.clone());
                                tokio::task::spawn_local(async move {
                                    let _ = serve(acc, tcp, hs, rq).await;
                                });
                            }
                            _ = rx.changed() => break,
                        }
                    }
                });
            })
            .map_err(|e| format!("thread: {e}"))?;
        threads.push(t);
    }
    Ok(Server {
        addr,
        handshakes,
        requests,
        stop,
        threads,
    })
}

async fn serve(
    acceptor: SslAcceptor,
    tcp: tokio::net::TcpStream,
    handshakes: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
) -> io::Result<()> {
    let mut tls = tokio_boring::accept(&acceptor, Wire::new(tcp))
        .await
        .map_err(|e| io::Error::other(e.to_string()))?;
    handshakes.fetch_add(1, Ordering::Relaxed);
    let mut buf = vec![0u8; 16 * 1024];
    let (mut start, mut end) = (0usize, 0usize);
    loop {
        // Parse one request head.
        let (head_len, body_len, close) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf[start..end]) {
                Ok(httparse::Status::Complete(n)) => {
                    let mut body = 0u64;
                    let mut close = req.version == Some(0);
                    for h in req.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            body = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse().ok())
                                .ok_or_else(|| io::Error::other("bad content-length"))?;
                        } else if h.name.eq_ignore_ascii_case("connection")
                            && h.value.eq_ignore_ascii_case(b"close")
                        {
                            close = true;
                        }
                    }
                    break (n, body, close);
                }
                Ok(httparse::Status::Partial) => {}
                Err(_) => return Err(io::Error::other("bad request")),
            }
            if start == end {
                start = 0;
                end = 0;
            } else if end == buf.len() {
                if start > 0 {
                    buf.copy_within(start..end, 0);
                    end -= start;
                    start = 0;
                } else {
                    return Err(io::Error::other("request head too large"));
                }
            }
            let n = tls.read(&mut buf[end..]).await?;
            if n == 0 {
                return Ok(());
            }
            end += n;
        };
        start += head_len;
        // Discard the body.
        let mut left = body_len;
        loop {
            let take = left.min((end - start) as u64) as usize;
            start += take;
            left -= take as u64;
            if left == 0 {
                break;
            }
            start = 0;
            let n = tls.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            end = n;
        }
        if start == end {
            start = 0;
            end = 0;
        }
        requests.fetch_add(1, Ordering::Relaxed);
        if close {
            tls.write_all(RESPONSE_CLOSE).await?;
            let _ = tls.shutdown().await;
            return Ok(());
        }
        tls.write_all(RESPONSE).await?;
    }
}
