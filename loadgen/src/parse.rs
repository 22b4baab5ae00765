//! Pure parsers for command-line values: durations, sizes, request mixes, CPU lists, URLs.

use std::fmt;
use std::time::Duration;

/// Parses a duration such as `10s`, `500ms`, `1.5s`, `2m`, `1h`, `250us`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("invalid duration {s:?}: no number"));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: bad number"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("invalid duration {s:?}: unknown unit {other:?}")),
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 1e9 {
        return Err(format!("invalid duration {s:?}: too large"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a byte size such as `1024`, `1k`, `64KiB`, `1m`, `2MB` (all multiples are binary: k = 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("invalid size {s:?}: no number"));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: bad number"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "ki" | "kib" => 1 << 10,
        "m" | "mb" | "mi" | "mib" => 1 << 20,
        "g" | "gb" | "gi" | "gib" => 1 << 30,
        other => return Err(format!("invalid size {s:?}: unknown unit {other:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))
}

/// One kind of request of the `mixed` mode (and the per-request behaviour of the other modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A new connection with a full handshake, one request, close.
    Handshake,
    /// A new connection resuming the previous session of the same worker, one request, close.
    Resume,
    /// A request on a persistent connection.
    Keepalive,
    /// A request with a body on a persistent connection.
    Post,
}

impl Kind {
    /// All kinds, in report order.
    pub const ALL: [Kind; 4] = [Kind::Handshake, Kind::Resume, Kind::Keepalive, Kind::Post];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Handshake => "handshake",
            Kind::Resume => "resume",
            Kind::Keepalive => "keepalive",
            Kind::Post => "post",
        }
    }

    /// Index into per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether this kind opens a new connection for every request.
    pub fn new_connection(self) -> bool {
        matches!(self, Kind::Handshake | Kind::Resume)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A weighted mix of request kinds, e.g. `handshake=1,keepalive=8,post=1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    /// (kind, weight) with weight > 0, in the order given.
    pub weights: Vec<(Kind, u32)>,
    total: u32,
}

impl Mix {
    /// Parses `kind=weight,...`; kinds are handshake, resume, keepalive, post.
    pub fn parse(s: &str) -> Result<Mix, String> {
        let mut weights: Vec<(Kind, u32)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = part
                .split_once('=')
                .ok_or_else(|| format!("invalid mix entry {part:?}: expected kind=weight"))?;
            let kind = match name.trim() {
                "handshake" => Kind::Handshake,
                "resume" => Kind::Resume,
                "keepalive" => Kind::Keepalive,
                "post" => Kind::Post,
                other => {
                    return Err(format!(
                        "invalid mix kind {other:?}: expected handshake, resume, keepalive or post"
                    ))
                }
            };
            let w: u32 = w
                .trim()
                .parse()
                .map_err(|_| format!("invalid mix weight in {part:?}"))?;
            if weights.iter().any(|(k, _)| *k == kind) {
                return Err(format!("mix kind {name:?} given twice"));
            }
            if w > 0 {
                weights.push((kind, w));
            }
        }
        let total = weights
            .iter()
            .try_fold(0u32, |acc, (_, w)| acc.checked_add(*w))
            .ok_or("mix weights too large")?;
        if total == 0 {
            return Err("mix has no kind with a positive weight".into());
        }
        Ok(Mix { weights, total })
    }

    /// Sum of the weights.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// Picks the kind for a uniform random number `r` in `0..total()` (any u32 is reduced).
    pub fn pick(&self, r: u32) -> Kind {
        let mut r = r % self.total;
        for &(kind, w) in &self.weights {
            if r < w {
                return kind;
            }
            r -= w;
        }
        self.weights[self.weights.len() - 1].0
    }

    /// Whether the mix contains `kind`.
    pub fn contains(&self, kind: Kind) -> bool {
        self.weights.iter().any(|(k, _)| *k == kind)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, w)) in self.weights.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={w}")?;
        }
        Ok(())
    }
}

/// CPU pinning request: `all` (thread i on CPU i) or an explicit list such as `1`, `0,2`, `2-3`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuSpec {
    /// Thread i on CPU i modulo the number of CPUs.
    All,
    /// Thread i on `list[i % len]`.
    List(Vec<usize>),
}

impl CpuSpec {
    /// Parses `all` or a comma-separated list of CPU numbers and ranges.
    pub fn parse(s: &str) -> Result<CpuSpec, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("all") {
            return Ok(CpuSpec::All);
        }
        let mut cpus = Vec::new();
        for part in t.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || format!("invalid CPU list {s:?}");
            if let Some((a, b)) = part.split_once('-') {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if a > b || b - a > 4096 {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            } else {
                cpus.push(part.parse().map_err(|_| bad())?);
            }
        }
        if cpus.is_empty() {
            return Err(format!("invalid CPU list {s:?}: empty"));
        }
        if cpus.iter().any(|&c| c >= libc::CPU_SETSIZE as usize) {
            return Err(format!("invalid CPU list {s:?}: CPU number too large"));
        }
        Ok(CpuSpec::List(cpus))
    }

    /// The CPU for worker thread `i`, given `ncpu` online CPUs.
    pub fn cpu_for(&self, i: usize, ncpu: usize) -> usize {
        match self {
            CpuSpec::All => i % ncpu.max(1),
            CpuSpec::List(l) => l[i % l.len()],
        }
    }
}

/// The parts of an `https://host:port/path` target URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// Host as written (without brackets for IPv6 literals).
    pub host: String,
    /// Port (default 443).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    /// Whether the port was written explicitly.
    pub explicit_port: bool,
}

impl Url {
    /// Parses an `https://` URL; `http://` is refused (this tool speaks TLS only).
    pub fn parse(s: &str) -> Result<Url, String> {
        let rest = if let Some(r) = s.strip_prefix("https://") {
            r
        } else if s.starts_with("http://") {
            return Err(format!(
                "{s:?}: plain http is not supported, use an https:// URL"
            ));
        } else {
            return Err(format!("{s:?}: expected an https://host[:port]/path URL"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        let path = match path.find('#') {
            Some(i) => path[..i].to_owned(),
            None => path,
        };
        if authority.contains('@') {
            return Err(format!("{s:?}: user info in the URL is not supported"));
        }
        let (host, port) = if let Some(r) = authority.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or_else(|| format!("{s:?}: unterminated IPv6 literal"))?;
            let host = &r[..end];
            let after = &r[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("{s:?}: garbage after IPv6 literal")),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{s:?}: empty host"));
        }
        let (port, explicit_port) = match port {
            Some(p) => (
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| format!("{s:?}: invalid port {p:?}"))?,
                true,
            ),
            None => (443, false),
        };
        Ok(Url {
            host: host.to_owned(),
            port,
            path,
            explicit_port,
        })
    }

    /// The value of the Host header for this URL (`host` or `host:port`, IPv6 bracketed).
    pub fn host_header(&self) -> String {
        let h = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.explicit_port && self.port != 443 {
            format!("{h}:{}", self.port)
        } else {
            h
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration(" 3 s ").unwrap(), Duration::from_secs(3));
        for bad in ["", "s", "10x", "-1s", "1.2.3s", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("1k").unwrap(), 1024);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("2MB").unwrap(), 2 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        for bad in ["", "k", "1x", "-1", "99999999999999999999g"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn mixes() {
        let m = Mix::parse("handshake=1,keepalive=8,post=1").unwrap();
        assert_eq!(m.total(), 10);
        assert_eq!(m.pick(0), Kind::Handshake);
        assert_eq!(m.pick(1), Kind::Keepalive);
        assert_eq!(m.pick(8), Kind::Keepalive);
        assert_eq!(m.pick(9), Kind::Post);
        assert_eq!(m.pick(10), Kind::Handshake);
        assert!(m.contains(Kind::Post) && !m.contains(Kind::Resume));
        assert_eq!(m.to_string(), "handshake=1,keepalive=8,post=1");
        // Zero weights are dropped, spaces tolerated.
        let m = Mix::parse(" resume = 3 , post=0 ").unwrap();
        assert_eq!(m.weights, vec![(Kind::Resume, 3)]);
        let counts = (0..3000u32).fold([0u32; 4], |mut acc, r| {
            acc[m.pick(r).index()] += 1;
            acc
        });
        assert_eq!(counts, [0, 3000, 0, 0]);
        for bad in [
            "",
            "idle=1",
            "handshake",
            "handshake=x",
            "post=0",
            "post=1,post=2",
            "handshake=4294967295,post=1",
        ] {
            assert!(Mix::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn mix_is_proportional() {
        let m = Mix::parse("handshake=1,keepalive=8,post=1").unwrap();
        let mut counts = [0u32; 4];
        for r in 0..10_000u32 {
            counts[m.pick(r).index()] += 1;
        }
        assert_eq!(counts, [1000, 0, 8000, 1000]);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(CpuSpec::parse("all").unwrap(), CpuSpec::All);
        assert_eq!(CpuSpec::parse("1").unwrap(), CpuSpec::List(vec![1]));
        assert_eq!(
            CpuSpec::parse("0,2-4").unwrap(),
            CpuSpec::List(vec![0, 2, 3, 4])
        );
        let l = CpuSpec::parse("1,3").unwrap();
        assert_eq!(
            (0..4).map(|i| l.cpu_for(i, 8)).collect::<Vec<_>>(),
            [1, 3, 1, 3]
        );
        assert_eq!(CpuSpec::All.cpu_for(5, 2), 1);
        for bad in ["", "x", "3-1", "1,,a", "100000"] {
            assert!(CpuSpec::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn urls() {
        let u = Url::parse("https://127.0.0.1:8443/ping?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8443, "/ping?x=1")
        );
        assert_eq!(u.host_header(), "127.0.0.1:8443");
        let u = Url::parse("https://example.test").unwrap();
        assert_eq!((u.port, u.path.as_str()), (443, "/"));
        assert_eq!(u.host_header(), "example.test");
        let u = Url::parse("https://[::1]:9000?q#frag").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 9000, "/?q")
        );
        assert_eq!(u.host_header(), "[::1]:9000");
        for bad in [
            "http://x/",
            "x:1/",
            "https://",
            "https://h:0/",
            "https://h:99999/",
            "https://u@h/",
            "https://[::1/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad:?} should fail");
        }
    }
}
