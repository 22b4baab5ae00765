//! Rewriting of heads for forwarding: strip hop-by-hop and untrusted headers, add forwarding and certificate headers.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};

use super::status::reason_phrase;
use super::{list_elements, trim_ows, Header, Request, Response};

/// The TLS client's address as text, rendered once per connection.
///
/// It goes into `X-Forwarded-For` and `X-Real-IP` of every request; formatting
/// an `IpAddr` each time cost more than the rest of the head rewrite. Held
/// inline (no allocation), so a [`ForwardContext`] stays `Copy`.
#[derive(Clone, Copy)]
pub struct ClientIp {
    len: u8,
    text: [u8; IP_TEXT_MAX],
}

/// Longest IP address text form (IPv4-mapped IPv6).
const IP_TEXT_MAX: usize = 45;

// === impl ClientIp ===

impl ClientIp {
    /// The address text, e.g. `192.0.2.7` or `::1`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.text[..usize::from(self.len)]
    }
}

impl From<std::net::IpAddr> for ClientIp {
    fn from(ip: std::net::IpAddr) -> ClientIp {
        let mut text = [0u8; IP_TEXT_MAX];
        let mut cursor = std::io::Cursor::new(&mut text[..]);
        // The longest form fits: the write cannot fail.
        let _ = std::io::Write::write_fmt(&mut cursor, format_args!("{ip}"));
        ClientIp {
            len: cursor.position() as u8,
            text,
        }
    }
}

impl std::fmt::Debug for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

/// What the proxy adds to a request it forwards.
#[derive(Debug, Clone, Copy)]
pub struct ForwardContext<'a> {
    /// Address of the TLS client, sent as `X-Forwarded-For` and `X-Real-IP`.
    pub client_ip: ClientIp,
    /// Pre-rendered certificate header lines, each "Name: value\r\n" (already validated, inserted verbatim), or empty.
    pub cert_headers: &'a [u8],
    /// Value for `X-Client-Cert-Verify` (only in optional mode), e.g. "SUCCESS", "NONE", "FAILED:expired".
    /// Must not contain CR or LF.
    pub verify: Option<&'a str>,
}

/// The `Connection` header to put on a response sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownstreamConnection {
    /// No `Connection` header: the HTTP/1.1 default, the connection persists.
    Persistent,
    /// `Connection: close`: the proxy closes the connection after this response.
    Close,
    /// `Connection: keep-alive`: for HTTP/1.0 clients that asked to keep the connection.
    KeepAlive,
}

/// Headers that only concern one connection and are never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Client request headers replaced by the proxy, never trusted: what a backend
/// behind an edge proxy takes as the proxy's word about the client.
const REPLACED_REQUEST_HEADERS: [&str; 8] = [
    "expect",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-real-ip",
    "forwarded",
    "x-client-ip",
];

/// Headers a `Connection` token may not remove: dropping them would change how
/// the raw-forwarded body is framed, or which host the request is for.
const PROTECTED_FROM_CONNECTION: [&str; 3] = ["content-length", "transfer-encoding", "host"];

/// Prefix shared by most certificate headers.
const CERT_PREFIX: &[u8] = b"x-client-cert-";

/// True for names certgate owns and strips from client requests (case-insensitive):
/// `x-client-cert`, `x-client-cert-*` (this includes x-client-cert-verify), `x-forwarded-client-cert`.
pub fn is_cert_header(name: &str) -> bool {
    cert_header_match(name.as_bytes(), |b| b.to_ascii_lowercase())
}

/// Like [`is_cert_header`], but also matching names spelled with `_` instead of `-`.
pub(crate) fn is_cert_header_lookalike(name: &str) -> bool {
    cert_header_match(name.as_bytes(), |b| match b {
        b'_' => b'-',
        _ => b.to_ascii_lowercase(),
    })
}

/// Whether `name`, with each byte mapped by `normalize`, is a certificate header name.
fn cert_header_match(name: &[u8], normalize: impl Fn(u8) -> u8) -> bool {
    let starts_with = |pattern: &[u8]| {
        name.len() >= pattern.len()
            && name
                .iter()
                .zip(pattern)
                .all(|(&byte, &expected)| normalize(byte) == expected)
    };
    let equals = |pattern: &[u8]| name.len() == pattern.len() && starts_with(pattern);
    equals(b"x-client-cert") || equals(b"x-forwarded-client-cert") || starts_with(CERT_PREFIX)
}

/// True when `name` is one of `names` (which are lowercase).
fn is_one_of(name: &str, names: &[&str]) -> bool {
    names
        .iter()
        .any(|candidate| name.eq_ignore_ascii_case(candidate))
}

/// True when some `Connection` header in `headers` names `name` as hop-by-hop.
fn named_by_connection(name: &str, headers: &[Header]) -> bool {
    if is_one_of(name, &PROTECTED_FROM_CONNECTION) {
        return false;
    }
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| list_elements(&h.value))
        .any(|token| token.eq_ignore_ascii_case(name.as_bytes()))
}

/// Space one header line takes: `name: value\r\n`.
fn line_len(header: &Header) -> usize {
    header.name.len() + 2 + header.value.len() + 2
}

fn put_header(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// Copies the headers for which `keep` holds, writing the message framing in
/// canonical form: the first `Content-Length` field becomes a single
/// `Content-Length: <n>` (the parser has checked all values agree) and the first
/// `Transfer-Encoding` field becomes `Transfer-Encoding: chunked` (the only coding
/// the parser accepts); further framing fields are dropped.
fn copy_headers(headers: &[Header], out: &mut BytesMut, keep: impl Fn(&Header) -> bool) {
    let mut wrote_length = false;
    let mut wrote_coding = false;
    for header in headers {
        if header.name.eq_ignore_ascii_case("content-length") {
            if !wrote_length {
                let first = header.value.split(|&b| b == b',').next().unwrap_or(&[]);
                put_header(out, b"Content-Length", trim_ows(first));
                wrote_length = true;
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if !wrote_coding {
                put_header(out, b"Transfer-Encoding", b"chunked");
                wrote_coding = true;
            }
        } else if keep(header) {
            put_header(out, header.name.as_bytes(), &header.value);
        }
    }
}

const XFF: &[u8] = b"X-Forwarded-For: ";
const XRI: &[u8] = b"X-Real-IP: ";
const XFP: &[u8] = b"X-Forwarded-Proto: https\r\n";
const VERIFY: &[u8] = b"X-Client-Cert-Verify: ";
/// Longest IP address text form plus CRLF.
const IP_MAX: usize = IP_TEXT_MAX + 2;

/// Upper bound of the size of the head [`write_upstream_head`] writes.
fn upstream_capacity(req: &Request, ctx: &ForwardContext<'_>) -> usize {
    let headers_len: usize = req.headers.iter().map(line_len).sum();
    let verify_len = ctx.verify.map_or(0, |v| VERIFY.len() + v.len() + 2);
    req.method.len()
        + 1
        + req.target.len()
        + b" HTTP/1.1\r\n".len()
        + headers_len
        + XFF.len()
        + IP_MAX
        + XRI.len()
        + IP_MAX
        + 2
        + XFP.len()
        + ctx.cert_headers.len()
        + verify_len
        + 2
}

/// Upper bound of the size of the head [`write_downstream_head_with`] writes.
fn downstream_capacity(resp: &Response, reason: &str) -> usize {
    let headers_len: usize = resp.headers.iter().map(line_len).sum();
    // Status line, headers, the longest Connection header and the blank line.
    b"HTTP/1.1 000 \r\n".len()
        + reason.len()
        + headers_len
        + b"Connection: keep-alive\r\n".len()
        + 2
}

/// Write the request head to send to the backend into `out`.
///
/// `req` must come from [`parse_request`](super::parse_request) (its framing is
/// assumed validated). Hop-by-hop headers, `Expect`, forwarding headers and
/// certificate headers are dropped; `X-Forwarded-For`, `X-Forwarded-Proto`, the
/// certificate headers of `ctx` and `X-Client-Cert-Verify` are added.
pub fn write_upstream_head(req: &Request, ctx: &ForwardContext<'_>, out: &mut BytesMut) {
    out.reserve(upstream_capacity(req, ctx));

    out.put_slice(req.method.as_bytes());
    out.put_u8(b' ');
    out.put_slice(req.target.as_bytes());
    // An HTTP/1.0 client is forwarded as HTTP/1.0, so the backend never answers
    // it with a chunked body it could not read (the backend connection then
    // usually closes after the response, which the pool handles).
    out.put_slice(if req.minor_version == 0 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });

    copy_headers(&req.headers, out, |header| {
        let name = header.name.as_str();
        !is_one_of(name, &HOP_BY_HOP)
            && !is_one_of(name, &REPLACED_REQUEST_HEADERS)
            && !is_cert_header(name)
            && !named_by_connection(name, &req.headers)
    });

    out.put_slice(XFF);
    out.put_slice(ctx.client_ip.as_bytes());
    out.put_slice(b"\r\n");
    out.put_slice(XRI);
    out.put_slice(ctx.client_ip.as_bytes());
    out.put_slice(b"\r\n");
    out.put_slice(XFP);
    out.put_slice(ctx.cert_headers);
    if let Some(verify) = ctx.verify {
        debug_assert!(!verify.contains(['\r', '\n']), "verify value with CR/LF");
        out.put_slice(VERIFY);
        out.put_slice(verify.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
}

/// Write the response head to send to the client: `Connection: close` when
/// `close`, otherwise no `Connection` header.
pub fn write_downstream_head(resp: &Response, close: bool, out: &mut BytesMut) {
    let connection = if close {
        DownstreamConnection::Close
    } else {
        DownstreamConnection::Persistent
    };
    write_downstream_head_with(resp, connection, out);
}

/// Write the response head to send to the client, with the given `Connection` header.
///
/// The status line is always HTTP/1.1 with the backend's reason phrase (or the
/// canonical one when the backend sent none). Hop-by-hop headers are dropped;
/// `Transfer-Encoding` is kept since chunked bodies are forwarded raw.
pub fn write_downstream_head_with(
    resp: &Response,
    connection: DownstreamConnection,
    out: &mut BytesMut,
) {
    let reason = if resp.reason.is_empty() {
        reason_phrase(resp.status)
    } else {
        resp.reason.as_str()
    };
    out.reserve(downstream_capacity(resp, reason));

    out.put_slice(b"HTTP/1.1 ");
    // Writing into a BytesMut cannot fail.
    let _ = write!(out, "{:03}", resp.status);
    out.put_u8(b' ');
    out.put_slice(reason.as_bytes());
    out.put_slice(b"\r\n");

    copy_headers(&resp.headers, out, |header| {
        !is_one_of(&header.name, &HOP_BY_HOP) && !named_by_connection(&header.name, &resp.headers)
    });

    match connection {
        DownstreamConnection::Persistent => {}
        DownstreamConnection::Close => out.put_slice(b"Connection: close\r\n"),
        DownstreamConnection::KeepAlive => out.put_slice(b"Connection: keep-alive\r\n"),
    }
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_request, parse_response, Parsed};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn request(raw: &str) -> Request {
        match parse_request(raw.as_bytes(), 16384) {
            Ok(Parsed::Complete { head, .. }) => head,
            other => panic!("bad test request: {other:?}"),
        }
    }

    fn response(raw: &str, head: bool) -> Response {
        match parse_response(raw.as_bytes(), 16384, head) {
            Ok(Parsed::Complete { head, .. }) => head,
            other => panic!("bad test response: {other:?}"),
        }
    }

    fn ctx<'a>(cert_headers: &'a [u8], verify: Option<&'a str>) -> ForwardContext<'a> {
        ForwardContext {
            client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)).into(),
            cert_headers,
            verify,
        }
    }

    fn upstream(raw: &str, ctx: &ForwardContext<'_>) -> String {
        let mut out = BytesMut::new();
        write_upstream_head(&request(raw), ctx, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn downstream(resp: &Response, close: bool) -> String {
        let mut out = BytesMut::new();
        write_downstream_head(resp, close, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn cert_header_names() {
        for name in [
            "x-client-cert",
            "X-Client-Cert",
            "X-CLIENT-CERT",
            "x-client-cert-chain",
            "X-Client-Cert-Verify",
            "X-Client-Cert-Subject-DN",
            "x-forwarded-client-cert",
            "X-Forwarded-Client-Cert",
        ] {
            assert!(is_cert_header(name), "{name}");
        }
        for name in [
            "x-client-certificate",
            "x-client-cer",
            "x-client",
            "x_client_cert",
            "x-forwarded-client-cert-extra",
            "x-forwarded-client",
            "client-cert",
            "",
        ] {
            assert!(!is_cert_header(name), "{name}");
        }
    }

    #[test]
    fn cert_header_lookalikes() {
        assert!(is_cert_header_lookalike("X_Client_Cert"));
        assert!(is_cert_header_lookalike("x_client_cert_verify"));
        assert!(is_cert_header_lookalike("X_Forwarded_Client_Cert"));
        assert!(is_cert_header_lookalike("x-client-cert"));
        assert!(!is_cert_header_lookalike("x_client_certificate"));
        assert!(!is_cert_header_lookalike("x_custom"));
    }

    #[test]
    fn upstream_basic() {
        let out = upstream(
            "GET /path?q=1 HTTP/1.1\r\nHost: api\r\nAccept: */*\r\n\r\n",
            &ctx(b"", None),
        );
        assert_eq!(
            out,
            "GET /path?q=1 HTTP/1.1\r\nHost: api\r\nAccept: */*\r\n\
X-Forwarded-For: 192.0.2.7\r\nX-Real-IP: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n\r\n"
        );
    }

    #[test]
    fn upstream_adds_cert_headers_and_verify() {
        let out = upstream(
            "POST /x HTTP/1.1\r\nHost: api\r\nContent-Length: 3\r\n\r\n",
            &ForwardContext {
                client_ip: IpAddr::V6(Ipv6Addr::LOCALHOST).into(),
                cert_headers: b"X-Client-Cert: abc\r\nX-Client-Cert-Subject: CN=x\r\n",
                verify: Some("FAILED:expired"),
            },
        );
        assert_eq!(
            out,
            "POST /x HTTP/1.1\r\nHost: api\r\nContent-Length: 3\r\n\
X-Forwarded-For: ::1\r\nX-Real-IP: ::1\r\nX-Forwarded-Proto: https\r\n\
X-Client-Cert: abc\r\nX-Client-Cert-Subject: CN=x\r\n\
X-Client-Cert-Verify: FAILED:expired\r\n\r\n"
        );
    }

    #[test]
    fn upstream_keeps_the_clients_minor_version() {
        let out = upstream("GET / HTTP/1.0\r\n\r\n", &ctx(b"", None));
        assert!(
            out.starts_with("GET / HTTP/1.0\r\nX-Forwarded-For: "),
            "{out}"
        );
        let out = upstream("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &ctx(b"", None));
        assert!(out.starts_with("GET / HTTP/1.1\r\n"), "{out}");
    }

    #[test]
    fn upstream_strips_every_cert_header_in_any_case() {
        let out = upstream(
            "GET / HTTP/1.1\r\nHost: h\r\nX-Client-Cert: a\r\nx-client-cert: b\r\n\
X-CLIENT-CERT-VERIFY: SUCCESS\r\nX-Client-Cert-Chain: c\r\nx-ClIeNt-CeRt-Subject: d\r\n\
X-Forwarded-Client-Cert: e\r\nx-forwarded-client-cert: f\r\nX-Other: keep\r\n\r\n",
            &ctx(b"X-Client-Cert: real\r\n", Some("SUCCESS")),
        );
        assert_eq!(
            out,
            "GET / HTTP/1.1\r\nHost: h\r\nX-Other: keep\r\n\
X-Forwarded-For: 192.0.2.7\r\nX-Real-IP: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n\
X-Client-Cert: real\r\nX-Client-Cert-Verify: SUCCESS\r\n\r\n"
        );
    }

    #[test]
    fn upstream_strips_hop_by_hop_and_forwarding_headers() {
        let out = upstream(
            "PUT / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nKeep-Alive: 5\r\n\
Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-Sum\r\nUpgrade: websocket\r\n\
Expect: 100-continue\r\nX-Forwarded-For: 6.6.6.6\r\nx-forwarded-proto: http\r\n\
Forwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nx-forwarded-host: evil\r\n\
X-Forwarded-Port: 1\r\nX-Client-IP: 6.6.6.6\r\nContent-Length: 2\r\n\r\n",
            &ctx(b"", None),
        );
        assert_eq!(
            out,
            "PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\
X-Forwarded-For: 192.0.2.7\r\nX-Real-IP: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n\r\n"
        );
    }

    #[test]
    fn upstream_strips_connection_named_headers() {
        let out = upstream(
            "GET / HTTP/1.1\r\nHost: h\r\nX-Secret: 1\r\nX-Keep: 2\r\nx-debug: 3\r\n\
Connection: X-Secret\r\nconnection: , X-DEBUG \r\n\r\n",
            &ctx(b"", None),
        );
        assert_eq!(
            out,
            "GET / HTTP/1.1\r\nHost: h\r\nX-Keep: 2\r\n\
X-Forwarded-For: 192.0.2.7\r\nX-Real-IP: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n\r\n"
        );
    }

    #[test]
    fn connection_cannot_strip_framing_or_host() {
        let out = upstream(
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\
Connection: content-length, host, x-forwarded-for\r\n\r\n",
            &ctx(b"", None),
        );
        assert_eq!(
            out,
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\
X-Forwarded-For: 192.0.2.7\r\nX-Real-IP: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n\r\n"
        );
        let out = upstream(
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\
Connection: Transfer-Encoding\r\n\r\n",
            &ctx(b"", None),
        );
        assert!(out.contains("\r\nTransfer-Encoding: chunked\r\n"), "{out}");
    }

    #[test]
    fn upstream_framing_is_canonical() {
        let out = upstream(
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7, 7\r\ncontent-length: 7\r\n\r\n",
            &ctx(b"", None),
        );
        assert_eq!(
            out,
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\n\
X-Forwarded-For: 192.0.2.7\r\nX-Real-IP: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n\r\n"
        );
        let out = upstream(
            "POST / HTTP/1.1\r\nHost: h\r\ntransfer-encoding: , CHUNKED\r\n\r\n",
            &ctx(b"", None),
        );
        assert_eq!(
            out,
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\
X-Forwarded-For: 192.0.2.7\r\nX-Real-IP: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n\r\n"
        );
    }

    #[test]
    fn capacity_bounds_cover_worst_cases() {
        let req = request(
            "POST /p HTTP/1.1\r\nHost: h\r\nA: b\r\nConnection: close, a\r\n\
transfer-encoding: chunked\r\n\r\n",
        );
        let context = ForwardContext {
            client_ip: "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
                .parse::<IpAddr>()
                .unwrap()
                .into(),
            cert_headers: b"X-Client-Cert: abcdef\r\n",
            verify: Some("FAILED:unknown issuer"),
        };
        let mut out = BytesMut::new();
        write_upstream_head(&req, &context, &mut out);
        assert!(out.len() <= upstream_capacity(&req, &context), "{out:?}");

        for (raw, close) in [
            ("HTTP/1.1 599 \r\nX: y\r\n\r\n", false),
            ("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true),
        ] {
            let resp = response(raw, false);
            let mut out = BytesMut::new();
            write_downstream_head_with(&resp, DownstreamConnection::KeepAlive, &mut out);
            let reason = if resp.reason.is_empty() {
                reason_phrase(resp.status)
            } else {
                &resp.reason
            };
            assert!(out.len() <= downstream_capacity(&resp, reason), "{out:?}");
            assert!(downstream(&resp, close).len() <= out.len());
        }
    }

    #[test]
    fn downstream_basic() {
        let resp = response(
            "HTTP/1.1 200 Fine\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
            false,
        );
        assert_eq!(
            downstream(&resp, false),
            "HTTP/1.1 200 Fine\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
        );
        assert_eq!(
            downstream(&resp, true),
            "HTTP/1.1 200 Fine\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\
Connection: close\r\n\r\n"
        );
    }

    #[test]
    fn downstream_uses_canonical_reason_when_missing() {
        let resp = response("HTTP/1.0 404\r\nContent-Length: 0\r\n\r\n", false);
        assert_eq!(
            downstream(&resp, false),
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn downstream_strips_hop_by_hop_keeps_transfer_encoding() {
        let resp = response(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal\r\nKeep-Alive: timeout=5\r\n\
X-Internal: 1\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\nUpgrade: h2c\r\n\
Proxy-Connection: x\r\nTE: trailers\r\nX-Client-Cert: echoed\r\n\r\n",
            false,
        );
        assert_eq!(
            downstream(&resp, false),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Client-Cert: echoed\r\n\r\n"
        );
    }

    #[test]
    fn downstream_keep_alive_for_http10_clients() {
        let resp = response("HTTP/1.1 204 No Content\r\n\r\n", false);
        let mut out = BytesMut::new();
        write_downstream_head_with(&resp, DownstreamConnection::KeepAlive, &mut out);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn downstream_keeps_content_length_of_head_response() {
        let resp = response("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", true);
        assert_eq!(
            downstream(&resp, false),
            "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
        );
    }
}
