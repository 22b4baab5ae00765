//! The `certgate cert add|list|delete` and `certgate thumbprint` commands (admin API client, blocking std I/O).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{ADMIN_LISTEN, ADMIN_TOKEN, CERT_PASSWORD};
use crate::tls::certfile;

/// The usage text of the subcommands.
pub const USAGE: &str = "\
USAGE:
    certgate cert add [--ca] ID FILE [--password P] [--admin HOST:PORT]
    certgate cert list [--ca] [--admin HOST:PORT]
    certgate cert delete [--ca] ID [--admin HOST:PORT]
    certgate thumbprint FILE [--password P]

FILE is PEM (certificate, chain, optional key), DER/CER, or PKCS#12/PFX (password from
--password or CERTGATE_CERT_PASSWORD). --ca works on the trusted CA certificates.
The admin address is --admin, else CERTGATE_ADMIN_LISTEN (default 127.0.0.1:9901);
the bearer token comes from CERTGATE_ADMIN_TOKEN.
";

/// A failed command: the message printed, and whether it was a usage error (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Wrong arguments.
    #[error("{0}\n\n{USAGE}")]
    Usage(String),
    /// The command ran and failed.
    #[error("{0}")]
    Failed(String),
}

struct Args {
    ca: bool,
    password: Option<String>,
    admin: Option<String>,
    positional: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Args, CliError> {
    let mut a = Args {
        ca: false,
        password: None,
        admin: None,
        positional: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| CliError::Usage(format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--ca" => a.ca = true,
            "--password" => a.password = Some(value("--password")?),
            "--admin" => a.admin = Some(value("--admin")?),
            s if s.starts_with("--") => return Err(CliError::Usage(format!("unknown option {s}"))),
            _ => a.positional.push(arg.clone()),
        }
    }
    if a.password.is_none() {
        a.password = std::env::var(CERT_PASSWORD).ok().filter(|p| !p.is_empty());
    }
    Ok(a)
}

/// Runs `certgate <args>` for `cert …` and `thumbprint …`; prints results and errors.
pub fn run(args: &[String]) -> ExitCode {
    let result = match args.first().map(String::as_str) {
        Some("thumbprint") => parse_args(&args[1..]).and_then(|a| thumbprint(&a)),
        Some("cert") => match args.get(1).map(String::as_str) {
            Some(sub @ ("add" | "list" | "delete")) => {
                parse_args(&args[2..]).and_then(|a| cert(sub, &a))
            }
            Some(other) => Err(CliError::Usage(format!("unknown command: cert {other}"))),
            None => Err(CliError::Usage("cert: add, list or delete?".into())),
        },
        _ => Err(CliError::Usage("unknown command".into())),
    };
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e @ CliError::Usage(_)) => {
            eprintln!("certgate: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("certgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_file(path: &str) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::Failed(format!("{path}: cannot read: {e}")))
}

/// The text `certgate thumbprint FILE` prints.
pub fn thumbprint_of(path: &Path, password: Option<&str>) -> Result<String, CliError> {
    let display = path.display().to_string();
    let bytes = read_file(&display)?;
    let m = certfile::parse(&bytes, password)
        .map_err(|e| CliError::Failed(format!("{display}: {e}")))?;
    Ok(certfile::thumbprint_report(&m.meta))
}

fn thumbprint(a: &Args) -> Result<String, CliError> {
    match a.positional.as_slice() {
        [file] => thumbprint_of(Path::new(file), a.password.as_deref()),
        _ => Err(CliError::Usage("thumbprint takes one FILE".into())),
    }
}

fn cert(sub: &str, a: &Args) -> Result<String, CliError> {
    let ns = if a.ca {
        "ca-certificates"
    } else {
        "certificates"
    };
    let admin = admin_addr(a.admin.as_deref())?;
    match (sub, a.positional.as_slice()) {
        ("add", [id, file]) => {
            let body = read_file(file)?;
            let (status, v) = request(
                admin,
                "PUT",
                &format!("/{ns}/{id}"),
                &body,
                a.password.as_deref(),
            )?;
            let verb = if status == 201 { "added" } else { "replaced" };
            Ok(format!(
                "{verb} {ns}/{id}\n{}",
                table(std::slice::from_ref(&v))
            ))
        }
        ("list", []) => {
            let (_, v) = request(admin, "GET", &format!("/{ns}"), b"", None)?;
            Ok(table(v.as_array().map(Vec::as_slice).unwrap_or(&[])))
        }
        ("delete", [id]) => {
            request(admin, "DELETE", &format!("/{ns}/{id}"), b"", None)?;
            Ok(format!("deleted {ns}/{id}\n"))
        }
        ("add", _) => Err(CliError::Usage("cert add takes ID FILE".into())),
        ("delete", _) => Err(CliError::Usage("cert delete takes ID".into())),
        _ => Err(CliError::Usage("cert list takes no arguments".into())),
    }
}

fn admin_addr(flag: Option<&str>) -> Result<SocketAddr, CliError> {
    let configured = flag
        .map(str::to_string)
        .or_else(|| std::env::var(ADMIN_LISTEN).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "127.0.0.1:9901".into());
    let mut addr = configured
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            CliError::Failed(format!("admin address {configured:?}: expected HOST:PORT"))
        })?;
    // A wildcard listen address is reached on loopback.
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(addr)
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    password: Option<&str>,
) -> Result<(u16, serde_json::Value), CliError> {
    let fail = |what: &str, e: std::io::Error| {
        CliError::Failed(format!("admin API at {addr}: {what}: {e}"))
    };
    let mut sock = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| fail("cannot connect", e))?;
    let timeout = Some(Duration::from_secs(30));
    sock.set_read_timeout(timeout)
        .map_err(|e| fail("socket", e))?;
    sock.set_write_timeout(timeout)
        .map_err(|e| fail("socket", e))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = std::env::var(ADMIN_TOKEN).ok().filter(|t| !t.is_empty()) {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(p) = password {
        if p.contains(['\r', '\n']) {
            return Err(CliError::Failed(
                "the password cannot contain line breaks".into(),
            ));
        }
        head.push_str(&format!("X-Certificate-Password: {p}\r\n"));
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes())
        .and_then(|()| sock.write_all(body))
        .map_err(|e| fail("cannot send", e))?;
    let mut response = Vec::new();
    sock.read_to_end(&mut response)
        .map_err(|e| fail("cannot read the response", e))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| CliError::Failed(format!("admin API at {addr}: not an HTTP response")))?;
    let value: serde_json::Value = if body.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(body)
            .unwrap_or_else(|_| serde_json::Value::String(body.trim().to_string()))
    };
    if (200..300).contains(&status) {
        Ok((status, value))
    } else {
        let msg = value["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        Err(CliError::Failed(format!(
            "{method} {path}: {status}: {msg}"
        )))
    }
}

/// A readable table of certificate entries.
fn table(entries: &[serde_json::Value]) -> String {
    let headers = [
        "ID",
        "SUBJECT",
        "SHA-1",
        "NOT AFTER",
        "KEY",
        "SOURCE",
        "USED BY",
    ];
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
            let used: Vec<&str> = e["used_by"]
                .as_array()
                .map(|a| a.iter().filter_map(|u| u.as_str()).collect())
                .unwrap_or_default();
            [
                s("id"),
                s("subject"),
                s("sha1"),
                s("not_after"),
                if e["has_private_key"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                }
                .into(),
                s("source"),
                if used.is_empty() {
                    "-".into()
                } else {
                    used.join(", ")
                },
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&headers);
    for r in &rows {
        line(&r.each_ref().map(String::as_str));
    }
    if rows.is_empty() {
        out.push_str("(none)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::pki::{self, CertSpec, Usage};
    use base64::Engine as _;

    #[test]
    fn thumbprint_matches_independent_digests_for_pem_der_and_pfx() {
        let dir = crate::store::tests::temp_dir("cli-thumb");
        let c = pki::self_signed(&CertSpec::new("thumb", Usage::Client)).unwrap();
        let der = c.cert.to_der().unwrap();
        let sha1 = boring::hash::hash(boring::hash::MessageDigest::sha1(), &der).unwrap();
        let sha256 = boring::hash::hash(boring::hash::MessageDigest::sha256(), &der).unwrap();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        std::fs::write(dir.join("c.pem"), c.cert_pem()).unwrap();
        std::fs::write(dir.join("c.cer"), &der).unwrap();
        let pfx = boring::pkcs12::Pkcs12::builder()
            .build("pw", "c", &c.key, &c.cert)
            .unwrap();
        std::fs::write(dir.join("c.pfx"), pfx.to_der().unwrap()).unwrap();
        for (file, pw) in [("c.pem", None), ("c.cer", None), ("c.pfx", Some("pw"))] {
            let out = thumbprint_of(&dir.join(file), pw).unwrap();
            for want in [
                hex::encode_upper(sha1),
                hex::encode_upper(sha256),
                b64(&sha1),
                b64(&sha256),
            ] {
                assert!(out.contains(&want), "{file}: {want} missing from\n{out}");
            }
        }
        let e = thumbprint_of(&dir.join("c.pfx"), Some("nope")).unwrap_err();
        assert!(
            e.to_string().contains("wrong password") && e.to_string().contains("c.pfx"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn arguments_and_table() {
        let a = parse_args(&["--ca".into(), "x".into(), "--password".into(), "p".into()]).unwrap();
        assert!(a.ca && a.password.as_deref() == Some("p") && a.positional == ["x"]);
        assert!(matches!(
            parse_args(&["--bogus".into()]),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            parse_args(&["--admin".into()]),
            Err(CliError::Usage(_))
        ));
        assert_eq!(
            admin_addr(Some("0.0.0.0:9")).unwrap().to_string(),
            "127.0.0.1:9"
        );
        let t = table(&[serde_json::json!({
            "id": "a", "subject": "CN=a", "sha1": "AB", "not_after": "2030-01-01T00:00:00Z",
            "has_private_key": true, "source": "api", "used_by": ["host x"]
        })]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("ID") && lines[1].starts_with("a "),
            "{t}"
        );
        assert!(
            lines[1].contains("yes") && lines[1].ends_with("host x"),
            "{t}"
        );
        assert_eq!(table(&[]).lines().nth(1), Some("(none)"));
    }
}
