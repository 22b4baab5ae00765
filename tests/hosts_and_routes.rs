//! Per-host configuration (`CERTGATE_CONFIG`): SNI selects the host and its server certificate; a request naming another host gets 421 (wrong `Host`, any spelling, absolute-form target, no SNI); routes apply their own policies; `ignore-error` forwards failures; session tickets do not cross hosts.

mod support;

use support::pki::path_str;
use support::*;

struct Setup {
    pki: TestPki,
    backend: Backend,
    engine: Engine,
}

fn setup(io: &str) -> Setup {
    let pki = TestPki::new();
    let backend = Backend::start();
    let a = pki.issue_server("a.test");
    let b = pki.issue_server("b.test");
    let config = format!(
        r#"
[policies.only-ok]
identities = [ {{ thumbprint = "{ok_sha1}" }} ]

[policies.only-b]
identities = [ {{ common-name = "client-b" }} ]

[policies.nobody-but-forward]
ignore-error = true
identities = [ {{ dns-name = "nobody.invalid" }} ]

[[hosts]]
names = ["a.test"]
cert = "{a_cert}"
key = "{a_key}"
client-cert = "request"
backend = "{backend}"
policy = "only-ok"
[[hosts.routes]]
prefix = "/b-only"
policy = "only-b"
[[hosts.routes]]
prefix = "/forwarded"
policy = "nobody-but-forward"

[[hosts]]
names = ["*.b.test", "b.test"]
cert = "{b_cert}"
key = "{b_key}"
client-cert = "request"
backend = "{backend}"
policy = "only-b"

[[hosts]]
names = ["localhost"]
default = true
client-cert = "optional"
backend = "{backend}"
"#,
        ok_sha1 = pki.client_ok.sha1_upper(),
        a_cert = path_str(&a.chain),
        a_key = path_str(&a.key),
        b_cert = path_str(&b.chain),
        b_key = path_str(&b.key),
        backend = backend.url(),
    );
    let file = pki.path("certgate.toml");
    std::fs::write(&file, config).unwrap();
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[("CERTGATE_CONFIG", path_str(&file))],
    );
    Setup {
        pki,
        backend,
        engine,
    }
}

fn get_with(
    s: &Setup,
    client: &TlsClient,
    sni: Option<&str>,
    raw: &str,
) -> Result<Response, String> {
    let mut c = client.connect_sni(s.engine.addr(), sni, None)?;
    c.send(raw.as_bytes()).map_err(|e| e.to_string())?;
    c.read_response().map_err(|e| e.to_string())
}

fn sni_selects_host_certificate(io: &str) {
    let s = setup(io);
    let ok = client(&s.pki, Some(&s.pki.client_ok));
    for (sni, cn) in [
        (Some("a.test"), "a.test"),
        (Some("A.TEST"), "a.test"),
        (Some("b.test"), "b.test"),
        (Some("x.b.test"), "b.test"),
        (Some("unknown.test"), "localhost"),
        (None, "localhost"),
    ] {
        let c = ok
            .connect_sni(s.engine.addr(), sni, None)
            .unwrap_or_else(|e| panic!("{io}: connect with SNI {sni:?}: {e}"));
        assert_eq!(
            c.peer_cn(),
            cn,
            "{io}: SNI {sni:?} got the wrong certificate"
        );
    }
}

fn other_host_is_misdirected(io: &str) {
    let s = setup(io);
    let b = client(&s.pki, Some(&s.pki.client_b));
    let ok = client(&s.pki, Some(&s.pki.client_ok));
    // A client allowed on A must not reach B's routes by naming B.
    for host in ["b.test", "B.TEST", "b.test.", "b.test:443", "x.b.test"] {
        let r = get_with(
            &s,
            &ok,
            Some("a.test"),
            &format!("GET /x HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        )
        .unwrap();
        assert_status(&r, 421, &format!("{io}: SNI a.test, Host {host}"));
    }
    let r = get_with(
        &s,
        &ok,
        Some("a.test"),
        "GET https://b.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n",
    )
    .unwrap();
    assert_status(&r, 421, &format!("{io}: SNI a.test, absolute-form b.test"));
    // No SNI, or an unknown one: the default host only, never a stricter one named in Host.
    for sni in [None, Some("unknown.test")] {
        let r = get_with(&s, &b, sni, "GET /x HTTP/1.1\r\nHost: b.test\r\n\r\n").unwrap();
        assert_status(&r, 421, &format!("{io}: SNI {sni:?}, Host b.test"));
        let r = get_with(&s, &b, sni, "GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n").unwrap();
        assert_status(&r, 421, &format!("{io}: SNI {sni:?}, Host a.test"));
    }
    assert_eq!(
        s.backend.count(),
        0,
        "{io}: a misdirected request reached the backend"
    );

    // The right names pass.
    let r = get_with(
        &s,
        &ok,
        Some("a.test"),
        "GET /x HTTP/1.1\r\nHost: A.Test.:8443\r\n\r\n",
    )
    .unwrap();
    assert_status(&r, 200, &format!("{io}: SNI a.test, Host A.Test.:8443"));
    let r = get_with(
        &s,
        &b,
        Some("x.b.test"),
        "GET /x HTTP/1.1\r\nHost: b.test\r\n\r\n",
    )
    .unwrap();
    assert_status(
        &r,
        200,
        &format!("{io}: SNI x.b.test, Host b.test (same host)"),
    );
}

fn routes_apply_their_policies(io: &str) {
    let s = setup(io);
    let ok = client(&s.pki, Some(&s.pki.client_ok));
    let b = client(&s.pki, Some(&s.pki.client_b));
    let req = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n");
    let cases = [
        (&ok, "/x", 200),
        (&b, "/x", 403),
        (&ok, "/b-only", 403),
        (&ok, "/b-only/deeper", 403),
        (&ok, "/public/../b-only", 403),
        (&ok, "/%62-only", 403),
        (&ok, "/b-onlyx", 200),
        (&b, "/b-only/deeper", 200),
        (&b, "/b-onlyx", 403),
    ];
    for (client, path, status) in cases {
        let r = get_with(&s, client, Some("a.test"), &req(path)).unwrap();
        assert_status(&r, status, &format!("{io}: a.test {path}"));
    }
    // Host B's own policy.
    let r = get_with(
        &s,
        &ok,
        Some("b.test"),
        "GET / HTTP/1.1\r\nHost: b.test\r\n\r\n",
    )
    .unwrap();
    assert_status(&r, 403, &format!("{io}: b.test with client_ok"));
    let r = get_with(
        &s,
        &b,
        Some("b.test"),
        "GET / HTTP/1.1\r\nHost: b.test\r\n\r\n",
    )
    .unwrap();
    assert_status(&r, 200, &format!("{io}: b.test with client_b"));
    assert_eq!(
        s.backend.last().header("x-client-cert-verify"),
        None,
        "{io}: request mode without ignore-error sends no verify header"
    );

    // ignore-error: the failure is forwarded, without certificate details.
    let before = s.backend.count();
    let r = get_with(&s, &ok, Some("a.test"), &req("/forwarded")).unwrap();
    assert_status(&r, 200, &format!("{io}: ignore-error route"));
    assert_eq!(s.backend.count(), before + 1);
    let last = s.backend.last();
    assert_eq!(
        last.header("x-client-cert-verify"),
        Some("FAILED:identity_mismatch"),
        "{io}: {}",
        last.dump()
    );
    assert_eq!(
        last.header("x-client-cert-sha1"),
        None,
        "{io}: {}",
        last.dump()
    );
}

fn tickets_do_not_cross_hosts(io: &str) {
    let s = setup(io);
    let ok = client(&s.pki, Some(&s.pki.client_ok));
    let mut c = ok
        .connect_sni(s.engine.addr(), Some("a.test"), None)
        .unwrap();
    let r = c.get_host("/first", "a.test").unwrap();
    assert_status(&r, 200, io);
    let session = c.session().expect("a session ticket from a.test");
    c.close();
    let mut again = ok
        .connect_sni(s.engine.addr(), Some("a.test"), Some(&session))
        .unwrap();
    let _ = again.get_host("/again", "a.test").unwrap();
    assert!(
        again.session_reused(),
        "{io}: the ticket should resume on its own host"
    );
    again.close();
    let other = ok
        .connect_sni(s.engine.addr(), Some("b.test"), Some(&session))
        .unwrap();
    assert!(
        !other.session_reused(),
        "{io}: a ticket issued under SNI a.test resumed under b.test"
    );
    assert_eq!(other.peer_cn(), "b.test");
}

io_tests!(
    sni_selects_host_certificate,
    other_host_is_misdirected,
    routes_apply_their_policies,
    tickets_do_not_cross_hosts
);
