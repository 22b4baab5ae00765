//! Revocation through cached CRL results: a certificate on its issuer's CRL (from a file, or from an `http://` URL served by the test) gets 403, also on a resumed session and on an open keep-alive connection once a refreshed CRL revokes it; a CRL from the wrong signer stops start-up naming the file; a stale CRL stays in force within its grace period; a missing or too-stale CRL follows `CERTGATE_CRL_MISSING` both ways; `GET /crls` reports the CRL.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use certgate::tls::crl::CrlBuilder;
use support::client::{attempt_get, Attempt};
use support::pki::path_str;
use support::*;

const HOUR: Duration = Duration::from_secs(3600);

/// A CRL issued by the intermediate (the client certificates' issuer).
fn crl(
    pki: &TestPki,
    revoked: &[&support::pki::CertFiles],
    next: Option<SystemTime>,
    n: u64,
) -> Vec<u8> {
    let mut b = CrlBuilder::new(&pki.inter.issued)
        .unwrap()
        .this_update(SystemTime::now() - 2 * HOUR)
        .next_update(next)
        .crl_number(n);
    for c in revoked {
        b = b.revoke_cert(c.x509()).unwrap();
    }
    b.to_pem().unwrap()
}

/// Serves whatever `body` holds at any path, until the test ends.
struct CrlServer {
    addr: std::net::SocketAddr,
    body: Arc<Mutex<Vec<u8>>>,
}

impl CrlServer {
    fn start(body: Vec<u8>) -> CrlServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let body = Arc::new(Mutex::new(body));
        let served = Arc::clone(&body);
        std::thread::spawn(move || {
            for conn in listener.incoming().take(1000) {
                let Ok(mut conn) = conn else { return };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let body = served.lock().unwrap().clone();
                let _ = conn.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                let _ = conn.write_all(&body);
            }
        });
        CrlServer { addr, body }
    }

    fn url(&self) -> String {
        format!("http://{}/inter.crl", self.addr)
    }

    fn set(&self, body: Vec<u8>) {
        *self.body.lock().unwrap() = body;
    }
}

fn status(engine: &Engine, c: &TlsClient) -> u16 {
    must_get(engine, c, "/x").status
}

fn revoked_by_file_crl(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let file = pki.path("inter.crl");
    std::fs::write(
        &file,
        crl(&pki, &[&pki.client_ok], Some(SystemTime::now() + HOUR), 1),
    )
    .unwrap();
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[
            ("CERTGATE_CLIENT_CERT", "request".into()),
            ("CERTGATE_CRL", path_str(&file)),
        ],
    );
    let ok = client(&pki, Some(&pki.client_ok));
    let b = client(&pki, Some(&pki.client_b));
    assert_eq!(status(&engine, &ok), 403, "{io}: revoked by the file CRL");
    assert_eq!(status(&engine, &b), 200, "{io}: not revoked");
    assert_eq!(
        metric(
            &engine,
            "certgate_client_cert_verdicts_total{verdict=\"revoked\"}"
        ),
        1.0
    );
    let (s, body) = admin_get(&engine, "/crls");
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let entry = v
        .as_array()
        .and_then(|a| a.iter().find(|e| e["source"] == path_str(&file).as_str()))
        .unwrap_or_else(|| panic!("{io}: /crls does not list the file: {body}"));
    assert_eq!(entry["entries"], 1, "{io}: {body}");
    assert!(entry["last_error"].is_null(), "{io}: {body}");
    assert_eq!(
        backend.count(),
        1,
        "{io}: the revoked client reached the backend"
    );
}

fn require_mode_refuses_with_an_alert(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let file = pki.path("inter.crl");
    std::fs::write(
        &file,
        crl(&pki, &[&pki.client_ok], Some(SystemTime::now() + HOUR), 1),
    )
    .unwrap();
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[
            ("CERTGATE_CLIENT_CERT", "require".into()),
            ("CERTGATE_CRL", path_str(&file)),
        ],
    );
    match attempt_get(&client(&pki, Some(&pki.client_ok)), engine.addr(), "/x") {
        Attempt::ConnectFailed(e) | Attempt::NoResponse(e) => assert!(
            e.to_ascii_lowercase().contains("revoked"),
            "{io}: expected a certificate_revoked alert, got: {e}"
        ),
        Attempt::Response(r) => panic!("{io}: a revoked certificate got an answer: {}", r.status),
    }
    assert_eq!(
        status(&engine, &client(&pki, Some(&pki.client_b))),
        200,
        "{io}"
    );
    assert_eq!(backend.count(), 1, "{io}");
}

fn wrong_signer_stops_startup(io: &str) {
    let pki = TestPki::new();
    let file = pki.path("forged.crl");
    let forged = CrlBuilder::new(&pki.inter.issued)
        .unwrap()
        .signing_key(pki.other_root.key())
        .revoke_cert(pki.client_ok.x509())
        .unwrap()
        .to_pem()
        .unwrap();
    std::fs::write(&file, forged).unwrap();
    let mut vars = pki.tls_vars();
    vars.push(("CERTGATE_BACKEND", "http://127.0.0.1:9".into()));
    vars.push(("CERTGATE_CRL", path_str(&file)));
    let (status, out) = Engine::start_expect_failure(&vars, io);
    assert!(!status.success(), "{io}: a forged CRL must stop start-up");
    assert!(
        out.contains("forged.crl"),
        "{io}: the error names the file: {out}"
    );
}

fn stale_and_missing_crls(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let file = pki.path("stale.crl");
    // Past its nextUpdate by a minute; revokes client_ok.
    std::fs::write(
        &file,
        crl(
            &pki,
            &[&pki.client_ok],
            Some(SystemTime::now() - Duration::from_secs(60)),
            1,
        ),
    )
    .unwrap();
    let b = client(&pki, Some(&pki.client_b));
    let ok = client(&pki, Some(&pki.client_ok));
    let run = |grace: &str, missing: &str| {
        start_engine(
            io,
            &pki,
            &backend.url(),
            &[
                ("CERTGATE_CLIENT_CERT", "request".into()),
                ("CERTGATE_CRL", path_str(&file)),
                ("CERTGATE_CRL_GRACE_SECS", grace.into()),
                ("CERTGATE_CRL_MISSING", missing.into()),
            ],
        )
    };
    // Within grace: still in force.
    let e = run("3600", "deny");
    assert_eq!(
        status(&e, &b),
        200,
        "{io}: stale within grace still answers"
    );
    assert_eq!(status(&e, &ok), 403, "{io}: and still revokes");
    drop(e);
    // Past grace: stale → the missing policy decides; revoked serials stay revoked.
    let e = run("0", "deny");
    assert_eq!(status(&e, &b), 403, "{io}: stale past grace, deny");
    assert_eq!(
        metric(
            &e,
            "certgate_client_cert_verdicts_total{verdict=\"revocation_unknown\"}"
        ),
        1.0
    );
    assert_eq!(metric(&e, "certgate_crl_unknown_denied_total"), 1.0);
    drop(e);
    let e = run("0", "allow");
    assert_eq!(status(&e, &b), 200, "{io}: stale past grace, allow");
    assert_eq!(metric(&e, "certgate_crl_unknown_allowed_total"), 1.0);
    assert_eq!(
        status(&e, &ok),
        403,
        "{io}: revoked stays revoked when stale"
    );
    drop(e);

    // Missing: a CRL is configured (for the root), none for the intermediate.
    let root_crl = pki.path("root.crl");
    let rc = CrlBuilder::new(&pki.root.issued)
        .unwrap()
        .next_update(Some(SystemTime::now() + HOUR))
        .to_pem()
        .unwrap();
    std::fs::write(&root_crl, rc).unwrap();
    for (missing, want) in [("deny", 403), ("allow", 200)] {
        let e = start_engine(
            io,
            &pki,
            &backend.url(),
            &[
                ("CERTGATE_CLIENT_CERT", "request".into()),
                ("CERTGATE_CRL", path_str(&root_crl)),
                ("CERTGATE_CRL_MISSING", missing.into()),
            ],
        );
        assert_eq!(
            status(&e, &b),
            want,
            "{io}: intermediate's CRL missing, {missing}"
        );
    }
}

fn refreshed_http_crl_revokes_cached_and_resumed(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let server = CrlServer::start(crl(&pki, &[], Some(SystemTime::now() + HOUR), 1));
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[
            ("CERTGATE_CLIENT_CERT", "request".into()),
            ("CERTGATE_CRL", server.url()),
        ],
    );
    // The first fetch happens in the background: wait until it is in force.
    let ok = client(&pki, Some(&pki.client_ok));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut open = loop {
        let mut c = ok.connect(engine.addr(), None).unwrap();
        let r = c.get("/first").unwrap();
        if r.status == 200 {
            break c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{io}: the HTTP CRL was never fetched ({})",
            admin_get(&engine, "/crls").1
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // (Not the verdict counter: it counts the handshake's verdict, which may
    // predate the first fetch even when this request, decided after it, passed.)
    let (_, crls) = admin_get(&engine, "/crls");
    let crls: serde_json::Value = serde_json::from_str(&crls).unwrap();
    let entry = crls
        .as_array()
        .and_then(|a| a.iter().find(|e| e["source"] == server.url().as_str()))
        .unwrap_or_else(|| panic!("{io}: /crls does not list the URL: {crls}"));
    assert_eq!(entry["entries"], 0, "{io}: {crls}");
    let session = open.session().expect("a session to resume");

    // Revoke client_ok at the source; one refresh puts it in force.
    server.set(crl(
        &pki,
        &[&pki.client_ok],
        Some(SystemTime::now() + HOUR),
        2,
    ));
    let (s, body) = admin_post(&engine, "/crls/refresh");
    assert_eq!(s, 200, "{io}: refresh: {body}");

    let r = open.get("/on-the-open-connection").unwrap();
    assert_status(
        &r,
        403,
        &format!("{io}: open keep-alive connection after the refresh"),
    );
    let mut resumed = ok.connect(engine.addr(), Some(&session)).unwrap();
    let r = resumed.get("/resumed").unwrap();
    assert!(resumed.session_reused(), "{io}: the session should resume");
    assert_status(
        &r,
        403,
        &format!("{io}: resumed session with a revoked certificate"),
    );
    assert_eq!(status(&engine, &ok), 403, "{io}: new full handshake");
    assert_eq!(
        status(&engine, &client(&pki, Some(&pki.client_b))),
        200,
        "{io}: others unaffected"
    );
}

io_tests!(
    revoked_by_file_crl,
    require_mode_refuses_with_an_alert,
    wrong_signer_stops_startup,
    stale_and_missing_crls,
    refreshed_http_crl_revokes_cached_and_resumed
);
