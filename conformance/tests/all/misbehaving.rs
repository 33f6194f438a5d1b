//! A host that alters what the guest sees must fail the cases that look
//! at it, with a readable detail. The "misbehaving host" is our layer with
//! a `map_request` layer of the test's own in front of it: no switch in
//! the public API.

use crate::host::{BodyError, Boxed, Tamper, plugin, serve};
use bytes::Bytes;
use http_body_util::BodyExt;
use http_wasm_conformance::{Outcome, RunOptions, run};
use std::sync::Arc;
use tower_http_wasm::Engine;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_header_fails_with_expected_and_got() {
    let tamper: Tamper = Arc::new(|mut req: http::Request<Boxed>| {
        if req.headers().contains_key("x-conf-single") {
            req.headers_mut().insert("x-conf-single", http::HeaderValue::from_static("tampered"));
        }
        req
    });
    let addr = serve(plugin(Engine::default()), Some(tamper)).await;
    let options = RunOptions { filter: Some("header_get".into()), ..RunOptions::new(format!("http://{addr}")) };
    let report = run(&options).await.unwrap();
    println!("{}", report.table());
    let r = report.results.iter().find(|r| r.id == "header_get").unwrap();
    assert_eq!(r.outcome, Outcome::Fail);
    assert!(r.detail.contains("expected") && r.detail.contains("tampered"), "{}", r.detail);
    // Cases that do not look at the header still pass.
    let r = report.results.iter().find(|r| r.id == "header_get_absent").unwrap();
    assert_eq!(r.outcome, Outcome::Pass, "{}", r.detail);
    assert!(!report.ok());
    assert!(report.summary().contains("failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_body_fails_the_body_cases() {
    // Flips the first byte of every non-empty request body.
    let tamper: Tamper = Arc::new(|req: http::Request<Boxed>| {
        let (parts, body) = req.into_parts();
        let body = futures_flip(body);
        http::Request::from_parts(parts, body)
    });
    let addr = serve(plugin(Engine::default()), Some(tamper)).await;
    let options = RunOptions { filter: Some("body_".into()), ..RunOptions::new(format!("http://{addr}")) };
    let report = run(&options).await.unwrap();
    println!("{}", report.table());
    for id in ["body_read_100", "body_read_5000", "body_buffer_request_forward"] {
        let r = report.results.iter().find(|r| r.id == id).unwrap();
        assert_eq!(r.outcome, Outcome::Fail, "{id}");
        assert!(r.detail.contains("first difference at byte 0"), "{id}: {}", r.detail);
    }
    let r = report.results.iter().find(|r| r.id == "body_read_0").unwrap();
    assert_eq!(r.outcome, Outcome::Pass, "an empty body cannot be flipped: {}", r.detail);
}

/// The body collected, its first byte flipped, as one frame (keeps the length).
fn futures_flip(body: Boxed) -> Boxed {
    let stream = async move {
        let bytes = body.collect().await.map_err(|e| BodyError(Box::new(e)))?.to_bytes();
        let mut v = bytes.to_vec();
        if let Some(b) = v.first_mut() {
            *b ^= 0xff;
        }
        Ok::<_, BodyError>(Bytes::from(v))
    };
    Deferred::new(stream).boxed_unsync()
}

/// A body produced by a future: one data frame.
struct Deferred<F> {
    fut: Option<std::pin::Pin<Box<F>>>,
}

impl<F> Deferred<F> {
    fn new(fut: F) -> Self {
        Deferred { fut: Some(Box::pin(fut)) }
    }
}

impl<F> http_body::Body for Deferred<F>
where
    F: std::future::Future<Output = Result<Bytes, BodyError>>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BodyError>>> {
        let Some(fut) = self.fut.as_mut() else { return std::task::Poll::Ready(None) };
        let out = std::task::ready!(fut.as_mut().poll(cx));
        self.fut = None;
        std::task::Poll::Ready(Some(out.map(http_body::Frame::data)))
    }
}
