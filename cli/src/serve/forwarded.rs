//! The `x-forwarded-for` and `forwarded` (RFC 7239) headers: what the
//! gateway tells the upstream about the client.
//!
//! Applied when a request arrives, before the filters, so a filter sees
//! what the upstream will get (and may change it).

use http::HeaderMap;
use http::header::{FORWARDED, HeaderName, HeaderValue};
use std::net::IpAddr;

/// `x-forwarded-for` (not in the `http` crate's constants).
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// What the gateway does with `x-forwarded-for` and `forwarded`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Forwarded {
    /// Adds the client's address to the end of `x-forwarded-for` (one field
    /// line, `a, b, client`); extends `forwarded` with an element
    /// `for=CLIENT;host=HOST;proto=http` only when the client sent one.
    #[default]
    Append,
    /// Drops what the client sent: `x-forwarded-for` becomes the client's
    /// address alone; a `forwarded` the client sent is replaced by this
    /// hop's element alone. For a gateway at the edge, whose clients
    /// cannot be trusted to report earlier hops.
    Replace,
    /// Leaves both headers as the client sent them.
    Off,
}

impl Forwarded {
    /// Applies the policy for a client at `client` that asked for `host`.
    pub fn apply(self, headers: &mut HeaderMap, client: IpAddr, host: Option<&HeaderValue>) {
        let had_forwarded = headers.contains_key(FORWARDED);
        let ip = HeaderValue::from_str(&client.to_string()).expect("an IP address is a header value");
        match self {
            Forwarded::Off => {}
            Forwarded::Replace => {
                headers.insert(X_FORWARDED_FOR, ip);
                if had_forwarded {
                    headers.insert(FORWARDED, element(client, host));
                }
            }
            Forwarded::Append => {
                append(headers, X_FORWARDED_FOR, ip);
                if had_forwarded {
                    append(headers, FORWARDED, element(client, host));
                }
            }
        }
    }
}

/// Appends `value` to the list header `name`, joining every field line into
/// one (`a, b, value`) so that readers of the first line see the whole
/// list. Lines that are not visible ASCII are kept as they are and `value`
/// goes on a line of its own.
fn append(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    let mut joined = Vec::new();
    for line in headers.get_all(&name) {
        let Ok(text) = line.to_str() else {
            headers.append(name, value);
            return;
        };
        let text = text.trim();
        if !text.is_empty() {
            joined.extend_from_slice(text.as_bytes());
            joined.extend_from_slice(b", ");
        }
    }
    joined.extend_from_slice(value.as_bytes());
    match HeaderValue::from_bytes(&joined) {
        Ok(v) => {
            headers.insert(name, v);
        }
        Err(_) => {
            headers.append(name, value);
        }
    }
}

/// This hop's `forwarded` element (RFC 7239 §4): `for`, `host` and `proto`,
/// quoted where the syntax needs it (IPv6, a port).
fn element(client: IpAddr, host: Option<&HeaderValue>) -> HeaderValue {
    let mut text = match client {
        IpAddr::V4(v4) => format!("for={v4}"),
        IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
    };
    if let Some(host) = host.and_then(|h| h.to_str().ok()).filter(|h| !h.is_empty() && !h.contains(['"', '\\'])) {
        if host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'*+^`|".contains(&b)) {
            text.push_str(&format!(";host={host}"));
        } else {
            text.push_str(&format!(";host=\"{host}\""));
        }
    }
    text.push_str(";proto=http");
    HeaderValue::from_str(&text).expect("built from visible ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn values(h: &HeaderMap, name: &str) -> Vec<String> {
        h.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect()
    }

    #[test]
    fn each_policy() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let host = HeaderValue::from_static("example.com:8080");
        let sent =
            [("x-forwarded-for", "10.0.0.1"), ("x-forwarded-for", "10.0.0.2, 10.0.0.3"), ("forwarded", "for=10.0.0.1")];

        let mut h = headers(&sent);
        Forwarded::Append.apply(&mut h, ip, Some(&host));
        assert_eq!(values(&h, "x-forwarded-for"), ["10.0.0.1, 10.0.0.2, 10.0.0.3, 192.0.2.7"]);
        assert_eq!(values(&h, "forwarded"), ["for=10.0.0.1, for=192.0.2.7;host=\"example.com:8080\";proto=http"]);

        let mut h = headers(&sent);
        Forwarded::Replace.apply(&mut h, ip, Some(&host));
        assert_eq!(values(&h, "x-forwarded-for"), ["192.0.2.7"]);
        assert_eq!(values(&h, "forwarded"), ["for=192.0.2.7;host=\"example.com:8080\";proto=http"]);

        let mut h = headers(&sent);
        Forwarded::Off.apply(&mut h, ip, Some(&host));
        assert_eq!(values(&h, "x-forwarded-for"), ["10.0.0.1", "10.0.0.2, 10.0.0.3"]);
        assert_eq!(values(&h, "forwarded"), ["for=10.0.0.1"]);

        // Nothing sent: x-forwarded-for is added, forwarded is not.
        for policy in [Forwarded::Append, Forwarded::Replace] {
            let mut h = HeaderMap::new();
            policy.apply(&mut h, "::1".parse().unwrap(), None);
            assert_eq!(values(&h, "x-forwarded-for"), ["::1"]);
            assert!(!h.contains_key("forwarded"));
        }
    }

    #[test]
    fn ipv6_and_plain_hosts_and_opaque_lines() {
        let mut h = headers(&[("forwarded", "for=unknown")]);
        Forwarded::Replace.apply(
            &mut h,
            "2001:db8::1".parse().unwrap(),
            Some(&HeaderValue::from_static("example.com")),
        );
        assert_eq!(values(&h, "forwarded"), ["for=\"[2001:db8::1]\";host=example.com;proto=http"]);
        // A line that is not visible ASCII is kept; the address goes on its own line.
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_bytes(b"caf\xe9").unwrap());
        Forwarded::Append.apply(&mut h, "192.0.2.7".parse().unwrap(), None);
        assert_eq!(h.get_all(X_FORWARDED_FOR).iter().count(), 2);
        assert_eq!(h.get_all(X_FORWARDED_FOR).iter().next_back().unwrap(), "192.0.2.7");
    }
}
