//! Bodies moved socket to socket by splice once the client's records are in the kernel (kTLS).
//!
//! [`forward_body`] moves exactly the rest of a `Content-Length` body from a
//! source socket to a sink socket: the bytes already read into user space
//! first (written the ordinary way), then the rest through one of the
//! worker's pipes ([`Io::splice_to`]), never more than the body, so a
//! pipelined next message stays in its socket. When the source refuses a
//! splice with nothing taken (a kTLS socket whose next record is a KeyUpdate
//! or an alert: the kernel answers `EINVAL`), one ordinary read handles that
//! record ([`BodySource::read_copy`]) and splicing resumes: no byte is lost or
//! reordered. It works on any `Io` stream, so it is tested over plain sockets.

use std::io;
use std::time::Duration;

use bytes::BytesMut;

use crate::runtime::io::Io;
use crate::runtime::pipe::PipePool;
use crate::tls::stream::{TlsConn, RECORD};

/// The reading side of a spliced body.
#[allow(async_fn_in_trait)] // single-threaded runtimes: no Send bound wanted
pub trait BodySource<S: Io> {
    /// The socket splices read from.
    fn sock(&self) -> &S;
    /// Read the next bytes the ordinary way into the spare capacity of `buf`
    /// (a kTLS connection handles a control record on the way). `Ok(0)` at
    /// end of stream.
    async fn read_copy(&mut self, buf: &mut BytesMut) -> io::Result<usize>;
}

/// A plain socket as a body source (the backend's side).
pub struct PlainSource<'a, S>(pub &'a S);

impl<S: Io> BodySource<S> for PlainSource<'_, S> {
    fn sock(&self) -> &S {
        self.0
    }

    async fn read_copy(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        if buf.capacity() - buf.len() < RECORD / 2 {
            buf.reserve(RECORD);
        }
        let (res, b) = self.0.read(std::mem::take(buf)).await;
        *buf = b;
        res
    }
}

impl<S: Io> BodySource<S> for TlsConn<S> {
    fn sock(&self) -> &S {
        TlsConn::sock(self)
    }

    async fn read_copy(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        if buf.capacity() - buf.len() < RECORD / 2 {
            buf.reserve(RECORD);
        }
        self.read(buf).await
    }
}

/// How long each wait may take.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// For bytes from the source (each splice into the pipe, each read).
    pub read: Duration,
    /// For room at the sink (each splice out of the pipe, each write).
    pub write: Duration,
}

/// Why a body did not get through; the variant says which side failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// No pipe could be had; nothing was moved, so the body can be copied.
    #[error("no pipe for splicing the body: {0}")]
    Pipe(io::Error),
    /// Reading from the source failed.
    #[error("reading the body from its source: {0}")]
    Source(io::Error),
    /// The source ended before the body did.
    #[error("the body's source ended {missing} bytes before the end of the body")]
    Truncated {
        /// Body bytes that never came.
        missing: u64,
    },
    /// The source sent nothing for a whole read deadline.
    #[error("the body's source sent nothing within {0:?}")]
    SourceTimeout(Duration),
    /// Writing to the sink failed.
    #[error("writing the body to its destination: {0}")]
    Sink(io::Error),
    /// The sink took nothing for a whole write deadline.
    #[error("the body's destination took nothing within {0:?}")]
    SinkTimeout(Duration),
}

/// What a body took: bytes through the pipe, and bytes through user space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// Moved by splice, never in user space.
    pub spliced: u64,
    /// Written from user space (already read, or read around a refused splice).
    pub copied: u64,
}

/// A refusal of the source to splice with nothing taken from it, which one
/// ordinary read gets past: kTLS returns `EINVAL` (`EIO`, `ENOTSUPP` on some
/// kernels) when the next record is not application data; a backend that
/// cannot splice a socket returns `Unsupported`.
fn refused(e: &io::Error) -> bool {
    const ENOTSUPP: i32 = 524; // the kernel-internal code some kTLS versions leak
    e.kind() == io::ErrorKind::Unsupported
        || matches!(
            e.raw_os_error(),
            Some(libc::EINVAL | libc::EIO | libc::EOPNOTSUPP | ENOTSUPP)
        )
}

/// Split the body's bytes (at most `left`) off the front of `buf`, counted as copied.
fn take_body(buf: &mut BytesMut, left: &mut u64, moved: &mut Moved) -> BytesMut {
    let n = (buf.len() as u64).min(*left) as usize;
    *left -= n as u64;
    moved.copied += n as u64;
    buf.split_to(n)
}

/// Write `chunk` to `dst` within `limit`.
async fn write_chunk<S: Io>(dst: &S, chunk: BytesMut, limit: Duration) -> Result<(), BodyError> {
    match tokio::time::timeout(limit, dst.write_all(chunk)).await {
        Ok((Ok(()), _)) => Ok(()),
        Ok((Err(e), _)) => Err(BodyError::Sink(e)),
        Err(_) => Err(BodyError::SinkTimeout(limit)),
    }
}

/// Move the next `remaining` body bytes from `src` to `dst`.
///
/// `buf` holds bytes already read from the source (the body's first ones);
/// up to `remaining` of them are written first. On return it holds only what
/// was read past the body (the next message's bytes). The pipe comes from
/// `pipes` and goes back there empty; after a failure half-way it is
/// dropped, never reused.
pub async fn forward_body<S: Io, R: BodySource<S>>(
    src: &mut R,
    dst: &S,
    pipes: &PipePool,
    buf: &mut BytesMut,
    remaining: u64,
    limits: Deadlines,
) -> Result<Moved, BodyError> {
    // First, so that a failure here leaves everything as it was.
    let mut pipe = pipes.take().map_err(BodyError::Pipe)?;
    let mut left = remaining;
    let mut moved = Moved::default();
    let chunk = take_body(buf, &mut left, &mut moved);
    if !chunk.is_empty() {
        write_chunk(dst, chunk, limits.write).await?;
    }
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(pipe.room());
        let (res, p) =
            match tokio::time::timeout(limits.read, src.sock().splice_in(pipe, want)).await {
                Ok(r) => r,
                // The pipe went with the cancelled operation: it is not reused.
                Err(_) => return Err(BodyError::SourceTimeout(limits.read)),
            };
        pipe = p;
        match res {
            Ok(0) => {
                pipes.give_back(pipe);
                return Err(BodyError::Truncated { missing: left });
            }
            Ok(n) => {
                let (res, p) = match tokio::time::timeout(limits.write, dst.splice_out(pipe)).await
                {
                    Ok(r) => r,
                    Err(_) => return Err(BodyError::SinkTimeout(limits.write)),
                };
                // A pipe still holding bytes is dropped here, with its bytes.
                res.map_err(BodyError::Sink)?;
                pipe = p;
                left -= n as u64;
                moved.spliced += n as u64;
            }
            Err(e) if pipe.is_empty() && refused(&e) => {
                // The next record is not one splice can take: read it the
                // ordinary way (a control record is handled there), forward
                // what application data it yields, then splice again.
                let read = tokio::time::timeout(limits.read, src.read_copy(buf)).await;
                match read {
                    Ok(Ok(0)) => {
                        pipes.give_back(pipe);
                        return Err(BodyError::Truncated { missing: left });
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(BodyError::Source(e)),
                    Err(_) => return Err(BodyError::SourceTimeout(limits.read)),
                }
                let chunk = take_body(buf, &mut left, &mut moved);
                write_chunk(dst, chunk, limits.write).await?;
            }
            Err(e) => return Err(BodyError::Source(e)),
        }
    }
    pipes.give_back(pipe);
    Ok(moved)
}
