//! What the gateway tells the upstream about the client: `x-forwarded-for`
//! and `forwarded` (`--forwarded`), and `host` (`--rewrite-host`).

use crate::guests;
use crate::net::{TestBody, client, full, gateway, send, upstream, url, values};
use http::{Request, Response};
use std::net::SocketAddr;

/// An upstream that reports what it received: `x-seen-host` (the `host`
/// header, else the HTTP/2 `:authority`), `x-seen-host-lines` (how many
/// `host` lines), `x-seen-xff` and `x-seen-forwarded` (one line per line
/// received).
async fn reporting_upstream() -> SocketAddr {
    upstream(|req: Request<hyper::body::Incoming>| async move {
        let mut res = Response::builder();
        let host = match req.headers().get("host") {
            Some(h) => h.to_str().unwrap().to_string(),
            None => req.uri().authority().map(|a| a.to_string()).unwrap_or_default(),
        };
        res = res.header("x-seen-host", host);
        res = res.header("x-seen-host-lines", req.headers().get_all("host").iter().count());
        for v in req.headers().get_all("x-forwarded-for") {
            res = res.header("x-seen-xff", v);
        }
        for v in req.headers().get_all("forwarded") {
            res = res.header("x-seen-forwarded", v);
        }
        res.body(full("")).unwrap()
    })
    .await
}

fn get(addr: SocketAddr, headers: &[(&str, &str)]) -> Request<TestBody> {
    let mut req = Request::get(url(addr, "/"));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    req.body(full("")).unwrap()
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forwarded_policies_append_replace_off(engine) {
        let up = reporting_upstream().await;
        let wasm = guests::edge();
        for (policy, flags) in
            [("append", &[][..]), ("replace", &["--forwarded", "replace"][..]), ("off", &["--forwarded", "off"][..])]
        {
            let gw = gateway(&format!("fwd-{policy}"), Some(&wasm), engine, up, flags, "off");
            for http2 in [false, true] {
                let at = format!("[{engine} --forwarded {policy} http2={http2}]");
                let host = gw.addr.to_string();
                let c = client(http2);

                // The client sent earlier hops in both headers.
                let sent = [
                    ("x-forwarded-for", "203.0.113.9"),
                    ("x-forwarded-for", "198.51.100.2, 198.51.100.3"),
                    ("forwarded", "for=203.0.113.9"),
                ];
                let got = send(&c, get(gw.addr, &sent)).await;
                assert_eq!(got.status, 200, "{at}");
                let this_hop = format!("for=127.0.0.1;host=\"{host}\";proto=http");
                let (xff, fwd) = match policy {
                    "append" => (
                        vec!["203.0.113.9, 198.51.100.2, 198.51.100.3, 127.0.0.1".to_string()],
                        vec![format!("for=203.0.113.9, {this_hop}")],
                    ),
                    "replace" => (vec!["127.0.0.1".to_string()], vec![this_hop.clone()]),
                    _ => (
                        vec!["203.0.113.9".to_string(), "198.51.100.2, 198.51.100.3".to_string()],
                        vec!["for=203.0.113.9".to_string()],
                    ),
                };
                assert_eq!(got.values("x-seen-xff"), xff, "{at}");
                assert_eq!(got.values("x-seen-forwarded"), fwd, "{at}");
                // The filter ran after the policy: it saw what the upstream got.
                assert_eq!(got.values("x-filter-xff"), xff[..1], "{at}");

                // Nothing sent: x-forwarded-for is started, forwarded is not.
                let got = send(&c, get(gw.addr, &[])).await;
                let xff: Vec<&str> = if policy == "off" { vec![] } else { vec!["127.0.0.1"] };
                assert_eq!(got.values("x-seen-xff"), xff, "{at} nothing sent");
                assert_eq!(got.values("x-seen-forwarded"), Vec::<String>::new(), "{at} nothing sent");
            }
        }
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn host_passes_as_sent_or_as_the_filter_set_it_unless_rewritten(engine) {
        let up = reporting_upstream().await;
        let wasm = guests::edge();
        for upstream_http2 in [false, true] {
            for rewrite in [false, true] {
                let mut flags = vec![];
                if upstream_http2 {
                    flags.push("--upstream-http2");
                }
                if rewrite {
                    flags.push("--rewrite-host");
                }
                let tag = format!("host-{upstream_http2}-{rewrite}");
                let gw = gateway(&tag, Some(&wasm), engine, up, &flags, "off");
                let at = format!("[{engine} upstream-http2={upstream_http2} rewrite-host={rewrite}]");
                let expect = |sent: &str| if rewrite { up.to_string() } else { sent.to_string() };
                for http2 in [false, true] {
                    // As the client sent it (HTTP/2: its :authority).
                    let got = send(&client(http2), get(gw.addr, &[("forwarded", "for=x")])).await;
                    assert_eq!(got.status, 200, "{at} http2={http2}");
                    assert_eq!(got.values("x-seen-host"), [expect(&gw.addr.to_string())], "{at} http2={http2}");
                    let lines = if upstream_http2 { "0" } else { "1" };
                    assert_eq!(got.values("x-seen-host-lines"), [lines], "{at} http2={http2}: one host, or :authority");
                    // forwarded keeps the host the client asked for.
                    assert!(got.values("x-seen-forwarded")[0].contains(&format!("host=\"{}\"", gw.addr)), "{at}");

                    // As the filter set it.
                    let got = send(&client(http2), get(gw.addr, &[("x-set-host", "set.example:8443")])).await;
                    assert_eq!(got.values("x-seen-host"), [expect("set.example:8443")], "{at} http2={http2}");
                }
                // An HTTP/1.1 client naming another host.
                let got = send(&client(false), get(gw.addr, &[("host", "named.example")])).await;
                assert_eq!(got.values("x-seen-host"), [expect("named.example")], "{at}");
                // Two host lines, or one that is no authority: 400 (RFC 9112 §3.2), before any filter.
                for bad in [&[("host", "a.example"), ("host", "b.example")][..], &[("host", "a b")][..]] {
                    let got = send(&client(false), get(gw.addr, bad)).await;
                    assert_eq!(got.status, 400, "{at} {bad:?}");
                    assert_eq!(&got.body[..], b"Bad Request\n", "{at}");
                }
            }
        }
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_filter_setting_a_host_http2_cannot_carry_gives_502(engine) {
        let up = reporting_upstream().await;
        let wasm = guests::edge();
        let gw = gateway("host-bad", Some(&wasm), engine, up, &["--upstream-http2"], "off");
        let got = send(&client(false), get(gw.addr, &[("x-set-host", "not an authority")])).await;
        assert_eq!(got.status, 502, "[{engine}]");
        assert_eq!(&got.body[..], b"Bad Gateway\n", "[{engine}]");
        assert!(values(&got.headers, "x-seen-host").is_empty());
    }
}

/// Sets response header `x-guest-cookies` to the number of `cookie` values
/// it sees (one digit), then calls next.
fn cookie_counter() -> Vec<u8> {
    guests::module(
        r#"(data (i32.const 0) "cookie")
  (data (i32.const 16) "x-guest-cookies")
  (func (export "handle_request") (result i64) (local $r i64)
    (local.set $r (call $get_header_values (i32.const 0) (i32.const 0) (i32.const 6) (i32.const 4096) (i32.const 4096)))
    (i32.store8 (i32.const 2048) (i32.add (i32.const 48) (i32.wrap_i64 (i64.shr_u (local.get $r) (i64.const 32)))))
    (call $set_header_value (i32.const 1) (i32.const 16) (i32.const 15) (i32.const 2048) (i32.const 1))
    (i64.const 1))
  (func (export "handle_response") (param i32 i32))"#,
    )
}

/// An upstream that reports each `cookie` line it received in `x-seen-cookie`.
async fn cookie_upstream() -> SocketAddr {
    upstream(|req: Request<hyper::body::Incoming>| async move {
        let mut res = Response::builder();
        for v in req.headers().get_all("cookie") {
            res = res.header("x-seen-cookie", v);
        }
        res.body(full("")).unwrap()
    })
    .await
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http2_cookie_fields_reach_filters_and_an_http1_upstream_as_one(engine) {
        let up = cookie_upstream().await;
        let gw = gateway("cookies", Some(&cookie_counter()), engine, up, &[], "off");
        // HTTP/2 clients may split cookies into fields (RFC 9113 §8.2.3).
        let split = [("cookie", "a=1"), ("cookie", "b=2; c=3"), ("cookie", "d=4")];
        let got = send(&client(true), get(gw.addr, &split)).await;
        assert_eq!(got.status, 200, "[{engine}]");
        assert_eq!(got.values("x-guest-cookies"), ["1"], "[{engine}]: the filter saw one cookie field");
        assert_eq!(got.values("x-seen-cookie"), ["a=1; b=2; c=3; d=4"], "[{engine}]: the HTTP/1.1 upstream got one");
        // One field stays as it is, over either protocol.
        for http2 in [false, true] {
            let got = send(&client(http2), get(gw.addr, &[("cookie", "a=1; b=2")])).await;
            assert_eq!(got.values("x-guest-cookies"), ["1"], "[{engine} http2={http2}]");
            assert_eq!(got.values("x-seen-cookie"), ["a=1; b=2"], "[{engine} http2={http2}]");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_filters_http2_cookie_fields_reach_an_http1_upstream_as_one() {
    let up = cookie_upstream().await;
    let gw = crate::process::Server::gateway(&crate::process::tempdir("cookies-plain"), up, &[]);
    let split = [("cookie", "a=1"), ("cookie", "b=2")];
    let got = send(&client(true), get(gw.addr, &split)).await;
    assert_eq!((got.status, got.values("x-seen-cookie")), (200, vec!["a=1; b=2".to_string()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_host_that_disagrees_with_the_authority_gets_400() {
    let up = reporting_upstream().await;
    let gw = crate::process::Server::gateway(&crate::process::tempdir("authority"), up, &[]);
    let mut h2 = crate::net::h2_connection(gw.addr).await;
    for host in ["other.example", "127.0.0.2:80", "not an authority"] {
        let req = Request::get(url(gw.addr, "/")).header("host", host).body(full("")).unwrap();
        h2.ready().await.unwrap();
        let res = h2.send_request(req).await.unwrap();
        assert_eq!(res.status(), 400, "host {host:?} with :authority {}", gw.addr);
        assert!(res.headers().get("x-seen-host").is_none(), "host {host:?}: not forwarded");
    }
    // The same authority in `host` (any case) is fine, and so is no `host`.
    let upper = format!("LOCALHOST:{}", gw.addr.port());
    let lower = format!("localhost:{}", gw.addr.port());
    for host in [Some(upper.as_str()), None] {
        let mut req = Request::get(format!("http://{lower}/"));
        if let Some(h) = host {
            req = req.header("host", h);
        }
        h2.ready().await.unwrap();
        let res = h2.send_request(req.body(full("")).unwrap()).await.unwrap();
        assert_eq!(res.status(), 200, "host {host:?} with :authority {lower}");
        let seen = values(res.headers(), "x-seen-host");
        assert!(seen.len() == 1 && seen[0].eq_ignore_ascii_case(&lower), "{seen:?}");
    }
}
