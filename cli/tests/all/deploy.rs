//! The Kubernetes manifests of `deploy/kubernetes`: every document parses
//! into its Kubernetes API type (`k8s-openapi`) and writes back the same,
//! so a misspelt or misplaced field fails here, not at `kubectl apply`;
//! the references between them hold (probe ports are the admin port,
//! mounted ConfigMaps exist and are what `--dapr` reads, Services select a
//! pod with the port they target, the grace period covers the drain); and
//! the Dapr files of the ConfigMap start a real `serve`.

use crate::process::{Server, get, run, tempdir};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tower_http_wasm::units::TimeSpan;

fn manifest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// Every manifest, parsed.
#[derive(Default)]
struct Manifests {
    deployments: Vec<(String, Deployment)>,
    services: Vec<(String, Service)>,
    config_maps: Vec<(String, ConfigMap)>,
}

/// `doc` as `T`, which must write back exactly what was read.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(at: &str, doc: &serde_json::Value) -> T {
    let value: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{at}: {e}"));
    let back = serde_json::to_value(&value).unwrap();
    assert_eq!(&back, doc, "{at}: a field the Kubernetes type does not have (misspelt or misplaced?)");
    value
}

fn load() -> Manifests {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifest_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let mut m = Manifests::default();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, de) in serde_norway::Deserializer::from_str(&text).enumerate() {
            let at = format!("{} document {}", file.display(), i + 1);
            let yaml = serde_norway::Value::deserialize(de).unwrap_or_else(|e| panic!("{at}: {e}"));
            let doc = serde_json::to_value(&yaml).unwrap();
            match doc["kind"].as_str() {
                Some("Deployment") => m.deployments.push((at.clone(), typed(&at, &doc))),
                Some("Service") => m.services.push((at.clone(), typed(&at, &doc))),
                Some("ConfigMap") => m.config_maps.push((at.clone(), typed(&at, &doc))),
                other => panic!("{at}: unexpected kind {other:?}"),
            }
        }
    }
    m
}

/// The value after `flag` in `args`.
fn arg<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn gateway(pod: &PodSpec) -> &Container {
    let gateways: Vec<&Container> =
        pod.containers.iter().filter(|c| c.image.as_deref().is_some_and(|i| i.starts_with("http-wasm:"))).collect();
    assert_eq!(gateways.len(), 1, "one gateway container per pod");
    gateways[0]
}

/// The port number `port` names in `container` (a number, or the name of
/// one of its ports).
fn port_number(container: &Container, port: &IntOrString) -> i32 {
    match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => {
            let ports = container.ports.as_deref().unwrap_or_default();
            ports.iter().find(|p| p.name.as_deref() == Some(name)).map(|p| p.container_port).unwrap_or_else(|| {
                panic!("container {}: no port named {name}", container.name);
            })
        }
    }
}

fn port_of(address: &str) -> i32 {
    address.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn every_manifest_parses_and_references_hold() {
    let m = load();
    assert!(!m.deployments.is_empty() && !m.services.is_empty() && !m.config_maps.is_empty());
    for (at, d) in &m.deployments {
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let gw = gateway(pod);
        let args = gw.args.clone().unwrap_or_default();
        assert_eq!(gw.command, None, "{at}: the image's entrypoint runs `http-wasm serve`");

        // Probes on the admin port: liveness /healthz, readiness /readyz.
        let admin = port_of(arg(&args, "--admin").unwrap_or_else(|| panic!("{at}: no --admin")));
        for (probe, path) in [(&gw.liveness_probe, "/healthz"), (&gw.readiness_probe, "/readyz")] {
            let get =
                probe.as_ref().and_then(|p| p.http_get.as_ref()).unwrap_or_else(|| panic!("{at}: no {path} probe"));
            assert_eq!(get.path.as_deref(), Some(path), "{at}");
            assert_eq!(port_number(gw, &get.port), admin, "{at}: the {path} probe is not on the admin port");
        }
        let listen = port_of(arg(&args, "--listen").unwrap());
        assert!(gw.ports.as_deref().unwrap().iter().any(|p| p.container_port == listen), "{at}: --listen port");

        // The grace period covers the drain.
        let drain: TimeSpan = arg(&args, "--drain-timeout").unwrap_or("10s").parse().unwrap();
        let grace = pod.termination_grace_period_seconds.unwrap_or(30);
        assert!(Duration::from_secs(grace as u64) > drain.get(), "{at}: grace {grace}s, drain {drain}");

        // Read-only root, non-root, resources set.
        let sc = gw.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{at}");
        assert_eq!(pod.security_context.as_ref().unwrap().run_as_non_root, Some(true), "{at}");
        let resources = gw.resources.as_ref().unwrap();
        assert!(resources.requests.as_ref().unwrap().contains_key("memory"), "{at}");
        assert!(resources.limits.as_ref().unwrap().contains_key("memory"), "{at}");

        // --dapr is a mounted ConfigMap that exists.
        let dapr = arg(&args, "--dapr").unwrap_or_else(|| panic!("{at}: no --dapr"));
        let mount = gw.volume_mounts.as_deref().unwrap().iter().find(|v| v.mount_path == dapr).unwrap();
        let volume = pod.volumes.as_deref().unwrap().iter().find(|v| v.name == mount.name).unwrap();
        let cm = volume.config_map.as_ref().unwrap_or_else(|| panic!("{at}: --dapr is not a ConfigMap volume"));
        let name = serde_json::to_value(cm).unwrap()["name"].as_str().unwrap().to_string();
        assert!(m.config_maps.iter().any(|(_, c)| c.metadata.name.as_deref() == Some(&*name)), "{at}: {name}");

        // A sidecar's upstream is another container of the same pod.
        let upstream = arg(&args, "--upstream").unwrap();
        if upstream.starts_with("http://127.0.0.1:") {
            let port = port_of(upstream);
            let others = pod.containers.iter().filter(|c| c.name != gw.name);
            let ports: Vec<i32> = others.flat_map(|c| c.ports.iter().flatten().map(|p| p.container_port)).collect();
            assert!(ports.contains(&port), "{at}: nothing in the pod on {upstream}");
        }
    }
    for (at, s) in &m.services {
        let spec = s.spec.as_ref().unwrap();
        let selector = spec.selector.as_ref().unwrap();
        let pods: Vec<&PodSpec> = m
            .deployments
            .iter()
            .filter_map(|(_, d)| d.spec.as_ref())
            .filter(|d| {
                let labels: BTreeMap<String, String> = d.template.metadata.as_ref().unwrap().labels.clone().unwrap();
                selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .map(|d| d.template.spec.as_ref().unwrap())
            .collect();
        assert_eq!(pods.len(), 1, "{at}: selects {} Deployments", pods.len());
        for port in spec.ports.as_deref().unwrap() {
            let target = port.target_port.as_ref().unwrap();
            port_number(gateway(pods[0]), target);
        }
    }
}

#[test]
fn the_config_maps_dapr_files_start_serve() {
    let m = load();
    let dir = tempdir("deploy-dapr");
    let out = run(&dir, &["build-examples", "--out", "filters"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::create_dir_all(dir.join("dapr")).unwrap();
    let (_, cm) = &m.config_maps[0];
    for (name, text) in cm.data.as_ref().unwrap() {
        // The image keeps the modules in /filters; here they are in ./filters.
        assert!(!text.contains("file://filters"), "{name}: module URLs are absolute in the image");
        std::fs::write(dir.join("dapr").join(name), text.replace("file:///filters/", "file://filters/")).unwrap();
    }
    let server = Server::start(&dir, &["serve", "--listen", "127.0.0.1:0", "--dapr", "dapr", "--admin", "127.0.0.1:0"]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(get(server.admin(), "/readyz", &[]).await.0, 200);
        let (status, headers, _) = get(server.addr, "/api/users", &[("x-api-key", "demo12345")]).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-echo-uri"], "/v1/users", "router then header-validation");
        assert_eq!(get(server.addr, "/api/users", &[]).await.0, 401);
    });
}
