//! Command-line options.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::parse::{parse_duration, parse_size, CpuSpec, Mix};
use crate::tls::TlsVersion;

/// What each worker connection does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A new TLS connection per request with a full handshake (no resumption).
    Handshake,
    /// A new TLS connection per request resuming the session of the worker's previous one.
    Resume,
    /// Persistent connections, sequential requests.
    Keepalive,
    /// Persistent connections, sequential requests with a body.
    Post,
    /// A weighted mix of handshake, resume, keepalive and post (see --mix).
    Mixed,
    /// Open --connections connections, one request each, hold them for --hold, probe them.
    Idle,
}

impl Mode {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Handshake => "handshake",
            Mode::Resume => "resume",
            Mode::Keepalive => "keepalive",
            Mode::Post => "post",
            Mode::Mixed => "mixed",
            Mode::Idle => "idle",
        }
    }
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s)
}

fn mix_arg(s: &str) -> Result<Mix, String> {
    Mix::parse(s)
}

fn cpus_arg(s: &str) -> Result<CpuSpec, String> {
    CpuSpec::parse(s)
}

fn rate_arg(s: &str) -> Result<f64, String> {
    let r: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid rate {s:?}"))?;
    if r.is_finite() && r > 0.0 {
        Ok(r)
    } else {
        Err(format!("invalid rate {s:?}: must be > 0"))
    }
}

fn header_arg(s: &str) -> Result<(String, String), String> {
    let (n, v) = s
        .split_once(':')
        .ok_or_else(|| format!("invalid header {s:?}: expected 'Name: value'"))?;
    let n = n.trim();
    if n.is_empty() || n.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("invalid header name in {s:?}"));
    }
    let v = v.trim();
    if v.bytes().any(|b| b == b'\r' || b == b'\n') {
        return Err(format!("invalid header value in {s:?}"));
    }
    Ok((n.to_owned(), v.to_owned()))
}

/// Load generator for TLS and mutual-TLS HTTP/1.1 servers.
///
/// Examples:
///   certgate-loadgen https://127.0.0.1:8443/ --cert client.pem --key client-key.pem --ca ca.pem
///   certgate-loadgen https://127.0.0.1:8443/ -m handshake -c 32 -d 20s --json out.json
///   certgate-loadgen https://127.0.0.1:8443/ -m mixed --mix handshake=1,keepalive=8,post=1 --rate 5000
///   certgate-loadgen https://127.0.0.1:8443/ -m idle -c 10000 --hold 60s --insecure
#[derive(Parser, Debug, Clone)]
#[command(name = "certgate-loadgen", version, verbatim_doc_comment)]
pub struct Opts {
    /// Target URL, https://host[:port]/path (host may be a name, an IPv4 or a [IPv6] address).
    #[arg(value_name = "URL")]
    pub url: String,

    /// Mode: handshake, resume, keepalive, post, mixed or idle.
    #[arg(short, long, value_enum, default_value = "keepalive")]
    pub mode: Mode,

    /// Request mix for --mode mixed, e.g. handshake=1,keepalive=8,post=1 (kinds: handshake,
    /// resume, keepalive, post).
    #[arg(long, value_parser = mix_arg, value_name = "KIND=W,...")]
    pub mix: Option<Mix>,

    /// Concurrent connections (workers) in total, spread over the threads; for idle, the number
    /// of connections to open and hold.
    #[arg(short, long, default_value_t = 64)]
    pub connections: usize,

    /// Worker threads (default: number of CPUs), each with its own event loop.
    #[arg(short, long)]
    pub threads: Option<usize>,

    /// Pin worker threads to CPUs: a list such as 1, 0,2 or 2-3 (thread i on the i-th listed
    /// CPU, round-robin) or `all` (thread i on CPU i).
    #[arg(long, value_parser = cpus_arg, value_name = "CPUS")]
    pub pin_cpus: Option<CpuSpec>,

    /// Measured duration, e.g. 10s, 500ms, 2m (default 10s when --requests is not given).
    #[arg(short, long, value_parser = duration_arg)]
    pub duration: Option<Duration>,

    /// Stop after this many measured requests (with --duration too, whichever comes first).
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,

    /// Warm-up before the measurement; its requests are excluded from the results.
    #[arg(short, long, value_parser = duration_arg, default_value = "0s")]
    pub warmup: Duration,

    /// Open loop: send R requests/s in total at fixed intervals, latency counted from the
    /// intended send time (default: closed loop, as fast as possible).
    #[arg(short, long, value_parser = rate_arg, value_name = "R")]
    pub rate: Option<f64>,

    /// idle mode: how long to hold the connections once all are open (default: --duration,
    /// else 10s).
    #[arg(long, value_parser = duration_arg)]
    pub hold: Option<Duration>,

    /// Connection attempts in flight at once while opening idle connections.
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: usize,

    /// Per-request timeout (connect, handshake, request and response).
    #[arg(long, value_parser = duration_arg, default_value = "10s")]
    pub timeout: Duration,

    /// HTTP method (default GET, or POST when a body is sent).
    #[arg(short = 'X', long)]
    pub method: Option<String>,

    /// Request body size (random bytes generated once), e.g. 1024, 64k, 1m. Sent by post (and
    /// the post part of mixed, default 1k); given explicitly it is sent by every mode.
    #[arg(short, long, value_parser = size_arg, value_name = "BYTES")]
    pub body_size: Option<u64>,

    /// Content-Type of the body.
    #[arg(long, default_value = "application/octet-stream")]
    pub content_type: String,

    /// Extra request header, 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_parser = header_arg, value_name = "HEADER")]
    pub headers: Vec<(String, String)>,

    /// Host header (default: the URL's host[:port]).
    #[arg(long)]
    pub host: Option<String>,

    /// Name sent in SNI and checked against the server certificate (default: the URL's host;
    /// an empty string sends no SNI).
    #[arg(long)]
    pub sni: Option<String>,

    /// Connect to this address instead of resolving the URL's host (e.g. 127.0.0.1:8443).
    #[arg(long, value_name = "ADDR")]
    pub connect_to: Option<String>,

    /// Client certificate: a PEM file (chain allowed) or a PKCS#12/PFX file (detected by content).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// Client private key, PEM (default: the --cert file).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Password of a PKCS#12/PFX --cert (also read from CERTGATE_LOADGEN_CERT_PASSWORD).
    #[arg(
        long,
        visible_alias = "pfx-password",
        env = "CERTGATE_LOADGEN_CERT_PASSWORD",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub cert_password: String,

    /// CA bundle (PEM) to verify the server (default: the system trust store).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// Do not verify the server certificate.
    #[arg(short = 'k', long)]
    pub insecure: bool,

    /// Pin the TLS version.
    #[arg(long = "tls", value_enum, value_name = "1.2|1.3")]
    pub tls_version: Option<TlsVersion>,

    /// Cipher list for TLS 1.2 (OpenSSL syntax, passed to BoringSSL).
    #[arg(long)]
    pub ciphers: Option<String>,

    /// Key-exchange groups, e.g. X25519:P-256.
    #[arg(long)]
    pub curves: Option<String>,

    /// Count any other status as an error (`http_status:<code>`).
    #[arg(long, value_name = "CODE")]
    pub expect_status: Option<u16>,

    /// Write the whole result as JSON to FILE (`-` for stdout; the summary then goes to stderr).
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,

    /// No progress bar and no summary (errors are still printed).
    #[arg(short, long)]
    pub quiet: bool,

    /// No progress bar even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}
