//! SNI → host selection and the authority checks behind 421 Misdirected Request (pure).
//!
//! A connection's host is chosen once, from its SNI. A request is served only
//! if its authority (the `Host` header, or the authority of an absolute-form
//! request target) selects the same host; otherwise the engine answers 421.

use std::collections::HashMap;
use std::net::Ipv6Addr;

/// Chooses a host for an SNI name or a request authority.
#[derive(Clone, Debug)]
pub struct HostMatcher {
    exact: HashMap<String, usize>,
    /// `*.example.com` stored as `example.com`.
    wildcard: HashMap<String, usize>,
    default: usize,
}

impl HostMatcher {
    /// Builds the matcher from each host's canonical names and default flag (as
    /// in [`super::HostSpec`]). The default is the host marked default, else the
    /// first. `None` when there is no host.
    pub fn new<'a>(hosts: impl IntoIterator<Item = (&'a [String], bool)>) -> Option<HostMatcher> {
        let mut m = HostMatcher {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: 0,
        };
        let mut any = false;
        let mut marked = None;
        for (i, (names, default)) in hosts.into_iter().enumerate() {
            any = true;
            if default && marked.is_none() {
                marked = Some(i);
            }
            for name in names {
                let name = crate::trust::names::canonical_dns_name(name);
                match name.strip_prefix("*.") {
                    Some(suffix) => m.wildcard.entry(suffix.to_owned()).or_insert(i),
                    None => m.exact.entry(name).or_insert(i),
                };
            }
        }
        m.default = marked.unwrap_or(0);
        any.then_some(m)
    }

    /// The default host's index.
    pub fn default_host(&self) -> usize {
        self.default
    }

    /// The host for a name, without falling back to the default: an exact name
    /// first, then a wildcard (`*.example.com` covers exactly one more label:
    /// `a.example.com`, not `example.com` nor `a.b.example.com`). ASCII
    /// case-insensitive; a trailing dot is ignored.
    pub fn lookup(&self, name: &str) -> Option<usize> {
        let name = crate::trust::names::canonical_dns_name(name);
        if let Some(&i) = self.exact.get(&name) {
            return Some(i);
        }
        let (first, rest) = name.split_once('.')?;
        if first.is_empty() {
            return None;
        }
        self.wildcard.get(rest).copied()
    }

    /// The host serving a connection: the one its SNI names, else the default
    /// (no SNI, or an unknown name).
    pub fn select(&self, sni: Option<&str>) -> usize {
        sni.and_then(|n| self.lookup(n)).unwrap_or(self.default)
    }

    /// The host a request's authority (`Host` value or absolute-form authority)
    /// selects, by the same rules as [`HostMatcher::select`]; `None` when the
    /// authority is malformed (answer 400).
    pub fn select_authority(&self, authority: &str) -> Option<usize> {
        let host = normalise_authority(authority)?;
        Some(self.lookup(&host).unwrap_or(self.default))
    }

    /// Whether a request with this authority may be served on a connection
    /// whose SNI selected `connection_host`: false means 421 (or 400 when the
    /// authority is malformed; see [`normalise_authority`]).
    pub fn authority_allowed(&self, connection_host: usize, authority: &str) -> bool {
        self.select_authority(authority) == Some(connection_host)
    }
}

/// The host part of an authority in canonical form: port removed, ASCII
/// lower-case, one trailing dot removed, IPv6 literals in brackets and in
/// their compressed form (`[2001:db8::1]`). `None` for anything malformed
/// (empty host, userinfo, a bad port, characters outside a host name).
pub fn normalise_authority(authority: &str) -> Option<String> {
    let a = authority.trim_matches([' ', '\t']);
    if a.is_empty() || a.contains('@') {
        return None;
    }
    if let Some(rest) = a.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = inside.parse().ok()?;
        if !after.is_empty() {
            port_ok(after.strip_prefix(':')?)?;
        }
        return Some(format!("[{ip}]"));
    }
    let host = match a.rsplit_once(':') {
        Some((host, port)) => {
            port_ok(port)?;
            host
        }
        None => a,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && !host.split('.').any(str::is_empty);
    valid.then(|| host.to_ascii_lowercase())
}

/// An empty port is allowed (RFC 3986); otherwise 1-5 digits up to 65535.
fn port_ok(port: &str) -> Option<()> {
    if port.is_empty() {
        return Some(());
    }
    (port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()))
        .then(|| port.parse::<u16>().ok())
        .flatten()
        .map(|_| ())
}

/// The authority of an absolute-form request target (`http://h:1/p` → `h:1`);
/// `None` for origin-form (`/p`), asterisk-form and authority-form targets.
/// RFC 9112 §3.2.2: with an absolute-form target the server uses this authority
/// and ignores `Host`; the engine should check both.
pub fn authority_of_target(target: &str) -> Option<&str> {
    let scheme_end = target.find("://")?;
    let scheme = &target[..scheme_end];
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let rest = &target[scheme_end + 3..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher() -> HostMatcher {
        let api = [
            "api.example.com".to_string(),
            "*.api.example.com".to_string(),
        ];
        let admin = ["admin.example.com".to_string()];
        let wild = ["*.example.com".to_string()];
        HostMatcher::new([(&api[..], false), (&admin[..], true), (&wild[..], false)]).unwrap()
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let m = matcher();
        assert_eq!(m.select(Some("api.example.com")), 0);
        assert_eq!(m.select(Some("API.Example.COM.")), 0);
        assert_eq!(m.select(Some("v1.api.example.com")), 0);
        assert_eq!(m.select(Some("admin.example.com")), 1);
        // Exact beats wildcard: admin.example.com also fits *.example.com.
        assert_eq!(m.select(Some("www.example.com")), 2);
        // A wildcard covers exactly one label.
        assert_eq!(m.select(Some("a.b.api.example.com")), 1);
        assert_eq!(m.select(Some("example.com")), 1);
        assert_eq!(m.select(Some(".example.com")), 1);
        assert_eq!(m.select(None), 1);
        assert_eq!(m.select(Some("unknown.test")), 1);
        assert_eq!(m.lookup("unknown.test"), None);
    }

    #[test]
    fn first_host_is_default_when_none_is_marked() {
        let a = ["a.test".to_string()];
        let b = ["b.test".to_string()];
        let m = HostMatcher::new([(&a[..], false), (&b[..], false)]).unwrap();
        assert_eq!(m.default_host(), 0);
        assert_eq!(m.select(None), 0);
        assert!(HostMatcher::new(std::iter::empty()).is_none());
    }

    #[test]
    fn authorities_normalise() {
        assert_eq!(
            normalise_authority("API.Example.com.:443").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            normalise_authority("api.example.com").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            normalise_authority("api.example.com:").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(normalise_authority("[::1]:8443").as_deref(), Some("[::1]"));
        assert_eq!(
            normalise_authority("[2001:DB8:0:0:0:0:0:1]").as_deref(),
            Some("[2001:db8::1]")
        );
        assert_eq!(
            normalise_authority("127.0.0.1:80").as_deref(),
            Some("127.0.0.1")
        );
        for bad in [
            "",
            ":443",
            "a..b",
            "user@api.example.com",
            "api.example.com:99999",
            "api.example.com:x",
            "[::1",
            "[::1]x",
            "[zz::1]",
            "a b",
            "a/b",
            "..",
            "api.example.com:443:443",
        ] {
            assert_eq!(normalise_authority(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn absolute_form_targets() {
        assert_eq!(
            authority_of_target("http://API.example.com:443/x?y"),
            Some("API.example.com:443")
        );
        assert_eq!(
            authority_of_target("HTTPS://[::1]:8443"),
            Some("[::1]:8443")
        );
        assert_eq!(authority_of_target("https://h?q"), Some("h"));
        assert_eq!(authority_of_target("/admin"), None);
        assert_eq!(authority_of_target("*"), None);
        assert_eq!(authority_of_target("ftp://h/"), None);
    }

    #[test]
    fn misdirected_requests() {
        let m = matcher();
        let api = m.select(Some("api.example.com"));
        assert!(m.authority_allowed(api, "API.Example.com.:443"));
        assert!(m.authority_allowed(api, "v2.api.example.com"));
        // Host naming another host, or an unknown one, on the api connection: 421.
        assert!(!m.authority_allowed(api, "admin.example.com"));
        assert!(!m.authority_allowed(api, "unknown.test"));
        // No SNI: the default host serves; a stricter host's name in Host is refused.
        let none = m.select(None);
        assert!(m.authority_allowed(none, "unknown.test"));
        assert!(m.authority_allowed(none, "[::1]:8443"));
        assert!(!m.authority_allowed(none, "api.example.com"));
        assert!(!m.authority_allowed(none, "www.example.com"));
        // Absolute-form target.
        let target = authority_of_target("https://ADMIN.example.com./x").unwrap();
        assert!(!m.authority_allowed(api, target));
        assert!(m.authority_allowed(none, target));
        assert!(!m.authority_allowed(none, "bad host"));
    }
}
