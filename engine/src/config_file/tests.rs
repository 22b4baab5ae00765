//! Tests of the configuration file: shape, located errors, defaults, check-config.

use std::path::Path;

use super::*;

const GOOD: &str = r#"# certgate test configuration
[defaults]
listen = "127.0.0.1:8443"
client_cert = "request"
workers = 2
cpu-pin = false

[policies.partners]
ignore-error = false
identities = [
  { thumbprint = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01" },
  { dns-name = "api.partner.example", issuer-subject = "CN=Partner CA" },
]

[policies.admins]
identities = [{ subject = "CN=root,O=Example" }]

[[hosts]]
names = ["api.example.com", "*.api.example.com"]
cert = "certs/api.pem"
key = "/etc/certgate/api.key"
client-cert = "require"
backend = "http://127.0.0.1:8080"
policy = "partners"

[[hosts.routes]]
prefix = "/admin"
policy = "admins"

[[hosts]]
names = ["Other.Example.com."]
default = true
certificate = "other-2026"
"#;

fn parse(text: &str) -> Result<FileConfig, FileError> {
    FileConfig::parse(Path::new("/etc/certgate/certgate.toml"), text)
}

fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected errors in:\n{text}"),
        Err(e) => e.problems().iter().map(ToString::to_string).collect(),
    }
}

fn one_problem(text: &str) -> String {
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:?}");
    p[0].clone()
}

#[test]
fn a_full_file_resolves() {
    let f = parse(GOOD).unwrap();
    assert_eq!(
        f.default_var("CERTGATE_LISTEN").as_deref(),
        Some("127.0.0.1:8443")
    );
    assert_eq!(
        f.default_var("CERTGATE_CLIENT_CERT").as_deref(),
        Some("request")
    );
    assert_eq!(f.default_var("CERTGATE_WORKERS").as_deref(), Some("2"));
    assert_eq!(f.default_var("CERTGATE_CPU_PIN").as_deref(), Some("0"));
    assert_eq!(f.defaults["CERTGATE_LISTEN"].line, 3);
    assert_eq!(f.default_var("CERTGATE_BACKEND"), None);

    assert_eq!(f.policies.len(), 2);
    let partners = &f.policies["partners"];
    assert_eq!(partners.line, 8);
    assert_eq!(partners.identity_lines, vec![11, 12]);
    assert_eq!(partners.spec.identities.len(), 2);

    assert_eq!(f.hosts.len(), 2);
    let api = &f.hosts[0];
    assert_eq!(api.line, 18);
    assert_eq!(api.names, vec!["api.example.com", "*.api.example.com"]);
    assert!(!api.default);
    assert_eq!(
        api.cert,
        CertSource::Files {
            cert: "/etc/certgate/certs/api.pem".into(),
            key: "/etc/certgate/api.key".into()
        }
    );
    assert_eq!(api.client_cert, Some(ClientCertMode::Require));
    assert!(matches!(api.backend, Some(Backend::Http { addr, .. }) if addr.port() == 8080));
    assert_eq!(api.policy.as_deref(), Some("partners"));
    assert_eq!(api.routes.len(), 1);
    assert_eq!(api.routes[0].line, 26);
    let other = &f.hosts[1];
    assert!(other.default);
    assert_eq!(other.names, vec!["other.example.com"]);
    assert_eq!(other.cert, CertSource::Store("other-2026".into()));
    assert_eq!(other.client_cert, None);
    assert_eq!(f.default_host(), Some(1));

    let m = f.host_matcher().unwrap();
    assert_eq!(m.select(Some("v1.api.example.com")), 0);
    assert_eq!(m.select(None), 1);
    let routes = api.route_table();
    assert_eq!(routes.route("/admin/x").as_deref(), Some("admins"));
    assert_eq!(routes.route("/adminx").as_deref(), Some("partners"));
    assert_eq!(f.hosts[1].route_table().route("/admin"), &None);

    let compiled = f.compile_policies(&|_| None).unwrap();
    assert_eq!(compiled["partners"].identity_count(), 2);
}

#[test]
fn first_host_is_default_when_none_is_marked() {
    let f = parse("[[hosts]]\nnames = [\"a.test\"]\n[[hosts]]\nnames = [\"b.test\"]\n").unwrap();
    assert!(f.hosts[0].default && !f.hosts[1].default);
    assert_eq!(f.hosts[0].cert, CertSource::Global);
    assert_eq!(f.hosts[0].policy, None);
}

#[test]
fn syntax_errors_name_the_line() {
    let e = one_problem("[defaults]\nlisten = \"a\"\nworkers = = 2\n");
    assert!(e.starts_with("/etc/certgate/certgate.toml:3: "), "{e}");
}

#[test]
fn unknown_keys_and_wrong_types_name_line_and_key() {
    let text = GOOD.replace("prefix = \"/admin\"", "prefix = \"/admin\"\nbogus = 1");
    let e = one_problem(&text);
    assert!(
        e.starts_with(
            "/etc/certgate/certgate.toml:28: hosts[0].routes[0].bogus: unknown field `bogus`"
        ),
        "{e}"
    );

    let text = GOOD.replace("client-cert = \"require\"", "client-cert = 3");
    let e = one_problem(&text);
    assert!(
        e.starts_with("/etc/certgate/certgate.toml:22: hosts[0].client-cert: invalid type"),
        "{e}"
    );

    let text = GOOD.replace(
        "{ dns-name = \"api.partner.example\"",
        "{ dns-nam = \"api.partner.example\"",
    );
    let e = one_problem(&text);
    assert!(
        e.starts_with("/etc/certgate/certgate.toml:12: policies.partners.identities[1]"),
        "{e}"
    );

    let e = one_problem("[server]\nx = 1\n");
    assert!(
        e.starts_with("/etc/certgate/certgate.toml:1: server: unknown field `server`"),
        "{e}"
    );

    let e = one_problem("[[hosts]]\ndefault = true\n");
    assert!(e.contains(":1: hosts[0]: missing field `names`"), "{e}");
}

#[test]
fn semantic_errors_name_line_and_key() {
    let cases: Vec<(String, &str)> = vec![
        (
            GOOD.replace("policy = \"admins\"", "policy = \"admin\""),
            ":28: hosts[0].routes[0].policy: unknown policy \"admin\"",
        ),
        (
            GOOD.replace("policy = \"partners\"", "policy = \"partner\""),
            ":24: hosts[0].policy: unknown policy \"partner\"",
        ),
        (
            GOOD.replace(
                "names = [\"Other.Example.com.\"]",
                "names = [\"API.example.com\"]",
            ),
            ":31: hosts[1].names[0]: duplicate host name \"api.example.com\" (already on line 19)",
        ),
        (
            GOOD.replace(
                "cert = \"certs/api.pem\"",
                "cert = \"certs/api.pem\"\ndefault = true",
            ),
            ":33: hosts[1].default: two default hosts: hosts[0] (line 18)",
        ),
        (
            GOOD.replace("\"require\"", "\"required\""),
            ":22: hosts[0].client-cert: bad mode \"required\"",
        ),
        (
            GOOD.replace("{ subject = \"CN=root,O=Example\" }", "{ }"),
            ":16: policies.admins.identities[0]: an identity needs at least one attribute",
        ),
        (
            GOOD.replace(
                "{ subject = \"CN=root,O=Example\" }",
                "{ subject = \"XX=root\" }",
            ),
            ":16: policies.admins.identities[0].subject: unknown attribute type",
        ),
        (
            GOOD.replace("AB:CD:EF:01", "AB:CD:EF:0"),
            ":11: policies.partners.identities[0].thumbprint: ",
        ),
        (
            GOOD.replace("listen = ", "lisen = "),
            ":3: defaults.lisen: unknown setting (no variable CERTGATE_LISEN",
        ),
        (
            GOOD.replace("workers = 2", "client-cert = \"off\""),
            ":4: defaults.client_cert: CERTGATE_CLIENT_CERT is already set on line 5",
        ),
        (
            GOOD.replace(
                "certificate = \"other-2026\"",
                "certificate = \"x\"\ncert = \"a.pem\"\nkey = \"a.key\"",
            ),
            ":33: hosts[1].certificate: give either cert + key files or a store certificate",
        ),
        (
            GOOD.replace("key = \"/etc/certgate/api.key\"\n", ""),
            ":20: hosts[0].cert: cert is set but key is not",
        ),
        (
            GOOD.replace("prefix = \"/admin\"", "prefix = \"admin\""),
            ":27: hosts[0].routes[0].prefix: \"admin\": a prefix starts with '/'",
        ),
        (
            GOOD.replace(
                "names = [\"Other.Example.com.\"]",
                "names = [\"a.*.example.com\"]",
            ),
            ":31: hosts[1].names[0]: \"a.*.example.com\" is not a valid host name",
        ),
        (
            GOOD.replace("\"http://127.0.0.1:8080\"", "\"https://127.0.0.1:8080\""),
            ":23: hosts[0].backend: \"https://127.0.0.1:8080\": ",
        ),
    ];
    for (text, expected) in cases {
        let e = one_problem(&text);
        assert!(e.starts_with("/etc/certgate/certgate.toml:"), "{e}");
        assert!(e.contains(expected), "expected {expected:?} in {e:?}");
    }
}

#[test]
fn duplicate_route_prefixes_and_several_problems_at_once() {
    let text = GOOD.replace(
        "[[hosts.routes]]\nprefix = \"/admin\"\npolicy = \"admins\"\n",
        "[[hosts.routes]]\nprefix = \"/admin\"\npolicy = \"admins\"\n[[hosts.routes]]\nprefix = \"/admin/\"\npolicy = \"nope\"\n",
    );
    let p = problems(&text);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].contains(":30: hosts[0].routes[1].prefix: \"/admin/\" is the same prefix as the route on line 26"), "{p:?}");
    assert!(
        p[1].contains(":31: hosts[0].routes[1].policy: unknown policy \"nope\""),
        "{p:?}"
    );
}

#[test]
fn unknown_certificate_ids_are_located_when_compiling() {
    let text = GOOD.replace(
        "{ subject = \"CN=root,O=Example\" }",
        "{ certificate-id = \"root-2026\" }",
    );
    let f = parse(&text).unwrap();
    let e = f.compile_policies(&|_| None).unwrap_err().to_string();
    assert_eq!(
        e,
        "/etc/certgate/certgate.toml:16: policies.admins.identities[0].certificate-id: unknown certificate id \"root-2026\""
    );
    assert!(f
        .compile_policies(&|id| (id == "root-2026").then_some([1; 32]))
        .is_ok());
}

#[test]
fn read_error_names_the_file() {
    let e = FileConfig::load(Path::new("/nonexistent/certgate.toml")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/certgate.toml"), "{e}");
}

// === Config::from_vars with a file, and check-config ===

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "certgate-config-file-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn environment_overrides_file_defaults() {
    let dir = TempDir::new("env");
    let path = dir.0.join("certgate.toml");
    std::fs::write(
        &path,
        "[defaults]\nlisten = \"127.0.0.1:9443\"\nworkers = 3\n",
    )
    .unwrap();
    let vars = |extra: &[(&str, &str)]| {
        let mut v = vec![(
            crate::config::CONFIG.to_string(),
            path.display().to_string(),
        )];
        v.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        crate::config::Config::from_vars(v)
    };
    let c = vars(&[]).unwrap();
    assert_eq!(c.listen.port(), 9443);
    assert_eq!(c.workers, 3);
    assert!(c.file.is_some());
    let c = vars(&[("CERTGATE_LISTEN", "127.0.0.1:7443")]).unwrap();
    assert_eq!(c.listen.port(), 7443);
    assert_eq!(c.workers, 3);
    // Set but empty counts as unset, as everywhere in certgate.
    let c = vars(&[("CERTGATE_WORKERS", "")]).unwrap();
    assert_eq!(c.workers, 3);

    std::fs::write(&path, "[defaults]\nworkers = 0\n").unwrap();
    let e = vars(&[]).unwrap_err().to_string();
    assert!(e.contains("CERTGATE_WORKERS"), "{e}");
    std::fs::write(&path, "[defaults]\nworkers = \n").unwrap();
    let e = vars(&[]).unwrap_err().to_string();
    assert!(e.contains("certgate.toml:2"), "{e}");
}

#[test]
fn check_reports_files_keys_and_store_ids() {
    use crate::tls::pki::{issue, self_signed, CertSpec, Usage};
    let dir = TempDir::new("check");
    let ca = self_signed(&CertSpec::new("Test CA", Usage::Ca)).unwrap();
    let server = issue(&CertSpec::new("api.example.com", Usage::Server), &ca).unwrap();
    let other = issue(&CertSpec::new("other", Usage::Server), &ca).unwrap();
    server
        .write_pem(&dir.0.join("api.pem"), &dir.0.join("api.key"))
        .unwrap();
    other
        .write_pem(&dir.0.join("other.pem"), &dir.0.join("other.key"))
        .unwrap();
    std::fs::write(dir.0.join("ca.pem"), ca.cert_pem()).unwrap();
    let state = dir.0.join("state");
    std::fs::create_dir_all(state.join("store/certificates")).unwrap();
    std::fs::write(state.join("store/certificates/known.pem"), ca.cert_pem()).unwrap();

    let path = dir.0.join("certgate.toml");
    let write = |hosts: &str| {
        std::fs::write(
            &path,
            format!(
                "[defaults]\nclient-ca = \"{}\"\nbackend = \"http://127.0.0.1:9\"\nstate-dir = \"{}\"\ntls-cert = \"{}\"\ntls-key = \"{}\"\n\n\
                 [policies.p]\nidentities = [{{ certificate-id = \"known\" }}, {{ serial-number = \"0x00ab\" }}]\n\n{hosts}",
                dir.0.join("ca.pem").display(),
                state.display(),
                dir.0.join("api.pem").display(),
                dir.0.join("api.key").display(),
            ),
        )
        .unwrap();
    };
    let env = || vec![("HOME".to_string(), "/nonexistent".to_string())];

    write("[[hosts]]\nnames = [\"api.example.com\"]\ncert = \"api.pem\"\nkey = \"api.key\"\npolicy = \"p\"\n");
    let r = check::check(&path, env());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    for expected in [
        "listen = \"0.0.0.0:8443\"  # default",
        "backend = \"http://127.0.0.1:9\"  # file, line 3",
        "validate-revocation = true",
        "{ certificate-id = \"known\" },",
        "{ serial-number = \"AB\" },",
        "client-cert = \"request\"  # CERTGATE_CLIENT_CERT",
        "policy = \"p\"",
    ] {
        assert!(
            r.effective.contains(expected),
            "{expected:?} not in\n{}",
            r.effective
        );
    }
    let r = check::check(
        &path,
        vec![("CERTGATE_LISTEN".into(), "127.0.0.1:1".into())],
    );
    assert!(
        r.effective
            .contains("listen = \"127.0.0.1:1\"  # environment"),
        "{}",
        r.effective
    );

    write("[[hosts]]\nnames = [\"api.example.com\"]\ncert = \"api.pem\"\nkey = \"other.key\"\n");
    let r = check::check(&path, env());
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert!(
        r.problems[0].contains(":11: hosts[0].key: ")
            && r.problems[0].contains("is not the private key"),
        "{:?}",
        r.problems
    );

    write("[[hosts]]\nnames = [\"api.example.com\"]\ncert = \"missing.pem\"\nkey = \"api.key\"\n");
    let r = check::check(&path, env());
    assert!(
        r.problems[0].contains(":11: hosts[0].cert: ") && r.problems[0].contains("missing.pem"),
        "{:?}",
        r.problems
    );

    write("[[hosts]]\nnames = [\"api.example.com\"]\ncertificate = \"unknown\"\n");
    std::fs::write(
        &path,
        std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"known\"", "\"gone\""),
    )
    .unwrap();
    let r = check::check(&path, env());
    assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
    assert!(
        r.problems.iter().any(|p| p.contains(
            ":9: policies.p.identities[0].certificate-id: unknown certificate id \"gone\""
        )),
        "{:?}",
        r.problems
    );
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains("hosts[0].certificate: unknown certificate id \"unknown\"")),
        "{:?}",
        r.problems
    );

    // Without a store directory, ids are not checked: a warning, not an error.
    std::fs::remove_dir_all(&state).unwrap();
    let r = check::check(&path, env());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("gone") && w.contains("unknown")),
        "{:?}",
        r.warnings
    );

    // A bad default is located in the file.
    std::fs::write(&path, "[defaults]\nworkers = 0\n").unwrap();
    let r = check::check(&path, env());
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert!(
        r.problems[0].contains("certgate.toml:2: defaults.workers: CERTGATE_WORKERS"),
        "{:?}",
        r.problems
    );
}
