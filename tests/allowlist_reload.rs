//! Allowlist reload: SIGHUP and POST /reload apply a rewritten allowlist to new connections (certgate_reloads_total{result="ok"} counts them, cached verdicts do not survive); a broken file is refused (result="failed", POST /reload → 500 with the error) and the last good list stays in force.

mod support;

use std::time::Duration;
use support::pki::path_str;
use support::*;

const OK: &str = "certgate_reloads_total{result=\"ok\"}";
const FAILED: &str = "certgate_reloads_total{result=\"failed\"}";

fn status_of(engine: &Engine, c: &TlsClient, what: &str) -> u16 {
    let r = must_get(engine, c, "/reload-check");
    assert!(
        r.status == 200 || r.status == 403,
        "{what}: unexpected {} {:?}",
        r.status,
        r.body_str()
    );
    r.status
}

fn sighup_and_wait(engine: &Engine, query: &str) {
    let before = metric(engine, query);
    engine.signal(libc::SIGHUP);
    let after = wait_metric_above(engine, query, before, Duration::from_secs(10));
    assert!(
        after > before,
        "{query} did not increase after SIGHUP (still {after})"
    );
}

fn reload_via_sighup(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let file = pki.path("allow.txt");
    let (a_tp, b_tp) = (pki.client_ok.sha1_upper(), pki.client_b.sha1_upper());
    write_atomic(&file, format!("{a_tp}\n{b_tp}\n").as_bytes());
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[
            ("CERTGATE_CLIENT_CERT", "request".into()),
            ("CERTGATE_THUMBPRINTS", path_str(&file)),
        ],
    );
    let a = client(&pki, Some(&pki.client_ok));
    let b = client(&pki, Some(&pki.client_b));
    // twice each, so that a verdict is cached
    for _ in 0..2 {
        assert_eq!(status_of(&engine, &a, "A initially"), 200, "A is listed");
        assert_eq!(status_of(&engine, &b, "B initially"), 200, "B is listed");
    }

    write_atomic(&file, format!("# A removed\n{b_tp}\n").as_bytes());
    sighup_and_wait(&engine, OK);
    assert_eq!(
        status_of(&engine, &a, "A after removal"),
        403,
        "A was removed by the reload"
    );
    assert_eq!(
        status_of(&engine, &b, "B after removal"),
        200,
        "B is still listed"
    );

    write_atomic(&file, b"this is not a thumbprint\n");
    sighup_and_wait(&engine, FAILED);
    assert!(
        engine_alive(&engine),
        "a failed reload must not stop the engine"
    );
    assert_eq!(
        status_of(&engine, &a, "A after failed reload"),
        403,
        "last good list stays"
    );
    assert_eq!(
        status_of(&engine, &b, "B after failed reload"),
        200,
        "last good list stays"
    );
}

fn engine_alive(engine: &Engine) -> bool {
    admin_get(engine, "/healthz").0 == 200
}

fn reload_via_admin_post(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let file = pki.path("allow.txt");
    let (a_tp, b_tp) = (pki.client_ok.sha1_upper(), pki.client_b.sha256_upper());
    write_atomic(&file, format!("{b_tp}\n").as_bytes());
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[
            ("CERTGATE_CLIENT_CERT", "request".into()),
            ("CERTGATE_THUMBPRINTS", path_str(&file)),
        ],
    );
    let a = client(&pki, Some(&pki.client_ok));
    let b = client(&pki, Some(&pki.client_b));
    assert_eq!(status_of(&engine, &a, "A initially"), 403);
    assert_eq!(status_of(&engine, &b, "B initially"), 200);

    write_atomic(&file, format!("{a_tp}\n").as_bytes());
    let ok_before = metric(&engine, OK);
    let (st, body) = admin_post(&engine, "/reload");
    assert_eq!(st, 200, "POST /reload with a good file: {body}");
    assert!(metric(&engine, OK) > ok_before, "{OK} did not increase");
    assert_eq!(status_of(&engine, &a, "A after reload"), 200);
    assert_eq!(status_of(&engine, &b, "B after reload"), 403);

    write_atomic(&file, format!("{a_tp}\nzz-broken-zz\n").as_bytes());
    let failed_before = metric(&engine, FAILED);
    let (st, body) = admin_post(&engine, "/reload");
    assert_eq!(st, 500, "POST /reload with a broken file: {body}");
    assert!(
        body.contains("allow.txt") || contains_ci(&body, "line"),
        "the 500 body must carry the error (file / line): {body:?}"
    );
    assert!(
        metric(&engine, FAILED) > failed_before,
        "{FAILED} did not increase"
    );
    assert_eq!(
        status_of(&engine, &a, "A after failed reload"),
        200,
        "last good list stays"
    );
    assert_eq!(
        status_of(&engine, &b, "B after failed reload"),
        403,
        "last good list stays"
    );
}

/// A keep-alive connection opened while A was allowed loses access at its next
/// request once a reload removes A: the verdict is not frozen at handshake time.
fn open_connection_rechecked_after_reload(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let file = pki.path("allow.txt");
    let (a_tp, b_tp) = (pki.client_ok.sha1_upper(), pki.client_b.sha1_upper());
    write_atomic(&file, format!("{a_tp}\n{b_tp}\n").as_bytes());
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[
            ("CERTGATE_CLIENT_CERT", "request".into()),
            ("CERTGATE_THUMBPRINTS", path_str(&file)),
        ],
    );
    let a = client(&pki, Some(&pki.client_ok));
    let mut conn = a.connect(engine.addr(), None).expect("connect A");
    let r = conn.get("/before").expect("first response");
    assert_status(&r, 200, "A listed");

    write_atomic(&file, format!("{b_tp}\n").as_bytes());
    sighup_and_wait(&engine, OK);

    let r = conn.get("/after").expect("response on the same connection");
    assert_status(&r, 403, "A removed, same keep-alive connection");
    assert_eq!(
        backend.count(),
        1,
        "the request after removal reached the backend"
    );
}

io_tests!(
    reload_via_sighup,
    reload_via_admin_post,
    open_connection_rechecked_after_reload
);
