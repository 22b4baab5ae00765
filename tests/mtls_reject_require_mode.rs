//! Require mode: every bad client certificate (none, untrusted, expired, not yet valid, unlisted self-signed, serverAuth-only) is refused during the TLS handshake: no HTTP response ever arrives and the backend is not contacted; a valid certificate gets 200.

mod support;

use support::client::{attempt_get, Attempt};
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

fn require_mode(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[("CERTGATE_CLIENT_CERT", "require".into())],
    );

    for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
        for (what, cert) in bad_cases(&pki) {
            let id = cert.map(|c| c.identity());
            let client = TlsClient::new(&pki.root_x509(), id.as_ref(), Some(version));
            match attempt_get(&client, engine.addr(), "/require") {
                Attempt::Response(r) => panic!(
                    "{what} ({}): require mode must refuse the handshake, got HTTP {} {:?}",
                    version.name(),
                    r.status,
                    r.body_str()
                ),
                Attempt::NoResponse(e) if version == TlsVersion::Tls12 => panic!(
                    "{what} (TLSv1.2): the handshake itself must fail in require mode, \
                     but it completed (then: {e})"
                ),
                Attempt::NoResponse(_) | Attempt::ConnectFailed(_) => {}
            }
            assert_eq!(
                backend.count(),
                0,
                "{what}: backend contacted:\n{}",
                backend.dump()
            );
        }
    }

    for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
        let ok = TlsClient::new(
            &pki.root_x509(),
            Some(&pki.client_ok.identity()),
            Some(version),
        );
        let r = must_get(&engine, &ok, "/ok");
        assert_status(&r, 200, &format!("valid certificate ({})", version.name()));
    }
    let listed = client(&pki, Some(&pki.self_signed_listed));
    let r = must_get(&engine, &listed, "/self-signed-listed");
    assert_status(&r, 200, "self-signed certificate that is in the CA bundle");
    assert_eq!(backend.count(), 3);
}

io_tests!(require_mode);
