//! `certgate check-config`: exit 0 and the effective configuration for a good
//! file; exit 2 and errors naming file, line and key for a bad one.

use std::path::PathBuf;
use std::process::Command;

use certgate::tls::pki::{issue, self_signed, CertSpec, Usage};

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    let dir = std::env::temp_dir().join(format!("certgate-check-config-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

fn check_config(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certgate"));
    cmd.arg("check-config").args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CERTGATE_")) {
        cmd.env_remove(k);
    }
    cmd.env("HOME", "/nonexistent").env_remove("XDG_STATE_HOME");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run certgate check-config");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn good_and_bad_files() {
    let dir = temp_dir();
    let ca = self_signed(&CertSpec::new("Check CA", Usage::Ca)).unwrap();
    let server = issue(&CertSpec::new("api.example.com", Usage::Server), &ca).unwrap();
    server
        .write_pem(&dir.0.join("api.pem"), &dir.0.join("api.key"))
        .unwrap();
    std::fs::write(dir.0.join("ca.pem"), ca.cert_pem()).unwrap();
    let path = dir.0.join("certgate.toml");
    let good = format!(
        "[defaults]\nclient-ca = \"{ca}\"\nbackend = \"http://127.0.0.1:9\"\n\
         tls-cert = \"{cert}\"\ntls-key = \"{key}\"\n\n\
         [policies.admins]\nidentities = [{{ common-name = \"ops\" }}]\n\n\
         [[hosts]]\nnames = [\"api.example.com\"]\ncert = \"api.pem\"\nkey = \"api.key\"\n\
         client-cert = \"require\"\n\n[[hosts.routes]]\nprefix = \"/admin\"\npolicy = \"admins\"\n",
        ca = dir.0.join("ca.pem").display(),
        cert = dir.0.join("api.pem").display(),
        key = dir.0.join("api.key").display(),
    );
    std::fs::write(&path, &good).unwrap();

    let (code, stdout, stderr) = check_config(&[path.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("client-cert = \"require\""), "{stdout}");
    assert!(
        stdout.contains("workers = \"(CPUs available)\"  # default"),
        "{stdout}"
    );
    assert!(stdout.contains("validate-not-after = true"), "{stdout}");

    // The same file through CERTGATE_CONFIG, with an environment override.
    let (code, stdout, _) = check_config(
        &[],
        &[
            ("CERTGATE_CONFIG", path.to_str().unwrap()),
            ("CERTGATE_LISTEN", "127.0.0.1:9443"),
        ],
    );
    assert_eq!(code, 0);
    assert!(
        stdout.contains("listen = \"127.0.0.1:9443\"  # environment"),
        "{stdout}"
    );

    std::fs::write(
        &path,
        good.replace("policy = \"admins\"", "policy = \"admin\""),
    )
    .unwrap();
    let (code, stdout, stderr) = check_config(&[path.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    let expected = format!(
        "error: {}:18: hosts[0].routes[0].policy: unknown policy \"admin\"",
        path.display()
    );
    assert!(stderr.contains(&expected), "{expected}\nnot in:\n{stderr}");
    assert!(stdout.is_empty(), "{stdout}");

    let (code, _, stderr) = check_config(&[], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("CERTGATE_CONFIG is not set"), "{stderr}");
}
