//! The result: a serialisable report (the `--json` output) and the human summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::cli::{Mode, Opts};
use crate::parse::Kind;
use crate::run::Plan;
use crate::stats::Stats;
use crate::tls::TlsVersion;

/// Phase lengths of a run.
pub struct Timings {
    /// The measured window (idle: the opening phase).
    pub measured: Duration,
    /// Warm-up excluded from the results.
    pub warmup: Duration,
    /// Idle: time to open all connections.
    pub idle_open: Option<Duration>,
    /// Idle: time the connections were held.
    pub idle_hold: Option<Duration>,
}

/// The configuration as run (resolved values).
#[derive(Clone, Debug, Serialize)]
pub struct ConfigReport {
    /// Target URL.
    pub url: String,
    /// Address connected to.
    pub address: String,
    /// Mode.
    pub mode: Mode,
    /// Mix (mixed mode), as `kind=weight,...`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mix: Option<String>,
    /// Connections.
    pub connections: usize,
    /// Worker threads.
    pub threads: usize,
    /// CPU of each thread, when pinned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_cpus: Option<Vec<usize>>,
    /// Open-loop rate, requests/s (absent: closed loop).
    pub rate: Option<f64>,
    /// Duration bound, seconds.
    pub duration_secs: Option<f64>,
    /// Request bound.
    pub requests_limit: Option<u64>,
    /// Warm-up, seconds.
    pub warmup_secs: f64,
    /// Idle hold, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_secs: Option<f64>,
    /// Per-request timeout, seconds.
    pub timeout_secs: f64,
    /// Method of plain requests.
    pub method: String,
    /// Body size of plain requests.
    pub body_size: u64,
    /// Method of post requests (post, mixed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_method: Option<String>,
    /// Body size of post requests (post, mixed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_body_size: Option<u64>,
    /// Content-Type of bodies.
    pub content_type: String,
    /// Host header.
    pub host: String,
    /// SNI override (empty: none sent).
    pub sni: Option<String>,
    /// TLS version pin.
    pub tls_version: Option<TlsVersion>,
    /// Cipher list.
    pub ciphers: Option<String>,
    /// Curves.
    pub curves: Option<String>,
    /// Client certificate file.
    pub client_cert: Option<String>,
    /// CA bundle.
    pub ca: Option<String>,
    /// Server verification disabled.
    pub insecure: bool,
    /// Expected status.
    pub expect_status: Option<u16>,
}

/// TLS handshake counts.
#[derive(Clone, Debug, Serialize)]
pub struct HandshakeReport {
    /// Handshakes completed in the window.
    pub total: u64,
    /// Handshakes per second of the window.
    pub per_sec: f64,
    /// Full (not resumed) handshakes.
    pub full: u64,
    /// Resumed handshakes (`session_reused()`).
    pub resumed: u64,
    /// Handshakes that offered a session.
    pub resume_attempts: u64,
}

/// Latency of successful requests, microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct LatencyReport {
    /// Requests measured.
    pub count: u64,
    /// Minimum.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub stdev: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Maximum.
    pub max: f64,
}

/// Byte counts.
#[derive(Clone, Debug, Serialize)]
pub struct Bytes {
    /// Sent.
    pub sent: u64,
    /// Received.
    pub received: u64,
}

/// Idle-mode results.
#[derive(Clone, Debug, Serialize)]
pub struct IdleReport {
    /// Connections asked for.
    pub target: u64,
    /// Connections opened (handshake and first request answered).
    pub opened: u64,
    /// Connections that failed to open.
    pub failed: u64,
    /// Time to open them, seconds.
    pub open_secs: f64,
    /// Time they were held, seconds.
    pub hold_secs: f64,
    /// Connections the server closed during the hold.
    pub closed_during_hold: u64,
    /// Connections that answered a probe request at the end of the hold (= stayed up).
    pub stayed_up: u64,
    /// Probes that failed.
    pub probe_failed: u64,
}

/// The whole result of a run (`--json`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Always `certgate-loadgen`.
    pub tool: &'static str,
    /// Version of the tool.
    pub version: &'static str,
    /// Configuration as run.
    pub config: ConfigReport,
    /// Length of the measured window, seconds (idle: the opening phase).
    pub duration_secs: f64,
    /// Warm-up excluded, seconds.
    pub warmup_secs: f64,
    /// Requests finished in the window (successful + failed).
    pub requests: u64,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub errors_total: u64,
    /// Successful requests per second.
    pub throughput_rps: f64,
    /// TLS handshakes.
    pub handshakes: HandshakeReport,
    /// Latency of successful requests, µs (open loop: from the intended send time).
    pub latency_us: LatencyReport,
    /// Responses by status code.
    pub status: BTreeMap<String, u64>,
    /// Failures by kind: connect, tls[:alert], timeout, http_status:<code>, io, protocol.
    pub errors: BTreeMap<String, u64>,
    /// First description of each failure kind.
    pub error_samples: BTreeMap<String, String>,
    /// HTTP bytes (request and response messages).
    pub bytes: Bytes,
    /// TCP payload bytes (TLS records, handshakes included).
    pub wire_bytes: Bytes,
    /// Requests by kind (mixed mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mix: Option<BTreeMap<String, u64>>,
    /// Idle-mode results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleReport>,
    /// Stopped early by Ctrl-C.
    pub interrupted: bool,
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 1000.0 * 10.0).round() / 10.0
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Builds the report from the merged measurements.
pub fn build_report(opts: &Opts, plan: &Plan, s: &Stats, t: &Timings, interrupted: bool) -> Report {
    let window = t.measured.as_secs_f64();
    let per_sec = |n: u64| {
        if window > 0.0 {
            round1(n as f64 / window)
        } else {
            0.0
        }
    };
    let h = &s.hist;
    let q = |x: f64| {
        if h.is_empty() {
            0.0
        } else {
            us(h.value_at_quantile(x))
        }
    };
    let latency = LatencyReport {
        count: h.len(),
        min: if h.is_empty() { 0.0 } else { us(h.min()) },
        mean: if h.is_empty() {
            0.0
        } else {
            round1(h.mean() / 1000.0)
        },
        stdev: if h.is_empty() {
            0.0
        } else {
            round1(h.stdev() / 1000.0)
        },
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        p99_9: q(0.999),
        max: if h.is_empty() { 0.0 } else { us(h.max()) },
    };
    let status = s
        .status
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(code, &c)| (code.to_string(), c))
        .collect();
    let by_name = s.errors_by_name();
    let errors = by_name.iter().map(|(n, c, _)| (n.clone(), *c)).collect();
    let error_samples = by_name
        .iter()
        .map(|(n, _, m)| (n.clone(), m.clone()))
        .collect();
    let errors_total = s.error_count();
    let uses_post =
        plan.mode == Mode::Post || plan.mix.as_ref().is_some_and(|m| m.contains(Kind::Post));
    let config = ConfigReport {
        url: opts.url.clone(),
        address: plan.addr.to_string(),
        mode: plan.mode,
        mix: plan.mix.as_ref().map(|m| m.to_string()),
        connections: plan.connections,
        threads: plan.threads,
        pin_cpus: plan.pin.clone(),
        rate: plan.rate,
        duration_secs: if plan.mode == Mode::Idle {
            None
        } else {
            plan.duration.map(secs)
        },
        requests_limit: plan.max_requests,
        warmup_secs: secs(plan.warmup),
        hold_secs: (plan.mode == Mode::Idle).then(|| secs(plan.hold)),
        timeout_secs: secs(plan.timeout),
        method: plan.method.clone(),
        body_size: plan.plain_body,
        post_method: uses_post.then(|| plan.post_method.clone()),
        post_body_size: uses_post.then_some(plan.post_body),
        content_type: opts.content_type.clone(),
        host: plan.host_header.clone(),
        sni: opts.sni.clone(),
        tls_version: opts.tls_version,
        ciphers: opts.ciphers.clone(),
        curves: opts.curves.clone(),
        client_cert: opts.cert.as_ref().map(|p| p.display().to_string()),
        ca: opts.ca.as_ref().map(|p| p.display().to_string()),
        insecure: opts.insecure,
        expect_status: opts.expect_status,
    };
    let idle = (plan.mode == Mode::Idle).then(|| IdleReport {
        target: plan.connections as u64,
        opened: s.idle.opened,
        failed: s.idle.failed,
        open_secs: secs(t.idle_open.unwrap_or_default()),
        hold_secs: secs(t.idle_hold.unwrap_or_default()),
        closed_during_hold: s.idle.closed_during_hold,
        stayed_up: s.idle.probe_ok,
        probe_failed: s.idle.probe_failed,
    });
    let mix = (plan.mode == Mode::Mixed).then(|| {
        Kind::ALL
            .iter()
            .filter(|k| plan.mix.as_ref().is_some_and(|m| m.contains(**k)))
            .map(|k| (k.name().to_owned(), s.kinds[k.index()]))
            .collect()
    });
    let ok = s.ok;
    let requests = if plan.mode == Mode::Idle {
        s.idle.opened + s.idle.failed
    } else {
        ok + errors_total
    };
    Report {
        tool: "certgate-loadgen",
        version: env!("CARGO_PKG_VERSION"),
        config,
        duration_secs: secs(t.measured),
        warmup_secs: secs(t.warmup),
        requests,
        ok,
        errors_total,
        throughput_rps: per_sec(ok),
        handshakes: HandshakeReport {
            total: s.handshakes,
            per_sec: per_sec(s.handshakes),
            full: s.handshakes - s.resumed,
            resumed: s.resumed,
            resume_attempts: s.resume_attempts,
        },
        latency_us: latency,
        status,
        errors,
        error_samples,
        bytes: Bytes {
            sent: s.bytes_sent,
            received: s.bytes_received,
        },
        wire_bytes: Bytes {
            sent: s.wire_sent,
            received: s.wire_received,
        },
        mix,
        idle,
        interrupted,
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `41234.5` → `41,234.5`.
pub fn thousands_f(x: f64) -> String {
    let r = round1(x);
    let whole = r.trunc() as u64;
    let tenth = ((r - r.trunc()) * 10.0).round() as u64;
    format!("{}.{}", thousands(whole), tenth.min(9))
}

/// A latency in µs in a readable unit.
pub fn fmt_latency(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

/// Bytes in decimal units.
pub fn fmt_bytes(b: u64) -> String {
    let x = b as f64;
    if x < 1e3 {
        format!("{b} B")
    } else if x < 1e6 {
        format!("{:.1} kB", x / 1e3)
    } else if x < 1e9 {
        format!("{:.1} MB", x / 1e6)
    } else {
        format!("{:.2} GB", x / 1e9)
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

/// The human summary.
pub fn summary(r: &Report) -> String {
    let c = &r.config;
    let mut o = String::new();
    let mode = match &c.mix {
        Some(m) => format!("mixed ({m})"),
        None => c.mode.name().to_owned(),
    };
    let _ = write!(
        o,
        "certgate-loadgen: {mode}, {}, {}",
        plural(c.connections as u64, "connection", "connections"),
        plural(c.threads as u64, "thread", "threads"),
    );
    if let Some(idle) = &r.idle {
        let _ = writeln!(o, ", held {:.1} s", idle.hold_secs);
        let rate = if idle.open_secs > 0.0 {
            idle.opened as f64 / idle.open_secs
        } else {
            0.0
        };
        let _ = writeln!(
            o,
            "  opened     {} of {} in {:.1} s ({}/s)   failed {}",
            thousands(idle.opened),
            thousands(idle.target),
            idle.open_secs,
            thousands_f(rate),
            thousands(idle.failed)
        );
        let _ = writeln!(
            o,
            "  held       {} stayed up   {} closed by the server during the hold   {} probes failed",
            thousands(idle.stayed_up),
            thousands(idle.closed_during_hold),
            thousands(idle.probe_failed)
        );
    } else {
        let _ = write!(o, ", {:.1} s", r.duration_secs);
        if r.warmup_secs > 0.0 {
            let _ = write!(o, " (warm-up {:.1} s excluded)", r.warmup_secs);
        }
        if let Some(rate) = c.rate {
            let _ = write!(o, ", open loop at {} req/s", thousands_f(rate));
        }
        if r.interrupted {
            o.push_str(", interrupted");
        }
        o.push('\n');
        let _ = writeln!(
            o,
            "  requests   {}   {} req/s   errors {}",
            thousands(r.requests),
            thousands_f(r.throughput_rps),
            thousands(r.errors_total)
        );
        let hs = &r.handshakes;
        if matches!(c.mode, Mode::Handshake | Mode::Resume | Mode::Mixed) {
            let mut line = format!(
                "  handshakes {}   {}/s",
                thousands(hs.total),
                thousands_f(hs.per_sec)
            );
            if hs.resume_attempts > 0 || c.mode == Mode::Resume {
                let _ = write!(
                    line,
                    "   resumed {} of {} offered",
                    thousands(hs.resumed),
                    thousands(hs.resume_attempts)
                );
            }
            let _ = writeln!(o, "{line}");
        }
        if let Some(mix) = &r.mix {
            let parts: Vec<String> = mix
                .iter()
                .map(|(k, v)| format!("{k} {}", thousands(*v)))
                .collect();
            let _ = writeln!(o, "  mix        {}", parts.join("  "));
        }
    }
    let l = &r.latency_us;
    if l.count > 0 {
        let label = if r.idle.is_some() {
            "  latency    (opening) "
        } else {
            "  latency    "
        };
        let _ = writeln!(
            o,
            "{label}p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            fmt_latency(l.p50),
            fmt_latency(l.p90),
            fmt_latency(l.p99),
            fmt_latency(l.p99_9),
            fmt_latency(l.max)
        );
    }
    if !r.status.is_empty() {
        let parts: Vec<String> = r
            .status
            .iter()
            .map(|(k, v)| format!("{k}: {}", thousands(*v)))
            .collect();
        let _ = writeln!(o, "  status     {}", parts.join("  "));
    }
    for (name, count) in &r.errors {
        let sample = r.error_samples.get(name).map_or("", String::as_str);
        let _ = writeln!(
            o,
            "  error      {name}: {}   e.g. {sample}",
            thousands(*count)
        );
    }
    let _ = writeln!(
        o,
        "  bytes      sent {}  received {}   (TLS on the wire: sent {}  received {})",
        fmt_bytes(r.bytes.sent),
        fmt_bytes(r.bytes.received),
        fmt_bytes(r.wire_bytes.sent),
        fmt_bytes(r.wire_bytes.received)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(412_345), "412,345");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands_f(41_234.54), "41,234.5");
        assert_eq!(thousands_f(0.96), "1.0");
        assert_eq!(fmt_latency(850.0), "850 µs");
        assert_eq!(fmt_latency(1234.0), "1.2 ms");
        assert_eq!(fmt_latency(2_500_000.0), "2.50 s");
        assert_eq!(fmt_bytes(999), "999 B");
        assert_eq!(fmt_bytes(52_300_000), "52.3 MB");
    }
}
