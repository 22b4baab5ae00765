//! A valid client certificate (chain sent by the client, or leaf only with the intermediate in the CA bundle) gets 200 and the backend receives the certificate headers, X-Forwarded-*, and no hop-by-hop headers.

mod support;

use support::pki::{path_str, CertFiles};
use support::*;

fn check_forwarded(rec: &Recorded, cert: &CertFiles, cn: &str) {
    let dump = rec.dump();
    let one = |name: &str| -> String {
        let all = rec.header_all(name);
        assert_eq!(
            all.len(),
            1,
            "expected exactly one {name} header at the backend:\n{dump}"
        );
        all[0].to_string()
    };

    assert_eq!(
        one("X-Client-Cert-Thumbprint"),
        cert.sha1_upper(),
        "SHA-1 thumbprint:\n{dump}"
    );
    assert_eq!(
        one("X-Client-Cert-Thumbprint-SHA256"),
        cert.sha256_upper(),
        "SHA-256 thumbprint:\n{dump}"
    );

    let subject = one("X-Client-Cert-Subject");
    assert!(
        subject.contains(&format!("CN={cn}")),
        "subject {subject:?}:\n{dump}"
    );
    assert!(
        subject.contains("O=certgate tests"),
        "subject {subject:?}:\n{dump}"
    );
    assert!(
        subject.find("CN=").unwrap() < subject.find("O=").unwrap(),
        "RFC 4514 order is most specific first (CN before O): {subject:?}"
    );
    let issuer = one("X-Client-Cert-Issuer");
    assert!(
        issuer.contains("CN=certgate test intermediate"),
        "issuer {issuer:?}:\n{dump}"
    );

    let serial = one("X-Client-Cert-Serial");
    assert_eq!(
        serial.trim_start_matches('0'),
        cert.serial_upper().trim_start_matches('0'),
        "serial:\n{dump}"
    );
    assert!(
        serial
            .chars()
            .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)),
        "serial must be upper-case hex: {serial:?}"
    );

    for (name, t) in [
        ("X-Client-Cert-Not-Before", cert.x509().not_before()),
        ("X-Client-Cert-Not-After", cert.x509().not_after()),
    ] {
        let v = one(name);
        assert!(
            v.ends_with('Z'),
            "{name} must be RFC 3339 UTC ending in Z: {v:?}"
        );
        let secs = parse_rfc3339_utc(&v).unwrap_or_else(|| panic!("{name} is not RFC 3339: {v:?}"));
        assert_eq!(
            secs,
            asn1_to_unix(t),
            "{name} {v:?} does not match the certificate"
        );
    }

    let pem_enc = one("X-Client-Cert");
    assert!(
        !pem_enc.contains('\n') && !pem_enc.contains(' '),
        "X-Client-Cert must be URL-encoded: {pem_enc:?}"
    );
    let decoded = String::from_utf8(percent_decode(&pem_enc)).expect("decoded PEM is UTF-8");
    assert_eq!(
        decoded.trim(),
        cert.pem().trim(),
        "X-Client-Cert is not the leaf PEM"
    );

    let xfcc = one("X-Forwarded-Client-Cert");
    assert!(
        xfcc.contains(&format!("Hash={}", cert.sha256_lower())),
        "XFCC lacks Hash=<sha256 lower hex>: {xfcc:?}"
    );
    assert!(
        xfcc.contains("Subject=\""),
        "XFCC lacks Subject=\"...\": {xfcc:?}"
    );
    assert!(
        xfcc.contains(&format!("CN={cn}")),
        "XFCC subject lacks CN={cn}: {xfcc:?}"
    );

    assert_eq!(one("X-Forwarded-For"), "127.0.0.1", "{dump}");
    assert_eq!(one("X-Forwarded-Proto"), "https", "{dump}");

    // hop-by-hop headers are not forwarded; ordinary ones are
    assert!(
        rec.header("Foo").is_none(),
        "header named by Connection was forwarded:\n{dump}"
    );
    assert!(
        rec.header("Keep-Alive").is_none(),
        "Keep-Alive was forwarded:\n{dump}"
    );
    for v in rec.header_all("Connection") {
        assert!(
            !v.to_ascii_lowercase().contains("foo"),
            "client's Connection forwarded:\n{dump}"
        );
    }
    assert_eq!(
        rec.header("X-Custom"),
        Some("keep"),
        "end-to-end header lost:\n{dump}"
    );
    assert_eq!(rec.method, "GET");
    assert_eq!(rec.path, "/hello?x=1");
}

fn request_with_hop_headers(engine: &Engine, client: &TlsClient) -> Response {
    let mut c = client
        .connect(engine.addr(), None)
        .unwrap_or_else(|e| panic!("connect: {e}"));
    c.send(
        b"GET /hello?x=1 HTTP/1.1\r\nHost: localhost\r\nConnection: foo\r\nFoo: bar\r\nKeep-Alive: timeout=5\r\nX-Custom: keep\r\n\r\n",
    )
    .unwrap();
    c.read_response().expect("response")
}

fn chain_sent_by_client(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[("CERTGATE_CLIENT_CA", path_str(&pki.ca_bundle_root_only))],
    );
    let client = client(&pki, Some(&pki.client_ok));
    let r = request_with_hop_headers(&engine, &client);
    assert_status(&r, 200, "valid cert, leaf + intermediate sent");
    assert_eq!(r.body, b"ok");
    assert_eq!(backend.count(), 1);
    check_forwarded(&backend.last(), &pki.client_ok, "client-ok");

    // the intermediate is neither in the bundle nor sent: the chain cannot be built
    let leaf_only = TlsClient::new(
        &pki.root_x509(),
        Some(&pki.client_ok.identity_leaf_only()),
        None,
    );
    let r = must_get(&engine, &leaf_only, "/leaf-only");
    assert_status(&r, 403, "leaf only, intermediate unknown to the engine");
    assert_eq!(
        backend.count(),
        1,
        "backend must not see the rejected request"
    );
}

fn leaf_only_intermediate_in_bundle(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[("CERTGATE_CLIENT_CA", path_str(&pki.ca_bundle))],
    );
    let client = TlsClient::new(
        &pki.root_x509(),
        Some(&pki.client_ok.identity_leaf_only()),
        None,
    );
    let r = request_with_hop_headers(&engine, &client);
    assert_status(&r, 200, "valid cert, leaf only, intermediate in bundle");
    assert_eq!(backend.count(), 1);
    check_forwarded(&backend.last(), &pki.client_ok, "client-ok");

    // TLS 1.2 too
    let c12 = TlsClient::new(
        &pki.root_x509(),
        Some(&pki.client_ok.identity()),
        Some(TlsVersion::Tls12),
    );
    let r = request_with_hop_headers(&engine, &c12);
    assert_status(&r, 200, "valid cert over TLS 1.2");
    check_forwarded(&backend.last(), &pki.client_ok, "client-ok");
}

io_tests!(chain_sent_by_client, leaf_only_intermediate_in_bundle);
