//! The certificate store drives the live configuration: a CA added or removed through the admin API applies to new handshakes without a restart; hosts serve store certificates by id; `certificate-id` identities match stored certificates; deleting a certificate in use is refused naming its users; a change that would break the configuration is refused and changes nothing; the store survives a restart.

mod support;

use support::pki::path_str;
use support::*;

fn pem_with_key(c: &support::pki::CertFiles) -> Vec<u8> {
    let mut body = std::fs::read(&c.cert).unwrap();
    body.extend(std::fs::read(&c.key).unwrap());
    body
}

fn status_of(engine: &Engine, client: &TlsClient, sni: Option<&str>, host: &str) -> u16 {
    let mut c = client
        .connect_sni(engine.addr(), sni, None)
        .unwrap_or_else(|e| panic!("connect {sni:?}: {e}"));
    c.get_host("/x", host).expect("response").status
}

fn store_changes_apply_live(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let state = pki.path("state");
    std::fs::create_dir_all(&state).unwrap();
    let base = |extra: &[(&'static str, String)]| {
        let mut v = vec![
            ("CERTGATE_STATE_DIR", path_str(&state)),
            // Only another root is trusted from the file: the test root comes from the store.
            ("CERTGATE_CLIENT_CA", path_str(&pki.other_root.cert)),
            ("CERTGATE_CLIENT_CERT", "request".to_string()),
        ];
        v.extend_from_slice(extra);
        v
    };
    let ok = client(&pki, Some(&pki.client_ok));
    let b = client(&pki, Some(&pki.client_b));
    let a_server = pki.issue_server("a.test");

    // Phase 1: no configuration file.
    {
        let engine = start_engine(io, &pki, &backend.url(), &base(&[]));
        assert_eq!(
            status_of(&engine, &ok, None, "localhost"),
            403,
            "{io}: root not trusted yet"
        );
        let (s, body) = admin_send(
            &engine,
            "PUT",
            "/ca-certificates/root",
            pki.root.pem().as_bytes(),
        );
        assert_eq!(s, 201, "{io}: PUT root: {body}");
        let status = status_of(&engine, &ok, None, "localhost");
        assert_eq!(
            status,
            200,
            "{io}: the CA added through the API must apply to the next handshake; verdicts: {:?}",
            admin_get(&engine, "/metrics")
                .1
                .lines()
                .filter(|l| l.starts_with("certgate_client_cert_verdicts_total"))
                .collect::<Vec<_>>()
        );
        let (s, body) = admin_send(
            &engine,
            "PUT",
            "/certificates/partner",
            pki.client_b.pem().as_bytes(),
        );
        assert_eq!(s, 201, "{io}: PUT partner: {body}");
        let (s, body) = admin_send(
            &engine,
            "PUT",
            "/certificates/srv",
            &pem_with_key(&a_server),
        );
        assert_eq!(s, 201, "{io}: PUT srv: {body}");
    }

    // Phase 2: a file whose host serves "srv" and whose policy names "partner".
    let file = pki.path("certgate.toml");
    std::fs::write(
        &file,
        r#"
[policies.partners]
identities = [ { certificate-id = "partner" } ]

[[hosts]]
names = ["a.test"]
certificate = "srv"
policy = "partners"

[[hosts]]
names = ["localhost"]
default = true
"#,
    )
    .unwrap();
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &base(&[("CERTGATE_CONFIG", path_str(&file))]),
    );
    let c = ok.connect_sni(engine.addr(), Some("a.test"), None).unwrap();
    assert_eq!(
        c.peer_cn(),
        "a.test",
        "{io}: host certificate from the store"
    );
    drop(c);
    assert_eq!(
        status_of(&engine, &b, Some("a.test"), "a.test"),
        200,
        "{io}: partner by certificate-id"
    );
    assert_eq!(
        status_of(&engine, &ok, Some("a.test"), "a.test"),
        403,
        "{io}: not the partner"
    );

    let (s, body) = admin_send(&engine, "DELETE", "/certificates/partner", b"");
    assert_eq!(s, 409, "{io}: deleting a certificate a policy uses: {body}");
    assert!(
        body.contains("partners"),
        "{io}: the refusal names the policy: {body}"
    );
    let (s, body) = admin_send(&engine, "DELETE", "/certificates/srv", b"");
    assert_eq!(s, 409, "{io}: deleting a host's certificate: {body}");
    assert!(
        body.contains("a.test"),
        "{io}: the refusal names the host: {body}"
    );

    // Replacing the host certificate by one without a key would leave the host without one.
    let (s, body) = admin_send(
        &engine,
        "PUT",
        "/certificates/srv",
        pki.client_ok.pem().as_bytes(),
    );
    assert_eq!(s, 409, "{io}: an invalid change must be refused: {body}");
    let c = ok.connect_sni(engine.addr(), Some("a.test"), None).unwrap();
    assert_eq!(
        c.peer_cn(),
        "a.test",
        "{io}: the refused change changed nothing"
    );
    drop(c);
    let (s, body) = admin_send(&engine, "GET", "/certificates/srv", b"");
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains(&a_server.sha256_upper()),
        "{io}: the store still holds the old srv: {body}"
    );

    // Removing the CA applies live too.
    let (s, body) = admin_send(&engine, "DELETE", "/ca-certificates/root", b"");
    assert_eq!(s, 204, "{io}: {body}");
    assert_eq!(
        status_of(&engine, &b, Some("a.test"), "a.test"),
        403,
        "{io}: root removed"
    );
}

io_tests!(store_changes_apply_live);
