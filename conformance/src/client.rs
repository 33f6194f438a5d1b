//! Sending one case's request: through hyper, or as raw HTTP/1.1 bytes
//! when the header-name case must survive.

use crate::cases::{Body, CASE_HEADER, Case, Framing, STEP_HEADER};
use crate::frames::Frames;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What came back.
#[derive(Debug, Default)]
pub struct Got {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The trailers, if any.
    pub trailers: Option<HeaderMap>,
}

impl Got {
    /// Every value of `name` as text.
    pub fn values(&self, name: &str) -> Vec<String> {
        self.headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect()
    }

    /// The first value of `name` as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.values(name).into_iter().next()
    }
}

/// The bytes of a body.
pub fn body_bytes(body: Body) -> Vec<u8> {
    (0..body.len()).map(|i| body.byte(i)).collect()
}

/// Where and how the runner sends.
#[derive(Clone, Debug)]
pub struct Target {
    /// `scheme://authority` of the host under test.
    pub base: Uri,
    /// Use HTTP/2 with prior knowledge.
    pub http2: bool,
    /// Extra request headers for every case (protocol, authority, source IP).
    pub extra: Vec<(HeaderName, HeaderValue)>,
    client: Client<HttpConnector, Frames>,
}

impl Target {
    /// A target at `base` (only `http` URLs).
    pub fn new(base: Uri, http2: bool, extra: Vec<(HeaderName, HeaderValue)>) -> Target {
        let client = Client::builder(TokioExecutor::new()).http2_only(http2).build_http();
        Target { base, http2, extra, client }
    }

    fn authority(&self) -> &str {
        self.base.authority().map_or("", |a| a.as_str())
    }

    /// Sends `case` at `step` (`None` for the main request).
    pub async fn send(&self, case: &Case, step: Option<&str>) -> Result<Got, String> {
        if case.request.raw_http1 && !self.http2 {
            return self.send_raw(case, step).await;
        }
        let r = &case.request;
        let uri: Uri = format!("http://{}{}", self.authority(), r.uri).parse().map_err(|e| format!("bad URI: {e}"))?;
        let method = Method::from_bytes(r.method.as_bytes()).map_err(|e| format!("bad method: {e}"))?;
        let mut req = Request::builder().method(method).uri(uri);
        let headers = req.headers_mut().expect("a valid builder");
        headers.insert(CASE_HEADER, HeaderValue::from_static(case.id));
        if let Some(step) = step {
            headers.insert(STEP_HEADER, HeaderValue::from_static(step_value(step)));
        }
        for (n, v) in &self.extra {
            headers.append(n.clone(), v.clone());
        }
        for (n, v) in r.headers {
            headers.append(*n, HeaderValue::from_static(v));
        }
        let data = body_bytes(r.body);
        let body = if !r.trailers.is_empty() {
            let mut t = HeaderMap::new();
            for (n, v) in r.trailers {
                t.append(*n, HeaderValue::from_static(v));
            }
            Frames::chunked(&data, 1000, Some(t))
        } else if r.framing == Framing::Chunked {
            Frames::chunked(&data, 1000, None)
        } else if data.is_empty() && matches!(r.method, "GET" | "HEAD" | "CONNECT" | "OPTIONS" | "TRACE" | "DELETE") {
            Frames::default()
        } else {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(data.len()));
            Frames::full(data)
        };
        let req = req.body(body).map_err(|e| format!("building the request: {e}"))?;
        let res = self.client.request(req).await.map_err(|e| format!("request failed: {}", chain(&e)))?;
        let (parts, body) = res.into_parts();
        let collected = body.collect().await.map_err(|e| format!("response body failed: {}", chain(&e)))?;
        let trailers = collected.trailers().cloned();
        Ok(Got { status: parts.status, headers: parts.headers, body: collected.to_bytes(), trailers })
    }

    /// Sends the request as raw HTTP/1.1 bytes, header names as written in
    /// the case, on a connection of its own.
    async fn send_raw(&self, case: &Case, step: Option<&str>) -> Result<Got, String> {
        let r = &case.request;
        let mut text =
            format!("{} {} HTTP/1.1\r\nHost: {}\r\n{CASE_HEADER}: {}\r\n", r.method, r.uri, self.authority(), case.id);
        if let Some(step) = step {
            text.push_str(&format!("{STEP_HEADER}: {}\r\n", step_value(step)));
        }
        for (n, v) in &self.extra {
            text.push_str(&format!("{n}: {}\r\n", v.to_str().unwrap_or("")));
        }
        for (n, v) in r.headers {
            text.push_str(&format!("{n}: {v}\r\n"));
        }
        let data = body_bytes(r.body);
        text.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", data.len()));
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(&data);
        let mut stream =
            tokio::net::TcpStream::connect(self.authority()).await.map_err(|e| format!("connect failed: {e}"))?;
        stream.write_all(&bytes).await.map_err(|e| format!("write failed: {e}"))?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.map_err(|e| format!("read failed: {e}"))?;
        parse_response(&raw)
    }
}

fn step_value(step: &str) -> &'static str {
    match step {
        "setup" => "setup",
        _ => "after",
    }
}

/// An error with its sources.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Parses a whole HTTP/1.1 response (content-length, chunked or to the end).
fn parse_response(raw: &[u8]) -> Result<Got, String> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of response headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let code = status_line.split(' ').nth(1).and_then(|c| c.parse::<u16>().ok()).ok_or("bad status line")?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (n, v) = line.split_once(':').ok_or("bad header line")?;
        let name = HeaderName::from_bytes(n.trim().as_bytes()).map_err(|_| "bad header name")?;
        let value = HeaderValue::from_str(v.trim()).map_err(|_| "bad header value")?;
        headers.append(name, value);
    }
    let rest = &raw[end + 4..];
    let chunked = headers.get("transfer-encoding").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(len) = headers.get("content-length").and_then(|v| v.to_str().ok()?.parse::<usize>().ok()) {
        rest.get(..len).ok_or("response body shorter than its content-length")?.to_vec()
    } else {
        rest.to_vec()
    };
    let status = StatusCode::from_u16(code).map_err(|_| "bad status code")?;
    Ok(Got { status, headers, body: body.into(), trailers: None })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
        let size_text = std::str::from_utf8(&rest[..eol]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(rest.get(..size).ok_or("truncated chunk")?);
        rest = rest.get(size + 2..).ok_or("truncated chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_raw_responses() {
        let got = parse_response(b"HTTP/1.1 418 I'm a teapot\r\nX-A: 1\r\nContent-Length: 3\r\n\r\nabcdef").unwrap();
        assert_eq!(got.status, 418);
        assert_eq!(got.header("x-a").as_deref(), Some("1"));
        assert_eq!(&got.body[..], b"abc");
        let got =
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
                .unwrap();
        assert_eq!(&got.body[..], b"abcde");
    }
}
