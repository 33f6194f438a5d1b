//! Guest configuration reaches the guest byte for byte: `--config`,
//! `--config-file` and a Dapr component's `guestConfig`, through a guest
//! that answers with what `get_config` gave it.

use crate::guests;
use crate::net::{client, full, send, url};
use crate::process::{Server, run, tempdir};
use std::path::Path;

/// Starts `serve` in `dir` with `args` and returns the body the config-echo
/// guest answers, over HTTP/1.1 and HTTP/2 (both must agree).
async fn echoed(dir: &Path, args: &[&str]) -> Vec<u8> {
    let server = Server::start(dir, args);
    let mut bodies = Vec::new();
    for http2 in [false, true] {
        let got = send(&client(http2), http::Request::get(url(server.addr, "/")).body(full("")).unwrap()).await;
        assert_eq!(got.status, 200, "{args:?}");
        assert_eq!(
            got.headers.get("content-length").map(|v| v.to_str().unwrap().to_string()),
            Some(got.body.len().to_string())
        );
        assert!(got.headers.get("content-type").is_none(), "no content-type invented");
        bodies.push(got.body.to_vec());
    }
    assert_eq!(bodies[0], bodies[1]);
    bodies.pop().unwrap()
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn config_flags_arrive_byte_exact(engine) {
        let dir = tempdir(&format!("config-{}", engine.name()));
        std::fs::write(dir.join("echo.wasm"), guests::config_echo()).unwrap();
        let binary = 0x00ff_fe80_0d0a_0001u64.to_le_bytes();
        std::fs::write(dir.join("binary.config"), binary).unwrap();
        std::fs::write(dir.join("empty.config"), b"").unwrap();
        let base = ["serve", "--listen", "127.0.0.1:0", "--engine", engine.name(), "--filter", "echo.wasm"];
        let with = |extra: &[&'static str]| [&base[..], extra].concat();

        let text = "environment=production \u{e9}\u{4e16} {\"a\":[1,2]}\n";
        assert_eq!(echoed(&dir, &with(&["--config", text])).await, text.as_bytes(), "[{engine}] --config");
        assert_eq!(echoed(&dir, &with(&["--config-file", "binary.config"])).await, binary, "[{engine}] --config-file");
        assert_eq!(echoed(&dir, &with(&["--config-file", "empty.config"])).await, b"", "[{engine}] empty file");
        assert_eq!(echoed(&dir, &base).await, b"", "[{engine}] no config");
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_argument_that_is_not_utf8_arrives_as_given() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempdir("config-bytes");
    std::fs::write(dir.join("echo.wasm"), guests::config_echo()).unwrap();
    let raw = [0xffu8, 0xfe, b'x', 0x80, b'\n'];
    let raw_arg = std::ffi::OsStr::from_bytes(&raw).to_os_string();
    // `Server::start` takes &str: spawn it by hand for this one argument.
    let mut child = std::process::Command::new(crate::process::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--filter", "echo.wasm", "--config"])
        .arg(&raw_arg)
        .current_dir(&dir)
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let addr = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let line = lines.next().unwrap().unwrap();
        std::thread::spawn(move || for _ in lines {});
        line.split("listening on http://").nth(1).unwrap().trim().parse::<std::net::SocketAddr>().unwrap()
    })
    .join()
    .unwrap();
    let got = send(&client(false), http::Request::get(url(addr, "/")).body(full("")).unwrap()).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(&got.body[..], raw);
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dapr_guest_config_arrives_byte_exact(engine) {
        let dir = tempdir(&format!("config-dapr-{}", engine.name()));
        std::fs::write(dir.join("echo.wasm"), guests::config_echo()).unwrap();
        let component = |value: &str| {
            format!(
                "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: echo\nspec:\n  type: middleware.http.wasm\n  version: v1\n  metadata:\n  - name: url\n    value: file://echo.wasm\n{value}"
            )
        };
        for (yaml, expected) in [
            (
                "  - name: guestConfig\n    value: '{\"environment\":\"production\"}'\n",
                "{\"environment\":\"production\"}",
            ),
            (
                "  - name: guestConfig\n    value: |\n      line one\n        indented \u{e9}\n",
                "line one\n  indented \u{e9}\n",
            ),
            ("  - name: guestConfig\n    value: 42\n", "42"),
            ("  - name: guestConfig\n    value: \"  spaces kept  \"\n", "  spaces kept  "),
            ("", ""),
        ] {
            std::fs::write(dir.join("component.yaml"), component(yaml)).unwrap();
            let args = ["serve", "--listen", "127.0.0.1:0", "--engine", engine.name(), "--dapr", "component.yaml"];
            let got = echoed(&dir, &args).await;
            assert_eq!(String::from_utf8(got).unwrap(), expected, "[{engine}] {yaml}");
        }
    }
}

#[test]
fn config_without_a_filter_is_a_clear_error() {
    let dir = tempdir("config-errors");
    let out = run(&dir, &["serve", "--listen", "127.0.0.1:0", "--config", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config and --config-file need a --filter"));
    let out = run(&dir, &["serve", "--listen", "127.0.0.1:0", "--filter", "f.wasm", "--config-file", "missing.config"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--config-file missing.config"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&dir, &["serve", "--upstream", "http://127.0.0.1:1", "--upstream-timeout", "0s"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be more than zero"));
}
