//! The gateway against a model of what the guest did: random requests
//! (sizes, framings, HTTP/1.1 or HTTP/2, guest actions, upstream answers)
//! through `serve` with the model guest, every byte and header checked at
//! the upstream and back at the client. Then the same checks over the
//! whole framing matrix.
//!
//! `MODEL_SEED` and `MODEL_CASES` (default 10,000) replay or resize the
//! random run; a failure prints the seed and the case.

use crate::guests::{self, SEED_AFTER, SEED_BEFORE, SEED_REQUEST, pattern};
use crate::net::{TestBody, chunked, client, full, gateway, upstream, values};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tower_http_wasm::Engine;

/// SplitMix64: a seeded generator in a few lines.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize].clone()
    }

    /// A body size: mostly small, some up to 300,000 bytes.
    fn size(&mut self) -> usize {
        let max = match self.below(100) {
            0..10 => 0,
            10..40 => 64,
            40..75 => 4096,
            75..95 => 65536,
            _ => 300_000,
        };
        self.below(max + 1) as usize
    }

    fn token(&mut self) -> String {
        let n = 1 + self.below(16) as usize;
        (0..n).map(|_| self.pick(&b"abcdefghijklmnopqrstuvwxyz0123456789-_."[..]) as char).collect()
    }
}

/// How a body is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// No body at all.
    Empty,
    /// With its length.
    Length,
    /// Without a length (HTTP/1.1 chunked), in this many chunks.
    Chunked(usize),
}

impl Framing {
    fn random(rng: &mut Rng, len: usize) -> Framing {
        match (len, rng.percent(50)) {
            (0, true) => Framing::Empty,
            (0, false) => Framing::Length,
            (_, true) => Framing::Length,
            (_, false) => Framing::Chunked(1 + rng.below(8) as usize),
        }
    }

    fn body(self, bytes: Vec<u8>) -> TestBody {
        match self {
            Framing::Empty | Framing::Length => full(bytes),
            Framing::Chunked(parts) => chunked(&bytes, parts),
        }
    }

    fn code(self) -> String {
        match self {
            Framing::Empty => "E".into(),
            Framing::Length => "L".into(),
            Framing::Chunked(n) => format!("C{n}"),
        }
    }

    fn parse(code: &str) -> Framing {
        match code.split_at(1) {
            ("E", _) => Framing::Empty,
            ("L", _) => Framing::Length,
            (_, n) => Framing::Chunked(n.parse().unwrap()),
        }
    }
}

/// What the guest does to the response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ResponseBodyEdit {
    /// Writes `pattern(n, 2)` before next (§2.1: it stands when the
    /// upstream's body is empty).
    Before(usize),
    /// After next, replaces the body with `pattern(n, 3)`.
    Replace(usize),
    /// After next, appends `pattern(n, 3)`.
    Append(usize),
}

/// One request: the client's side, the guest's actions, the upstream's answer.
#[derive(Clone, Debug)]
struct Case {
    id: u64,
    http2: bool,
    method: Method,
    body_len: usize,
    framing: Framing,
    /// Extra request headers, in order.
    headers: Vec<(String, String)>,
    /// `connection: x-hop`, `x-hop`, `keep-alive` (HTTP/1.1 only).
    hop: bool,
    buffer: bool,
    /// `(append, n)`: replace the request body with `pattern(n, 1)`, or
    /// append it to the body read.
    req_body: Option<(bool, usize)>,
    req_set: Option<String>,
    req_rm: bool,
    /// `(before next, value)` for response header `x-guest-res`.
    res_set: Option<(bool, String)>,
    res_rm: bool,
    res_body: Option<ResponseBodyEdit>,
    respond: Option<u16>,
    up_status: u16,
    up_len: usize,
    up_framing: Framing,
    up_victim: bool,
    up_dup: bool,
}

fn client_seed(id: u64) -> u32 {
    (id as u32).wrapping_mul(3).wrapping_add(7)
}

fn upstream_seed(id: u64) -> u32 {
    (id as u32).wrapping_mul(5).wrapping_add(11)
}

impl Case {
    fn random(rng: &mut Rng, id: u64) -> Case {
        let http2 = rng.percent(50);
        let body_len = rng.size();
        let framing = Framing::random(rng, body_len);
        let mut headers = Vec::new();
        for i in 0..rng.below(4) {
            for _ in 0..1 + rng.below(2) {
                headers.push((format!("x-r-{i}"), rng.token()));
            }
        }
        if rng.percent(30) {
            for _ in 0..1 + rng.below(2) {
                headers.push(("x-victim".into(), rng.token()));
            }
        }
        if rng.percent(20) {
            headers.push(("x-guest-req".into(), rng.token()));
        }
        if rng.percent(30) {
            headers.push(("x-forwarded-for".into(), format!("10.0.0.{}", rng.below(256))));
            if rng.percent(50) {
                headers.push(("x-forwarded-for".into(), format!("10.1.0.{}, 10.2.0.1", rng.below(256))));
            }
        }
        let respond = rng.percent(15).then(|| rng.pick(&[200u16, 201, 403, 404, 503]));
        let buffer = rng.percent(40);
        let after = buffer && respond.is_none();
        let req_body = rng.percent(35).then(|| (rng.percent(50), rng.size()));
        let req_set = rng.percent(30).then(|| rng.token());
        let req_rm = rng.percent(30);
        let res_set = rng.percent(40).then(|| (!after || rng.percent(50), rng.token()));
        let res_rm = after && rng.percent(40);
        let res_body = rng.percent(40).then(|| {
            let n = rng.size();
            match (after, rng.below(3)) {
                (true, 1) => ResponseBodyEdit::Replace(n),
                (true, 2) => ResponseBodyEdit::Append(n),
                _ => ResponseBodyEdit::Before(n),
            }
        });
        let up_len = rng.size();
        Case {
            id,
            http2,
            method: rng.pick(&[Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE]),
            body_len,
            framing,
            headers,
            hop: !http2 && rng.percent(30),
            buffer,
            req_body,
            req_set,
            req_rm,
            res_set,
            res_rm,
            res_body,
            respond,
            up_status: rng.pick(&[200u16, 201, 202, 404, 500]),
            up_len,
            up_framing: Framing::random(rng, up_len),
            up_victim: rng.percent(50),
            up_dup: rng.percent(30),
        }
    }

    fn request(&self, gateway: SocketAddr) -> Request<TestBody> {
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(format!("http://{gateway}/m/{}?k={}", self.id, self.id))
            .header("x-model-id", self.id)
            .header(
                "x-up",
                format!(
                    "{} {} {} {} {}",
                    self.up_status,
                    self.up_len,
                    self.up_framing.code(),
                    u8::from(self.up_victim),
                    u8::from(self.up_dup)
                ),
            );
        for (n, v) in &self.headers {
            req = req.header(n, v);
        }
        if self.hop {
            req = req.header("connection", "x-hop").header("x-hop", "secret").header("keep-alive", "timeout=5");
        }
        if self.buffer {
            req = req.header("x-g-buffer", "1");
        }
        if let Some((append, n)) = self.req_body {
            req = req.header("x-g-req-body", format!("{}{n}", if append { 'A' } else { 'R' }));
        }
        if let Some(v) = &self.req_set {
            req = req.header("x-g-req-set", v);
        }
        if self.req_rm {
            req = req.header("x-g-req-rm", "1");
        }
        if let Some((before, v)) = &self.res_set {
            req = req.header("x-g-res-set", format!("{}{v}", if *before { 'B' } else { 'A' }));
        }
        if self.res_rm {
            req = req.header("x-g-res-rm", "1");
        }
        if let Some(edit) = self.res_body {
            let code = match edit {
                ResponseBodyEdit::Before(n) => format!("B{n}"),
                ResponseBodyEdit::Replace(n) => format!("R{n}"),
                ResponseBodyEdit::Append(n) => format!("A{n}"),
            };
            req = req.header("x-g-res-body", code);
        }
        if let Some(s) = self.respond {
            req = req.header("x-g-respond", s);
        }
        let body = pattern(self.body_len, client_seed(self.id));
        match self.framing {
            Framing::Length => req = req.header("content-length", body.len()),
            // hyper's HTTP/1.1 client sends a GET's body of unknown length
            // only when told to chunk it.
            Framing::Chunked(_) if !self.http2 => req = req.header("transfer-encoding", "chunked"),
            _ => {}
        }
        req.body(self.framing.body(body)).unwrap()
    }

    /// The client's values of `name`.
    fn sent(&self, name: &str) -> Vec<String> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect()
    }

    /// The request body the upstream must receive.
    fn upstream_body(&self) -> Vec<u8> {
        let sent = pattern(self.body_len, client_seed(self.id));
        match self.req_body {
            None => sent,
            Some((false, n)) => pattern(n, SEED_REQUEST),
            Some((true, n)) => [sent, pattern(n, SEED_REQUEST)].concat(),
        }
    }

    /// The response body the client must receive.
    fn client_body(&self) -> Vec<u8> {
        if self.respond.is_some() {
            return match self.res_body {
                Some(ResponseBodyEdit::Before(n)) => pattern(n, SEED_BEFORE),
                _ => Vec::new(),
            };
        }
        let up = pattern(self.up_len, upstream_seed(self.id));
        match self.res_body {
            None => up,
            // Spec §2.1: the guest's body stands when the upstream's is empty.
            Some(ResponseBodyEdit::Before(n)) if self.up_len == 0 => pattern(n, SEED_BEFORE),
            Some(ResponseBodyEdit::Before(_)) => up,
            Some(ResponseBodyEdit::Replace(n)) => pattern(n, SEED_AFTER),
            Some(ResponseBodyEdit::Append(n)) => [up, pattern(n, SEED_AFTER)].concat(),
        }
    }
}

/// What the upstream received.
#[derive(Debug)]
struct Seen {
    method: Method,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

type Log = Arc<Mutex<HashMap<u64, Seen>>>;

/// The model upstream: records each request by `x-model-id`, answers as
/// `x-up` says (`status len framing victim dup`).
async fn model_upstream(seen: Log) -> SocketAddr {
    upstream(move |req: Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.expect("the request body").to_bytes();
            let id: u64 = parts.headers["x-model-id"].to_str().unwrap().parse().unwrap();
            let plan = parts.headers["x-up"].to_str().unwrap().to_string();
            let plan: Vec<&str> = plan.split(' ').collect();
            let status: u16 = plan[0].parse().unwrap();
            let len: usize = plan[1].parse().unwrap();
            let framing = Framing::parse(plan[2]);
            let mut res = Response::builder()
                .status(status)
                .header("x-up-a", id)
                .header("x-up-multi", "1")
                .header("x-up-multi", "2");
            if plan[3] == "1" {
                res = res.header("x-up-victim", "v");
            }
            if plan[4] == "1" {
                res = res.header("x-guest-res", "up");
            }
            if parts.version == http::Version::HTTP_11 {
                res = res.header("connection", "x-up-hop").header("x-up-hop", "1").header("keep-alive", "timeout=5");
            }
            let uri = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
            let mut headers = parts.headers;
            if !headers.contains_key("host")
                && let Some(a) = parts.uri.authority()
            {
                headers.insert("host", a.as_str().parse().unwrap());
            }
            seen.lock().unwrap().insert(id, Seen { method: parts.method, uri, headers, body });
            res.body(framing.body(pattern(len, upstream_seed(id)))).unwrap()
        }
    })
    .await
}

/// `content-length` as a number, if any.
fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers.get("content-length").map(|v| v.to_str().unwrap().parse().unwrap())
}

/// Checks a length header: never wrong; present when the length is
/// `known` to the gateway (absent allowed for an empty body). A body sent
/// without a length may gain one when the gateway happens to hold all of
/// it (a re-framing any intermediary may do).
fn check_length(what: &str, headers: &HeaderMap, len: usize, known: bool) -> Result<(), String> {
    let cl = content_length(headers);
    let ok = match (known, len) {
        (true, 0) => cl.is_none() || cl == Some(0),
        (true, n) => cl == Some(n),
        (false, n) => cl.is_none() || cl == Some(n),
    };
    if ok { Ok(()) } else { Err(format!("{what}: content-length {cl:?} for {len} bytes (length known: {known})")) }
}

fn expect(what: &str, got: Vec<String>, want: Vec<String>) -> Result<(), String> {
    if got == want { Ok(()) } else { Err(format!("{what}: got {got:?}, want {want:?}")) }
}

fn first_difference(got: &[u8], want: &[u8]) -> String {
    let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
    format!("{} bytes, want {}; first difference at {at}", got.len(), want.len())
}

/// Names the upstream may see.
fn allowed_upstream(name: &str) -> bool {
    name.starts_with("x-r-")
        || name.starts_with("x-g-")
        || matches!(
            name,
            "x-victim"
                | "x-guest-req"
                | "x-forwarded-for"
                | "x-up"
                | "x-model-id"
                | "host"
                | "content-length"
                | "transfer-encoding"
        )
}

fn check_upstream(case: &Case, seen: &Seen, gateway: SocketAddr) -> Result<(), String> {
    if seen.method != case.method {
        return Err(format!("upstream method {}", seen.method));
    }
    if seen.uri != format!("/m/{}?k={}", case.id, case.id) {
        return Err(format!("upstream uri {}", seen.uri));
    }
    let want = case.upstream_body();
    if seen.body[..] != want[..] {
        return Err(format!("upstream body: {}", first_difference(&seen.body, &want)));
    }
    let known = match (case.req_body, case.framing) {
        (Some(_), _) => true,
        (None, Framing::Chunked(_)) => false,
        (None, _) => true,
    };
    check_length("upstream", &seen.headers, want.len(), known)?;
    if case.req_body.is_some() && content_length(&seen.headers) != Some(want.len()) {
        return Err(format!(
            "upstream: a rewritten body must carry its length, got {:?}",
            content_length(&seen.headers)
        ));
    }
    let h = |n: &str| values(&seen.headers, n);
    let mut names: Vec<&str> = case.headers.iter().map(|(n, _)| n.as_str()).collect();
    names.dedup();
    for name in names {
        let want = match name {
            "x-victim" if case.req_rm => vec![],
            "x-guest-req" if case.req_set.is_some() => vec![case.req_set.clone().unwrap()],
            "x-forwarded-for" => vec![format!("{}, 127.0.0.1", case.sent(name).join(", "))],
            _ => case.sent(name),
        };
        expect(&format!("upstream {name}"), h(name), want)?;
    }
    if let Some(v) = &case.req_set {
        expect("upstream x-guest-req", h("x-guest-req"), vec![v.clone()])?;
    }
    if case.sent("x-forwarded-for").is_empty() {
        expect("upstream x-forwarded-for", h("x-forwarded-for"), vec!["127.0.0.1".into()])?;
    }
    expect("upstream host", h("host"), vec![gateway.to_string()])?;
    if let Some(bad) = seen.headers.keys().find(|n| !allowed_upstream(n.as_str())) {
        return Err(format!("upstream got header {bad}: {:?}", h(bad.as_str())));
    }
    Ok(())
}

fn check_client(case: &Case, status: u16, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let want_status = case.respond.unwrap_or(case.up_status);
    if status != want_status {
        return Err(format!("status {status}, want {want_status}"));
    }
    let want = case.client_body();
    if body != &want[..] {
        return Err(format!("client body: {}", first_difference(body, &want)));
    }
    let known = case.respond.is_some() || case.buffer || !matches!(case.up_framing, Framing::Chunked(_));
    check_length("client", headers, want.len(), known)?;
    let h = |n: &str| values(headers, n);
    let guest_res = match (&case.res_set, case.up_dup && case.respond.is_none()) {
        (Some((false, v)), _) => vec![v.clone()],
        (Some((true, v)), true) => vec![v.clone(), "up".into()],
        (Some((true, v)), false) => vec![v.clone()],
        (None, true) => vec!["up".into()],
        (None, false) => vec![],
    };
    expect("client x-guest-res", h("x-guest-res"), guest_res)?;
    for hop in ["connection", "keep-alive", "x-up-hop", "x-hop"] {
        expect(&format!("client {hop}"), h(hop), vec![])?;
    }
    if case.respond.is_some() {
        expect("client x-up-a", h("x-up-a"), vec![])?;
    } else {
        expect("client x-up-a", h("x-up-a"), vec![case.id.to_string()])?;
        expect("client x-up-multi", h("x-up-multi"), vec!["1".into(), "2".into()])?;
        let victim = if case.res_rm || !case.up_victim { vec![] } else { vec!["v".into()] };
        expect("client x-up-victim", h("x-up-victim"), victim)?;
    }
    Ok(())
}

/// Sends `case` and checks both ends.
async fn run_case(
    c: &Client<HttpConnector, TestBody>,
    log: &Log,
    gateway: SocketAddr,
    case: &Case,
) -> Result<(), String> {
    let res = c.request(case.request(gateway)).await.map_err(|e| format!("request failed: {e:?}"))?;
    let (parts, body) = res.into_parts();
    let body = body.collect().await.map_err(|e| format!("response body failed: {e:?}"))?.to_bytes();
    let seen = log.lock().unwrap().remove(&case.id);
    match (case.respond, seen) {
        (Some(_), Some(_)) => return Err("the upstream was called though the guest answered".into()),
        (None, None) => return Err("the upstream was not called".into()),
        (None, Some(seen)) => check_upstream(case, &seen, gateway)?,
        (Some(_), None) => {}
    }
    check_client(case, parts.status.as_u16(), &parts.headers, &body)
}

/// Runs `cases` through a gateway with the model guest on `engine`,
/// speaking HTTP/2 to the upstream when `upstream_http2`, with `workers`
/// requests in flight.
async fn run_gateway(tag: &str, engine: Engine, upstream_http2: bool, cases: Vec<Case>, workers: usize, seed: u64) {
    let log: Log = Default::default();
    let up = model_upstream(log.clone()).await;
    let flags: &[&str] = if upstream_http2 { &["--upstream-http2"] } else { &[] };
    let gw = gateway(&format!("{tag}-{upstream_http2}"), Some(&guests::model()), engine, up, flags, "off");
    let addr = gw.addr;
    let cases = Arc::new(Mutex::new(cases));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (cases, log) = (cases.clone(), log.clone());
        tasks.push(tokio::spawn(async move {
            let clients = [client(false), client(true)];
            loop {
                let Some(case) = cases.lock().unwrap().pop() else { return };
                let c = &clients[usize::from(case.http2)];
                let run = tokio::time::timeout(std::time::Duration::from_secs(60), run_case(c, &log, addr, &case));
                let result = run.await.unwrap_or_else(|_| Err("no answer within 60 s".into()));
                if let Err(e) = result {
                    panic!(
                        "[{engine} upstream-http2={upstream_http2} seed={seed:#x}] case {}: {e}\n{case:#?}",
                        case.id
                    );
                }
            }
        }));
    }
    for t in tasks {
        if let Err(e) = t.await {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    drop(gw);
}

tower_http_wasm::per_engine! {
    /// The cases are dealt over the four gateways (each engine, each upstream
    /// protocol) as one sequence from the seed; each engine's test runs its two.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ten_thousand_random_requests_match_the_model(engine) {
        let seed = std::env::var("MODEL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_2026_u64);
        let total: u64 = std::env::var("MODEL_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
        let mut rng = Rng(seed);
        let gateways: Vec<(Engine, bool)> = Engine::ALL.iter().flat_map(|&e| [(e, false), (e, true)]).collect();
        let mut cases: Vec<Vec<Case>> = vec![Vec::new(); gateways.len()];
        for id in 0..total {
            cases[(id % gateways.len() as u64) as usize].push(Case::random(&mut rng, id));
        }
        let runs = gateways
            .iter()
            .zip(cases)
            .filter(|((e, _), _)| *e == engine)
            .map(|(&(engine, h2), cases)| run_gateway("model", engine, h2, cases, 3, seed));
        let mut set = Vec::new();
        for run in runs {
            set.push(tokio::spawn(run));
        }
        for t in set {
            if let Err(e) = t.await {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}

tower_http_wasm::per_engine! {
    /// Every framing of each direction, the guest rewriting it or not, on
    /// each engine, both client protocols and both upstream protocols.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn framing_matrix(engine) {
        let framings =
            |len: usize, parts: usize| [(0, Framing::Empty), (len, Framing::Length), (len, Framing::Chunked(parts))];
        let mut cases = Vec::new();
        let mut id = 0;
        for (http2, method) in [false, true].into_iter().flat_map(|h| [(h, Method::GET), (h, Method::POST)]) {
            // Over the host's 64 KiB prefetch: bodies still arriving when the guest runs.
            for (body_len, framing) in framings(100_000, 3) {
                for req_body in [None, Some((false, 3000)), Some((true, 700))] {
                    for (up_len, up_framing) in framings(90_000, 4) {
                        for res_body in [
                            None,
                            Some(ResponseBodyEdit::Before(1500)),
                            Some(ResponseBodyEdit::Replace(2000)),
                            Some(ResponseBodyEdit::Append(900)),
                        ] {
                            for buffer in [false, true] {
                                if matches!(res_body, Some(ResponseBodyEdit::Replace(_) | ResponseBodyEdit::Append(_)))
                                    && !buffer
                                {
                                    continue;
                                }
                                id += 1;
                                cases.push(Case {
                                    id,
                                    http2,
                                    method: method.clone(),
                                    body_len,
                                    framing,
                                    headers: vec![],
                                    hop: false,
                                    buffer,
                                    req_body,
                                    req_set: None,
                                    req_rm: false,
                                    res_set: None,
                                    res_rm: false,
                                    res_body,
                                    respond: None,
                                    up_status: 200,
                                    up_len,
                                    up_framing,
                                    up_victim: false,
                                    up_dup: false,
                                });
                            }
                        }
                    }
                }
            }
        }
        // The guest answering without next, with and without a body, in each request framing.
        for http2 in [false, true] {
            for (body_len, framing) in framings(5000, 3) {
                for res_body in [None, Some(ResponseBodyEdit::Before(1200))] {
                    id += 1;
                    let mut case = cases[0].clone();
                    (case.id, case.http2, case.body_len, case.framing, case.res_body) =
                        (id, http2, body_len, framing, res_body);
                    case.respond = Some(201);
                    cases.push(case);
                }
            }
        }
        for upstream_http2 in [false, true] {
            run_gateway("matrix", engine, upstream_http2, cases.clone(), 2, 0).await;
        }
    }
}
