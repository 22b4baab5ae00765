//! Admin listener client and Prometheus text parsing.

use super::client::HttpConn;
use super::engine::Engine;
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn admin_request(engine: &Engine, method: &str, path: &str) -> (u16, String) {
    let addr = engine.admin_addr();
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("admin connect to {addr}: {e}"));
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut c = HttpConn::new(tcp);
    let body_hdr = if method == "POST" {
        "Content-Length: 0\r\n"
    } else {
        ""
    };
    c.send(
        format!("{method} {path} HTTP/1.1\r\nHost: admin\r\n{body_hdr}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap_or_else(|e| panic!("admin {method} {path}: {e}"));
    let r = c
        .read_response()
        .unwrap_or_else(|e| panic!("admin {method} {path}: no response: {e}"));
    (r.status, r.body_str())
}

/// `method path` with `body` on the admin listener → (status, body).
pub fn admin_send(engine: &Engine, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let addr = engine.admin_addr();
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("admin connect to {addr}: {e}"));
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut c = HttpConn::new(tcp);
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    c.send(&req)
        .unwrap_or_else(|e| panic!("admin {method} {path}: {e}"));
    let r = c
        .read_response()
        .unwrap_or_else(|e| panic!("admin {method} {path}: no response: {e}"));
    (r.status, r.body_str())
}

/// `GET path` on the admin listener → (status, body).
pub fn admin_get(engine: &Engine, path: &str) -> (u16, String) {
    admin_request(engine, "GET", path)
}

/// `POST path` (empty body) on the admin listener → (status, body).
pub fn admin_post(engine: &Engine, path: &str) -> (u16, String) {
    admin_request(engine, "POST", path)
}

/// Splits `name{a="b",c="d"}` into the name and its labels.
fn parse_series(s: &str) -> (String, BTreeMap<String, String>) {
    let s = s.trim();
    let Some(open) = s.find('{') else {
        return (s.to_string(), BTreeMap::new());
    };
    let name = s[..open].trim().to_string();
    let inner = s[open + 1..].trim_end().trim_end_matches('}');
    let mut labels = BTreeMap::new();
    let b = inner.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i] == b' ') {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let key = inner[start..i].trim().to_string();
        i += 1; // '='
        if i < b.len() && b[i] == b'"' {
            i += 1;
        }
        let mut val = String::new();
        while i < b.len() && b[i] != b'"' {
            if b[i] == b'\\' && i + 1 < b.len() {
                i += 1;
                val.push(match b[i] {
                    b'n' => '\n',
                    c => c as char,
                });
            } else {
                val.push(b[i] as char);
            }
            i += 1;
        }
        i += 1; // closing quote
        labels.insert(key, val);
    }
    (name, labels)
}

/// Sum of the samples in `text` whose metric name equals the query's name and
/// whose labels include all the query's labels. None if no sample matches.
pub fn metric_in(text: &str, query: &str) -> Option<f64> {
    let (qname, qlabels) = parse_series(query);
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // series then value (then optional timestamp)
        let (series, rest) = if let Some(close) = line.rfind('}') {
            (&line[..=close], line[close + 1..].trim())
        } else {
            match line.split_once(char::is_whitespace) {
                Some((a, b)) => (a, b.trim()),
                None => continue,
            }
        };
        let (name, labels) = parse_series(series);
        if name != qname {
            continue;
        }
        if !qlabels.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            continue;
        }
        let val = rest.split_whitespace().next().unwrap_or("");
        let v: f64 = match val {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => match v.parse() {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        found = Some(found.unwrap_or(0.0) + v);
    }
    found
}

/// `GET /metrics` text (asserting 200).
pub fn metrics_text(engine: &Engine) -> String {
    let (st, body) = admin_get(engine, "/metrics");
    assert_eq!(st, 200, "GET /metrics returned {st}: {body}");
    body
}

/// The value of a series (summed over series with additional labels); None if absent.
pub fn metric_opt(engine: &Engine, query: &str) -> Option<f64> {
    metric_in(&metrics_text(engine), query)
}

/// The value of a series (summed over series with additional labels); 0 if absent.
pub fn metric(engine: &Engine, query: &str) -> f64 {
    metric_opt(engine, query).unwrap_or(0.0)
}

/// Polls `/metrics` until `query` exceeds `floor` (max `timeout`); returns the last value.
pub fn wait_metric_above(engine: &Engine, query: &str, floor: f64, timeout: Duration) -> f64 {
    let end = Instant::now() + timeout;
    loop {
        let v = metric(engine, query);
        if v > floor {
            return v;
        }
        if Instant::now() >= end {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
