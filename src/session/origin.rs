//! The `Origin` allow-list against cross-site WebSocket hijacking.
//!
//! Browsers send cookies (Zowe's `apimlAuthenticationToken` SSO cookie among them) with a
//! WebSocket upgrade from any page, and the same-origin policy does not apply to WebSockets: a
//! page on another site can open a session in the user's name. The server's defence is the
//! `Origin` header, which browsers always set on upgrades (RFC 6455 §4.2.1 item 8, §10.2) and
//! pages cannot forge. Spring's `OriginHandshakeInterceptor` (what Zowe v2's gateway applied)
//! refuses a cross-origin upgrade with 403; so does wsrelay when a list is set
//! (`handshake.allowed_origins`, or route metadata `apiml.routes.<name>.allowedOrigins`).
//!
//! An entry is `*` (any origin), `null` (opaque origins: sandboxed frames, `file:` pages), an
//! origin `scheme://host[:port]`, or `scheme://*.domain[:port]` for every subdomain of
//! `domain`. A request without `Origin` is not from a browser page and passes.

/// One allowed origin (lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Any,
    /// `https://app.example.com:8443`, or `null`.
    Exact(String),
    /// `https://*.example.com:8443`: `scheme://` and `.example.com:8443` (the port part may be
    /// empty).
    Subdomains {
        scheme: String,
        suffix: String,
    },
}

/// A parsed allow-list (see the module doc). Compared without allocating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<Entry>);

impl AllowedOrigins {
    /// Parses entries (trimmed; compared case-insensitively).
    ///
    /// # Errors
    /// A message naming the first entry that is not `*`, `null`, `scheme://host[:port]` or
    /// `scheme://*.domain[:port]` (a path, a query or an empty host is refused), or an empty
    /// list.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<AllowedOrigins, String> {
        let mut out = Vec::new();
        for raw in entries {
            let e = raw.trim().to_ascii_lowercase();
            out.push(parse_entry(&e).ok_or_else(|| {
                format!(
                    "{raw:?} is not an origin: expected \"*\", \"null\", \"scheme://host[:port]\" or \"scheme://*.domain[:port]\" (no path)"
                )
            })?);
        }
        if out.is_empty() {
            return Err(
                "an empty list refuses every browser; remove the key to allow any origin".into(),
            );
        }
        Ok(AllowedOrigins(out))
    }

    /// Parses a route's metadata value: entries separated by `,`. Entries that do not parse
    /// are left out, so a list with no valid entry allows no browser origin (it fails closed).
    pub fn parse_metadata(value: &str) -> AllowedOrigins {
        let entries: Vec<Entry> = value
            .split(',')
            .map(|e| e.trim().to_ascii_lowercase())
            .filter(|e| !e.is_empty())
            .filter_map(|e| parse_entry(&e))
            .collect();
        AllowedOrigins(entries)
    }

    /// The entries as written in the config (lower-cased), e.g. for `wsrelay check --print`.
    pub fn to_strings(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|e| match e {
                Entry::Any => "*".to_owned(),
                Entry::Exact(o) => o.clone(),
                Entry::Subdomains { scheme, suffix } => format!("{scheme}*{suffix}"),
            })
            .collect()
    }

    /// Whether a request with this `Origin` header value may open a session.
    pub fn allows(&self, origin: &str) -> bool {
        let origin = origin.trim();
        self.0.iter().any(|e| match e {
            Entry::Any => true,
            Entry::Exact(o) => origin.eq_ignore_ascii_case(o),
            Entry::Subdomains { scheme, suffix } => {
                let Some(host) = strip_prefix_ci(origin, scheme) else {
                    return false;
                };
                // At least one label before the suffix: `*.example.com` does not take
                // `example.com` itself.
                host.len() > suffix.len()
                    && host
                        .get(host.len() - suffix.len()..)
                        .is_some_and(|s| s.eq_ignore_ascii_case(suffix))
                    && host
                        .get(..host.len() - suffix.len())
                        .is_some_and(|labels| !labels.contains(['/', ':', '@']))
            }
        })
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

fn parse_entry(e: &str) -> Option<Entry> {
    if e == "*" {
        return Some(Entry::Any);
    }
    if e == "null" {
        return Some(Entry::Exact(e.to_owned()));
    }
    let (scheme, rest) = e.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return None;
    }
    let (host, port) = match rest.rsplit_once(':') {
        // A `:` inside `[...]` is part of an IPv6 address, not the port separator.
        Some((h, p)) if h.ends_with(']') || !h.contains('[') => {
            if p.is_empty() || p.parse::<u16>().is_err() {
                return None;
            }
            (h, Some(p))
        }
        _ => (rest, None),
    };
    let host_ok = |h: &str| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
    };
    let port_part = port.map_or(String::new(), |p| format!(":{p}"));
    match host.strip_prefix("*.") {
        Some(domain) if host_ok(domain) && !domain.contains('*') => Some(Entry::Subdomains {
            scheme: format!("{scheme}://"),
            suffix: format!(".{domain}{port_part}"),
        }),
        Some(_) => None,
        None if host_ok(host) => Some(Entry::Exact(e.to_owned())),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_match_as_documented() {
        let l = AllowedOrigins::parse([
            "https://App.example.com",
            "http://127.0.0.1:8080",
            "https://*.corp.example:8443",
        ])
        .unwrap();
        assert!(l.allows("https://app.example.com"));
        assert!(l.allows("HTTPS://APP.EXAMPLE.COM"));
        assert!(!l.allows("http://app.example.com"), "scheme");
        assert!(!l.allows("https://app.example.com:444"), "port");
        assert!(!l.allows("https://app.example.com.evil.test"));
        assert!(l.allows("http://127.0.0.1:8080"));
        assert!(!l.allows("http://127.0.0.1:8081"));
        assert!(l.allows("https://a.corp.example:8443"));
        assert!(l.allows("https://b.a.corp.example:8443"));
        assert!(!l.allows("https://corp.example:8443"), "the domain itself");
        assert!(!l.allows("https://a.corp.example"), "port");
        assert!(!l.allows("https://evilcorp.example:8443"));
        assert!(!l.allows("https://x/.corp.example:8443"));
        assert!(!l.allows("null"));
        assert!(AllowedOrigins::parse(["null"]).unwrap().allows("null"));
        assert!(AllowedOrigins::parse(["*"])
            .unwrap()
            .allows("https://any.test"));
    }

    #[test]
    fn bad_entries_are_refused_and_metadata_fails_closed() {
        for bad in [
            "example.com",
            "https://",
            "https://a.test/path",
            "https://a.test:x",
            "https://*",
            "https://a.*.test",
            "",
        ] {
            assert!(AllowedOrigins::parse([bad]).is_err(), "{bad:?}");
        }
        assert!(AllowedOrigins::parse([]).is_err());
        let m = AllowedOrigins::parse_metadata(" https://a.test , junk ,");
        assert!(m.allows("https://a.test"));
        assert!(!m.allows("junk"));
        assert!(!AllowedOrigins::parse_metadata("junk").allows("https://a.test"));
    }
}
