//! Client-sent certificate headers (X-Client-Cert*, X-Forwarded-Client-Cert, any case) never reach the backend, with or without a client certificate; an underscore spelling of such a header is rejected with 400.

mod support;

use support::*;

const SPOOFED: &[(&str, &str)] = &[
    ("X-Client-Cert-Thumbprint", "AAAA"),
    ("x-client-cert", "evil"),
    ("X-Forwarded-Client-Cert", "evil"),
    ("X-Client-Cert-Subject", "CN=evil"),
    ("x-client-cert-thumbprint-sha256", "AAAA"),
];

fn assert_no_spoofed_values(rec: &Recorded) {
    let dump = rec.dump();
    for (n, v) in &rec.headers {
        assert!(
            !v.contains("evil") && v != "AAAA",
            "spoofed value reached the backend in {n}: {v:?}\n{dump}"
        );
    }
}

fn spoofing_with_valid_cert(io: &str) {
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
    let mut headers = SPOOFED.to_vec();
    headers.push(("X-CLIENT-CERT-VERIFY", "evil"));
    let r = c.request("GET", "/spoof", &headers, b"").expect("response");
    assert_status(&r, 200, "valid cert with spoofed headers");
    let rec = backend.last();
    let dump = rec.dump();
    assert_no_spoofed_values(&rec);
    assert_eq!(
        rec.header_all("X-Client-Cert-Thumbprint"),
        vec![pki.client_ok.sha1_upper().as_str()],
        "{dump}"
    );
    assert_eq!(
        rec.header_all("X-Client-Cert-Thumbprint-SHA256").len(),
        1,
        "{dump}"
    );
    assert_eq!(rec.header_all("X-Client-Cert").len(), 1, "{dump}");
    assert_eq!(rec.header_all("X-Forwarded-Client-Cert").len(), 1, "{dump}");
    assert!(rec.header_all("X-Client-Cert-Verify").len() <= 1, "{dump}");
}

fn spoofing_without_cert_optional(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[("CERTGATE_CLIENT_CERT", "optional".into())],
    );
    let client = client(&pki, None);
    let mut c = client.connect(engine.addr(), None).expect("connect");
    let mut headers = SPOOFED.to_vec();
    headers.push(("X-CLIENT-CERT-VERIFY", "SUCCESS"));
    let r = c.request("GET", "/spoof", &headers, b"").expect("response");
    assert_status(&r, 200, "no cert (optional mode) with spoofed headers");
    let rec = backend.last();
    let dump = rec.dump();
    assert_no_spoofed_values(&rec);
    assert!(rec.header("X-Client-Cert-Thumbprint").is_none(), "{dump}");
    assert!(rec.header("X-Client-Cert").is_none(), "{dump}");
    assert!(rec.header("X-Client-Cert-Subject").is_none(), "{dump}");
    assert_eq!(
        rec.header_all("X-Client-Cert-Verify"),
        vec!["NONE"],
        "{dump}"
    );
}

fn underscore_spelling_rejected(io: &str) {
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
    let r = c
        .request(
            "GET",
            "/underscore",
            &[("X_Client_Cert_Thumbprint", "x")],
            b"",
        )
        .expect("response");
    assert_status(&r, 400, "underscore spelling of a certificate header");
    assert_eq!(backend.count(), 0, "backend contacted:\n{}", backend.dump());

    // the engine still serves normal requests
    let r = must_get(&engine, &client, "/after");
    assert_status(&r, 200, "normal request after the 400");
}

io_tests!(
    spoofing_with_valid_cert,
    spoofing_without_cert_optional,
    underscore_spelling_rejected
);
