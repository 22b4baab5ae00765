//! Keep-alive: 20 sequential requests on one TLS connection all get 200 and count as one accepted connection; two pipelined requests in one write get two responses in order.

mod support;

use support::*;

const ACCEPTED: &str = "certgate_connections_accepted_total";

fn sequential_requests(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[("CERTGATE_CLIENT_CERT", "request".into())],
    );
    let client = client(&pki, Some(&pki.client_ok));
    let before = metric(&engine, ACCEPTED);
    let mut c = client.connect(engine.addr(), None).expect("connect");
    for i in 0..20 {
        let path = format!("/ka/{i}");
        let r = c
            .get(&path)
            .unwrap_or_else(|e| panic!("request {i} on the kept-alive connection: {e}"));
        assert_status(&r, 200, &path);
        assert_eq!(r.header("X-Backend-Path"), Some(path.as_str()));
        assert!(
            !r.closes(),
            "request {i}: the engine announced Connection: close"
        );
    }
    let after = metric(&engine, ACCEPTED);
    assert_eq!(
        after - before,
        1.0,
        "20 requests on one connection must be one accepted connection ({before} -> {after})"
    );
    assert_eq!(backend.count(), 20);
}

fn pipelined_requests(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[("CERTGATE_CLIENT_CERT", "request".into())],
    );
    let client = client(&pki, Some(&pki.client_ok));
    let mut c = client.connect(engine.addr(), None).expect("connect");
    c.send(
        b"GET /pipe/1 HTTP/1.1\r\nHost: localhost\r\n\r\nPOST /pipe/2 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
    )
    .unwrap();
    let r1 = c.read_response().expect("first pipelined response");
    let r2 = c.read_response().expect("second pipelined response");
    assert_status(&r1, 200, "first pipelined");
    assert_status(&r2, 200, "second pipelined");
    assert_eq!(
        r1.header("X-Backend-Path"),
        Some("/pipe/1"),
        "responses out of order"
    );
    assert_eq!(
        r2.header("X-Backend-Path"),
        Some("/pipe/2"),
        "responses out of order"
    );
    let recs = backend.requests();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].path, "/pipe/1");
    assert_eq!(recs[1].path, "/pipe/2");
    assert_eq!(recs[1].body_len, 5);
    assert_eq!(recs[1].body_sha256, sha256_hex(b"hello"));
    // and the connection keeps working
    let r = c.get("/pipe/3").expect("third request");
    assert_status(&r, 200, "after pipelining");
}

io_tests!(sequential_requests, pipelined_requests);
