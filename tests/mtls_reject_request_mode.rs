//! Request mode: a missing, untrusted, expired, not-yet-valid, unlisted self-signed or serverAuth-only client certificate completes the handshake but gets 403 "Invalid client certificate" without contacting the backend; a self-signed certificate that is in the CA bundle gets 200.

mod support;

use support::pki::CertFiles;
use support::*;

fn bad_cases(pki: &TestPki) -> Vec<(&'static str, Option<&CertFiles>)> {
    vec![
        ("no certificate", None),
        ("untrusted CA", Some(&pki.untrusted)),
        ("expired", Some(&pki.expired)),
        ("not yet valid", Some(&pki.not_yet_valid)),
        ("self-signed, not in bundle", Some(&pki.self_signed)),
        ("serverAuth-only EKU", Some(&pki.server_only)),
    ]
}

fn check_rejections(io: &str, mode: Option<&str>) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let extra: Vec<(&str, String)> = mode
        .map(|m| vec![("CERTGATE_CLIENT_CERT", m.to_string())])
        .unwrap_or_default();
    let engine = start_engine(io, &pki, &backend.url(), &extra);

    for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
        for (what, cert) in bad_cases(&pki) {
            let id = cert.map(|c| c.identity());
            let client = TlsClient::new(&pki.root_x509(), id.as_ref(), Some(version));
            let mut c = client.connect(engine.addr(), None).unwrap_or_else(|e| {
                panic!(
                    "{what} ({}): the handshake must succeed in request mode: {e}",
                    version.name()
                )
            });
            let r = c
                .get("/reject")
                .unwrap_or_else(|e| panic!("{what} ({}): no HTTP response: {e}", version.name()));
            assert_status(&r, 403, &format!("{what} ({})", version.name()));
            assert!(
                r.body_str().contains("Invalid client certificate"),
                "{what}: 403 body {:?}",
                r.body_str()
            );
            assert_eq!(
                backend.count(),
                0,
                "{what}: backend contacted:\n{}",
                backend.dump()
            );
        }
    }

    let listed = client(&pki, Some(&pki.self_signed_listed));
    let r = must_get(&engine, &listed, "/self-signed-listed");
    assert_status(&r, 200, "self-signed certificate that is in the CA bundle");
    assert_eq!(backend.count(), 1);

    let ok = client(&pki, Some(&pki.client_ok));
    let r = must_get(&engine, &ok, "/ok");
    assert_status(&r, 200, "valid certificate");
}

fn explicit_request_mode(io: &str) {
    check_rejections(io, Some("request"));
}

fn default_mode_is_request(io: &str) {
    check_rejections(io, None);
}

io_tests!(explicit_request_mode, default_mode_is_request);
