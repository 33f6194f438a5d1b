//! Dapr resource files: `middleware.http.wasm` components and the
//! `httpPipeline` of a `Configuration` that orders them.
//!
//! ```yaml
//! apiVersion: dapr.io/v1alpha1
//! kind: Component
//! metadata:
//!   name: router
//! spec:
//!   type: middleware.http.wasm
//!   version: v1
//!   metadata:
//!   - name: url
//!     value: "file://wasm/router.wasm"
//!   - name: guestConfig
//!     value: '{"routes":[...]}'
//! ---
//! apiVersion: dapr.io/v1alpha1
//! kind: Configuration
//! metadata:
//!   name: pipeline
//! spec:
//!   httpPipeline:
//!     handlers:
//!     - name: router
//!       type: middleware.http.wasm
//! ```
//!
//! Beyond Dapr's own `url` and `guestConfig`, a component may set each
//! filter setting of this gateway ([`METADATA`]: `isolation`,
//! `failurePolicy`, `poolSize`, `poolWait`, `deadline`, `memoryLimit`,
//! `tableLimit`, `bodyLimit`, `headerLimit`, `bodyTimeout`, `logLevel`,
//! `features`, `guestTimeSampling`); each overrides the `serve` flag of the same meaning for its
//! component. Any other field is an error naming the file and the field.
//!
//! Rules: a `file://` URL is relative to the working directory unless its
//! path starts with `/`; `http(s)://` and `oci://` URLs are fetched as
//! [`module_source`](crate::module_source) says, pinned by the `sha256`
//! metadata (our extension) when given. Handlers run in the listed order (the first sees the request
//! first). `spec.appHttpPipeline` is used when there is no
//! `spec.httpPipeline`. Without any `Configuration`, a single wasm component
//! is used alone. Components of other types are ignored unless a handler
//! names them, which is an error.

use super::settings::{METADATA, Settings};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A filter read from a component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaprFilter {
    /// `metadata.name`.
    pub name: String,
    /// The module's path, resolved, or its `http(s)://` or `oci://` URL,
    /// with `#sha256=HEX` when pinned: a [`module_source`](crate::module_source).
    pub path: PathBuf,
    /// `guestConfig` (empty when absent).
    pub guest_config: String,
    /// The file that defined the component.
    pub file: PathBuf,
    /// The settings its metadata gives (`isolation`, `poolSize`...).
    pub settings: Settings,
}

#[derive(Deserialize)]
struct Doc {
    kind: Option<String>,
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: serde_norway::Value,
}

#[derive(Default, Deserialize)]
struct Meta {
    name: Option<String>,
}

#[derive(Deserialize)]
struct ComponentSpec {
    #[serde(rename = "type")]
    kind: Option<String>,
    version: Option<String>,
    #[serde(default)]
    metadata: Vec<NameValue>,
}

#[derive(Deserialize)]
struct NameValue {
    name: String,
    #[serde(default)]
    value: serde_norway::Value,
}

#[derive(Deserialize)]
struct Handler {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

struct Component {
    name: String,
    kind: String,
    file: PathBuf,
    spec: ComponentSpec,
}

struct Pipeline {
    file: PathBuf,
    field: &'static str,
    handlers: Vec<Handler>,
}

const WASM: &str = "middleware.http.wasm";

/// The files of `paths`: each a YAML file, or a directory whose `*.yaml`
/// and `*.yml` files are read in name order.
fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(format!("{}: no .yaml or .yml files", p.display()));
            }
            out.extend(found);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(format!("{}: no such file or directory", p.display()));
        }
    }
    Ok(out)
}

fn text(value: &serde_norway::Value) -> Option<String> {
    match value {
        serde_norway::Value::String(s) => Some(s.clone()),
        serde_norway::Value::Number(n) => Some(n.to_string()),
        serde_norway::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Reads the filters, in pipeline order, from Dapr resource files.
/// `cwd` resolves relative `file://` URLs.
pub fn load(paths: &[PathBuf], cwd: &Path) -> Result<Vec<DaprFilter>, String> {
    let mut components: Vec<Component> = Vec::new();
    let mut pipelines: Vec<Pipeline> = Vec::new();
    for file in files(paths)? {
        let shown = file.display().to_string();
        let source = std::fs::read_to_string(&file).map_err(|e| format!("{shown}: {e}"))?;
        for (i, de) in serde_norway::Deserializer::from_str(&source).enumerate() {
            let value =
                serde_norway::Value::deserialize(de).map_err(|e| format!("{shown}: document {}: {e}", i + 1))?;
            if value.is_null() {
                continue;
            }
            let doc: Doc = serde_norway::from_value(value).map_err(|e| format!("{shown}: document {}: {e}", i + 1))?;
            match doc.kind.as_deref() {
                Some("Component") => {
                    let name = doc.metadata.name.ok_or_else(|| format!("{shown}: Component without metadata.name"))?;
                    let spec: ComponentSpec = serde_norway::from_value(doc.spec)
                        .map_err(|e| format!("{shown}: Component {name:?}: spec: {e}"))?;
                    let kind = spec
                        .kind
                        .clone()
                        .ok_or_else(|| format!("{shown}: Component {name:?}: spec.type is missing"))?;
                    if components.iter().any(|c| c.name == name) {
                        return Err(format!("{shown}: Component {name:?} is defined twice"));
                    }
                    components.push(Component { name, kind, file: file.clone(), spec });
                }
                Some("Configuration") => {
                    let spec = &doc.spec;
                    let (field, pipeline) = match (spec.get("httpPipeline"), spec.get("appHttpPipeline")) {
                        (Some(p), _) => ("spec.httpPipeline.handlers", p),
                        (None, Some(p)) => ("spec.appHttpPipeline.handlers", p),
                        (None, None) => continue,
                    };
                    let handlers: Vec<Handler> = match pipeline.get("handlers") {
                        Some(h) => serde_norway::from_value(h.clone()).map_err(|e| format!("{shown}: {field}: {e}"))?,
                        None => Vec::new(),
                    };
                    if let Some(other) = pipelines.first() {
                        return Err(format!(
                            "{shown}: a second Configuration with a pipeline (the first is in {})",
                            other.file.display()
                        ));
                    }
                    pipelines.push(Pipeline { file: file.clone(), field, handlers });
                }
                Some(other) => {
                    tracing::warn!(target: "http_wasm::dapr", file = %shown, kind = other, "ignoring a resource of this kind");
                }
                None => return Err(format!("{shown}: document {} has no kind", i + 1)),
            }
        }
    }
    let order: Vec<(String, String)> = match pipelines.pop() {
        Some(p) => {
            let mut order = Vec::new();
            for (i, h) in p.handlers.iter().enumerate() {
                let at = format!("{}: {}[{i}]", p.file.display(), p.field);
                let name = h.name.clone().ok_or_else(|| format!("{at}.name is missing"))?;
                let c = components
                    .iter()
                    .find(|c| c.name == name)
                    .ok_or_else(|| format!("{at}.name: no Component named {name:?} in the resource files"))?;
                if let Some(t) = &h.kind
                    && *t != c.kind
                {
                    return Err(format!("{at}.type is {t:?} but Component {name:?} has spec.type {:?}", c.kind));
                }
                order.push((name, at));
            }
            if order.is_empty() {
                return Err(format!("{}: {} is empty", p.file.display(), p.field));
            }
            order
        }
        None => {
            let wasm: Vec<&Component> = components.iter().filter(|c| c.kind == WASM).collect();
            match wasm.as_slice() {
                [one] => vec![(one.name.clone(), one.file.display().to_string())],
                [] => return Err("no Component of type middleware.http.wasm in the resource files".to_string()),
                _ => {
                    return Err(
                        "several middleware.http.wasm Components and no Configuration with spec.httpPipeline.handlers to order them"
                            .to_string(),
                    );
                }
            }
        }
    };
    order.iter().map(|(name, _)| filter(components.iter().find(|c| c.name == *name).expect("checked"), cwd)).collect()
}

fn filter(c: &Component, cwd: &Path) -> Result<DaprFilter, String> {
    let at = format!("{}: Component {:?}", c.file.display(), c.name);
    if c.kind != WASM {
        return Err(format!("{at}: spec.type {:?} is not supported (only {WASM})", c.kind));
    }
    match c.spec.version.as_deref() {
        Some("v1") => {}
        Some(v) => return Err(format!("{at}: spec.version {v:?} is not supported (only v1)")),
        None => return Err(format!("{at}: spec.version is missing (expected v1)")),
    }
    let meta = |key: &str| c.spec.metadata.iter().find(|m| m.name == key);
    let url = meta("url").ok_or_else(|| format!("{at}: spec.metadata has no \"url\""))?;
    let url = text(&url.value).ok_or_else(|| format!("{at}: spec.metadata url: expected a string"))?;
    // `sha256` (our extension): a pin, carried as the source's `#sha256=`.
    let pin = match meta("sha256") {
        Some(m) => {
            let hex = text(&m.value).ok_or_else(|| format!("{at}: spec.metadata sha256: expected a string"))?;
            format!("#sha256={hex}")
        }
        None => String::new(),
    };
    let path = if let Some(rest) = url.strip_prefix("file://") {
        if rest.is_empty() {
            return Err(format!("{at}: spec.metadata url {url:?} has no path"));
        }
        let p = Path::new(rest);
        let p = if p.is_absolute() { p.to_path_buf() } else { cwd.join(p) };
        if pin.is_empty() { p } else { PathBuf::from(format!("file://{}{pin}", p.display())) }
    } else if ["http://", "https://", "oci://"].iter().any(|s| url.starts_with(s)) {
        let source = PathBuf::from(format!("{url}{pin}"));
        crate::module_source::Source::parse(&source).map_err(|e| format!("{at}: spec.metadata url {url:?}: {e}"))?;
        source
    } else {
        return Err(format!("{at}: spec.metadata url {url:?}: expected file://PATH, http(s)://URL or oci://REFERENCE"));
    };
    let guest_config = match meta("guestConfig") {
        Some(m) => text(&m.value).ok_or_else(|| format!("{at}: spec.metadata guestConfig: expected a string"))?,
        None => String::new(),
    };
    let mut settings = Settings::default();
    for m in &c.spec.metadata {
        if m.name == "url" || m.name == "guestConfig" || m.name == "sha256" {
            continue;
        }
        let value = text(&m.value).ok_or_else(|| format!("{at}: spec.metadata {}: expected a string", m.name));
        match settings.set(&m.name, &value?) {
            Ok(true) => {}
            Ok(false) => {
                let known: Vec<&str> = METADATA.iter().map(|(field, _)| *field).collect();
                return Err(format!(
                    "{at}: spec.metadata {:?}: unknown field (known: url, sha256, guestConfig, {})",
                    m.name,
                    known.join(", ")
                ));
            }
            Err(e) => return Err(format!("{at}: spec.metadata {}: {e}", m.name)),
        }
    }
    Ok(DaprFilter { name: c.name.clone(), path, guest_config, file: c.file.clone(), settings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_http_wasm::{FailurePolicy, Isolation};

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("http-wasm-dapr-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const COMPONENTS: &str = r#"
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: a
spec:
  type: middleware.http.wasm
  version: v1
  metadata:
  - name: url
    value: "file://a.wasm"
  - name: guestConfig
    value: '{"x":1}'
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: b
spec:
  type: middleware.http.wasm
  version: v1
  metadata:
  - name: url
    value: "file:///abs/b.wasm"
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: store
spec:
  type: state.redis
  version: v1
"#;

    #[test]
    fn orders_by_the_pipeline_and_resolves_urls() {
        let d = tempdir("order");
        write(&d, "components.yaml", COMPONENTS);
        write(
            &d,
            "config.yaml",
            "kind: Configuration\nmetadata:\n  name: c\nspec:\n  httpPipeline:\n    handlers:\n    - name: b\n      type: middleware.http.wasm\n    - name: a\n      type: middleware.http.wasm\n",
        );
        let f = load(std::slice::from_ref(&d), Path::new("/work")).unwrap();
        assert_eq!(f.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(f[0].path, Path::new("/abs/b.wasm"));
        assert_eq!(f[1].path, Path::new("/work/a.wasm"));
        assert_eq!(f[1].guest_config, r#"{"x":1}"#);
        assert_eq!(f[0].guest_config, "");
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let d = tempdir("errors");
        let comps = write(&d, "components.yaml", COMPONENTS);
        let cfg = |handlers: &str| {
            write(&d, "config.yaml", &format!("kind: Configuration\nspec:\n  httpPipeline:\n    handlers:\n{handlers}"))
        };
        let c = cfg("    - name: missing\n      type: middleware.http.wasm\n");
        let e = load(&[comps.clone(), c], Path::new("/")).unwrap_err();
        assert!(e.contains("config.yaml: spec.httpPipeline.handlers[0].name: no Component named \"missing\""), "{e}");
        let c = cfg("    - name: store\n      type: state.redis\n");
        let e = load(&[comps.clone(), c], Path::new("/")).unwrap_err();
        assert!(e.contains("components.yaml: Component \"store\": spec.type \"state.redis\" is not supported"), "{e}");
        let c = cfg("    - name: a\n      type: middleware.http.ratelimit\n");
        let e = load(&[comps.clone(), c], Path::new("/")).unwrap_err();
        assert!(e.contains("handlers[0].type is \"middleware.http.ratelimit\""), "{e}");
        let remote = |url: &str, extra: &str| {
            write(
                &d,
                "remote.yaml",
                &format!(
                    "kind: Component\nmetadata:\n  name: h\nspec:\n  type: middleware.http.wasm\n  version: v1\n  metadata:\n  - name: url\n    value: {url}\n{extra}"
                ),
            )
        };
        let hex = "ab".repeat(32);
        let pinned = load(
            &[remote("https://example.invalid/x.wasm", &format!("  - name: sha256\n    value: {hex}\n"))],
            Path::new("/"),
        );
        assert_eq!(pinned.unwrap()[0].path, PathBuf::from(format!("https://example.invalid/x.wasm#sha256={hex}")));
        let oci = load(&[remote("oci://127.0.0.1:5000/f/x:v1", "")], Path::new("/"));
        assert_eq!(oci.unwrap()[0].path, PathBuf::from("oci://127.0.0.1:5000/f/x:v1"));
        let pinned_file =
            load(&[remote("file://x.wasm", &format!("  - name: sha256\n    value: {hex}\n"))], Path::new("/d"));
        assert_eq!(pinned_file.unwrap()[0].path, PathBuf::from(format!("file:///d/x.wasm#sha256={hex}")));
        let e = load(&[remote("https://example.invalid/x.wasm", "  - name: sha256\n    value: abc\n")], Path::new("/"))
            .unwrap_err();
        assert!(
            e.contains("remote.yaml: Component \"h\": spec.metadata url") && e.contains("not a SHA-256 digest"),
            "{e}"
        );
        let e = load(&[remote("ftp://example.invalid/x.wasm", "")], Path::new("/")).unwrap_err();
        assert!(e.contains("expected file://PATH, http(s)://URL or oci://REFERENCE"), "{e}");
        let e = load(&[comps], Path::new("/")).unwrap_err();
        assert!(e.contains("several middleware.http.wasm Components"), "{e}");
        let policy = |extra: &str| {
            write(
                &d,
                "policy.yaml",
                &format!(
                    "kind: Component\nmetadata:\n  name: p\nspec:\n  type: middleware.http.wasm\n  version: v1\n  metadata:\n  - name: url\n    value: file://p.wasm\n{extra}"
                ),
            )
        };
        let f = load(&[policy("")], Path::new("/")).unwrap();
        assert_eq!(f[0].settings, Settings::default());
        let p = policy(
            "  - name: isolation\n    value: recycle-after:5\n  - name: failurePolicy\n    value: open\n  - name: poolSize\n    value: 2\n  - name: memoryLimit\n    value: 1MiB\n",
        );
        let f = load(&[p], Path::new("/")).unwrap();
        let s = &f[0].settings;
        assert_eq!(
            (s.isolation, s.failure_policy, s.pool_size, s.memory_limit),
            (Some(Isolation::RecycleAfter(5)), Some(FailurePolicy::Open), Some(2), Some(1 << 20))
        );
        let e = load(&[policy("  - name: poolsize\n    value: 2\n")], Path::new("/")).unwrap_err();
        assert!(
            e.contains("policy.yaml: Component \"p\": spec.metadata \"poolsize\": unknown field (known: url"),
            "{e}"
        );
        let e = load(&[policy("  - name: deadline\n    value: 0s\n")], Path::new("/")).unwrap_err();
        assert!(
            e.contains("policy.yaml: Component \"p\": spec.metadata deadline: \"0s\": must be more than zero"),
            "{e}"
        );
        let e = load(&[policy("  - name: isolation\n    value: shared\n")], Path::new("/")).unwrap_err();
        assert!(e.contains("policy.yaml: Component \"p\": spec.metadata isolation: \"shared\": expected reuse"), "{e}");
        let e = load(&[policy("  - name: failurePolicy\n    value: [open]\n")], Path::new("/")).unwrap_err();
        assert!(e.contains("spec.metadata failurePolicy: expected a string"), "{e}");
    }
}
