//! CERTGATE_MAX_CONNECTIONS=2 with one worker: two open connections keep working, a third is refused or closed without being served, and after one closes a new connection is served again.

mod support;

use std::time::Duration;
use support::client::{attempt_get, Attempt};
use support::*;

fn connection_limit(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[
            ("CERTGATE_CLIENT_CERT", "request".into()),
            ("CERTGATE_WORKERS", "1".into()),
            ("CERTGATE_MAX_CONNECTIONS", "2".into()),
        ],
    );
    let client = client(&pki, Some(&pki.client_ok));
    let mut c1 = client.connect(engine.addr(), None).expect("connection 1");
    assert_status(&c1.get("/c1").expect("c1"), 200, "connection 1");
    let mut c2 = client.connect(engine.addr(), None).expect("connection 2");
    assert_status(&c2.get("/c2").expect("c2"), 200, "connection 2");

    let limited = TlsClient::new(&pki.root_x509(), Some(&pki.client_ok.identity()), None)
        .with_timeout(Duration::from_secs(3));
    match attempt_get(&limited, engine.addr(), "/c3") {
        Attempt::Response(r) => panic!(
            "a third connection was served over CERTGATE_MAX_CONNECTIONS=2: {} {:?}",
            r.status,
            r.body_str()
        ),
        Attempt::ConnectFailed(e) | Attempt::NoResponse(e) => {
            eprintln!("third connection refused as expected: {e}")
        }
    }
    assert_eq!(
        backend
            .requests()
            .iter()
            .filter(|r| r.path == "/c3")
            .count(),
        0
    );

    // the two admitted connections still work
    assert_status(
        &c1.get("/c1b").expect("c1 again"),
        200,
        "connection 1 again",
    );
    assert_status(
        &c2.get("/c2b").expect("c2 again"),
        200,
        "connection 2 again",
    );

    // closing one frees a slot
    c1.close();
    let mut served = None;
    let ok = wait_until(Duration::from_secs(5), || {
        match attempt_get(&limited, engine.addr(), "/c4") {
            Attempt::Response(r) => {
                served = Some(r);
                true
            }
            _ => false,
        }
    });
    assert!(
        ok,
        "no new connection was served after closing one of the two"
    );
    assert_status(&served.unwrap(), 200, "new connection after closing one");
    assert_status(
        &c2.get("/c2c").expect("c2 third time"),
        200,
        "connection 2 still works",
    );
}

io_tests!(connection_limit);
