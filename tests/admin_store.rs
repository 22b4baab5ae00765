//! The certificate store through the real binary: PUT/GET/DELETE on the admin port with a bearer token, refusal paths (wrong PFX password, 401, 413), the store surviving a restart, the directory source, the `certgate cert` / `thumbprint` commands, and start-up refusing a non-loopback admin listener without a token.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use boring::hash::MessageDigest;
use support::pki::path_str;
use support::*;

const TOKEN: &str = "test-token-0123456789abcdef";

/// One admin request → (status, headers block, body).
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("admin connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // A 413 may close before the whole body is read: ignore write errors there.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (h, b) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no response head: {text:?}"));
    let status = h
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, h.to_string(), b.to_string())
}

fn authed(
    engine: &Engine,
    method: &str,
    path: &str,
    body: &[u8],
    extra: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let bearer = format!("Bearer {TOKEN}");
    let mut headers = vec![("Authorization", bearer.as_str())];
    headers.extend_from_slice(extra);
    let (status, _, body) = call(engine.admin_addr(), method, path, body, &headers);
    let v = if body.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body}"))
    };
    (status, v)
}

fn vars(state: &Path, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("CERTGATE_STATE_DIR", path_str(state)),
        ("CERTGATE_ADMIN_TOKEN", TOKEN.to_string()),
    ];
    v.extend_from_slice(extra);
    v
}

fn pfx(c: &support::pki::CertFiles, password: &str) -> Vec<u8> {
    boring::pkcs12::Pkcs12::builder()
        .build(password, "client", c.key(), c.x509())
        .unwrap()
        .to_der()
        .unwrap()
}

fn store_lifecycle_survives_restart(io: &str) {
    let pki = TestPki::new();
    let state = TempDir::new("store-state");
    let backend = format!("http://127.0.0.1:{}", unused_port());
    let engine = start_engine(io, &pki, &backend, &vars(state.path(), &[]));
    let admin = engine.admin_addr();

    // Authentication: /healthz is open, everything else needs the token.
    assert_eq!(call(admin, "GET", "/healthz", b"", &[]).0, 200);
    let (s, h, _) = call(admin, "GET", "/certificates", b"", &[]);
    assert_eq!(s, 401, "no token");
    assert!(contains_ci(&h, "WWW-Authenticate: Bearer"), "{h}");
    let (s, _, _) = call(
        admin,
        "GET",
        "/metrics",
        b"",
        &[("Authorization", "Bearer wrong-token-0123456789abcdef")],
    );
    assert_eq!(s, 401, "wrong token");

    // A PFX: wrong password is 400 and stores nothing; the right one is 201.
    let body = pfx(&pki.client_ok, "s3cret");
    let (s, v) = authed(
        &engine,
        "PUT",
        "/certificates/partner-a",
        &body,
        &[("X-Certificate-Password", "nope")],
    );
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("wrong password"),
        "{v}"
    );
    assert!(!state.join("store/certificates/partner-a.pem").exists());
    let (s, v) = authed(
        &engine,
        "PUT",
        "/certificates/partner-a",
        &body,
        &[("X-Certificate-Password", "s3cret")],
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["sha1"], pki.client_ok.sha1_upper().as_str());
    assert_eq!(v["has_private_key"], true);
    let key_mode = std::fs::metadata(state.join("store/certificates/partner-a.key"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(key_mode, 0o600);

    // A CER (DER) into the CA namespace; a leaf there is refused.
    let (s, v) = authed(
        &engine,
        "PUT",
        "/ca-certificates/root",
        &pki.root.der(),
        &[],
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = authed(
        &engine,
        "PUT",
        "/ca-certificates/leaf",
        &pki.client_b.der(),
        &[],
    );
    assert_eq!(s, 400, "{v}");

    // Too large a body.
    let big = vec![b'A'; 2 * 1024 * 1024];
    let (s, _) = authed(&engine, "PUT", "/certificates/big", &big, &[]);
    assert_eq!(s, 413);
    // Authentication comes before the body limit.
    assert_eq!(call(admin, "PUT", "/certificates/big", &big, &[]).0, 401);

    let (s, v) = authed(&engine, "GET", "/certificates", b"", &[]);
    assert_eq!(s, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    drop(engine); // SIGKILL: nothing may depend on a clean shutdown

    let engine = start_engine(io, &pki, &backend, &vars(state.path(), &[]));
    let (s, v) = authed(&engine, "GET", "/certificates/partner-a", b"", &[]);
    assert_eq!(s, 200, "after restart: {v}");
    assert_eq!(v["sha1"], pki.client_ok.sha1_upper().as_str());
    assert_eq!(v["has_private_key"], true);
    let (s, v) = authed(&engine, "GET", "/ca-certificates", b"", &[]);
    assert_eq!((s, v[0]["id"].as_str()), (200, Some("root")), "{v}");
    let (s, _) = authed(&engine, "DELETE", "/certificates/partner-a", b"", &[]);
    assert_eq!(s, 204);
    let (s, v) = authed(&engine, "GET", "/certificates/partner-a", b"", &[]);
    assert_eq!(s, 404, "{v}");
    assert!(!state.join("store/certificates/partner-a.key").exists());
}

fn directory_source_and_cli(io: &str) {
    let pki = TestPki::new();
    let state = TempDir::new("store-state");
    let dir = TempDir::new("cert-dir");
    std::fs::write(dir.join("good.pem"), pki.client_ok.pem()).unwrap();
    std::fs::write(
        dir.join("broken.pem"),
        b"-----BEGIN CERTIFICATE-----\nAAAA\n",
    )
    .unwrap();
    let backend = format!("http://127.0.0.1:{}", unused_port());
    let engine = start_engine(
        io,
        &pki,
        &backend,
        &vars(state.path(), &[("CERTGATE_CERT_DIR", path_str(dir.path()))]),
    );
    let (_, v) = authed(&engine, "GET", "/certificates", b"", &[]);
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["id"], "good");
    assert!(v[0]["source"].as_str().unwrap().starts_with("dir:"), "{v}");
    assert!(
        engine
            .wait_for_line(Duration::from_secs(5), |_, l| l.contains("broken.pem"))
            .is_some(),
        "the broken file must be logged by name"
    );
    // Read-only through the API.
    let (s, v) = authed(&engine, "DELETE", "/certificates/good", b"", &[]);
    assert_eq!(s, 409, "{v}");

    // A new file is picked up without a restart.
    std::fs::write(dir.join("new.pem"), pki.client_b.pem()).unwrap();
    let picked = wait_until(Duration::from_secs(10), || {
        let (_, v) = authed(&engine, "GET", "/certificates/new", b"", &[]);
        v["sha1"] == pki.client_b.sha1_upper().as_str()
    });
    assert!(picked, "new.pem was not picked up");

    // The CLI against the same admin port.
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_certgate"))
            .args(args)
            .env_clear()
            .env("CERTGATE_ADMIN_LISTEN", engine.admin_addr().to_string())
            .env("CERTGATE_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let pfx_path = pki.path("cli.pfx");
    std::fs::write(&pfx_path, pfx(&pki.self_signed, "pw")).unwrap();
    let (code, out, err) = cli(&[
        "cert",
        "add",
        "cli-1",
        &path_str(&pfx_path),
        "--password",
        "pw",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&pki.self_signed.sha1_upper()), "{out}");
    let (code, _, err) = cli(&[
        "cert",
        "add",
        "cli-2",
        &path_str(&pfx_path),
        "--password",
        "bad",
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("wrong password"), "{err}");
    let (code, out, _) = cli(&["cert", "list"]);
    assert_eq!(code, Some(0));
    for id in ["cli-1", "good", "new"] {
        assert!(
            out.lines().any(|l| l.starts_with(id)),
            "{id} not listed:\n{out}"
        );
    }
    let (code, out, err) = cli(&["cert", "delete", "cli-1"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, _, err) = cli(&["cert", "delete", "cli-1"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("404") && err.contains("cli-1"), "{err}");

    // thumbprint: against digests computed here from the DER.
    let der = pki.client_ok.der();
    let (code, out, _) = cli(&["thumbprint", &path_str(&pki.client_ok.cert)]);
    assert_eq!(code, Some(0));
    let sha1 = boring::hash::hash(MessageDigest::sha1(), &der).unwrap();
    let sha256 = boring::hash::hash(MessageDigest::sha256(), &der).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    for want in [
        hex::encode_upper(sha1),
        hex::encode_upper(sha256),
        b64.encode(sha1),
        b64.encode(sha256),
    ] {
        assert!(out.contains(&want), "{want} missing:\n{out}");
    }
}

fn non_loopback_admin_needs_a_token(io: &str) {
    let pki = TestPki::new();
    let mut v = pki.tls_vars();
    v.push((
        "CERTGATE_BACKEND",
        format!("http://127.0.0.1:{}", unused_port()),
    ));
    v.push(("CERTGATE_ADMIN_LISTEN", "0.0.0.0:0".to_string()));
    let (status, stderr) = Engine::start_expect_failure(&v, io);
    assert!(!status.success());
    assert!(
        stderr.contains("CERTGATE_ADMIN_TOKEN") && stderr.contains("loopback"),
        "{stderr}"
    );
}

io_tests!(
    store_lifecycle_survives_restart,
    directory_source_and_cli,
    non_loopback_admin_needs_a_token
);
