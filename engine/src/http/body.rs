//! Message body framing: which kind of body follows a head, and where a chunked body ends.

use super::{list_elements, trim_ows, Header, HttpError};

/// How the body following a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: the next message starts right after the head.
    None,
    /// Exactly this many bytes follow the head.
    ContentLength(u64),
    /// `Transfer-Encoding: chunked`; track the end with [`ChunkedTracker`].
    Chunked,
    /// The body runs until the sender closes the connection (responses only).
    CloseDelimited,
}

/// Longest chunk-size line accepted (size, extensions; without the CRLF).
const MAX_SIZE_LINE: usize = 4096;
/// Longest trailer section accepted (all trailer field lines with their CRLFs).
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// At most 16 hex digits: every such size fits in a `u64`.
const MAX_SIZE_DIGITS: u8 = 16;

/// Where the tracker is inside the chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting the first hex digit of a chunk size.
    SizeStart,
    /// Inside the hex digits of a chunk size.
    Size,
    /// Whitespace after the size; only more whitespace or `;` may follow.
    SizeWhitespace,
    /// Inside chunk extensions, until CR.
    Extension,
    /// CR of the size line seen; expecting LF.
    SizeLf,
    /// Inside chunk data; `remaining` bytes are left.
    Data,
    /// Chunk data finished; expecting CR.
    DataCr,
    /// CR after chunk data seen; expecting LF.
    DataLf,
    /// At the start of a trailer field line or of the final empty line.
    TrailerLineStart,
    /// Inside a trailer field name, until `:`.
    TrailerName,
    /// Inside a trailer field value, until CR.
    TrailerValue,
    /// CR of a trailer field line seen; expecting LF.
    TrailerLf,
    /// CR of the final empty line seen; expecting LF.
    FinalLf,
    /// The whole body has been seen.
    Done,
    /// The body was rejected with this reason.
    Failed(&'static str),
}

/// Tracks where a chunked body ends while its bytes are forwarded unchanged.
///
/// Works across arbitrary splits of the input; chunk data is skipped in O(1)
/// per call, everything else is validated byte by byte (and bounded).
#[derive(Debug, Clone)]
pub struct ChunkedTracker {
    state: State,
    /// Size of the current chunk while its size line is parsed; data bytes left in `Data`.
    remaining: u64,
    /// Hex digits seen in the current size line.
    size_digits: u8,
    /// Bytes seen in the current size line (excluding CRLF).
    size_line_len: usize,
    /// Bytes seen in the trailer section so far.
    trailer_len: usize,
    /// Refuse trailer fields named like certificate headers (request bodies:
    /// a backend that merges trailers into headers must not be fooled).
    reject_cert_trailers: bool,
    /// The current trailer field name, lower-cased with `_` as `-` (first bytes only).
    name: [u8; NAME_PREFIX],
    /// Length of the current trailer field name.
    name_len: usize,
}

/// Longest trailer name remembered for the certificate-header check; every
/// certificate header name is shorter.
const NAME_PREFIX: usize = 40;

/// Result of [`ChunkedTracker::advance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkProgress {
    /// How many bytes of the input belong to the body; the rest is the next message.
    pub consumed: usize,
    /// Whether the body (last-chunk, trailers and final CRLF included) is complete.
    pub done: bool,
}

impl Default for ChunkedTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedTracker {
    /// A tracker positioned at the start of a chunked body.
    pub fn new() -> Self {
        ChunkedTracker {
            state: State::SizeStart,
            remaining: 0,
            size_digits: 0,
            size_line_len: 0,
            trailer_len: 0,
            reject_cert_trailers: false,
            name: [0; NAME_PREFIX],
            name_len: 0,
        }
    }

    /// A tracker for a request body: like [`ChunkedTracker::new`], and a trailer
    /// field named like a certificate header (any case, `_` for `-`) is an error.
    pub fn for_request() -> Self {
        ChunkedTracker {
            reject_cert_trailers: true,
            ..Self::new()
        }
    }

    fn push_name_byte(&mut self, b: u8) {
        if self.name_len < NAME_PREFIX {
            self.name[self.name_len] = if b == b'_' {
                b'-'
            } else {
                b.to_ascii_lowercase()
            };
        }
        self.name_len += 1;
    }

    fn name_is_cert_header(&self) -> bool {
        if self.name_len > NAME_PREFIX {
            // Only the `x-client-cert-*` family has names this long.
            return self.name.starts_with(b"x-client-cert-");
        }
        std::str::from_utf8(&self.name[..self.name_len]).is_ok_and(super::rewrite::is_cert_header)
    }

    /// Whether the end of the body has been reached.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feed the next bytes of the body. Returns how many of them belong to the body
    /// (the rest, if any, is the next message) and whether the body (including the
    /// last-chunk and trailer section and final CRLF) is complete.
    ///
    /// After an error the tracker keeps failing with the same error.
    pub fn advance(&mut self, input: &[u8]) -> Result<ChunkProgress, HttpError> {
        if let State::Failed(reason) = self.state {
            return Err(HttpError::BadChunk(reason));
        }
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                State::Done => break,
                State::Data => {
                    let available = (input.len() - pos) as u64;
                    let take = self.remaining.min(available);
                    // `take <= available`, which came from a usize.
                    pos += take as usize;
                    self.remaining -= take;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                }
                _ => {
                    let byte = input[pos];
                    pos += 1;
                    if let Err(reason) = self.step(byte) {
                        self.state = State::Failed(reason);
                        return Err(HttpError::BadChunk(reason));
                    }
                }
            }
        }
        Ok(ChunkProgress {
            consumed: pos,
            done: self.state == State::Done,
        })
    }

    /// Processes one byte outside chunk data.
    fn step(&mut self, byte: u8) -> Result<(), &'static str> {
        match self.state {
            State::SizeStart => {
                let digit = hex_value(byte).ok_or("invalid chunk size")?;
                self.remaining = u64::from(digit);
                self.size_digits = 1;
                self.size_line_len = 1;
                self.state = State::Size;
            }
            State::Size => {
                self.count_size_line_byte(byte)?;
                if let Some(digit) = hex_value(byte) {
                    if self.size_digits >= MAX_SIZE_DIGITS {
                        return Err("chunk size too large");
                    }
                    self.size_digits += 1;
                    self.remaining = self
                        .remaining
                        .checked_mul(16)
                        .and_then(|v| v.checked_add(u64::from(digit)))
                        .ok_or("chunk size too large")?;
                } else {
                    self.state = match byte {
                        b';' => State::Extension,
                        b' ' | b'\t' => State::SizeWhitespace,
                        b'\r' => State::SizeLf,
                        b'\n' => return Err("bare LF after chunk size"),
                        _ => return Err("invalid chunk size"),
                    };
                }
            }
            State::SizeWhitespace => {
                self.count_size_line_byte(byte)?;
                match byte {
                    b' ' | b'\t' => {}
                    b';' => self.state = State::Extension,
                    _ => return Err("invalid chunk size"),
                }
            }
            State::Extension => {
                self.count_size_line_byte(byte)?;
                match byte {
                    b'\r' => self.state = State::SizeLf,
                    b'\n' => return Err("bare LF in chunk extension"),
                    b if is_forbidden_control(b) => {
                        return Err("control character in chunk extension")
                    }
                    _ => {}
                }
            }
            State::SizeLf => {
                if byte != b'\n' {
                    return Err("chunk size line not terminated by CRLF");
                }
                if self.remaining == 0 {
                    self.trailer_len = 0;
                    self.state = State::TrailerLineStart;
                } else {
                    self.state = State::Data;
                }
            }
            State::DataCr => {
                if byte != b'\r' {
                    return Err("chunk data not followed by CRLF");
                }
                self.state = State::DataLf;
            }
            State::DataLf => {
                if byte != b'\n' {
                    return Err("chunk data not followed by CRLF");
                }
                self.state = State::SizeStart;
            }
            State::TrailerLineStart => match byte {
                b'\r' => self.state = State::FinalLf,
                b'\n' => return Err("bare LF in trailer section"),
                b' ' | b'\t' => return Err("folded trailer field"),
                b if is_token_byte(b) => {
                    self.count_trailer_byte()?;
                    self.name_len = 0;
                    self.push_name_byte(b);
                    self.state = State::TrailerName;
                }
                _ => return Err("invalid trailer field name"),
            },
            State::TrailerName => {
                self.count_trailer_byte()?;
                match byte {
                    b':' if self.reject_cert_trailers && self.name_is_cert_header() => {
                        return Err("certificate header in trailer section")
                    }
                    b':' => self.state = State::TrailerValue,
                    b'\r' | b'\n' => return Err("trailer field without colon"),
                    b if is_token_byte(b) => self.push_name_byte(b),
                    _ => return Err("invalid trailer field name"),
                }
            }
            State::TrailerValue => {
                self.count_trailer_byte()?;
                match byte {
                    b'\r' => self.state = State::TrailerLf,
                    b'\n' => return Err("bare LF in trailer section"),
                    b if is_forbidden_control(b) => {
                        return Err("control character in trailer field")
                    }
                    _ => {}
                }
            }
            State::TrailerLf => {
                self.count_trailer_byte()?;
                if byte != b'\n' {
                    return Err("trailer field not terminated by CRLF");
                }
                self.state = State::TrailerLineStart;
            }
            State::FinalLf => {
                if byte != b'\n' {
                    return Err("chunked body not terminated by CRLF");
                }
                self.state = State::Done;
            }
            // `advance` never calls `step` in these states.
            State::Data | State::Done | State::Failed(_) => {
                unreachable!("ChunkedTracker::step called in state {:?}", self.state)
            }
        }
        Ok(())
    }

    /// Counts one more byte of the size line (the CR included) against its bound.
    fn count_size_line_byte(&mut self, byte: u8) -> Result<(), &'static str> {
        if byte != b'\r' {
            self.size_line_len += 1;
            if self.size_line_len > MAX_SIZE_LINE {
                return Err("chunk size line too long");
            }
        }
        Ok(())
    }

    /// Counts one more byte of the trailer section against its bound.
    fn count_trailer_byte(&mut self) -> Result<(), &'static str> {
        self.trailer_len += 1;
        if self.trailer_len > MAX_TRAILER_BYTES {
            return Err("trailer section too large");
        }
        Ok(())
    }
}

/// Value of an ASCII hex digit.
fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Control characters other than HTAB (and DEL), never allowed in extensions or field values.
fn is_forbidden_control(byte: u8) -> bool {
    (byte < 0x20 && byte != b'\t') || byte == 0x7f
}

/// RFC 9110 `tchar`.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Body framing announced by a head's `Content-Length` / `Transfer-Encoding` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Neither field present.
    Unframed,
    /// A valid `Content-Length`.
    ContentLength(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Determines the framing of a message from its headers, rejecting every
/// ambiguous shape (RFC 9112 §6): CL together with TE, conflicting CLs, invalid CLs,
/// codings other than a single `chunked`, TE in HTTP/1.0.
pub(crate) fn message_framing(headers: &[Header], minor_version: u8) -> Result<Framing, HttpError> {
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut codings = 0usize;
    let mut only_chunked = true;

    for header in headers {
        if header.name.eq_ignore_ascii_case("content-length") {
            for element in header.value.split(|&b| b == b',') {
                let value = parse_content_length(trim_ows(element))?;
                match content_length {
                    Some(previous) if previous != value => {
                        return Err(HttpError::Smuggling("conflicting Content-Length values"));
                    }
                    _ => content_length = Some(value),
                }
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            for coding in list_elements(&header.value) {
                codings += 1;
                only_chunked &= coding.eq_ignore_ascii_case(b"chunked");
            }
        }
    }

    if !transfer_encoding {
        return Ok(match content_length {
            Some(length) => Framing::ContentLength(length),
            None => Framing::Unframed,
        });
    }
    if content_length.is_some() {
        return Err(HttpError::Smuggling(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if minor_version == 0 {
        return Err(HttpError::Smuggling("Transfer-Encoding in HTTP/1.0"));
    }
    if !only_chunked {
        return Err(HttpError::Smuggling("unsupported transfer coding"));
    }
    match codings {
        0 => Err(HttpError::Smuggling("empty Transfer-Encoding")),
        1 => Ok(Framing::Chunked),
        _ => Err(HttpError::Smuggling("chunked applied more than once")),
    }
}

/// Parses one Content-Length element: plain ASCII digits that fit a `u64`.
fn parse_content_length(digits: &[u8]) -> Result<u64, HttpError> {
    const INVALID: HttpError = HttpError::Malformed("invalid Content-Length");
    if digits.is_empty() {
        return Err(INVALID);
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(INVALID);
        }
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(INVALID)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body exercising extensions, several chunks, uppercase hex and trailers.
    const SAMPLE: &[u8] = b"5;name=value\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n\
0 ; last\r\nTrailer-One: 1\r\nX-Checksum: abc\r\n\r\n";
    const NEXT: &[u8] = b"GET /next HTTP/1.1\r\n\r\n";

    fn header(name: &str, value: &str) -> Header {
        Header {
            name: name.to_owned(),
            value: bytes::Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    /// Feeds `input` in the given pieces; returns total consumed and done.
    fn feed(pieces: &[&[u8]]) -> Result<(usize, bool), HttpError> {
        let mut tracker = ChunkedTracker::new();
        let mut total = 0;
        for piece in pieces {
            let progress = tracker.advance(piece)?;
            total += progress.consumed;
            assert_eq!(progress.done, tracker.is_done());
            if progress.done {
                return Ok((total, true));
            }
            assert_eq!(
                progress.consumed,
                piece.len(),
                "unfinished body consumes all"
            );
        }
        Ok((total, false))
    }

    fn feed_whole(input: &[u8]) -> Result<(usize, bool), HttpError> {
        feed(&[input])
    }

    fn bad(input: &[u8]) -> &'static str {
        match feed_whole(input) {
            Err(HttpError::BadChunk(reason)) => reason,
            other => panic!("expected BadChunk for {input:?}, got {other:?}"),
        }
    }

    #[test]
    fn whole_body_then_next_message() {
        let mut input = SAMPLE.to_vec();
        input.extend_from_slice(NEXT);
        assert_eq!(feed_whole(&input).unwrap(), (SAMPLE.len(), true));
    }

    #[test]
    fn every_split_point() {
        let mut input = SAMPLE.to_vec();
        input.extend_from_slice(NEXT);
        for split in 0..=input.len() {
            let (a, b) = input.split_at(split);
            let result = feed(&[a, b]).unwrap();
            assert_eq!(result, (SAMPLE.len(), true), "split at {split}");
        }
    }

    #[test]
    fn every_pair_of_split_points() {
        for i in 0..=SAMPLE.len() {
            for j in i..=SAMPLE.len() {
                let result = feed(&[&SAMPLE[..i], &SAMPLE[i..j], &SAMPLE[j..]]).unwrap();
                assert_eq!(result, (SAMPLE.len(), true), "splits at {i}, {j}");
            }
        }
    }

    #[test]
    fn byte_at_a_time() {
        let pieces: Vec<&[u8]> = SAMPLE.chunks(1).collect();
        assert_eq!(feed(&pieces).unwrap(), (SAMPLE.len(), true));
    }

    #[test]
    fn incomplete_body_is_not_done() {
        for end in 0..SAMPLE.len() {
            assert_eq!(
                feed_whole(&SAMPLE[..end]).unwrap(),
                (end, false),
                "end {end}"
            );
        }
    }

    #[test]
    fn minimal_and_empty_bodies() {
        assert_eq!(feed_whole(b"0\r\n\r\n").unwrap(), (5, true));
        assert_eq!(feed_whole(b"000\r\n\r\nrest").unwrap(), (7, true));
        let mut tracker = ChunkedTracker::new();
        assert_eq!(
            tracker.advance(b"").unwrap(),
            ChunkProgress {
                consumed: 0,
                done: false
            }
        );
    }

    #[test]
    fn done_tracker_consumes_nothing_more() {
        let mut tracker = ChunkedTracker::new();
        assert!(tracker.advance(b"0\r\n\r\n").unwrap().done);
        assert_eq!(
            tracker.advance(b"more").unwrap(),
            ChunkProgress {
                consumed: 0,
                done: true
            }
        );
    }

    #[test]
    fn large_chunk_is_skipped_in_runs() {
        let mut tracker = ChunkedTracker::new();
        let size = 3 * 65536;
        let head = format!("{size:x}\r\n");
        assert!(!tracker.advance(head.as_bytes()).unwrap().done);
        let data = vec![b'x'; 65536];
        for _ in 0..3 {
            assert_eq!(tracker.advance(&data).unwrap().consumed, 65536);
        }
        // The CRLF after the data must follow now, not more data.
        assert!(tracker.advance(b"x").is_err());
    }

    #[test]
    fn max_size_digits() {
        let mut tracker = ChunkedTracker::new();
        tracker.advance(b"FFFFFFFFFFFFFFFF\r\n").unwrap();
        assert_eq!(tracker.remaining, u64::MAX);
        assert_eq!(bad(b"10000000000000000\r\n"), "chunk size too large");
        assert_eq!(bad(b"00000000000000005\r\n"), "chunk size too large");
    }

    #[test]
    fn invalid_sizes() {
        assert_eq!(bad(b"+5\r\nhello\r\n0\r\n\r\n"), "invalid chunk size");
        assert_eq!(bad(b"-5\r\n"), "invalid chunk size");
        assert_eq!(bad(b"0x5\r\nhello\r\n"), "invalid chunk size");
        assert_eq!(bad(b" 5\r\nhello\r\n"), "invalid chunk size");
        assert_eq!(bad(b"\r\n"), "invalid chunk size");
        assert_eq!(bad(b"g\r\n"), "invalid chunk size");
        assert_eq!(bad(b"5 x\r\n"), "invalid chunk size");
        assert_eq!(bad(b"5 \r\n"), "invalid chunk size");
    }

    #[test]
    fn whitespace_before_extension_is_allowed() {
        let body = b"1 \t;a=b\r\nx\r\n0\r\n\r\n";
        assert_eq!(feed_whole(body).unwrap(), (body.len(), true));
    }

    #[test]
    fn bare_lf_rejected() {
        assert_eq!(bad(b"5\nhello\r\n0\r\n\r\n"), "bare LF after chunk size");
        assert_eq!(bad(b"5;a\nhello\r\n"), "bare LF in chunk extension");
        assert_eq!(
            bad(b"5\r\rhello\r\n"),
            "chunk size line not terminated by CRLF"
        );
        assert_eq!(bad(b"0\r\n\n"), "bare LF in trailer section");
        assert_eq!(bad(b"0\r\nA: b\n\r\n"), "bare LF in trailer section");
        assert_eq!(bad(b"0\r\n\rX"), "chunked body not terminated by CRLF");
    }

    #[test]
    fn data_must_be_followed_by_crlf() {
        assert_eq!(bad(b"5\r\nhelloX\r\n"), "chunk data not followed by CRLF");
        assert_eq!(bad(b"5\r\nhello\rX"), "chunk data not followed by CRLF");
        assert_eq!(
            bad(b"5\r\nhello\n0\r\n\r\n"),
            "chunk data not followed by CRLF"
        );
        // Too short a chunk: the data swallows the CRLF, then "0\r" is not CRLF.
        assert_eq!(
            bad(b"7\r\nhello\r\n0\r\n\r\n"),
            "chunk data not followed by CRLF"
        );
    }

    #[test]
    fn size_line_bound() {
        let mut line = b"1;".to_vec();
        line.resize(4096, b'a');
        line.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert!(feed_whole(&line).unwrap().1);

        let mut line = b"1;".to_vec();
        line.resize(4097, b'a');
        line.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(bad(&line), "chunk size line too long");
    }

    #[test]
    fn extension_control_characters_rejected() {
        assert_eq!(
            bad(b"1;a\x00b\r\nx\r\n"),
            "control character in chunk extension"
        );
    }

    #[test]
    fn trailer_validation() {
        assert_eq!(bad(b"0\r\nNoColon\r\n\r\n"), "trailer field without colon");
        assert_eq!(bad(b"0\r\n folded\r\n\r\n"), "folded trailer field");
        assert_eq!(bad(b"0\r\n:x\r\n\r\n"), "invalid trailer field name");
        assert_eq!(bad(b"0\r\nA b: c\r\n\r\n"), "invalid trailer field name");
        assert_eq!(
            bad(b"0\r\nA: \x01\r\n\r\n"),
            "control character in trailer field"
        );
        assert_eq!(bad(b"0\r\nA: b\rX"), "trailer field not terminated by CRLF");
    }

    #[test]
    fn trailer_bound() {
        let mut body = b"0\r\nX: ".to_vec();
        // Trailer section = "X: " + value + "\r\n", exactly 16 KiB.
        body.resize(3 + 16 * 1024 - 2, b'v');
        body.extend_from_slice(b"\r\n\r\n");
        assert_eq!(body.len(), 3 + 16 * 1024 + 2);
        assert!(feed_whole(&body).unwrap().1);

        let mut body = b"0\r\nX: ".to_vec();
        body.resize(3 + 16 * 1024 - 1, b'v');
        body.extend_from_slice(b"\r\n\r\n");
        assert_eq!(bad(&body), "trailer section too large");
    }

    #[test]
    fn many_small_trailers_are_bounded_too() {
        let mut body = b"0\r\n".to_vec();
        for _ in 0..3000 {
            body.extend_from_slice(b"A: b\r\n");
        }
        body.extend_from_slice(b"\r\n");
        assert_eq!(bad(&body), "trailer section too large");
    }

    #[test]
    fn failure_is_sticky() {
        let mut tracker = ChunkedTracker::new();
        assert!(tracker.advance(b"z").is_err());
        assert_eq!(
            tracker.advance(b"0\r\n\r\n"),
            Err(HttpError::BadChunk("invalid chunk size"))
        );
    }

    #[test]
    fn framing_none_cl_chunked() {
        assert_eq!(message_framing(&[], 1), Ok(Framing::Unframed));
        assert_eq!(
            message_framing(&[header("Content-Length", "42")], 1),
            Ok(Framing::ContentLength(42))
        );
        assert_eq!(
            message_framing(&[header("content-length", "0")], 0),
            Ok(Framing::ContentLength(0))
        );
        assert_eq!(
            message_framing(&[header("Transfer-Encoding", "Chunked")], 1),
            Ok(Framing::Chunked)
        );
    }

    #[test]
    fn framing_cl_and_te() {
        let headers = [
            header("Content-Length", "5"),
            header("Transfer-Encoding", "chunked"),
        ];
        assert!(matches!(
            message_framing(&headers, 1),
            Err(HttpError::Smuggling(_))
        ));
        let reversed = [headers[1].clone(), headers[0].clone()];
        assert!(matches!(
            message_framing(&reversed, 1),
            Err(HttpError::Smuggling(_))
        ));
    }

    #[test]
    fn framing_duplicate_content_length() {
        let same = [header("Content-Length", "5"), header("Content-Length", "5")];
        assert_eq!(message_framing(&same, 1), Ok(Framing::ContentLength(5)));
        assert_eq!(
            message_framing(&[header("Content-Length", "5, 5")], 1),
            Ok(Framing::ContentLength(5))
        );
        let differing = [header("Content-Length", "5"), header("Content-Length", "6")];
        assert_eq!(
            message_framing(&differing, 1),
            Err(HttpError::Smuggling("conflicting Content-Length values"))
        );
        assert_eq!(
            message_framing(&[header("Content-Length", "5,6")], 1),
            Err(HttpError::Smuggling("conflicting Content-Length values"))
        );
    }

    #[test]
    fn framing_invalid_content_length() {
        for value in [
            "+5",
            "-5",
            "1 2",
            "",
            "5,",
            "0x10",
            "5.0",
            "18446744073709551616",
        ] {
            assert_eq!(
                message_framing(&[header("Content-Length", value)], 1),
                Err(HttpError::Malformed("invalid Content-Length")),
                "value {value:?}"
            );
        }
        assert_eq!(
            message_framing(&[header("Content-Length", "18446744073709551615")], 1),
            Ok(Framing::ContentLength(u64::MAX))
        );
    }

    #[test]
    fn framing_transfer_codings() {
        for value in [
            "gzip, chunked",
            "chunked, gzip",
            "gzip",
            "identity",
            "chunked, chunked",
            "",
            "chunked;q=1",
            "xchunked",
        ] {
            assert!(
                matches!(
                    message_framing(&[header("Transfer-Encoding", value)], 1),
                    Err(HttpError::Smuggling(_))
                ),
                "value {value:?}"
            );
        }
        let split = [
            header("Transfer-Encoding", "gzip"),
            header("Transfer-Encoding", "chunked"),
        ];
        assert!(matches!(
            message_framing(&split, 1),
            Err(HttpError::Smuggling(_))
        ));
        assert_eq!(
            message_framing(&[header("Transfer-Encoding", "chunked")], 0),
            Err(HttpError::Smuggling("Transfer-Encoding in HTTP/1.0"))
        );
    }

    #[test]
    fn request_trailers_cannot_carry_certificate_headers() {
        for name in [
            "X-Client-Cert-Thumbprint",
            "x_client_cert",
            "X-Forwarded-Client-Cert",
            "X-Client-Cert-A-Very-Long-Name-Well-Past-Forty-Characters",
        ] {
            let body = format!("3\r\nabc\r\n0\r\n{name}: AAAA\r\n\r\n");
            let err = ChunkedTracker::for_request().advance(body.as_bytes());
            assert!(err.is_err(), "{name} accepted as a request trailer");
            // Split inside the name too.
            let mut t = ChunkedTracker::for_request();
            let (a, b) = body.as_bytes().split_at(body.len() - 12);
            let first = t.advance(a);
            assert!(
                first.is_err() || t.advance(b).is_err(),
                "{name} accepted when split"
            );
            // Responses keep their trailers.
            let ok = ChunkedTracker::new().advance(body.as_bytes()).unwrap();
            assert!(ok.done);
        }
        let fine = "3\r\nabc\r\n0\r\nX-Checksum: 1\r\n\r\n";
        assert!(
            ChunkedTracker::for_request()
                .advance(fine.as_bytes())
                .unwrap()
                .done
        );
    }
}
