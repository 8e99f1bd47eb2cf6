//! The Kubernetes manifests in deploy/kubernetes carry real configurations: every ConfigMap's
//! `config.yaml` passes `tessera validate` as the pod would run it (with only the environment
//! its container gets, Secret values replaced by dummies, and stand-in certificates where the
//! pod mounts its TLS Secret), and every secret (`<name>`) or `{{ env.NAME }}` the
//! configuration references reaches the Tessera container through its Secret.
//! (scripts/validate-deploy.sh checks the same manifests against the Kubernetes schemas.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tessera");
/// The image's default command reads this file (deploy/Dockerfile).
const DEFAULT_CONFIG: &str = "/etc/tessera/config.yaml";

/// One kustomization folder and the documents of the resources it lists.
struct Variant {
    dir: PathBuf,
    docs: Vec<Value>,
}

fn variants() -> Vec<Variant> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("kustomization.yaml").is_file())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 2,
        "expected the sidecar and standalone variants in {}",
        root.display()
    );
    dirs.into_iter()
        .map(|dir| {
            let kustomization = parse_all(&dir.join("kustomization.yaml")).remove(0);
            let docs = kustomization["resources"]
                .as_sequence()
                .expect("kustomization.yaml has resources")
                .iter()
                .flat_map(|r| parse_all(&dir.join(r.as_str().unwrap())))
                .collect();
            Variant { dir, docs }
        })
        .collect()
}

fn parse_all(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

impl Variant {
    fn named(&self, kind: &str, name: &str) -> Option<&Value> {
        self.docs
            .iter()
            .find(|d| str_of(d, "kind") == kind && str_of(&d["metadata"], "name") == name)
    }

    fn secret_keys(&self, name: &str) -> BTreeSet<String> {
        let Some(secret) = self.named("Secret", name) else {
            return BTreeSet::new();
        };
        ["stringData", "data"]
            .iter()
            .filter_map(|k| secret[*k].as_mapping())
            .flat_map(|m| m.keys().map(|k| k.as_str().unwrap().to_string()))
            .collect()
    }

    fn configmap_keys(&self, name: &str) -> BTreeSet<String> {
        self.named("ConfigMap", name)
            .and_then(|cm| cm["data"].as_mapping())
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// (workload, container) pairs running the Tessera image.
    fn tessera_containers(&self) -> Vec<(&Value, &Value)> {
        self.docs
            .iter()
            .filter(|d| ["Deployment", "StatefulSet", "DaemonSet"].contains(&str_of(d, "kind")))
            .flat_map(|d| {
                seq(&d["spec"]["template"]["spec"]["containers"])
                    .iter()
                    .filter(|c| {
                        let image = str_of(c, "image");
                        let name = image.rsplit('/').next().unwrap_or("");
                        name == "tessera"
                            || name.starts_with("tessera:")
                            || name.starts_with("tessera@")
                    })
                    .map(move |c| (d, c))
            })
            .collect()
    }

    /// The files a container sees from its volumes: absolute path -> (kind, source name, key).
    fn container_files(
        &self,
        workload: &Value,
        container: &Value,
    ) -> BTreeMap<String, (&'static str, String, String)> {
        let volumes = seq(&workload["spec"]["template"]["spec"]["volumes"]);
        let mut files = BTreeMap::new();
        for mount in seq(&container["volumeMounts"]) {
            let mount_path = str_of(mount, "mountPath").trim_end_matches('/');
            let Some(volume) = volumes
                .iter()
                .find(|v| str_of(v, "name") == str_of(mount, "name"))
            else {
                continue;
            };
            let mut sources: Vec<(&'static str, &Value, String)> = Vec::new();
            if volume["configMap"].is_mapping() {
                let name = str_of(&volume["configMap"], "name").to_string();
                sources.push(("ConfigMap", &volume["configMap"], name));
            }
            if volume["secret"].is_mapping() {
                let name = str_of(&volume["secret"], "secretName").to_string();
                sources.push(("Secret", &volume["secret"], name));
            }
            for source in seq(&volume["projected"]["sources"]) {
                for (field, kind) in [("configMap", "ConfigMap"), ("secret", "Secret")] {
                    if source[field].is_mapping() {
                        let name = str_of(&source[field], "name").to_string();
                        sources.push((kind, &source[field], name));
                    }
                }
            }
            for (kind, source, name) in sources {
                let items: Vec<(String, String)> = if source["items"].is_sequence() {
                    seq(&source["items"])
                        .iter()
                        .map(|i| (str_of(i, "key").to_string(), str_of(i, "path").to_string()))
                        .collect()
                } else {
                    // No items: every key becomes a file of the same name.
                    let keys = if kind == "Secret" {
                        self.secret_keys(&name)
                    } else {
                        self.configmap_keys(&name)
                    };
                    keys.into_iter().map(|k| (k.clone(), k)).collect()
                };
                for (key, path) in items {
                    files.insert(format!("{mount_path}/{path}"), (kind, name.clone(), key));
                }
            }
        }
        files
    }

    /// The environment variables a container gets; each Secret value is `None` (unknown).
    fn container_env(&self, container: &Value) -> BTreeMap<String, Option<String>> {
        let mut env = BTreeMap::new();
        for from in seq(&container["envFrom"]) {
            let name = str_of(&from["secretRef"], "name");
            if name.is_empty() {
                continue;
            }
            assert!(
                self.named("Secret", name).is_some(),
                "{}: envFrom names Secret {name}, which the kustomization does not define",
                self.dir.display()
            );
            for key in self.secret_keys(name) {
                env.insert(key, None);
            }
        }
        for var in seq(&container["env"]) {
            let name = str_of(var, "name").to_string();
            if let Some(value) = var["value"].as_str() {
                env.insert(name, Some(value.to_string()));
            } else if var["valueFrom"]["secretKeyRef"].is_mapping() {
                let r = &var["valueFrom"]["secretKeyRef"];
                assert!(
                    self.secret_keys(str_of(r, "name"))
                        .contains(str_of(r, "key")),
                    "{}: env {name} reads key {} of Secret {}, which does not exist",
                    self.dir.display(),
                    str_of(r, "key"),
                    str_of(r, "name")
                );
                env.insert(name, None);
            }
        }
        env
    }
}

fn config_path(container: &Value) -> String {
    let args: Vec<&str> = seq(&container["command"])
        .iter()
        .chain(seq(&container["args"]))
        .filter_map(Value::as_str)
        .collect();
    args.iter()
        .position(|a| *a == "--config")
        .and_then(|i| args.get(i + 1))
        .map_or(DEFAULT_CONFIG.to_string(), |p| p.to_string())
}

/// Environment variables a configuration needs: `<name>` secrets (with the default `env://`
/// provider) and `{{ env.NAME }}` templates.
fn referenced_env(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            if let Some(name) = s.strip_prefix('<').and_then(|r| r.strip_suffix('>')) {
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                {
                    out.insert(tessera::secrets::env_name(name));
                }
            }
            let mut rest = s.as_str();
            while let Some(i) = rest.find("{{") {
                let inner = &rest[i + 2..];
                let end = inner.find("}}").unwrap_or(inner.len());
                if let Some(name) = inner[..end].trim().strip_prefix("env.") {
                    out.insert(name.to_string());
                }
                rest = &inner[end..];
            }
        }
        Value::Sequence(items) => items.iter().for_each(|i| referenced_env(i, out)),
        Value::Mapping(m) => m.values().for_each(|i| referenced_env(i, out)),
        Value::Tagged(t) => referenced_env(&t.value, out),
        _ => {}
    }
}

/// Every ConfigMap with a `config.yaml`, with the Tessera container that reads it.
fn configs(variant: &Variant) -> Vec<(String, &Value, &Value, String)> {
    let mut found = Vec::new();
    for cm in variant
        .docs
        .iter()
        .filter(|d| str_of(d, "kind") == "ConfigMap")
    {
        let name = str_of(&cm["metadata"], "name");
        let Some(text) = cm["data"]["config.yaml"].as_str() else {
            continue;
        };
        let reader = variant.tessera_containers().into_iter().find(|(w, c)| {
            variant.container_files(w, c).get(&config_path(c))
                == Some(&("ConfigMap", name.to_string(), "config.yaml".to_string()))
        });
        let (workload, container) = reader.unwrap_or_else(|| {
            panic!(
                "{}: no Tessera container reads ConfigMap {name} at its --config path",
                variant.dir.display()
            )
        });
        found.push((name.to_string(), workload, container, text.to_string()));
    }
    assert!(
        !found.is_empty(),
        "{}: no ConfigMap with a config.yaml",
        variant.dir.display()
    );
    found
}

#[test]
fn every_configmap_config_passes_validate_as_its_pod_sees_it() {
    let cert = rcgen::generate_simple_self_signed(vec!["tessera.example.com".to_string()]).unwrap();
    for variant in variants() {
        for (name, workload, container, _) in configs(&variant) {
            // Lay the container's files out under a temporary root, as its volumes would.
            let root = tempfile::tempdir().unwrap();
            for (path, (kind, source, key)) in variant.container_files(workload, container) {
                let target = root.path().join(path.trim_start_matches('/'));
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                let content = match kind {
                    "ConfigMap" => variant
                        .named("ConfigMap", &source)
                        .and_then(|cm| cm["data"][key.as_str()].as_str())
                        .unwrap_or_else(|| panic!("ConfigMap {source} has no key {key}"))
                        .to_string(),
                    // A Secret's file: a stand-in certificate or key (tls.crt, tls.key, ca.crt).
                    _ if key.ends_with(".key") => cert.signing_key.serialize_pem(),
                    _ if key.ends_with(".crt") || key.ends_with(".pem") => cert.cert.pem(),
                    _ => "dummy".to_string(),
                };
                std::fs::write(&target, content).unwrap();
            }
            let config = root
                .path()
                .join(config_path(container).trim_start_matches('/'));
            let mut cmd = Command::new(BIN);
            cmd.args(["validate", "--config"]).arg(&config).env_clear();
            for (var, value) in variant.container_env(container) {
                cmd.env(
                    var,
                    value.unwrap_or_else(|| "dummy-secret-value".to_string()),
                );
            }
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{}: ConfigMap {name} does not validate:\n{}{}",
                variant.dir.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn every_secret_the_config_references_reaches_the_container() {
    for variant in variants() {
        for (name, _, container, text) in configs(&variant) {
            let config: Value = serde_yaml_ng::from_str(&text)
                .unwrap_or_else(|e| panic!("ConfigMap {name}: config.yaml: {e}"));
            let mut needed = BTreeSet::new();
            referenced_env(&config, &mut needed);
            let env = variant.container_env(container);
            let missing: Vec<_> = needed.iter().filter(|v| !env.contains_key(*v)).collect();
            assert!(
                missing.is_empty(),
                "{}: ConfigMap {name} references {missing:?}, which the Tessera container's \
                 environment (its Secret) does not provide",
                variant.dir.display()
            );
            // The configurations shipped keep their secrets in a Secret, not in the ConfigMap.
            assert!(
                !needed.is_empty(),
                "{}: ConfigMap {name} references no secret; expected `<name>` references",
                variant.dir.display()
            );
        }
    }
}
