//! The admin JSON API: `/certificates`, `/ca-certificates`, `/crls`, and bearer-token checks.
//!
//! Pure request → response functions (no sockets), so every route is unit
//! tested with a test hook; [`super::server`] does the I/O. Errors are
//! `{"error": "..."}` with a message naming the thing.

use serde::Serialize;

use crate::store::{Kind, PutOutcome, Store, StoreEntry, StoreError};

/// Largest request body the admin listener reads (413 beyond).
pub const MAX_BODY: usize = 1024 * 1024;

/// Header carrying a PKCS#12/PFX upload's password.
pub const PASSWORD_HEADER: &str = "X-Certificate-Password";

/// One admin request, as the server read it.
#[derive(Debug)]
pub struct ApiRequest<'a> {
    /// Method.
    pub method: &'a str,
    /// Path without the query.
    pub path: &'a str,
    /// `X-Certificate-Password`, if sent.
    pub password: Option<&'a str>,
    /// The body (at most [`MAX_BODY`] bytes).
    pub body: &'a [u8],
}

/// An API answer: a status and a JSON body (empty for 204).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// JSON text.
    pub body: String,
}

impl ApiResponse {
    fn json(status: u16, value: &impl Serialize) -> ApiResponse {
        ApiResponse {
            status,
            body: serde_json::to_string_pretty(value)
                .map(|mut s| {
                    s.push('\n');
                    s
                })
                .unwrap_or_else(|e| format!("{{\"error\": \"cannot render JSON: {e}\"}}\n")),
        }
    }

    /// `{"error": message}` with `status`.
    pub fn error(status: u16, message: impl Into<String>) -> ApiResponse {
        #[derive(Serialize)]
        struct Error {
            error: String,
        }
        ApiResponse::json(
            status,
            &Error {
                error: message.into(),
            },
        )
    }
}

// === CRL reporting (implemented by the revocation code) ===

/// The state of one issuer's CRL, as `GET /crls` shows it.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct CrlReport {
    /// The issuer, RFC 4514.
    pub issuer: String,
    /// Where the CRL comes from: a file path or an `http://` URL.
    pub source: String,
    /// thisUpdate, RFC 3339 (absent until a CRL was obtained).
    pub this_update: Option<String>,
    /// nextUpdate, RFC 3339.
    pub next_update: Option<String>,
    /// Revoked serials in force.
    pub entries: u64,
    /// Last fetch attempt, RFC 3339.
    pub last_fetch: Option<String>,
    /// The last failure, if the last fetch failed.
    pub last_error: Option<String>,
}

/// What the admin API needs from the revocation code.
pub trait CrlAdmin: Send + Sync {
    /// Every CRL source's state.
    fn report(&self) -> Vec<CrlReport>;
    /// Refetch every CRL now (in the background is fine); `Err` names what could not be started.
    fn refresh(&self) -> Result<(), String>;
}

/// No revocation configured: an empty report, refresh does nothing.
#[derive(Debug, Default)]
pub struct NoCrls;

impl CrlAdmin for NoCrls {
    fn report(&self) -> Vec<CrlReport> {
        Vec::new()
    }
    fn refresh(&self) -> Result<(), String> {
        Ok(())
    }
}

// === Authentication ===

/// Whether a request may pass: no token configured, or `Authorization: Bearer <token>`
/// matching it (compared in constant time).
pub fn authorized(token: Option<&str>, authorization: Option<&[u8]>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let Some(given) = authorization.and_then(|h| {
        let (scheme, rest) = h.split_at(h.len().min(7));
        scheme
            .eq_ignore_ascii_case(b"bearer ")
            .then(|| rest.trim_ascii())
    }) else {
        return false;
    };
    constant_time_eq(given, token.as_bytes())
}

/// Compares without an early exit on the first differing byte; only the
/// length (not secret: tokens have a documented minimum) leaks through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

// === Routes ===

/// A store entry as the API shows it: its id, its metadata (subject, issuer,
/// thumbprints, serial, validity, key, CA flags), who uses it, where it came from.
#[derive(Debug, Serialize)]
pub struct CertView<'a> {
    /// Id.
    pub id: &'a str,
    /// What the certificate says.
    #[serde(flatten)]
    pub meta: &'a crate::tls::certfile::CertMeta,
    /// Policies, hosts and backends that use it.
    pub used_by: Vec<String>,
    /// `api` or `dir:<path>`.
    pub source: String,
}

impl<'a> CertView<'a> {
    fn new(e: &'a StoreEntry, used_by: Vec<String>) -> CertView<'a> {
        CertView {
            id: &e.id,
            meta: &e.material.meta,
            used_by,
            source: e.source.to_string(),
        }
    }
}

fn store_error(e: &StoreError) -> ApiResponse {
    ApiResponse::error(e.status(), e.to_string())
}

fn method_not_allowed(path: &str, allowed: &str) -> ApiResponse {
    ApiResponse::error(405, format!("{path}: method not allowed (use {allowed})"))
}

/// Answers a store or CRL request; `None` when `req.path` is not one of them.
pub fn handle(
    store: Option<&Store>,
    crls: &dyn CrlAdmin,
    req: &ApiRequest<'_>,
) -> Option<ApiResponse> {
    let path = req.path;
    if path == "/crls" {
        return Some(match req.method {
            "GET" => ApiResponse::json(200, &crls.report()),
            _ => method_not_allowed(path, "GET"),
        });
    }
    if path == "/crls/refresh" {
        return Some(match req.method {
            "POST" => match crls.refresh() {
                Ok(()) => ApiResponse::json(200, &crls.report()),
                Err(e) => ApiResponse::error(500, format!("CRL refresh failed: {e}")),
            },
            _ => method_not_allowed(path, "POST"),
        });
    }
    let (kind, rest) = [Kind::Certificate, Kind::Ca].into_iter().find_map(|k| {
        let rest = path.strip_prefix('/')?.strip_prefix(k.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then_some((k, rest))
    })?;
    let Some(store) = store else {
        return Some(ApiResponse::error(
            503,
            "the certificate store is not available",
        ));
    };
    let id = rest.strip_prefix('/').unwrap_or("");
    if id.is_empty() {
        return Some(match req.method {
            "GET" => {
                let contents = store.contents();
                let list: Vec<CertView<'_>> = contents
                    .map(kind)
                    .values()
                    .map(|e| CertView::new(e, store.users(kind, &e.id)))
                    .collect();
                ApiResponse::json(200, &list)
            }
            _ => method_not_allowed(path, "GET"),
        });
    }
    let id = match percent_decode(id) {
        Some(id) => id,
        None => return Some(store_error(&StoreError::InvalidId(id.to_string()))),
    };
    if let Err(e) = crate::store::check_id(&id) {
        return Some(store_error(&e));
    }
    let view = |status: u16| match store.contents().get(kind, &id) {
        Some(e) => ApiResponse::json(status, &CertView::new(e, store.users(kind, &id))),
        None => store_error(&StoreError::NotFound {
            kind,
            id: id.clone(),
        }),
    };
    Some(match req.method {
        "GET" => view(200),
        "PUT" => match store.put(kind, &id, req.body, req.password) {
            Ok(PutOutcome::Created) => view(201),
            Ok(PutOutcome::Replaced) => view(200),
            Err(e) => store_error(&e),
        },
        "DELETE" => match store.delete(kind, &id) {
            Ok(()) => ApiResponse {
                status: 204,
                body: String::new(),
            },
            Err(e) => store_error(&e),
        },
        _ => method_not_allowed(path, "GET, PUT or DELETE"),
    })
}

/// `%XX` decoding of a path segment; `None` for a bad escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{leaf, temp_dir};
    use crate::store::RecordingHook;
    use crate::tls::pki::{self, CertSpec, Usage};
    use std::sync::{Arc, Mutex};

    fn req<'a>(
        method: &'a str,
        path: &'a str,
        body: &'a [u8],
        password: Option<&'a str>,
    ) -> ApiRequest<'a> {
        ApiRequest {
            method,
            path,
            password,
            body,
        }
    }

    fn call(
        store: &Store,
        method: &str,
        path: &str,
        body: &[u8],
        password: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let r = handle(Some(store), &NoCrls, &req(method, path, body, password))
            .unwrap_or_else(|| panic!("{method} {path}: not routed"));
        let v = if r.body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&r.body)
                .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", r.body))
        };
        (r.status, v)
    }

    fn setup() -> (Arc<Store>, Arc<RecordingHook>, std::path::PathBuf) {
        let state = temp_dir("api");
        let hook = Arc::new(RecordingHook::default());
        let store = Store::open(Some(&state), hook.clone()).unwrap();
        (store, hook, state)
    }

    fn files_in(dir: &std::path::Path) -> usize {
        ["certificates", "ca-certificates"]
            .iter()
            .filter_map(|k| std::fs::read_dir(dir.join("store").join(k)).ok())
            .map(|rd| rd.count())
            .sum()
    }

    #[test]
    fn certificate_lifecycle_through_the_api() {
        let (store, hook, state) = setup();
        let ca = pki::self_signed(&CertSpec::new("api root", Usage::Ca)).unwrap();
        let client = pki::issue(&CertSpec::new("api client", Usage::Client), &ca).unwrap();
        let pfx = boring::pkcs12::Pkcs12::builder()
            .build("pw", "c", &client.key, &client.cert)
            .unwrap()
            .to_der()
            .unwrap();
        let (s, v) = call(&store, "PUT", "/certificates/client-1", &pfx, Some("pw"));
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["id"], "client-1");
        assert_eq!(v["has_private_key"], true);
        assert_eq!(v["source"], "api");
        let sha1 = hex::encode_upper(
            client
                .cert
                .digest(boring::hash::MessageDigest::sha1())
                .unwrap(),
        );
        assert_eq!(v["sha1"], sha1.as_str());
        let (s, _) = call(
            &store,
            "PUT",
            "/certificates/client-1",
            &client.cert_pem(),
            None,
        );
        assert_eq!(s, 200);
        let (s, v) = call(&store, "GET", "/certificates/client-1", b"", None);
        assert_eq!(
            (s, &v["has_private_key"]),
            (200, &serde_json::Value::Bool(false))
        );
        assert!(v["subject"].as_str().unwrap().contains("CN=api client"));
        assert!(v["issuer"].as_str().unwrap().contains("CN=api root"));
        let (s, v) = call(&store, "GET", "/certificates", b"", None);
        assert_eq!(s, 200);
        assert_eq!(v.as_array().unwrap().len(), 1);

        // CA namespace
        let (s, v) = call(&store, "PUT", "/ca-certificates/root", &ca.cert_pem(), None);
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["is_ca"], true);
        let (s, v) = call(
            &store,
            "PUT",
            "/ca-certificates/leaf",
            &client.cert_pem(),
            None,
        );
        assert_eq!(s, 400, "{v}");
        assert!(v["error"].as_str().unwrap().contains("neither a CA"), "{v}");

        // in use → 409 naming the user; then delete
        hook.users
            .lock()
            .unwrap()
            .insert((Kind::Ca, "root".into()), vec!["policy partners".into()]);
        let (s, v) = call(&store, "DELETE", "/ca-certificates/root", b"", None);
        assert_eq!(s, 409);
        assert!(
            v["error"].as_str().unwrap().contains("policy partners"),
            "{v}"
        );
        let (s, v) = call(&store, "GET", "/ca-certificates/root", b"", None);
        assert_eq!(v["used_by"][0], "policy partners", "{s} {v}");
        let (s, v) = call(&store, "DELETE", "/certificates/client-1", b"", None);
        assert_eq!((s, v), (204, serde_json::Value::Null));
        let (s, v) = call(&store, "DELETE", "/certificates/client-1", b"", None);
        assert_eq!(s, 404);
        assert!(v["error"].as_str().unwrap().contains("client-1"));
        let _ = std::fs::remove_dir_all(&state);
    }

    #[test]
    fn bad_uploads_are_400_and_store_nothing() {
        let (store, _, state) = setup();
        let c = leaf("api bad");
        let pfx = boring::pkcs12::Pkcs12::builder()
            .build("right", "c", &c.key, &c.cert)
            .unwrap()
            .to_der()
            .unwrap();
        let other = leaf("other");
        let mut mismatched = c.cert_pem();
        mismatched.extend_from_slice(&other.key_pem());
        for (what, body, pw, needle) in [
            (
                "wrong password",
                pfx.as_slice(),
                Some("wrong"),
                "wrong password",
            ),
            ("no password", pfx.as_slice(), None, "password"),
            ("corrupt", b"garbage".as_slice(), None, "not a certificate"),
            ("empty", b"".as_slice(), None, "empty"),
            (
                "key mismatch",
                mismatched.as_slice(),
                None,
                "does not match",
            ),
        ] {
            let (s, v) = call(&store, "PUT", "/certificates/x", body, pw);
            assert_eq!(s, 400, "{what}: {v}");
            let msg = v["error"].as_str().unwrap();
            assert!(
                msg.contains(needle) && msg.contains("\"x\""),
                "{what}: {msg}"
            );
        }
        for bad in [
            "/certificates/.hidden",
            "/certificates/a%2Fb",
            "/certificates/a%zz",
        ] {
            let (s, v) = call(&store, "PUT", bad, &c.cert_pem(), None);
            assert_eq!(s, 400, "{bad}: {v}");
        }
        assert!(store.contents().certificates.is_empty());
        assert_eq!(files_in(&state), 0);
        let _ = std::fs::remove_dir_all(&state);
    }

    #[test]
    fn a_hook_refusal_is_409_and_changes_nothing() {
        let (store, hook, state) = setup();
        *hook.refuse.lock().unwrap() =
            Some("host api.example needs certificate srv with a key".into());
        let (s, v) = call(
            &store,
            "PUT",
            "/certificates/srv",
            &leaf("srv").cert_pem(),
            None,
        );
        assert_eq!(s, 409);
        assert!(
            v["error"].as_str().unwrap().contains("host api.example"),
            "{v}"
        );
        assert!(store.contents().certificates.is_empty());
        assert_eq!(files_in(&state), 0);
        let _ = std::fs::remove_dir_all(&state);
    }

    #[test]
    fn routing_edges() {
        let (store, _, state) = setup();
        assert!(handle(Some(&store), &NoCrls, &req("GET", "/metrics", b"", None)).is_none());
        assert!(handle(
            Some(&store),
            &NoCrls,
            &req("GET", "/certificatesX", b"", None)
        )
        .is_none());
        let (s, _) = call(&store, "POST", "/certificates/a", b"", None);
        assert_eq!(s, 405);
        let (s, _) = call(&store, "PUT", "/certificates", b"", None);
        assert_eq!(s, 405);
        let r = handle(None, &NoCrls, &req("GET", "/certificates", b"", None)).unwrap();
        assert_eq!(r.status, 503);
        let _ = std::fs::remove_dir_all(&state);
    }

    struct FakeCrls(Mutex<u32>);
    impl CrlAdmin for FakeCrls {
        fn report(&self) -> Vec<CrlReport> {
            vec![CrlReport {
                issuer: "CN=root".into(),
                source: "/etc/crl.pem".into(),
                entries: u64::from(*self.0.lock().unwrap()),
                ..CrlReport::default()
            }]
        }
        fn refresh(&self) -> Result<(), String> {
            *self.0.lock().unwrap() += 1;
            Ok(())
        }
    }

    #[test]
    fn crl_routes_render_the_report() {
        let crls = FakeCrls(Mutex::new(7));
        let r = handle(None, &crls, &req("GET", "/crls", b"", None)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            (r.status, &v[0]["issuer"], &v[0]["entries"]),
            (200, &"CN=root".into(), &7.into())
        );
        assert!(v[0]["last_error"].is_null());
        let r = handle(None, &crls, &req("POST", "/crls/refresh", b"", None)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!((r.status, &v[0]["entries"]), (200, &8.into()));
        let r = handle(None, &crls, &req("GET", "/crls/refresh", b"", None)).unwrap();
        assert_eq!(r.status, 405);
    }

    #[test]
    fn bearer_tokens() {
        let t = Some("0123456789abcdef");
        assert!(authorized(None, None));
        assert!(!authorized(t, None));
        assert!(authorized(t, Some(b"Bearer 0123456789abcdef")));
        assert!(authorized(t, Some(b"bearer 0123456789abcdef ")));
        assert!(!authorized(t, Some(b"Bearer 0123456789abcdeX")));
        assert!(!authorized(t, Some(b"Bearer 0123456789abcde")));
        assert!(!authorized(t, Some(b"Bearer 0123456789abcdef0")));
        assert!(!authorized(t, Some(b"Basic 0123456789abcdef")));
        assert!(!authorized(t, Some(b"Bearer")));
    }
}
