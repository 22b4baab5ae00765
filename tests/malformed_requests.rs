//! Malformed and smuggling-shaped requests get 400 (garbage, CL+TE, differing Content-Lengths, bad chunk size, TE other than plain chunked) without reaching the backend when the head is at fault; a garbage request's connection is closed; oversized headers get a readable 431.

mod support;

use support::*;

fn setup(io: &str, extra: &[(&str, String)]) -> (TestPki, Backend, Engine, TlsClient) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let mut vars = vec![("CERTGATE_CLIENT_CERT", "request".to_string())];
    vars.extend(extra.iter().cloned());
    let engine = start_engine(io, &pki, &backend.url(), &vars);
    let c = client(&pki, Some(&pki.client_ok));
    (pki, backend, engine, c)
}

fn send_raw(engine: &Engine, c: &TlsClient, bytes: &[u8], what: &str) -> (Response, TlsConn) {
    let mut conn = c.connect(engine.addr(), None).expect("connect");
    conn.send(bytes)
        .unwrap_or_else(|e| panic!("{what}: write failed: {e}"));
    let r = conn.read_response().unwrap_or_else(|e| {
        panic!("{what}: no HTTP response (must be a readable error status): {e}")
    });
    (r, conn)
}

fn garbage_request(io: &str) {
    let (_pki, backend, engine, c) = setup(io, &[]);
    let (r, mut conn) = send_raw(&engine, &c, b"GARBAGE\r\n\r\n", "garbage");
    assert_status(&r, 400, "GARBAGE request line");
    conn.set_read_timeout(std::time::Duration::from_secs(5));
    conn.expect_closed()
        .unwrap_or_else(|e| panic!("connection must be closed after a malformed request: {e}"));
    assert_eq!(backend.count(), 0);
}

fn smuggling_shapes(io: &str) {
    let (_pki, backend, engine, c) = setup(io, &[]);
    let head_level: &[(&str, &[u8])] = &[
        (
            "Content-Length with Transfer-Encoding: chunked",
            b"POST /s1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "two differing Content-Lengths",
            b"POST /s2 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        (
            "Transfer-Encoding: gzip, chunked",
            b"POST /s3 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "Transfer-Encoding: chunked, gzip",
            b"POST /s4 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        ),
    ];
    for (what, bytes) in head_level {
        let (r, _conn) = send_raw(&engine, &c, bytes, what);
        assert_status(&r, 400, what);
        assert_eq!(
            backend.count(),
            0,
            "{what}: backend contacted:\n{}",
            backend.dump()
        );
    }

    // body-level: the head may already have been forwarded
    let what = "chunked body with malformed chunk size";
    let (r, _conn) = send_raw(
        &engine,
        &c,
        b"POST /s5 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        what,
    );
    assert_status(&r, 400, what);
    assert_eq!(
        backend.requests().len(),
        0,
        "{what}: a request completed at the backend"
    );

    let r = must_get(&engine, &c, "/fine");
    assert_status(&r, 200, "well-formed request after the rejected ones");
}

fn oversized_headers(io: &str) {
    let (_pki, backend, engine, c) = setup(io, &[]);
    let big = "a".repeat(40 * 1024);
    let req = format!("GET /big-head HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\n\r\n");
    let (r, _conn) = send_raw(&engine, &c, req.as_bytes(), "40 KiB header");
    assert_status(&r, 431, "40 KiB header with the default 32 KiB limit");
    assert_eq!(backend.count(), 0);

    // many headers summing to more than the limit
    let mut req = String::from("GET /many-heads HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..80 {
        req.push_str(&format!("X-H{i}: {}\r\n", "b".repeat(500)));
    }
    req.push_str("\r\n");
    let (r, _conn) = send_raw(&engine, &c, req.as_bytes(), "80 x 500 B headers");
    assert_status(&r, 431, "40 KB of headers in total");
    assert_eq!(backend.count(), 0);

    // just under the limit is fine
    let req = format!(
        "GET /ok-head HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "c".repeat(16 * 1024)
    );
    let (r, _conn) = send_raw(&engine, &c, req.as_bytes(), "16 KiB header");
    assert_status(&r, 200, "16 KiB header is under the limit");
}

fn configured_header_limit(io: &str) {
    let (_pki, backend, engine, c) = setup(io, &[("CERTGATE_MAX_HEADER_BYTES", "4096".into())]);
    let req = format!(
        "GET /h HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "d".repeat(6 * 1024)
    );
    let (r, _conn) = send_raw(&engine, &c, req.as_bytes(), "6 KiB header, 4 KiB limit");
    assert_status(&r, 431, "6 KiB header with CERTGATE_MAX_HEADER_BYTES=4096");
    assert_eq!(backend.count(), 0);
    let req = format!(
        "GET /h2 HTTP/1.1\r\nHost: localhost\r\nX-Small: {}\r\n\r\n",
        "e".repeat(1024)
    );
    let (r, _conn) = send_raw(&engine, &c, req.as_bytes(), "1 KiB header, 4 KiB limit");
    assert_status(&r, 200, "1 KiB header with a 4 KiB limit");
}

io_tests!(
    garbage_request,
    smuggling_shapes,
    oversized_headers,
    configured_header_limit
);
