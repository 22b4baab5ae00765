//! Timeouts: a TCP connection that never handshakes is closed after CERTGATE_HANDSHAKE_TIMEOUT_MS, and an idle keep-alive connection after CERTGATE_IDLE_TIMEOUT_MS.

mod support;

use std::io::Read;
use std::time::{Duration, Instant};
use support::*;

fn handshake_timeout(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[("CERTGATE_HANDSHAKE_TIMEOUT_MS", "500".into())],
    );
    let mut s = raw_connect(engine.addr());
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 64];
    let res = s.read(&mut buf);
    let took = t0.elapsed();
    match res {
        Ok(0) => {}
        Ok(n) => panic!("engine sent {n} bytes to a client that never sent a ClientHello"),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            panic!("silent connection not closed within 5 s (handshake timeout 500 ms)")
        }
        Err(_) => {}
    }
    assert!(
        took < Duration::from_secs(2),
        "closed only after {took:?} (timeout 500 ms)"
    );

    // the engine still works
    let c = client(&pki, Some(&pki.client_ok));
    assert_status(
        &must_get(&engine, &c, "/after"),
        200,
        "after a handshake timeout",
    );
}

fn idle_timeout(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[("CERTGATE_IDLE_TIMEOUT_MS", "500".into())],
    );
    let c = client(&pki, Some(&pki.client_ok));
    let mut conn = c.connect(engine.addr(), None).expect("connect");
    let r = conn.get("/one").expect("response");
    assert_status(&r, 200, "first request");
    assert!(
        !r.closes(),
        "the engine closed a keep-alive connection after one request"
    );
    conn.set_read_timeout(Duration::from_secs(5));
    let t0 = Instant::now();
    conn.expect_closed()
        .unwrap_or_else(|e| panic!("idle connection not closed (idle timeout 500 ms): {e}"));
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "idle connection closed only after {took:?}"
    );
    assert!(
        took >= Duration::from_millis(300),
        "connection closed after {took:?}: too early for a 500 ms idle timeout"
    );
}

/// A request head trickled in a few bytes at a time (slowloris) must complete
/// within one idle timeout of its first byte, whatever the pace.
fn slow_request_head(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[("CERTGATE_IDLE_TIMEOUT_MS", "600".into())],
    );
    let c = client(&pki, Some(&pki.client_ok));
    let mut conn = c.connect(engine.addr(), None).expect("connect");
    conn.set_read_timeout(Duration::from_millis(50));
    let t0 = Instant::now();
    conn.send(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n")
        .expect("start of head");
    // One header byte every 100 ms: each read is well inside the idle timeout,
    // but the head as a whole never completes within it.
    let mut closed_after = None;
    for i in 0..40 {
        std::thread::sleep(Duration::from_millis(100));
        if conn.send(&[b'X' + (i % 2)]).is_err() {
            closed_after = Some(t0.elapsed());
            break;
        }
        match conn.expect_closed() {
            Ok(()) => {}
            // The engine answers 408 before closing.
            Err(e) if e.contains("408") => {}
            Err(_) => continue,
        }
        closed_after = Some(t0.elapsed());
        break;
    }
    let took =
        closed_after.expect("a head trickled for 4 s was never cut off (idle timeout 600 ms)");
    assert!(took < Duration::from_secs(2), "cut off only after {took:?}");
    assert_eq!(backend.count(), 0, "an incomplete head reached the backend");
}

io_tests!(handshake_timeout, idle_timeout, slow_request_head);
