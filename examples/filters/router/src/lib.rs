//! `router`: routes requests by path prefix.
//!
//! Configuration (JSON):
//!
//! ```json
//! {"routes": [
//!   {"prefix": "/api", "to": "/v1", "header": "api"},
//!   {"prefix": "/static", "header": "assets"},
//!   {"prefix": "/", "to": "/web", "header": "web"}
//! ]}
//! ```
//!
//! Routes are tried in order; the first whose `prefix` matches the request
//! path wins:
//!
//! * a prefix matches whole path segments: `/api` matches `/api`, `/api/`,
//!   `/api/users` and `/api?x=1`, not `/apix`; a trailing `/` in a prefix is
//!   ignored, so `/` matches every path;
//! * `to` (optional) replaces the prefix: with the route above,
//!   `/api/users?id=%2F7` becomes `/v1/users?id=%2F7`. The rest of the path
//!   and the query are kept exactly as received (still percent-encoded);
//!   without `to` the URI is left alone;
//! * `header` (optional) is set as the request header `x-route`, replacing
//!   any value the client sent.
//!
//! A request that matches no route is answered `404` with a short
//! `text/plain` body, without calling the next handler.
//!
//! Prefixes and targets must start with `/` and may not contain `?`, `#`,
//! whitespace or control characters; an invalid configuration fails the
//! start of the module with a message in the host's log.

use http_wasm_sdk::{Config, Error, Filter, Next, Request, Response};
use serde::Deserialize;

/// The routing header.
pub const ROUTE_HEADER: &str = "x-route";

/// One route of the configuration.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The path prefix to match.
    pub prefix: String,
    /// What replaces the prefix; `None` keeps the URI.
    #[serde(default)]
    pub to: Option<String>,
    /// The value of `x-route`; `None` sets no header.
    #[serde(default)]
    pub header: Option<String>,
}

/// The configuration.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Routes {
    /// The routes, tried in order.
    pub routes: Vec<Route>,
}

/// `path` without trailing slashes (`/` becomes empty, matching everything).
fn trim_slashes(path: &str) -> &str {
    path.trim_end_matches('/')
}

fn valid_path(path: &str) -> bool {
    path.starts_with('/') && !path.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'?' || b == b'#')
}

impl Routes {
    /// Parses and checks the configuration.
    pub fn parse(config: &Config) -> Result<Routes, Error> {
        let routes: Routes = config.json()?;
        for route in &routes.routes {
            if !valid_path(&route.prefix) {
                return Err(Error::new(format!("invalid route prefix {:?}", route.prefix)));
            }
            if let Some(to) = &route.to
                && !valid_path(to)
            {
                return Err(Error::new(format!("invalid route target {to:?}")));
            }
            if let Some(header) = &route.header
                && header.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
            {
                return Err(Error::new(format!("invalid x-route value {header:?}")));
            }
        }
        Ok(routes)
    }

    /// The first route matching the encoded request-target `uri`, and the
    /// URI to continue with (`None` when the route keeps it).
    pub fn route(&self, uri: &str) -> Option<(&Route, Option<String>)> {
        let path_len = uri.find('?').unwrap_or(uri.len());
        self.routes.iter().find_map(|route| {
            let prefix = trim_slashes(&route.prefix);
            let rest = uri.strip_prefix(prefix)?;
            // Whole segments only: what follows the prefix in the path must
            // be nothing or a new segment.
            if prefix.len() < path_len && !rest.starts_with('/') {
                return None;
            }
            Some((route, route.to.as_deref().map(|to| rewrite(trim_slashes(to), rest))))
        })
    }
}

/// `to` followed by `rest` (what followed the prefix: empty, `/…` or `?…`),
/// `/` rather than empty.
fn rewrite(to: &str, rest: &str) -> String {
    let mut uri = String::with_capacity(to.len() + rest.len() + 1);
    uri.push_str(to);
    // `to` is empty (the root) or starts with `/`.
    if to.is_empty() && !rest.starts_with('/') {
        uri.push('/');
    }
    uri.push_str(rest);
    uri
}

/// The filter.
#[derive(Debug)]
pub struct Router {
    routes: Routes,
}

impl Filter for Router {
    fn new(config: &Config) -> Result<Self, Error> {
        Ok(Router { routes: Routes::parse(config)? })
    }

    fn handle_request(&mut self, req: &mut Request, res: &mut Response) -> Next {
        let routed = req.with_uri(|uri| self.routes.route(uri).map(|(route, new_uri)| (route.header.clone(), new_uri)));
        let Some((header, new_uri)) = routed else {
            res.set_status(404);
            res.headers().set("content-type", "text/plain; charset=utf-8");
            res.body().write("no route\n");
            return Next::Stop;
        };
        if let Some(uri) = new_uri {
            req.set_uri(&uri);
        }
        if let Some(header) = header {
            req.headers().set(ROUTE_HEADER, header);
        }
        Next::Continue(0)
    }
}

http_wasm_sdk::export_filter!(Router);

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(json: &str) -> Result<Routes, Error> {
        Routes::parse(&Config::from_bytes(json))
    }

    fn route(r: &Routes, uri: &str) -> Option<(Option<String>, Option<String>)> {
        r.route(uri).map(|(route, uri)| (route.header.clone(), uri))
    }

    fn some(header: &str, uri: &str) -> Option<(Option<String>, Option<String>)> {
        Some((Some(header.into()), Some(uri.into())))
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let r = routes(r#"{"routes":[{"prefix":"/api","to":"/v1","header":"api"}]}"#).unwrap();
        assert_eq!(route(&r, "/api"), some("api", "/v1"));
        assert_eq!(route(&r, "/api/"), some("api", "/v1/"));
        assert_eq!(route(&r, "/api/users?id=%2F7"), some("api", "/v1/users?id=%2F7"));
        assert_eq!(route(&r, "/api?x=1"), some("api", "/v1?x=1"));
        assert_eq!(route(&r, "/apix"), None);
        assert_eq!(route(&r, "/"), None);
        assert_eq!(route(&r, "/ap"), None);
    }

    #[test]
    fn first_match_wins_and_root_catches_all() {
        let r = routes(
            r#"{"routes":[
                {"prefix":"/api/","to":"/","header":"api"},
                {"prefix":"/static"},
                {"prefix":"/","to":"/web/","header":"web"}]}"#,
        )
        .unwrap();
        assert_eq!(route(&r, "/api/a%20b?q"), some("api", "/a%20b?q"));
        assert_eq!(route(&r, "/api"), some("api", "/"));
        assert_eq!(route(&r, "/api?q=1"), some("api", "/?q=1"));
        assert_eq!(route(&r, "/static/x.css"), Some((None, None)));
        assert_eq!(route(&r, "/"), some("web", "/web/"));
        assert_eq!(route(&r, "/x?y"), some("web", "/web/x?y"));
        assert_eq!(route(&r, "/?y"), some("web", "/web/?y"));
    }

    #[test]
    fn rewrite_keeps_the_rest() {
        assert_eq!(rewrite("", ""), "/");
        assert_eq!(rewrite("", "?q"), "/?q");
        assert_eq!(rewrite("", "/x"), "/x");
        assert_eq!(rewrite("/v1", ""), "/v1");
        assert_eq!(rewrite("/v1", "?q"), "/v1?q");
        assert_eq!(rewrite("/v1", "/x"), "/v1/x");
    }

    #[test]
    fn bad_configs() {
        assert!(routes("").is_err());
        assert!(routes("{}").is_err());
        assert!(routes(r#"{"routes":[{"prefix":"api"}]}"#).is_err());
        assert!(routes(r#"{"routes":[{"prefix":"/a","to":"/b?c"}]}"#).is_err());
        assert!(routes(r#"{"routes":[{"prefix":"/a b"}]}"#).is_err());
        assert!(routes(r#"{"routes":[{"prefix":"/a","header":"x\ny"}]}"#).is_err());
        assert!(routes(r#"{"routes":[{"prefix":"/a","bogus":1}]}"#).is_err());
        let err = routes(r#"{"routes":[{"to":"/a"}]}"#).unwrap_err();
        assert!(err.message().contains("prefix"), "{err}");
        assert!(routes(r#"{"routes":[]}"#).unwrap().route("/").is_none());
    }
}
