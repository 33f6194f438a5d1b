//! Running the binary: one-shot commands and a `serve` in the background.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};

pub const BIN: &str = env!("CARGO_BIN_EXE_http-wasm");

/// A fresh temporary directory for one test.
pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("http-wasm-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Replaces `path` with `bytes` atomically: written to a temporary file
/// beside it, then renamed over it (as a deployment would).
pub fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Runs `http-wasm args...` in `dir` to completion.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN).args(args).current_dir(dir).output().expect("the binary runs")
}

/// A `serve` (or backend) process, killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    /// The thread copying stderr into `log`: it ends when the process's
    /// stderr closes, so joined after an exit the log is whole.
    log_reader: Option<std::thread::JoinHandle<()>>,
    stdout: Vec<String>,
    dir: PathBuf,
}

impl Server {
    /// Starts `http-wasm args...` in `dir` and waits for its "listening on
    /// http://ADDR" (or `https://`) line. No logs.
    pub fn start(dir: &Path, args: &[&str]) -> Server {
        Server::start_with_log(dir, args, "off")
    }

    /// `http-wasm serve --listen 127.0.0.1:0 --upstream http://UPSTREAM
    /// rest...` in `dir`. No logs.
    pub fn gateway(dir: &Path, upstream: SocketAddr, rest: &[&str]) -> Server {
        Server::gateway_with_log(dir, upstream, rest, "off")
    }

    /// Like [`Server::gateway`], keeping the log (`RUST_LOG=filter`).
    pub fn gateway_with_log(dir: &Path, upstream: SocketAddr, rest: &[&str], filter: &str) -> Server {
        let upstream = format!("http://{upstream}");
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--upstream", &upstream];
        args.extend_from_slice(rest);
        Server::start_with_log(dir, &args, filter)
    }

    /// Like [`Server::start`], keeping the log (`RUST_LOG=filter`) for
    /// [`Server::wait_for_log`].
    pub fn start_with_log(dir: &Path, args: &[&str], filter: &str) -> Server {
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", filter)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        let log_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut printed = Vec::new();
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                let status = child.wait().unwrap();
                std::thread::sleep(std::time::Duration::from_millis(100));
                panic!("http-wasm {args:?} exited ({status}) before listening:\n{}", log.lock().unwrap());
            };
            printed.push(line.clone());
            let listening = line.split("listening on http://").nth(1);
            if let Some(rest) = listening.or_else(|| line.split("listening on https://").nth(1)) {
                break rest.trim().parse().unwrap();
            }
        };
        // The lines printed right after (pipeline, admin address), then
        // keep draining stdout so the process never blocks on it.
        let serving = args.first() == Some(&"serve");
        if serving {
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                let pipeline = line.starts_with("pipeline:");
                printed.push(line);
                if pipeline {
                    break;
                }
            }
        }
        if serving && args.contains(&"--admin") {
            printed.extend(lines.next().and_then(Result::ok));
        }
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr, log, log_reader: Some(log_reader), stdout: printed, dir: dir.to_path_buf() }
    }

    /// The directory it runs in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The admin listener's address (from the `admin: metrics on
    /// http://ADDR/metrics` line; the server must have `--admin`).
    pub fn admin(&self) -> SocketAddr {
        let line = self.stdout.iter().find_map(|l| l.strip_prefix("admin: metrics on http://"));
        let line = line.unwrap_or_else(|| panic!("no admin line in {:?}", self.stdout));
        line.trim_end_matches("/metrics").parse().unwrap()
    }

    /// Sends `signal` (e.g. `HUP`) to the process with `kill`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status().unwrap();
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// Waits for the process to exit by itself and returns its status
    /// (panics with the log if it is still running after 30 s: a bound,
    /// not a measurement).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The last lines may still be on their way into the log.
                if let Some(reader) = self.log_reader.take() {
                    let _ = reader.join();
                }
                return status;
            }
            if std::time::Instant::now() > deadline {
                panic!("still running after 30 s:\n{}", self.log.lock().unwrap());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The resident set size of the process, in KiB (Linux: `VmRSS` of
    /// `/proc/PID/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Waits until a log line satisfies `pred` and returns it (panics with
    /// the whole log if none comes within 30 s: a failure, not a
    /// measurement).
    pub fn wait_for_log(&self, pred: impl Fn(&str) -> bool) -> String {
        let mut found = String::new();
        self.wait_until(|log| match log.lines().find(|l| pred(l)) {
            Some(line) => {
                found = line.to_string();
                true
            }
            None => false,
        });
        found
    }

    /// Waits until the whole log so far satisfies `pred` (panics with the
    /// log if it does not within 30 s).
    pub fn wait_until(&self, mut pred: impl FnMut(&str) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if pred(&self.log.lock().unwrap()) {
                return;
            }
            if std::time::Instant::now() > deadline {
                panic!("the log never matched:\n{}", self.log.lock().unwrap());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
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
