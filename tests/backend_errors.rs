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

io_tests!(backend_down, backend_timeout);
