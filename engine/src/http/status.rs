//! Status codes: canonical reason phrases and the proxy's own small responses.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

/// `HTTP/1.1 100 Continue\r\n\r\n`
pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Canonical reason phrase for common status codes, "Unknown" otherwise.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        511 => "Network Authentication Required",
        _ => "Unknown",
    }
}

/// A complete small plain-text error response: status line, Content-Type: text/plain; charset=utf-8,
/// Content-Length, `Connection: close` when close is true, blank line, body, where body is `message` + "\n".
pub fn error_response(status: u16, message: &str, close: bool) -> Bytes {
    let reason = reason_phrase(status);
    let body_len = message.len() + 1;
    let mut out = BytesMut::with_capacity(128 + reason.len() + body_len);
    // Writing into a BytesMut cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status:03} {reason}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {body_len}\r\n"
    );
    if close {
        out.put_slice(b"Connection: close\r\n");
    }
    out.put_slice(b"\r\n");
    out.put_slice(message.as_bytes());
    out.put_u8(b'\n');
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_phrases() {
        assert_eq!(reason_phrase(200), "OK");
        assert_eq!(reason_phrase(400), "Bad Request");
        assert_eq!(reason_phrase(404), "Not Found");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(502), "Bad Gateway");
        assert_eq!(reason_phrase(599), "Unknown");
        assert_eq!(reason_phrase(0), "Unknown");
    }

    #[test]
    fn continue_bytes() {
        assert_eq!(CONTINUE_100, b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn error_response_with_close() {
        assert_eq!(
            &error_response(400, "malformed request: invalid token", true)[..],
            &b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 33\r\n\
Connection: close\r\n\
\r\n\
malformed request: invalid token\n"[..]
        );
    }

    #[test]
    fn error_response_keep_alive_and_unicode_length() {
        let response = error_response(503, "überlastet", false);
        assert_eq!(
            &response[..],
            "HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 12\r\n\
\r\n\
überlastet\n"
                .as_bytes()
        );
    }

    #[test]
    fn error_response_empty_message() {
        let response = error_response(431, "", true);
        assert!(response.ends_with(b"Content-Length: 1\r\nConnection: close\r\n\r\n\n"));
        assert!(response.starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    }
}
