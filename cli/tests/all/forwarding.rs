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
