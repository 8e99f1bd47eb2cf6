//! The command line as a shell user meets it: `validate` and `run` reports for broken
//! configurations (exact text, exit code 2), `hash-password`, `version`, `schema`, `demo`.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::*;

fn tessera(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("TESSERA_HTTP_ADDRESS")
        .env_remove("TESSERA_TEST_UNSET_HOST")
        .env_remove("MISSING_SECRET")
        .output()
        .unwrap()
}

/// Each broken config in tests/configs has the exact report in a `.expected` file next to
/// it; `validate` and `run` must both print it and exit with 2.
#[test]
fn broken_configs_report_every_problem_with_positions() {
    for name in [
        "many-errors",
        "files",
        "syntax",
        "empty",
        "oidc-errors",
        "edge-errors",
        "limits-errors",
    ] {
        let file = format!("tests/configs/{name}.yaml");
        let expected = std::fs::read_to_string(format!(
            "{}/tests/configs/{name}.expected",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        for cmd in ["validate", "run"] {
            let out = tessera(&[cmd, "--config", &file]);
            assert_eq!(out.status.code(), Some(2), "{cmd} {name}");
            let stderr = String::from_utf8(out.stderr).unwrap();
            assert_eq!(stderr, expected, "{cmd} {name}");
        }
    }
}

#[test]
fn the_report_names_every_problem_class_of_the_issue() {
    let expected = std::fs::read_to_string(format!(
        "{}/tests/configs/many-errors.expected",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    for needle in [
        "3:3: unknown key `adress`\n    hint: did you mean `address`?",          // unknown key
        "8:3: invalid type: string \"soon\", expected a whole number",           // wrong type
        "4:3: unknown TLS profile `missing-profile`",                            // dangling tls
        "36:34: unknown IdP `oktaa`",                                            // dangling idp
        "secret `<missing.secret>` is not defined\n    hint: set the environment variable MISSING_SECRET", // dangling secret
        "15:5: duplicate connector name `local`",                                // duplicate names
        "42:5: duplicate app name `app`",
        "route pattern `/` overlaps app `app`",                                  // overlapping routes
        "32:9: invalid regex",                                                   // bad regex
        "25:5: upstream scheme `ftp` is not supported",                          // bad URL
    ] {
        assert!(expected.contains(needle), "missing: {needle}");
    }
}

#[test]
fn valid_config_passes_and_secrets_never_print() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.yaml");
    let secrets = dir.path().join("secrets.yaml");
    std::fs::write(&secrets, "app:\n  hash: SUPERSECRETVALUE\n").unwrap();
    std::fs::write(
        &path,
        format!(
            "version: 1\nconnectors:\n  - {{ name: local, type: local, users: [{{ username: u, passwordHash: \"{}\" }}] }}\napps:\n  - name: a\n    type: proxy\n    routePatterns: [\"/\"]\n    upstream: http://127.0.0.1:9\n    headers: [{{ name: X-Tag, value: <app.hash> }}]\n    policies: [{{ location: /, authentication: {{ idps: [local] }}, authorization: {{ allowAll: true }} }}]\n",
            pw_hash()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "--secret-provider",
            &format!("secretfile://{}", secrets.display()),
            "validate",
            "--config",
        ])
        .arg(&path)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("configuration is valid"));
    assert!(all.contains("warning: serving plain HTTP"));
    assert!(!all.contains("SUPERSECRETVALUE"));
    // the same file through env:// without the variable: the reference is reported
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&path)
        .env_remove("APP_HASH")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(
        "secret `<app.hash>` is not defined\n    hint: set the environment variable APP_HASH"
    ));
    // TESSERA_CONFIG works as --config
    let out = Command::new(BIN)
        .arg("validate")
        .env("TESSERA_CONFIG", &path)
        .env("APP_HASH", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn missing_config_file_and_bad_usage() {
    let out = tessera(&["validate", "--config", "/nonexistent/tessera.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("/nonexistent/tessera.yaml:1:1: cannot read the configuration file"));
    let out = Command::new(BIN)
        .arg("run")
        .env_remove("TESSERA_CONFIG")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "missing --config is a usage error"
    );
    let out = tessera(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = tessera(&[
        "--secret-provider",
        "vault://x",
        "validate",
        "--config",
        "config.example.yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unsupported secret provider `vault://x`")
    );
}

#[test]
fn hash_password_from_stdin() {
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let parsed = PasswordHash::new(phc.trim()).unwrap();
    assert!(argon2::Argon2::default()
        .verify_password(b"correct horse", &parsed)
        .is_ok());
    // empty input is refused
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn version_and_schema() {
    let out = tessera(&["version"]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("tessera {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = tessera(&["schema"]);
    let schema = String::from_utf8(out.stdout).unwrap();
    let committed =
        std::fs::read_to_string(format!("{}/config.schema.json", env!("CARGO_MANIFEST_DIR")))
            .unwrap();
    assert!(
        schema == committed,
        "config.schema.json is stale: run `tessera schema > config.schema.json`"
    );
    let v: serde_json::Value = serde_json::from_str(&schema).unwrap();
    assert!(v["properties"]["apps"].is_object());
    let proxy = &v["$defs"]["AppConfig"]["oneOf"][0];
    assert!(proxy["properties"]["routePatterns"].is_object());
    assert_eq!(proxy["properties"]["type"]["const"], "proxy");
    assert_eq!(
        proxy["additionalProperties"], false,
        "unknown keys are flagged by editors too"
    );
}

#[test]
fn the_example_config_is_valid() {
    let out = tessera(&["validate", "--config", "config.example.yaml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The README's first command: the embedded default with its whoami app, login as alice.
#[tokio::test]
async fn demo_runs_the_embedded_config() {
    let mut cmd = Command::new(BIN);
    cmd.arg("demo")
        .env("TESSERA_HTTP_ADDRESS", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("Tessera demo is running"))
    })
    .await
    .unwrap();
    let line = line.expect("demo banner");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let c = client();
    let r = c.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let flow_cookie = set_cookie(&r, "tessera_login").unwrap();
    let page = c
        .get(format!(
            "{url}{}",
            r.headers()["location"].to_str().unwrap()
        ))
        .header("cookie", &flow_cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = c
        .post(format!("{url}/.tessera/login"))
        .header("cookie", &flow_cookie)
        .form(&[
            ("flow", hidden(&page, "flow")),
            ("csrf", hidden(&page, "csrf")),
            ("idp", "local".into()),
            ("username", "alice".into()),
            ("password", "wonderland".into()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let session = set_cookie(&r, "tessera_session").unwrap();
    let whoami = c
        .get(format!("{url}/"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        whoami.contains("<th scope=\"row\">x-user</th><td>alice</td>"),
        "{whoami}"
    );
    assert!(whoami.contains("<th scope=\"row\">x-groups</th><td>admins,staff</td>"));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn keys_generate_writes_a_private_pem_once() {
    let dir = tempfile::tempdir().unwrap();
    for alg in ["ES256", "RS256", "EdDSA"] {
        let out = dir.path().join(format!("{alg}.pem"));
        let o = Command::new(BIN)
            .args(["keys", "generate", "--alg", alg, "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let pem = std::fs::read_to_string(&out).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let alg_enum = tessera::provider::keys::SigningAlg::parse(alg).unwrap();
        tessera::provider::keys::SigningKey::from_pem(pem.as_bytes(), alg_enum).unwrap();
        // never overwrites
        let again = Command::new(BIN)
            .args(["keys", "generate", "--alg", alg, "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(again.status.code(), Some(1));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), pem);
    }
    let o = Command::new(BIN)
        .args(["keys", "generate", "--alg", "HS256", "--out"])
        .arg(dir.path().join("x.pem"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}
