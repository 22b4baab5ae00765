//! Parsing and validation of client request heads (framing, smuggling and spoofing defences).

use bytes::Bytes;

use super::body::{message_framing, BodyKind, Framing};
use super::rewrite::is_cert_header_lookalike;
use super::{from_httparse, own_headers, persistent, trim_ows, HttpError, Parsed, MAX_HEADERS};

/// One header field as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Field name exactly as received (original case).
    pub name: String,
    /// Field value as received, without surrounding whitespace; may contain
    /// obs-text bytes, never CR, LF or NUL (httparse rejects them).
    pub value: Bytes,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method as sent.
    pub method: String,
    /// Request-target as sent (origin-form, absolute-form, authority-form or `*`).
    pub target: String,
    /// HTTP minor version: 0 or 1.
    pub minor_version: u8,
    /// All header fields as received, in order.
    pub headers: Vec<Header>,
    /// How the body is delimited.
    pub body: BodyKind,
    /// Whether the client connection stays open after this exchange: HTTP/1.1
    /// unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Expect: 100-continue` present (HTTP/1.1 only: RFC 9110 §10.1.1 says to
    /// ignore it in HTTP/1.0 requests).
    pub expect_continue: bool,
    /// The Host header value, if any.
    pub host: Option<String>,
}

impl Request {
    /// Value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| &h.value[..])
    }
}

/// Parses the request head at the start of `buf`.
///
/// Returns [`Parsed::Partial`] while the head is incomplete and shorter than
/// `max_head_bytes`; [`HttpError::HeadTooLarge`] once it cannot fit in
/// `max_head_bytes` or has more than [`MAX_HEADERS`] fields.
pub fn parse_request(buf: &[u8], max_head_bytes: usize) -> Result<Parsed<Request>, HttpError> {
    // Never look past the limit: a head that is not complete within it is too large.
    let window = &buf[..buf.len().min(max_head_bytes)];
    let mut header_slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut header_slots);
    let len = match parsed.parse(window).map_err(from_httparse)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial if buf.len() >= max_head_bytes => {
            return Err(HttpError::HeadTooLarge)
        }
        httparse::Status::Partial => return Ok(Parsed::Partial),
    };
    let (Some(method), Some(target), Some(minor_version)) =
        (parsed.method, parsed.path, parsed.version)
    else {
        return Err(HttpError::Malformed("incomplete request line"));
    };
    if minor_version > 1 {
        return Err(HttpError::Malformed("unsupported HTTP version"));
    }

    if let Some(spoof) = parsed
        .headers
        .iter()
        .find(|h| h.name.contains('_') && is_cert_header_lookalike(h.name))
    {
        return Err(HttpError::SpoofedCertHeader(spoof.name.to_owned()));
    }

    let headers = own_headers(parsed.headers);
    let body = match message_framing(&headers, minor_version)? {
        Framing::Unframed => BodyKind::None,
        Framing::ContentLength(length) => BodyKind::ContentLength(length),
        Framing::Chunked => BodyKind::Chunked,
    };
    let host = host_header(&headers, minor_version)?;
    let expect_continue = minor_version == 1
        && headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("expect")
                && trim_ows(&h.value).eq_ignore_ascii_case(b"100-continue")
        });
    let keep_alive = persistent(minor_version, &headers);

    Ok(Parsed::Complete {
        head: Request {
            method: method.to_owned(),
            target: target.to_owned(),
            minor_version,
            headers,
            body,
            keep_alive,
            expect_continue,
            host,
        },
        len,
    })
}

/// The Host value, enforcing RFC 9112 §3.2: at most one Host field, required in
/// HTTP/1.1, and its value must look like `uri-host [ ":" port ]`.
fn host_header(headers: &[Header], minor_version: u8) -> Result<Option<String>, HttpError> {
    let mut hosts = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"));
    let Some(host) = hosts.next() else {
        return if minor_version >= 1 {
            Err(HttpError::Malformed("missing Host header"))
        } else {
            Ok(None)
        };
    };
    if hosts.next().is_some() {
        return Err(HttpError::Malformed("multiple Host headers"));
    }
    let value = trim_ows(&host.value);
    if !value.iter().all(|&b| is_host_byte(b)) {
        return Err(HttpError::Malformed("invalid Host header"));
    }
    // All bytes are ASCII, so this cannot fail.
    let value =
        std::str::from_utf8(value).map_err(|_| HttpError::Malformed("invalid Host header"))?;
    Ok(Some(value.to_owned()))
}

/// Bytes allowed in `uri-host [ ":" port ]` (reg-name, IP literals, percent-encoding).
fn is_host_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 8192;

    fn parse(raw: &[u8]) -> Result<Parsed<Request>, HttpError> {
        parse_request(raw, LIMIT)
    }

    fn complete(raw: &[u8]) -> (Request, usize) {
        match parse(raw) {
            Ok(Parsed::Complete { head, len }) => (head, len),
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    fn error(raw: &[u8]) -> HttpError {
        match parse(raw) {
            Err(e) => e,
            Ok(other) => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn simple_get() {
        let raw = b"GET /a?b=c HTTP/1.1\r\nHost: api.example:8443\r\nAccept: */*\r\n\r\nNEXT";
        let (req, len) = complete(raw);
        assert_eq!(len, raw.len() - 4);
        assert_eq!(req.method, "GET");
        assert_eq!(req.target, "/a?b=c");
        assert_eq!(req.minor_version, 1);
        assert_eq!(req.host.as_deref(), Some("api.example:8443"));
        assert_eq!(req.body, BodyKind::None);
        assert!(req.keep_alive);
        assert!(!req.expect_continue);
        assert_eq!(req.headers.len(), 2);
        assert_eq!(req.headers[1].name, "Accept");
        assert_eq!(&req.headers[1].value[..], b"*/*");
        assert_eq!(req.header("accept"), Some(&b"*/*"[..]));
        assert_eq!(req.header("missing"), None);
    }

    #[test]
    fn absolute_form_and_method_kept_as_sent() {
        let (req, _) = complete(b"patch http://h/x HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(req.method, "patch");
        assert_eq!(req.target, "http://h/x");
    }

    #[test]
    fn partial_heads() {
        let raw = b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
        let head_len = raw.len() - 3;
        for end in 0..head_len {
            assert_eq!(parse(&raw[..end]), Ok(Parsed::Partial), "end {end}");
        }
        let (req, len) = complete(raw);
        assert_eq!(len, head_len);
        assert_eq!(req.body, BodyKind::ContentLength(3));
    }

    #[test]
    fn head_byte_limit() {
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        // Exactly at the limit is fine, even with more bytes buffered after it.
        let mut with_body = raw.to_vec();
        with_body.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert!(matches!(
            parse_request(&with_body, raw.len()),
            Ok(Parsed::Complete { len, .. }) if len == raw.len()
        ));
        // Complete but one byte over the limit.
        assert_eq!(
            parse_request(raw, raw.len() - 1),
            Err(HttpError::HeadTooLarge)
        );
        // Incomplete and already at the limit.
        assert_eq!(parse_request(&raw[..20], 20), Err(HttpError::HeadTooLarge));
        // Incomplete and shorter than the limit.
        assert_eq!(parse_request(&raw[..20], 21), Ok(Parsed::Partial));
    }

    #[test]
    fn header_count_limit() {
        let mut raw = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 1..MAX_HEADERS {
            raw.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        let mut ok = raw.clone();
        ok.extend_from_slice(b"\r\n");
        assert_eq!(complete(&ok).0.headers.len(), MAX_HEADERS);

        raw.extend_from_slice(b"X-One-Too-Many: v\r\n\r\n");
        assert_eq!(error(&raw), HttpError::HeadTooLarge);
    }

    #[test]
    fn too_many_headers_even_when_partial() {
        let mut raw = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            raw.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        assert_eq!(error(&raw), HttpError::HeadTooLarge);
    }

    #[test]
    fn malformed_heads() {
        let cases: &[&[u8]] = &[
            b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.2\r\nHost: h\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        ];
        for raw in cases {
            assert!(
                matches!(parse(raw), Err(HttpError::Malformed(_))),
                "{:?} -> {:?}",
                String::from_utf8_lossy(raw),
                parse(raw)
            );
        }
    }

    #[test]
    fn http10_without_host_is_fine() {
        let (req, _) = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(req.host, None);
        assert_eq!(req.minor_version, 0);
    }

    #[test]
    fn keep_alive_rules() {
        let cases: &[(&[u8], bool)] = &[
            (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
                true,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
                false,
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                complete(raw).0.keep_alive,
                *expected,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn expect_continue() {
        let (req, _) = complete(
            b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
        );
        assert!(req.expect_continue);
        let (req, _) =
            complete(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
        assert!(!req.expect_continue);
        let (req, _) = complete(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: other\r\n\r\n");
        assert!(!req.expect_continue);
    }

    #[test]
    fn body_kinds() {
        let (req, _) =
            complete(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(req.body, BodyKind::Chunked);
        let (req, _) = complete(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(req.body, BodyKind::ContentLength(0));
        let (req, _) = complete(b"POST / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(req.body, BodyKind::None);
    }

    #[test]
    fn smuggling_shapes() {
        let smuggling: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ];
        for raw in smuggling {
            assert!(
                matches!(parse(raw), Err(HttpError::Smuggling(_))),
                "{:?} -> {:?}",
                String::from_utf8_lossy(raw),
                parse(raw)
            );
        }
        let malformed: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n",
        ];
        for raw in malformed {
            assert_eq!(
                parse(raw),
                Err(HttpError::Malformed("invalid Content-Length")),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        let (req, _) = complete(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n",
        );
        assert_eq!(req.body, BodyKind::ContentLength(7));
    }

    #[test]
    fn spoofed_cert_headers() {
        for name in [
            "X_Client_Cert",
            "x_client_cert",
            "X-Client_Cert",
            "X_CLIENT_CERT_CHAIN",
            "X-Client-Cert_Verify",
            "x_forwarded_client_cert",
            "X-Forwarded_Client-Cert",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: h\r\n{name}: evil\r\n\r\n");
            assert_eq!(
                error(raw.as_bytes()),
                HttpError::SpoofedCertHeader(name.to_owned()),
                "{name}"
            );
        }
    }

    #[test]
    fn underscores_elsewhere_and_real_cert_headers_are_accepted() {
        let (req, _) = complete(
            b"GET / HTTP/1.1\r\nHost: h\r\nX_Custom_Thing: 1\r\nX_Client_Certificate: 1\r\n\
X-Client-Cert: stripped-later\r\n\r\n",
        );
        assert_eq!(req.headers.len(), 4);
    }
}
