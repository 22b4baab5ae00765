//! Parsing and validation of backend response heads.

use super::body::{message_framing, BodyKind, Framing};
use super::{from_httparse, own_headers, persistent, Header, HttpError, Parsed, MAX_HEADERS};

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code, 100..=599.
    pub status: u16,
    /// Reason phrase as sent by the backend; empty when it sent none (or one
    /// with bytes outside visible ASCII / HTAB / SP).
    pub reason: String,
    /// HTTP minor version: 0 or 1.
    pub minor_version: u8,
    /// All header fields as received, in order.
    pub headers: Vec<Header>,
    /// How the body is delimited: `None` for 1xx/204/304 and when the request was
    /// HEAD; otherwise `Chunked`, `ContentLength`, or `CloseDelimited` when neither.
    pub body: BodyKind,
    /// Whether the backend connection is reusable after this response: HTTP/1.1
    /// without `Connection: close` (HTTP/1.0 with `Connection: keep-alive`), and
    /// the body is not close-delimited.
    pub keep_alive: bool,
}

impl Response {
    /// Value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| &h.value[..])
    }

    /// True for 1xx interim responses, after which the final response follows.
    pub fn is_informational(&self) -> bool {
        (100..200).contains(&self.status)
    }
}

/// Parses the response head at the start of `buf`.
///
/// `request_was_head` tells whether the request being answered was a HEAD
/// request (its response never has a body). Limits are as for
/// [`parse_request`](super::parse_request); framing is validated just as strictly.
pub fn parse_response(
    buf: &[u8],
    max_head_bytes: usize,
    request_was_head: bool,
) -> Result<Parsed<Response>, HttpError> {
    let window = &buf[..buf.len().min(max_head_bytes)];
    let mut header_slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut header_slots);
    let len = match parsed.parse(window).map_err(from_httparse)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial if buf.len() >= max_head_bytes => {
            return Err(HttpError::HeadTooLarge)
        }
        httparse::Status::Partial => return Ok(Parsed::Partial),
    };
    let (Some(status), Some(minor_version)) = (parsed.code, parsed.version) else {
        return Err(HttpError::Malformed("incomplete status line"));
    };
    if !(100..=599).contains(&status) {
        return Err(HttpError::Malformed("invalid status code"));
    }
    if minor_version > 1 {
        return Err(HttpError::Malformed("unsupported HTTP version"));
    }

    let headers = own_headers(parsed.headers);
    let framing = message_framing(&headers, minor_version)?;
    let bodiless = request_was_head || (100..200).contains(&status) || matches!(status, 204 | 304);
    let body = match framing {
        _ if bodiless => BodyKind::None,
        Framing::Chunked => BodyKind::Chunked,
        Framing::ContentLength(length) => BodyKind::ContentLength(length),
        Framing::Unframed => BodyKind::CloseDelimited,
    };
    let keep_alive = body != BodyKind::CloseDelimited && persistent(minor_version, &headers);

    Ok(Parsed::Complete {
        head: Response {
            status,
            reason: parsed.reason.unwrap_or("").to_owned(),
            minor_version,
            headers,
            body,
            keep_alive,
        },
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 8192;

    fn complete(raw: &[u8], head: bool) -> (Response, usize) {
        match parse_response(raw, LIMIT, head) {
            Ok(Parsed::Complete { head, len }) => (head, len),
            other => panic!(
                "expected a complete response for {:?}, got {other:?}",
                String::from_utf8_lossy(raw)
            ),
        }
    }

    fn body(raw: &str, head: bool) -> BodyKind {
        complete(raw.as_bytes(), head).0.body
    }

    #[test]
    fn simple_response() {
        let raw = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-A: b\r\n\r\nok";
        let (resp, len) = complete(raw, false);
        assert_eq!(len, raw.len() - 2);
        assert_eq!(resp.status, 201);
        assert_eq!(resp.reason, "Created");
        assert_eq!(resp.minor_version, 1);
        assert_eq!(resp.body, BodyKind::ContentLength(2));
        assert!(resp.keep_alive);
        assert_eq!(resp.header("x-a"), Some(&b"b"[..]));
        assert!(!resp.is_informational());
    }

    #[test]
    fn body_kinds() {
        assert_eq!(
            body("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", false),
            BodyKind::ContentLength(10)
        );
        assert_eq!(
            body(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false
            ),
            BodyKind::Chunked
        );
        assert_eq!(
            body("HTTP/1.1 200 OK\r\n\r\n", false),
            BodyKind::CloseDelimited
        );
        assert_eq!(
            body("HTTP/1.0 200 OK\r\n\r\n", false),
            BodyKind::CloseDelimited
        );
    }

    #[test]
    fn bodiless_responses() {
        assert_eq!(
            body("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true),
            BodyKind::None
        );
        assert_eq!(
            body(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                true
            ),
            BodyKind::None
        );
        assert_eq!(body("HTTP/1.1 200 OK\r\n\r\n", true), BodyKind::None);
        assert_eq!(
            body("HTTP/1.1 204 No Content\r\n\r\n", false),
            BodyKind::None
        );
        assert_eq!(
            body(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
                false
            ),
            BodyKind::None
        );
        for status in [100, 101, 103, 199] {
            let raw = format!("HTTP/1.1 {status} Interim\r\n\r\n");
            let (resp, _) = complete(raw.as_bytes(), false);
            assert_eq!(resp.body, BodyKind::None, "{status}");
            assert!(resp.is_informational());
        }
    }

    #[test]
    fn keep_alive_rules() {
        let cases: &[(&str, bool)] = &[
            ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                false,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", false),
            ("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n", false),
            ("HTTP/1.1 204 No Content\r\n\r\n", true),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                true,
            ),
            ("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n",
                true,
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                complete(raw.as_bytes(), false).0.keep_alive,
                *expected,
                "{raw}"
            );
        }
    }

    #[test]
    fn missing_reason() {
        let (resp, _) = complete(b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", false);
        assert_eq!(resp.status, 404);
        assert_eq!(resp.reason, "");
    }

    #[test]
    fn smuggling_and_malformed() {
        let smuggling: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            // Strict even when the response has no body.
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        ];
        for (i, raw) in smuggling.iter().enumerate() {
            let head = i == smuggling.len() - 1;
            assert!(
                matches!(
                    parse_response(raw, LIMIT, head),
                    Err(HttpError::Smuggling(_))
                ),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        let malformed: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/1.1 600 High\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/2.0 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A : b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: b\r\n folded\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n",
        ];
        for raw in malformed {
            assert!(
                matches!(
                    parse_response(raw, LIMIT, false),
                    Err(HttpError::Malformed(_))
                ),
                "{} -> {:?}",
                String::from_utf8_lossy(raw),
                parse_response(raw, LIMIT, false)
            );
        }
    }

    #[test]
    fn partial_and_limits() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        for end in 0..raw.len() {
            assert_eq!(
                parse_response(&raw[..end], LIMIT, false),
                Ok(Parsed::Partial)
            );
        }
        assert_eq!(
            parse_response(raw, raw.len() - 1, false),
            Err(HttpError::HeadTooLarge)
        );
        assert_eq!(
            parse_response(&raw[..10], 10, false),
            Err(HttpError::HeadTooLarge)
        );
        assert!(matches!(
            parse_response(raw, raw.len(), false),
            Ok(Parsed::Complete { .. })
        ));

        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_response(&many, LIMIT, false),
            Err(HttpError::HeadTooLarge)
        );
    }
}
