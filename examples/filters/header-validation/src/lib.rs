//! `header-validation`: rejects requests whose credential header is missing
//! or malformed, before they reach the next handler.
//!
//! Configuration (JSON):
//!
//! ```json
//! {"header": "authorization", "kind": "bearer"}
//! {"header": "x-api-key", "kind": "api_key", "min_len": 16}
//! ```
//!
//! * `header` (required): the header to check, a valid header name (matched
//!   case-insensitively). Only its first value is checked.
//! * `kind` (required): `bearer` expects `Bearer <token>`: the scheme in any
//!   case, one space, and a token68 (`[A-Za-z0-9-._~+/]+=*`, RFC 6750).
//!   `api_key` expects only ASCII letters and digits, at least `min_len` of
//!   them.
//! * `min_len` (optional, `api_key` only, default 1).
//!
//! A request without the header gets `401` (with `www-authenticate: Bearer`
//! for the `bearer` kind); one with a malformed value gets `400`. Both have
//! a short `text/plain` body, and the next handler is not called. Other
//! requests continue unchanged.
//!
//! The module is meant to be small, so the configuration is read by a tiny
//! parser of flat JSON objects instead of serde_json (which would multiply
//! the size of the module several times). It accepts exactly the JSON above
//! (any whitespace, keys in any order) and rejects unknown keys and string
//! escapes, which no valid header name or kind needs.

use http_wasm_sdk::{Config, Error, Filter, Next, Request, Response};

/// What the header must contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `Bearer <token68>`.
    Bearer,
    /// ASCII alphanumerics, at least `min_len` of them.
    ApiKey {
        /// The shortest accepted key.
        min_len: usize,
    },
}

/// The parsed configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The header to check (a valid header name).
    pub header: Vec<u8>,
    /// What it must contain.
    pub kind: Kind,
}

/// The verdict on a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The header is there and well-formed: continue.
    Pass,
    /// The header is missing: 401.
    Missing,
    /// The header is malformed: 400.
    Malformed,
}

/// Judges the first value of the configured header (`None`: absent).
pub fn judge(kind: Kind, value: Option<&[u8]>) -> Verdict {
    let Some(value) = value else { return Verdict::Missing };
    let ok = match kind {
        Kind::Bearer => valid_bearer(value),
        Kind::ApiKey { min_len } => valid_api_key(value, min_len),
    };
    if ok { Verdict::Pass } else { Verdict::Malformed }
}

/// `Bearer` (any case), one space, then a token68: one or more of
/// `[A-Za-z0-9-._~+/]` followed by any number of `=`.
pub fn valid_bearer(value: &[u8]) -> bool {
    const SCHEME: &[u8] = b"bearer ";
    let (Some(scheme), Some(token)) = (value.get(..SCHEME.len()), value.get(SCHEME.len()..)) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return false;
    }
    let body_len = span(token, |b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'));
    let padding = token.get(body_len..).unwrap_or_default();
    body_len > 0 && span(padding, |b| b == b'=') == padding.len()
}

/// ASCII letters and digits only, at least `min_len` (and at least one).
pub fn valid_api_key(value: &[u8], min_len: usize) -> bool {
    value.len() >= min_len.max(1) && span(value, |b| b.is_ascii_alphanumeric()) == value.len()
}

/// How many leading bytes of `bytes` satisfy `pred`. A function pointer
/// rather than a generic closure keeps one copy of the loop in the module.
#[inline(never)]
fn span(bytes: &[u8], pred: fn(u8) -> bool) -> usize {
    bytes.iter().position(|b| !pred(*b)).unwrap_or(bytes.len())
}

/// True for a valid HTTP field name (an RFC 9110 token).
fn is_token(name: &[u8]) -> bool {
    let tchar = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            )
    };
    !name.is_empty() && span(name, tchar) == name.len()
}

/// A cursor over a flat JSON object.
struct Json<'a> {
    rest: &'a [u8],
}

impl<'a> Json<'a> {
    fn skip_ws(&mut self) {
        let n = span(self.rest, |b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
        self.rest = self.rest.get(n..).unwrap_or_default();
    }

    /// Consumes `byte` after optional whitespace.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_ws();
        match self.rest.split_first() {
            Some((b, rest)) if *b == byte => {
                self.rest = rest;
                true
            }
            _ => false,
        }
    }

    /// A string without escapes.
    fn string(&mut self) -> Result<&'a [u8], &'static str> {
        if !self.eat(b'"') {
            return Err("expected a string");
        }
        let len = span(self.rest, |b| b != b'"' && b != b'\\' && b >= 0x20);
        match (self.rest.get(..len), self.rest.get(len..)) {
            (Some(s), Some([b'"', rest @ ..])) => {
                self.rest = rest;
                Ok(s)
            }
            _ => Err("unterminated string, or escapes (not supported)"),
        }
    }

    /// A non-negative integer.
    fn number(&mut self) -> Result<usize, &'static str> {
        self.skip_ws();
        let digits = span(self.rest, |b| b.is_ascii_digit());
        if digits == 0 {
            return Err("expected a non-negative integer");
        }
        let mut n: usize = 0;
        for d in self.rest.iter().take(digits) {
            n = n.checked_mul(10).and_then(|n| n.checked_add(usize::from(d - b'0'))).ok_or("number too large")?;
        }
        self.rest = self.rest.get(digits..).unwrap_or_default();
        Ok(n)
    }
}

/// Parses the configuration (see the [crate documentation](crate)).
pub fn parse_config(json: &[u8]) -> Result<Settings, &'static str> {
    let mut p = Json { rest: json };
    let (mut header, mut kind, mut min_len) = (None, None, None);
    if !p.eat(b'{') {
        return Err("config must be a JSON object");
    }
    if !p.eat(b'}') {
        loop {
            match p.string()? {
                b"header" if p.eat(b':') => header = Some(p.string()?),
                b"kind" if p.eat(b':') => kind = Some(p.string()?),
                b"min_len" if p.eat(b':') => min_len = Some(p.number()?),
                b"header" | b"kind" | b"min_len" => return Err("expected ':'"),
                _ => return Err("unknown key (expected header, kind, min_len)"),
            }
            if p.eat(b'}') {
                break;
            }
            if !p.eat(b',') {
                return Err("expected ',' or '}'");
            }
        }
    }
    p.skip_ws();
    if !p.rest.is_empty() {
        return Err("trailing characters after the object");
    }
    let header = header.ok_or("missing key: header")?;
    if !is_token(header) {
        return Err("header is not a valid header name");
    }
    let kind = match (kind.ok_or("missing key: kind")?, min_len) {
        (b"bearer", None) => Kind::Bearer,
        (b"bearer", Some(_)) => return Err("min_len applies only to kind api_key"),
        (b"api_key", min_len) => Kind::ApiKey { min_len: min_len.unwrap_or(1) },
        _ => return Err("kind must be bearer or api_key"),
    };
    Ok(Settings { header: header.to_vec(), kind })
}

/// The filter: the parsed settings.
#[derive(Debug)]
pub struct HeaderValidation {
    settings: Settings,
}

impl Filter for HeaderValidation {
    fn new(config: &Config) -> Result<Self, Error> {
        match parse_config(config.as_bytes()) {
            Ok(settings) => Ok(HeaderValidation { settings }),
            Err(message) => Err(Error::new(message)),
        }
    }

    fn handle_request(&mut self, req: &mut Request, res: &mut Response) -> Next {
        let kind = self.settings.kind;
        // Checked in the SDK's scratch buffer: no allocation when it fits.
        let verdict = req.headers().with_value(&self.settings.header, |value| judge(kind, value));
        let (status, body): (u16, &str) = match verdict {
            Verdict::Pass => return Next::Continue(0),
            Verdict::Missing => (401, "missing credentials\n"),
            Verdict::Malformed => (400, "malformed credentials\n"),
        };
        res.set_status(status);
        let headers = res.headers();
        headers.set("content-type", "text/plain; charset=utf-8");
        if status == 401 && kind == Kind::Bearer {
            headers.set("www-authenticate", "Bearer");
        }
        res.body().write(body);
        Next::Stop
    }
}

http_wasm_sdk::export_filter!(HeaderValidation);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        assert!(valid_bearer(b"Bearer abc"));
        assert!(valid_bearer(b"bearer a-b.c_d~e+f/g=="));
        assert!(valid_bearer(b"BEARER x="));
        assert!(!valid_bearer(b"Bearer "));
        assert!(!valid_bearer(b"Bearer =="));
        assert!(!valid_bearer(b"Bearer a=b"));
        assert!(!valid_bearer(b"Bearer  abc"));
        assert!(!valid_bearer(b"Bearer a b"));
        assert!(!valid_bearer(b"Basic abc"));
        assert!(!valid_bearer(b"Bearerabc"));
        assert!(!valid_bearer(b""));
    }

    #[test]
    fn api_keys() {
        assert!(valid_api_key(b"abcDEF123", 9));
        assert!(!valid_api_key(b"abcDEF123", 10));
        assert!(!valid_api_key(b"abc-def", 1));
        assert!(!valid_api_key(b"", 0));
        assert!(valid_api_key(b"a", 0));
    }

    #[test]
    fn verdicts() {
        assert_eq!(judge(Kind::Bearer, None), Verdict::Missing);
        assert_eq!(judge(Kind::Bearer, Some(b"")), Verdict::Malformed);
        assert_eq!(judge(Kind::Bearer, Some(b"Bearer t")), Verdict::Pass);
        assert_eq!(judge(Kind::ApiKey { min_len: 2 }, Some(b"x")), Verdict::Malformed);
    }

    #[test]
    fn configs() {
        assert_eq!(
            parse_config(br#"{"header":"authorization","kind":"bearer"}"#),
            Ok(Settings { header: b"authorization".to_vec(), kind: Kind::Bearer })
        );
        assert_eq!(
            parse_config(b" {\n \"min_len\" : 16, \"kind\":\"api_key\",\"header\":\"X-Api-Key\" } \n"),
            Ok(Settings { header: b"X-Api-Key".to_vec(), kind: Kind::ApiKey { min_len: 16 } })
        );
        assert_eq!(parse_config(br#"{"header":"x","kind":"api_key"}"#).unwrap().kind, Kind::ApiKey { min_len: 1 });
        for bad in [
            &b""[..],
            b"{}",
            b"[]",
            br#"{"header":"a b","kind":"bearer"}"#,
            br#"{"header":"x","kind":"basic"}"#,
            br#"{"header":"x","kind":"bearer","min_len":3}"#,
            br#"{"header":"x","kind":"api_key","min_len":-1}"#,
            br#"{"header":"x","kind":"api_key","min_len":99999999999999999999999}"#,
            br#"{"header":"x\u0041","kind":"bearer"}"#,
            br#"{"header":"x","kind":"bearer","extra":1}"#,
            br#"{"header":"x","kind":"bearer"} x"#,
            br#"{"header":"x","kind":"bearer",}"#,
            br#"{"header" "x"}"#,
            br#"{"header":"x""#,
        ] {
            assert!(parse_config(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
