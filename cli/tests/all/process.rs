//! Running the binary: one-shot commands and a `serve` in the background.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_http-wasm");

/// A fresh temporary directory for one test.
pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("http-wasm-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `http-wasm args...` in `dir` to completion.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN).args(args).current_dir(dir).output().expect("the binary runs")
}

/// A `serve` (or backend) process, killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `http-wasm args...` in `dir` and waits for its "listening on
    /// http://ADDR" line.
    pub fn start(dir: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "off")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                let status = child.wait().unwrap();
                panic!("http-wasm {args:?} exited ({status}) before listening");
            };
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.trim().parse().unwrap();
            }
        };
        // Keep draining stdout so the process never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET with extra headers: `(status, headers, body)`.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, http::HeaderMap, String) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let mut req = http::Request::get(format!("http://{addr}{path}"));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let res = client.request(req.body(http_body_util::Empty::new()).unwrap()).await.expect("a response");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status.as_u16(), parts.headers, String::from_utf8_lossy(&body).into_owned())
}
