//! Thumbprint allowlist (CERTGATE_THUMBPRINTS): an entry in any spelling (SHA-1 upper hex, lower hex with colons, hex with spaces, SHA-256 hex, base64url x5t and x5t#S256) admits the certificate, a valid certificate not listed gets 403; a bad line fails start-up naming the file and line.

mod support;

use base64::Engine as _;
use support::pki::path_str;
use support::*;

fn spellings(pki: &TestPki) -> Vec<(&'static str, String)> {
    let a = &pki.client_ok;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let pairs = |h: &str, sep: &str| {
        h.as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap().to_string())
            .collect::<Vec<_>>()
            .join(sep)
    };
    vec![
        ("sha1-upper-hex", a.sha1_upper()),
        (
            "sha1-lower-hex-colons",
            pairs(&a.sha1_upper().to_ascii_lowercase(), ":"),
        ),
        ("sha1-upper-hex-spaces", pairs(&a.sha1_upper(), " ")),
        ("sha256-lower-hex", a.sha256_lower()),
        ("sha256-upper-hex-colons", pairs(&a.sha256_upper(), ":")),
        ("x5t-base64url-sha1", b64.encode(a.sha1_raw())),
        ("x5t#S256-base64url-sha256", b64.encode(a.sha256_raw())),
    ]
}

fn each_spelling_matches(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let a = client(&pki, Some(&pki.client_ok));
    let b = client(&pki, Some(&pki.client_b));
    for (name, entry) in spellings(&pki) {
        let file = pki.path(&format!("allow-{}.txt", name.replace('#', "_")));
        std::fs::write(&file, format!("# allowlist: {name}\n\n{entry}\n")).unwrap();
        let engine = start_engine(
            io,
            &pki,
            &backend.url(),
            &[
                ("CERTGATE_CLIENT_CERT", "request".into()),
                ("CERTGATE_THUMBPRINTS", path_str(&file)),
            ],
        );
        let before = backend.count();
        let r = must_get(&engine, &a, "/listed");
        assert_status(
            &r,
            200,
            &format!("listed certificate, spelling {name} ({entry})"),
        );
        let r = must_get(&engine, &b, "/unlisted");
        assert_status(
            &r,
            403,
            &format!("valid but unlisted certificate, spelling {name}"),
        );
        assert!(
            r.body_str().contains("Invalid client certificate"),
            "{:?}",
            r.body_str()
        );
        assert_eq!(
            backend.count(),
            before + 1,
            "only the listed request may reach the backend"
        );
    }
}

fn bad_line_fails_startup(io: &str) {
    let pki = TestPki::new();
    let file = pki.path("allow-bad.txt");
    std::fs::write(
        &file,
        format!(
            "# allowlist\n{}\n\n# another comment\n{}\n\nnot-a-thumbprint!!\n",
            pki.client_ok.sha1_upper(),
            pki.client_b.sha256_lower()
        ),
    )
    .unwrap();
    let mut vars = pki.tls_vars();
    vars.push((
        "CERTGATE_BACKEND",
        format!("http://127.0.0.1:{}", unused_port()),
    ));
    vars.push(("CERTGATE_THUMBPRINTS", path_str(&file)));
    let (status, stderr) = Engine::start_expect_failure(&vars, io);
    assert!(
        !status.success(),
        "bad allowlist line must fail start-up; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(&path_str(&file)),
        "stderr must name the allowlist file {}:\n{stderr}",
        file.display()
    );
    let names_line = ["line 7", ":7:", ":7 ", "line=7", "line: 7", "line 7:"]
        .iter()
        .any(|p| stderr.contains(p))
        || stderr.trim_end().ends_with(":7");
    assert!(
        names_line,
        "stderr must name line 7 of the allowlist:\n{stderr}"
    );
}

io_tests!(each_spelling_matches, bad_line_fails_startup);
