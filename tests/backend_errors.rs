//! Backend failures: a backend that is down gives 502, one slower than CERTGATE_BACKEND_TIMEOUT_MS gives 504 (in time), and the engine keeps serving afterwards.

mod support;

use std::time::{Duration, Instant};
use support::*;

fn backend_down(io: &str) {
    let pki = TestPki::new();
    let url = format!("http://127.0.0.1:{}", unused_port());
    let engine = start_engine(
        io,
        &pki,
        &url,
        &[("CERTGATE_CLIENT_CERT", "request".into())],
    );
    let c = client(&pki, Some(&pki.client_ok));
    for i in 0..2 {
        let r = must_get(&engine, &c, "/down");
        assert_status(&r, 502, &format!("backend down (attempt {i})"));
    }
}

fn backend_timeout(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[
            ("CERTGATE_CLIENT_CERT", "request".into()),
            ("CERTGATE_BACKEND_TIMEOUT_MS", "500".into()),
        ],
    );
    let c = client(&pki, Some(&pki.client_ok));
    let t0 = Instant::now();
    let r = must_get(&engine, &c, "/slow/3000");
    let took = t0.elapsed();
    assert_status(&r, 504, "backend slower than the 500 ms timeout");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(2500),
        "504 should come after ~500 ms, came after {took:?}"
    );
    let r = must_get(&engine, &c, "/slow/50");
    assert_status(&r, 200, "backend within the timeout");
    let r = must_get(&engine, &c, "/fast");
    assert_status(&r, 200, "fast request after a timeout");
}

/// A backend that closes idle keep-alive connections: a GET that meets such a
/// pooled connection is sent again on a fresh one (the client sees 200); a
/// POST is never sent twice (it gets 502 if its connection was stale).
fn stale_pooled_connection(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[("CERTGATE_WORKERS", "1".into())],
    );
    let c = client(&pki, Some(&pki.client_ok));
    let mut conn = c.connect(engine.addr(), None).expect("connect");
    for i in 0..5 {
        let r = conn.get(&format!("/silent-close/{i}")).expect("response");
        assert_status(
            &r,
            200,
            &format!("GET {i} over a backend that drops idle connections"),
        );
        // give the backend's close time to reach the engine's pooled socket
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        backend.count(),
        5,
        "each GET reached the backend exactly once:\n{}",
        backend.dump()
    );
    let r = conn
        .request(
            "POST",
            "/silent-close/post",
            &[("Content-Length", "3")],
            b"abc",
        )
        .expect("POST response");
    assert!(r.status == 502 || r.status == 200, "POST: {}", r.status);
    let posts = backend
        .requests()
        .iter()
        .filter(|q| q.method == "POST")
        .count();
    assert!(posts <= 1, "a POST was sent {posts} times");
}

io_tests!(backend_down, backend_timeout, stale_pooled_connection);
