//! HTTP/1.1 framing, header rewriting and error responses (pure: no I/O).
//!
//! The proxy parses a request head with [`parse_request`], decides what to do,
//! writes a rewritten head to the backend with [`write_upstream_head`], then
//! streams the body unchanged, using [`BodyKind`] (and [`ChunkedTracker`] for
//! chunked bodies) only to find where the body ends. Responses go the same way
//! through [`parse_response`] and [`write_downstream_head`].

pub mod body;
pub mod request;
pub mod response;
pub mod rewrite;
pub mod status;

pub use body::{BodyKind, ChunkProgress, ChunkedTracker};
pub use request::{parse_request, Header, Request};
pub use response::{parse_response, Response};
pub use rewrite::{
    is_cert_header, write_downstream_head, write_downstream_head_with, write_upstream_head,
    ClientIp, DownstreamConnection, ForwardContext,
};
pub use status::{error_response, reason_phrase, CONTINUE_100};

/// Maximum number of header fields accepted in one request or response head.
pub const MAX_HEADERS: usize = 128;

/// Outcome of parsing a head at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// The head is complete; it occupies the first `len` bytes of the buffer
    /// (the body, if any, starts right after).
    Complete {
        /// The parsed head.
        head: T,
        /// Length of the head in bytes, including the terminating blank line.
        len: usize,
    },
    /// More bytes are needed to finish the head.
    Partial,
}

/// Why a message could not be accepted.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The request (or response) is not valid HTTP/1.x. -> 400
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// Head exceeds the configured limit (bytes or number of fields). -> 431
    #[error("request header fields too large")]
    HeadTooLarge,
    /// Framing that could be used for request smuggling. -> 400
    #[error("ambiguous message framing: {0}")]
    Smuggling(&'static str),
    /// A client-supplied header spelled like a certificate header with underscores. -> 400
    #[error("header {0} imitates a certificate header")]
    SpoofedCertHeader(String),
    /// A chunked body whose framing is invalid. -> 400
    #[error("malformed chunked body: {0}")]
    BadChunk(&'static str),
}

impl HttpError {
    /// The HTTP status code to answer the client with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge => 431,
            HttpError::Malformed(_)
            | HttpError::Smuggling(_)
            | HttpError::SpoofedCertHeader(_)
            | HttpError::BadChunk(_) => 400,
        }
    }
}

/// Maps an `httparse` error to ours.
fn from_httparse(err: httparse::Error) -> HttpError {
    match err {
        httparse::Error::TooManyHeaders => HttpError::HeadTooLarge,
        httparse::Error::HeaderName => HttpError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => HttpError::Malformed("invalid header value"),
        httparse::Error::NewLine => HttpError::Malformed("invalid line ending"),
        httparse::Error::Status => HttpError::Malformed("invalid status code"),
        httparse::Error::Token => HttpError::Malformed("invalid token"),
        httparse::Error::Version => HttpError::Malformed("unsupported HTTP version"),
    }
}

/// Splits a comma-separated header value into its non-empty elements, with
/// surrounding optional whitespace (SP / HTAB) removed.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|element| !element.is_empty())
}

/// Removes leading and trailing SP / HTAB.
fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// True when any `Connection` header among `headers` lists `token` (case-insensitive).
fn connection_has_token(headers: &[Header], token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| list_elements(&h.value))
        .any(|element| element.eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether the connection stays open after this message, per RFC 9112 §9.3:
/// HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
fn persistent(minor_version: u8, headers: &[Header]) -> bool {
    if connection_has_token(headers, "close") {
        return false;
    }
    minor_version >= 1 || connection_has_token(headers, "keep-alive")
}

/// Copies `httparse` headers into owned [`Header`]s.
fn own_headers(parsed: &[httparse::Header<'_>]) -> Vec<Header> {
    parsed
        .iter()
        .map(|h| Header {
            name: h.name.to_owned(),
            value: bytes::Bytes::copy_from_slice(h.value),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &str) -> Header {
        Header {
            name: name.to_owned(),
            value: bytes::Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    #[test]
    fn error_statuses() {
        assert_eq!(HttpError::Malformed("x").status(), 400);
        assert_eq!(HttpError::HeadTooLarge.status(), 431);
        assert_eq!(HttpError::Smuggling("x").status(), 400);
        assert_eq!(
            HttpError::SpoofedCertHeader("X_Client_Cert".into()).status(),
            400
        );
        assert_eq!(HttpError::BadChunk("x").status(), 400);
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            HttpError::SpoofedCertHeader("X_Client_Cert".into()).to_string(),
            "header X_Client_Cert imitates a certificate header"
        );
        assert_eq!(
            HttpError::Smuggling("both").to_string(),
            "ambiguous message framing: both"
        );
    }

    #[test]
    fn list_elements_trims_and_skips_empty() {
        let elements: Vec<&[u8]> = list_elements(b" a ,\tb\t,, c").collect();
        assert_eq!(elements, vec![&b"a"[..], b"b", b"c"]);
        assert_eq!(list_elements(b" , ").count(), 0);
    }

    #[test]
    fn persistence_rules() {
        assert!(persistent(1, &[]));
        assert!(!persistent(0, &[]));
        assert!(!persistent(1, &[header("Connection", "Close")]));
        assert!(persistent(0, &[header("connection", "Keep-Alive")]));
        assert!(!persistent(
            0,
            &[
                header("Connection", "keep-alive"),
                header("Connection", "close")
            ]
        ));
        assert!(!persistent(1, &[header("Connection", "foo, close")]));
        assert!(persistent(1, &[header("Connection", "closed")]));
    }
}
