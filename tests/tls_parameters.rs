//! TLS parameters: RSA and ECDSA server keys both serve TLS 1.2 and 1.3; X25519 is chosen first; ALPN picks http/1.1 (and nothing for an h2-only client); TLS 1.1 and non-AEAD TLS 1.2 suites are refused; a TLS 1.3 handshake brings exactly one session ticket, and it resumes.

mod support;

use std::process::Command;
use std::time::Duration;
use support::pki::path_str;
use support::tools::{require_tool, run_with_timeout};
use support::*;

/// `openssl s_client` against the engine with `args`; stdin is closed, so it
/// handshakes, prints the session and exits. Returns (success, all output).
fn s_client(engine: &Engine, pki: &TestPki, args: &[&str]) -> (bool, String) {
    require_tool("openssl");
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &engine.addr().to_string()])
        .args(["-servername", "localhost"])
        .args(["-cert", &path_str(&pki.client_ok.cert)])
        .args(["-key", &path_str(&pki.client_ok.key)])
        .args(["-cert_chain", &path_str(&pki.inter.cert)])
        .args(["-CAfile", &path_str(&pki.root.cert)])
        .args(args);
    let out = run_with_timeout(cmd, Duration::from_secs(10));
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let handshaken = text.contains("Verify return code: 0 (ok)") && out.status.success();
    (handshaken, text)
}

fn negotiation(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let engine = start_engine(io, &pki, &backend.url(), &[]);

    let (ok, out) = s_client(&engine, &pki, &["-alpn", "h2,http/1.1"]);
    assert!(ok, "default handshake failed:\n{out}");
    assert!(out.contains("TLSv1.3"), "TLS 1.3 not chosen:\n{out}");
    assert!(
        out.contains("Server Temp Key: X25519"),
        "X25519 not chosen first:\n{out}"
    );
    assert!(
        out.contains("ALPN protocol: http/1.1"),
        "ALPN http/1.1 not selected:\n{out}"
    );

    let (ok, out) = s_client(&engine, &pki, &["-alpn", "h2"]);
    assert!(ok, "an h2-only ALPN offer must still handshake:\n{out}");
    assert!(
        out.contains("No ALPN negotiated"),
        "h2 must not be selected:\n{out}"
    );

    let (ok, out) = s_client(
        &engine,
        &pki,
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
    );
    assert!(ok, "TLS 1.2 with AES-128-GCM failed:\n{out}");

    let (ok, out) = s_client(
        &engine,
        &pki,
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"],
    );
    assert!(!ok, "a CBC suite was accepted in TLS 1.2:\n{out}");

    let (ok, out) = s_client(&engine, &pki, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    assert!(!ok, "TLS 1.1 was accepted:\n{out}");
    assert!(
        out.contains("protocol version") || out.contains("unsupported protocol"),
        "TLS 1.1 refusal should be a protocol_version alert:\n{out}"
    );
}

fn rsa_server_key(io: &str) {
    use certgate::tls::pki::{self, CertSpec, KeyKind, Usage};
    let pki_dir = TestPki::new();
    let mut spec = CertSpec::new("localhost", Usage::Server);
    spec.key = KeyKind::Rsa2048;
    spec.dns_names = vec!["localhost".into()];
    let root = pki::Issued::load(&pki_dir.root.cert, &pki_dir.root.key).expect("load root");
    let rsa = pki::issue(&spec, &root).expect("RSA server certificate");
    let (cert, key) = (
        pki_dir.path("rsa-server.pem"),
        pki_dir.path("rsa-server-key.pem"),
    );
    rsa.write_pem(&cert, &key).expect("write RSA server files");

    let backend = Backend::start();
    let engine = start_engine(
        io,
        &pki_dir,
        &backend.url(),
        &[
            ("CERTGATE_TLS_CERT", path_str(&cert)),
            ("CERTGATE_TLS_KEY", path_str(&key)),
        ],
    );
    for version in [TlsVersion::Tls12, TlsVersion::Tls13] {
        let c = TlsClient::new(
            &pki_dir.root_x509(),
            Some(&pki_dir.client_ok.identity()),
            Some(version),
        );
        let mut conn = c
            .connect(engine.addr(), None)
            .expect("connect to an RSA server key");
        assert_eq!(conn.version(), version.name());
        let r = conn.get("/rsa").expect("response");
        assert_status(&r, 200, &format!("RSA server key, {}", version.name()));
    }
}

/// Sessions (tickets) a TLS 1.3 client receives on one connection to `engine`
/// offering `session`, and whether that session was resumed.
fn tls13_tickets(
    engine: &Engine,
    pki: &TestPki,
    session: Option<&boring::ssl::SslSession>,
) -> (Vec<boring::ssl::SslSession>, bool) {
    use boring::ssl::{SslConnector, SslMethod, SslSessionCacheMode, SslVersion};
    use std::sync::{Arc, Mutex};
    let received = Arc::new(Mutex::new(Vec::new()));
    let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
    b.cert_store_mut().add_cert(pki.root_x509()).unwrap();
    let id = pki.client_ok.identity();
    b.set_certificate(&id.cert).unwrap();
    b.set_private_key(&id.key).unwrap();
    for c in &id.chain {
        b.add_extra_chain_cert(c.clone()).unwrap();
    }
    b.set_min_proto_version(Some(SslVersion::TLS1_3)).unwrap();
    b.set_session_cache_mode(SslSessionCacheMode::CLIENT);
    let sink = Arc::clone(&received);
    b.set_new_session_callback(move |_, s| sink.lock().unwrap().push(s));
    let connector = b.build();
    let tcp = std::net::TcpStream::connect(engine.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut ssl = connector
        .configure()
        .unwrap()
        .into_ssl("localhost")
        .unwrap();
    if let Some(s) = session {
        // SAFETY: the session was made by a connector with the same settings;
        // BoringSSL checks it against this connection before offering it.
        unsafe { ssl.set_session(s) }.unwrap();
    }
    let stream = ssl.connect(tcp).expect("TLS 1.3 handshake");
    let resumed = stream.ssl().session_reused();
    // Tickets arrive after the handshake: reading the response processes them.
    let mut conn = HttpConn::new(stream);
    let r = conn.get("/tickets").expect("response");
    assert_status(&r, 200, "GET over TLS 1.3");
    let sessions = received.lock().unwrap().clone();
    (sessions, resumed)
}

fn one_ticket_per_tls13_handshake(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let engine = start_engine(io, &pki, &backend.url(), &[]);

    let (tickets, resumed) = tls13_tickets(&engine, &pki, None);
    assert!(!resumed);
    assert_eq!(
        tickets.len(),
        1,
        "a full TLS 1.3 handshake sends one ticket"
    );

    // The ticket resumes, and the resumed handshake brings a fresh one.
    let (tickets, resumed) = tls13_tickets(&engine, &pki, Some(&tickets[0]));
    assert!(resumed, "the single ticket must resume");
    assert_eq!(
        tickets.len(),
        1,
        "a resumed TLS 1.3 handshake sends one ticket"
    );
}

io_tests!(negotiation, rsa_server_key, one_ticket_per_tls13_handshake);
