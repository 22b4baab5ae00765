//! Optional mode: every request reaches the backend, which is told the verdict in X-Client-Cert-Verify: SUCCESS, NONE or FAILED:<reason> (FAILED:expired, FAILED:untrusted, ...).

mod support;

use support::pki::CertFiles;
use support::*;

fn optional_mode(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[("CERTGATE_CLIENT_CERT", "optional".into())],
    );

    let cases: Vec<(&str, Option<&CertFiles>, &str)> = vec![
        ("valid", Some(&pki.client_ok), "SUCCESS"),
        ("no certificate", None, "NONE"),
        ("expired", Some(&pki.expired), "FAILED:expired"),
        ("untrusted", Some(&pki.untrusted), "FAILED:untrusted"),
        ("not yet valid", Some(&pki.not_yet_valid), "FAILED:"),
        (
            "self-signed, not in bundle",
            Some(&pki.self_signed),
            "FAILED:",
        ),
        ("serverAuth-only EKU", Some(&pki.server_only), "FAILED:"),
        (
            "self-signed in bundle",
            Some(&pki.self_signed_listed),
            "SUCCESS",
        ),
    ];
    for (i, (what, cert, want)) in cases.iter().enumerate() {
        let c = client(&pki, *cert);
        let r = must_get(&engine, &c, &format!("/optional/{i}"));
        assert_status(&r, 200, &format!("optional mode, {what}"));
        assert_eq!(
            backend.count(),
            i + 1,
            "{what}: request did not reach the backend"
        );
        let rec = backend.last();
        let verify = rec.header_all("X-Client-Cert-Verify");
        assert_eq!(
            verify.len(),
            1,
            "{what}: X-Client-Cert-Verify:\n{}",
            rec.dump()
        );
        let got = verify[0];
        if want.ends_with(':') {
            assert!(
                got.starts_with(want) && got.len() > want.len(),
                "{what}: X-Client-Cert-Verify {got:?}, want {want}<reason>"
            );
        } else {
            assert_eq!(got, *want, "{what}: X-Client-Cert-Verify");
        }
        if *want == "SUCCESS" {
            let cert = cert.unwrap();
            assert_eq!(
                rec.header("X-Client-Cert-Thumbprint"),
                Some(cert.sha1_upper().as_str()),
                "{what}:\n{}",
                rec.dump()
            );
        }
        if cert.is_none() {
            assert!(
                rec.header("X-Client-Cert-Thumbprint").is_none(),
                "{}",
                rec.dump()
            );
        }
    }
}

io_tests!(optional_mode);
