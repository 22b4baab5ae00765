//! Misconfiguration fails start-up with a non-zero exit and a stderr message naming the variable or file: unknown CERTGATE_* variable, missing certificate file, key not matching the certificate, unparsable listen address.

mod support;

use support::pki::path_str;
use support::*;

fn base(pki: &TestPki) -> Vec<(&'static str, String)> {
    let mut v = pki.tls_vars();
    v.push((
        "CERTGATE_BACKEND",
        format!("http://127.0.0.1:{}", unused_port()),
    ));
    v
}

fn with(
    mut v: Vec<(&'static str, String)>,
    k: &'static str,
    val: String,
) -> Vec<(&'static str, String)> {
    v.retain(|(n, _)| *n != k);
    v.push((k, val));
    v
}

#[track_caller]
fn expect_failure(io: &str, vars: &[(&str, String)], what: &str, must_name: &[&str]) -> String {
    let (status, stderr) = Engine::start_expect_failure(vars, io);
    assert!(
        !status.success(),
        "{what}: start-up must fail, exited {status}; stderr:\n{stderr}"
    );
    for n in must_name {
        assert!(
            stderr.contains(n),
            "{what}: stderr must name {n:?}:\n{stderr}"
        );
    }
    stderr
}

fn unknown_variable(io: &str) {
    let pki = TestPki::new();
    let vars = with(base(&pki), "CERTGATE_LISTN", "127.0.0.1:0".into());
    expect_failure(io, &vars, "unknown variable", &["CERTGATE_LISTN"]);
}

fn missing_cert_file(io: &str) {
    let pki = TestPki::new();
    let missing = path_str(&pki.path("does-not-exist.pem"));
    let vars = with(base(&pki), "CERTGATE_TLS_CERT", missing.clone());
    expect_failure(io, &vars, "missing certificate file", &[&missing]);
}

fn key_not_matching(io: &str) {
    let pki = TestPki::new();
    let wrong_key = path_str(&pki.client_ok.key);
    let vars = with(base(&pki), "CERTGATE_TLS_KEY", wrong_key.clone());
    let stderr = expect_failure(io, &vars, "key does not match the certificate", &[]);
    assert!(
        stderr.contains("CERTGATE_TLS_KEY") || stderr.contains(&wrong_key),
        "stderr must name CERTGATE_TLS_KEY or the key file:\n{stderr}"
    );
    assert!(
        contains_ci(&stderr, "match"),
        "stderr must say the key does not match:\n{stderr}"
    );
}

fn bad_listen_address(io: &str) {
    let pki = TestPki::new();
    let vars = with(base(&pki), "CERTGATE_LISTEN", "nonsense".into());
    expect_failure(
        io,
        &vars,
        "bad listen address",
        &["CERTGATE_LISTEN", "nonsense"],
    );
}

io_tests!(
    unknown_variable,
    missing_cert_file,
    key_not_matching,
    bad_listen_address
);
