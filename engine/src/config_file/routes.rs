//! Per-route policies: the longest path-prefix match, on whole path segments (pure).
//!
//! Routing looks at a normalised copy of the path (the request is forwarded
//! unchanged), so that spellings a backend treats as the same path cannot
//! reach a route's resource under another route's policy: the query and
//! fragment are cut off, `%XX` escapes are decoded (`%2F` too), `\` counts
//! as `/`, `;parameters` are removed from each segment, empty and `.`
//! segments are dropped and `..` removes the previous one. Segments are
//! compared case-sensitively.

use std::collections::HashMap;

/// A path's segments as routing sees them (see the module documentation).
pub fn routing_segments(path: &str) -> Vec<String> {
    let path = match super::hosts::authority_of_target(path) {
        // `scheme://authority` is followed by the path, or nothing for `/`.
        Some(authority) => path
            .find("://")
            .map_or(path, |i| &path[i + 3 + authority.len()..]),
        None => path,
    };
    let end = path.find(['?', '#']).unwrap_or(path.len());
    let decoded = percent_decode(&path[..end]);
    let mut segments: Vec<String> = Vec::new();
    for seg in decoded.split(['/', '\\']) {
        let seg = seg.split(';').next().unwrap_or("");
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s.to_owned()),
        }
    }
    segments
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Path prefix → value (a policy), longest match on whole segments: `/admin`
/// matches `/admin`, `/admin/`, `/admin/x` and `/admin;x`, never `/adminx`.
#[derive(Clone, Debug)]
pub struct RouteTable<P> {
    /// Joined canonical segments (`admin/users`; `` for `/`) → value.
    prefixes: HashMap<String, P>,
    default: P,
}

impl<P> RouteTable<P> {
    /// A table answering `default` where no prefix matches. A later route with
    /// the same canonical prefix as an earlier one is ignored (the file check
    /// reports it as an error).
    pub fn new<'a>(default: P, routes: impl IntoIterator<Item = (&'a str, P)>) -> RouteTable<P> {
        let mut prefixes = HashMap::new();
        for (prefix, value) in routes {
            prefixes
                .entry(routing_segments(prefix).join("/"))
                .or_insert(value);
        }
        RouteTable { prefixes, default }
    }

    /// The value for `path` (origin-form or absolute-form request target):
    /// one lookup per segment, longest prefix first.
    pub fn route(&self, path: &str) -> &P {
        if self.prefixes.is_empty() {
            return &self.default;
        }
        let segments = routing_segments(path);
        let joined = segments.join("/");
        // Byte offsets where each prefix of the segment list ends, longest first.
        let mut ends = Vec::with_capacity(segments.len() + 1);
        let mut at = 0;
        ends.push(0);
        for (i, s) in segments.iter().enumerate() {
            at += s.len() + usize::from(i > 0);
            ends.push(at);
        }
        ends.iter()
            .rev()
            .find_map(|&end| self.prefixes.get(&joined[..end]))
            .unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable<&'static str> {
        RouteTable::new(
            "host",
            [
                ("/admin", "admin"),
                ("/admin/public/", "public"),
                ("/api/v1", "v1"),
            ],
        )
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let t = table();
        for (path, policy) in [
            ("/", "host"),
            ("/admin", "admin"),
            ("/admin/", "admin"),
            ("/admin/users?x=1", "admin"),
            ("/adminx", "host"),
            ("/admin/public", "public"),
            ("/admin/public/x", "public"),
            ("/admin/publicity", "admin"),
            ("/api", "host"),
            ("/api/v1/items", "v1"),
            ("/api/v10", "host"),
        ] {
            assert_eq!(*t.route(path), policy, "{path}");
        }
    }

    #[test]
    fn other_spellings_of_a_path_route_the_same() {
        let t = table();
        for path in [
            "/%61dmin/users",
            "//admin",
            "/./admin",
            "/x/../admin",
            "/admin;jsessionid=1/users",
            "/admin%2Fusers",
            "\\admin\\users",
            "/admin#frag",
            "/admin/public/../users",
            "/admin/public/..;/users",
            "https://api.example.com/admin/users",
        ] {
            assert_eq!(*t.route(path), "admin", "{path}");
        }
        assert_eq!(*t.route("/../../admin/public"), "public");
        assert_eq!(*t.route("/Admin"), "host", "segments are case-sensitive");
    }

    #[test]
    fn root_prefix_replaces_the_default() {
        let t = RouteTable::new("host", [("/", "root"), ("/a", "a")]);
        assert_eq!(*t.route("/b"), "root");
        assert_eq!(*t.route("/a/b"), "a");
        let empty: RouteTable<u8> = RouteTable::new(7, []);
        assert_eq!(*empty.route("/anything"), 7);
    }

    #[test]
    fn broken_escapes_stay_literal() {
        assert_eq!(routing_segments("/a%zz/%4"), vec!["a%zz", "%4"]);
        assert_eq!(routing_segments("/%e2%82%ac"), vec!["€"]);
    }
}
