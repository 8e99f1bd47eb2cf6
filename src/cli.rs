//! The command line: `run`, `validate`, `demo`, `hash-password`, `schema`, `version`.
//!
//! Exit codes: 0 success, 1 runtime failure (port in use, I/O), 2 invalid configuration or
//! usage (clap's convention for usage errors).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::config::{self, Environment};
use crate::runtime::{Live, Runtime};
use crate::secrets::SecretProvider;
use crate::server::reload::{self, ReloadSetup, Reloader};
use crate::store::StorePool;
use crate::telemetry::{self, metrics::Metrics};

/// The embedded default configuration (`config.example.yaml`), used by `tessera demo`.
pub const EXAMPLE_CONFIG: &str = include_str!("../config.example.yaml");

#[derive(Parser, Debug)]
#[command(
    name = "tessera",
    version,
    about = "Identity orchestrator: SSO reverse proxy for web apps, sessions, local login",
    long_about = "Tessera fronts web applications with single sign-on. One YAML file configures \
listeners, identity connectors, and the apps it protects.\n\nStart with `tessera demo`, then \
`tessera validate --config FILE` and `tessera run --config FILE`."
)]
pub struct Cli {
    /// Where `<name>` secret references are resolved: `env://` (default: `<okta.secret>` is
    /// env OKTA_SECRET) or `secretfile:///path/secrets.yaml`.
    #[arg(
        long,
        global = true,
        env = "TESSERA_SECRET_PROVIDER",
        value_name = "URL"
    )]
    secret_provider: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway with a configuration file.
    Run {
        /// The YAML configuration file.
        #[arg(long, short, env = "TESSERA_CONFIG", value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a configuration file without starting anything; prints every problem as
    /// FILE:LINE:COL. Exit code 0 if valid, 2 if not.
    Validate {
        #[arg(long, short, env = "TESSERA_CONFIG", value_name = "FILE")]
        config: PathBuf,
    },
    /// Run the embedded demo: config.example.yaml plus a built-in "whoami" app that shows
    /// the identity headers it receives. Offline, in memory.
    Demo {
        /// Use this file instead of the embedded config.example.yaml.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Hash a password for a `local` connector user (argon2id). Reads the password from
    /// stdin when it is not a terminal, else prompts twice.
    HashPassword,
    /// Print the JSON schema of the configuration file (for editor completion).
    Schema,
    /// Manage the OIDC provider's signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Generate a private signing key (PKCS#8 PEM, file mode 0600) for `oidcProvider.signingKeys`.
    Generate {
        /// ES256 (default), RS256 (2048-bit) or EdDSA (Ed25519).
        #[arg(long, default_value = "ES256")]
        alg: String,
        /// Where to write the key; refuses to overwrite an existing file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

fn generate_key(alg: &str, out: &Path) -> ExitCode {
    let Some(alg) = crate::provider::keys::SigningAlg::parse(alg) else {
        eprintln!("error: unsupported algorithm `{alg}` (use ES256, RS256 or EdDSA)");
        return ExitCode::from(2);
    };
    let pem = match crate::provider::keys::generate_pem(alg) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot generate the key: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options
        .open(out)
        .and_then(|mut f| f.write_all(pem.as_bytes()))
    {
        Ok(()) => {
            println!("wrote a {} key to {}", alg.name(), out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let secrets_url = cli.secret_provider.clone();
    let secrets = match SecretProvider::from_url(cli.secret_provider.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Version => {
            println!("tessera {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Schema => {
            print!("{}", config::schema::json_schema());
            ExitCode::SUCCESS
        }
        Command::HashPassword => hash_password(),
        Command::Keys {
            command: KeysCommand::Generate { alg, out },
        } => generate_key(&alg, &out),
        Command::Validate { config } => with_tokio(|| async move {
            match load(&config, &secrets, &Shared::new()) {
                Ok(rt) => {
                    for w in &rt.warnings {
                        eprintln!("warning: {w}");
                    }
                    println!("{}: configuration is valid", config.display());
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }),
        Command::Run { config } => with_tokio(|| async move {
            let shared = Shared::new();
            match load(&config, &secrets, &shared) {
                Ok(rt) => {
                    let start = Start {
                        config: Some(config),
                        secrets_url,
                        shared,
                        demo_upstream: None,
                    };
                    run(rt, start).await
                }
                Err(code) => code,
            }
        }),
        Command::Demo { config } => with_tokio(|| async move {
            let shared = Shared::new();
            let rt = match &config {
                Some(path) => load(path, &secrets, &shared),
                None => load_text(
                    EXAMPLE_CONFIG,
                    Path::new("config.example.yaml (embedded)"),
                    &secrets,
                    &shared,
                ),
            };
            match rt {
                Ok(rt) => {
                    let demo_upstream = rt
                        .apps
                        .iter()
                        .find_map(|a| a.proxied_to())
                        .map(|u| u.authority().to_string());
                    let start = Start {
                        config,
                        secrets_url,
                        shared,
                        demo_upstream,
                    };
                    run(rt, start).await
                }
                Err(code) => code,
            }
        }),
    }
}

fn with_tokio<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f()),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the process keeps across configuration reloads: made once, before the first load.
struct Shared {
    stores: Arc<StorePool>,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn new() -> Self {
        Self {
            stores: Arc::new(StorePool::new()),
            metrics: Arc::new(Metrics::new()),
        }
    }

    fn environment<'a>(&self, secrets: &'a SecretProvider) -> Environment<'a> {
        Environment {
            secrets,
            stores: self.stores.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// How `run` was started: the file to reload (none for the embedded demo config).
struct Start {
    config: Option<PathBuf>,
    secrets_url: Option<String>,
    shared: Shared,
    demo_upstream: Option<String>,
}

fn load(path: &Path, secrets: &SecretProvider, shared: &Shared) -> Result<Runtime, ExitCode> {
    config::load_file(path, &shared.environment(secrets)).map_err(|report| {
        eprintln!("{report}");
        ExitCode::from(2)
    })
}

fn load_text(
    text: &str,
    label: &Path,
    secrets: &SecretProvider,
    shared: &Shared,
) -> Result<Runtime, ExitCode> {
    config::load_str(text, label, Path::new("."), &shared.environment(secrets)).map_err(|report| {
        eprintln!("{report}");
        ExitCode::from(2)
    })
}

async fn run(rt: Runtime, start: Start) -> ExitCode {
    let telemetry = Arc::new(telemetry::init(
        &rt.logging.level,
        rt.logging.json,
        rt.tracing.as_ref(),
    ));
    let demo_upstream = start.demo_upstream;
    for w in &rt.warnings {
        tracing::warn!("{w}");
    }
    // Shared stores connect lazily: say early whether they answer, without waiting for them.
    for (name, store) in rt.stores.iter().filter(|(n, _)| n.as_str() != "default") {
        let (name, store) = (name.clone(), store.clone());
        tokio::spawn(async move {
            match store.ping().await {
                Ok(()) => tracing::info!(cache = %name, "store reachable"),
                Err(e) => tracing::warn!(cache = %name, error = %e,
                    "store unreachable: requests that need it answer 503 until it is back"),
            }
        });
    }
    if let Some(authority) = &demo_upstream {
        match crate::demo::start_whoami(authority).await {
            Ok(addr) => tracing::info!(address = %addr, "demo whoami app listening"),
            Err(e) => {
                eprintln!("error: cannot start the demo app on {authority}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Err(e) = crate::connectors::oidc::discover_all(&rt.connectors).await {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let listener = match crate::server::bind(&rt).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", rt.listen.address);
            return ExitCode::FAILURE;
        }
    };
    let admin = match crate::server::bind_admin(&rt).await {
        Ok(l) => l,
        Err(e) => {
            let addr = rt.listen.admin.map(|a| a.to_string()).unwrap_or_default();
            eprintln!("error: cannot listen on {addr} (http.adminAddress): {e}");
            return ExitCode::FAILURE;
        }
    };
    if demo_upstream.is_some() {
        if let Ok(addr) = listener.local_addr() {
            let url = crate::server::display_address(addr, rt.listen.tls.is_some());
            println!(
                "\nTessera demo is running: open {url}/ and sign in as alice / wonderland \
(admin) or bob / builder.\nPress Ctrl+C to stop.\n"
            );
            let _ = std::io::stdout().flush();
        }
    }
    let rt = Arc::new(rt);
    crate::connectors::oidc::spawn_refresher(Arc::downgrade(&rt));
    start.shared.metrics.config_loaded(false);
    let live = Arc::new(Live::new(rt));
    match start.config {
        Some(path) => {
            Reloader::new(ReloadSetup {
                live: live.clone(),
                path,
                secrets_url: start.secrets_url,
                stores: start.shared.stores.clone(),
                metrics: start.shared.metrics.clone(),
                telemetry: telemetry.clone(),
            })
            .start()
            .await
        }
        None => reload::sighup(None),
    }
    let served =
        crate::server::serve(live, listener, admin, crate::server::shutdown_signal()).await;
    // Spans still buffered are sent before the process ends.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn hash_password() -> ExitCode {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ");
        let second = rpassword::prompt_password("Repeat password: ");
        match (first, second) {
            (Ok(a), Ok(b)) if a == b => a,
            (Ok(_), Ok(_)) => {
                eprintln!("error: the passwords do not match");
                return ExitCode::from(2);
            }
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("error: cannot read the password: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        let mut line = String::new();
        if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
            eprintln!("error: cannot read the password from stdin: {e}");
            return ExitCode::FAILURE;
        }
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        eprintln!("error: the password is empty");
        return ExitCode::from(2);
    }
    match crate::connectors::local::hash_password(&password) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
