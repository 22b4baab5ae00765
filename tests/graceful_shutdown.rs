//! SIGTERM drains: a request in flight when SIGTERM arrives still gets its 200, new connections are refused, /healthz answers 503 meanwhile, and the process exits with status 0 within the drain timeout.

mod support;

use std::time::{Duration, Instant};
use support::client::{attempt_get, Attempt};
use support::*;

fn sigterm_drains(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let mut engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[
            ("CERTGATE_CLIENT_CERT", "request".into()),
            ("CERTGATE_DRAIN_TIMEOUT_MS", "5000".into()),
        ],
    );
    let addr = engine.addr();
    let root = pki.root_x509();
    let id = pki.client_ok.identity();
    let in_flight = std::thread::spawn(move || {
        let c = TlsClient::new(&root, Some(&id), None);
        let mut conn = c.connect(addr, None).map_err(|e| format!("connect: {e}"))?;
        conn.get("/slow/1000")
            .map_err(|e| format!("in-flight request: {e}"))
    });
    assert!(
        wait_until(Duration::from_secs(10), || backend.count() >= 1),
        "the slow request never reached the backend"
    );
    let t0 = Instant::now();
    engine.signal(libc::SIGTERM);

    // a new connection after SIGTERM is refused (give the engine a moment to
    // close its listeners)
    std::thread::sleep(Duration::from_millis(200));
    let newcomer = TlsClient::new(&pki.root_x509(), Some(&pki.client_ok.identity()), None)
        .with_timeout(Duration::from_secs(3));
    match attempt_get(&newcomer, addr, "/late") {
        Attempt::ConnectFailed(e) => {
            assert!(
                !e.contains("timed out"),
                "a connection made after SIGTERM hung instead of being refused: {e}"
            );
        }
        Attempt::NoResponse(e) => {
            assert!(
                !e.contains("timed out")
                    && !e.contains("WouldBlock")
                    && !e.contains("temporarily unavailable"),
                "a connection made after SIGTERM hung instead of being refused: {e}"
            );
        }
        Attempt::Response(r) => panic!(
            "a connection made after SIGTERM was served: {} {:?}",
            r.status,
            r.body_str()
        ),
    }

    // While draining, the admin listener still answers, and health says so.
    let (status, body) = admin_get(&engine, "/healthz");
    assert_eq!(status, 503, "healthz during drain: {body}");
    assert!(body.contains("draining"), "{body}");

    let r = in_flight
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the in-flight request failed during drain: {e}"));
    assert_status(&r, 200, "request in flight at SIGTERM");

    let status = engine
        .wait_exit(Duration::from_secs(7))
        .unwrap_or_else(|| panic!("engine did not exit within the 5 s drain timeout (+2 s)"));
    let took = t0.elapsed();
    assert!(
        status.success(),
        "engine exited with {status} after SIGTERM"
    );
    assert!(
        took < Duration::from_secs(6),
        "exit took {took:?} with a 5 s drain timeout"
    );
    let paths: Vec<String> = backend.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, vec!["/slow/1000".to_string()]);
}

io_tests!(sigterm_drains);
