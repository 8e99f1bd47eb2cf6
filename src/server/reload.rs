//! Hot reload: on SIGHUP, and when the configuration file (or a file it refers to) changes,
//! the file is read, validated and compiled again. A valid configuration is put in force at
//! once ([`Live::swap`]): requests in flight finish on the runtime they started with, and the
//! stores and metrics are the process's own (`StorePool`, `Metrics`), so sessions, counters and
//! Redis connections carry over. An invalid one is logged with its `FILE:LINE:COL` report and
//! the running configuration stays.
//!
//! **Restart-only settings.** The listener stays bound to the address it started on: a
//! changed `http.address` or `http.adminAddress` is reported in a warning (the rest of the
//! reload applies; the metrics stay where the listeners that exist serve them). The log
//! format and `telemetry.tracing` are fixed at start too (warned the same way). Certificates
//! *are* reloaded: each new connection takes the TLS configuration in force, so a rotated
//! certificate is served from the next handshake.
//!
//! **Coalescing.** Requests for a reload set one pending flag and wake one worker: a burst of
//! signals or file events gives at most one reload in progress and one waiting, and the waiting
//! one reads the file as it is when it starts.
//!
//! **Watching** polls the content (not inotify): every `reload.intervalMillis` the file and the
//! files it refers to are hashed. Following paths rather than watching inodes sees Kubernetes
//! ConfigMap/Secret updates (a `..data` symlink swapped atomically), editors that replace the
//! file, and network filesystems alike, and needs no inotify instances (a limited resource on
//! busy nodes). A change is acted on once it has held still for [`DEBOUNCE`]; a file that is
//! briefly missing (mid-swap) is waited for, never read as empty.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::config::source::{Position, Report};
use crate::config::{self, Environment};
use crate::runtime::{Live, Runtime};
use crate::secrets::SecretProvider;
use crate::store::StorePool;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::Telemetry;

/// A change must hold still this long before it is reloaded.
pub const DEBOUNCE: Duration = Duration::from_millis(250);
/// A missing (or empty) configuration file is read again this many times …
const READ_RETRIES: u32 = 8;
/// … this far apart (about 2 s in all): a ConfigMap swap or a non-atomic writer in progress.
const READ_RETRY_DELAY: Duration = Duration::from_millis(250);
/// A watched file missing for longer than this is reported (once).
const MISSING_WARNING: Duration = Duration::from_secs(2);

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Sighup,
    File,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Sighup => "sighup",
            Source::File => "file",
        }
    }
}

/// The process-wide things a reload compiles against, and the settings fixed at start.
pub struct Reloader {
    live: Arc<Live>,
    path: PathBuf,
    /// `--secret-provider`: a secret file is read again at each reload (secret rotation).
    secrets_url: Option<String>,
    stores: Arc<StorePool>,
    metrics: Arc<Metrics>,
    telemetry: Arc<Telemetry>,
    /// `http.address` as configured at start (the listener's address until restart).
    bound: SocketAddr,
    /// `http.adminAddress` as configured at start (likewise until restart).
    bound_admin: Option<SocketAddr>,
    started_json: bool,
    started_tracing: Option<crate::telemetry::traces::Settings>,
    pending: Mutex<Option<Source>>,
    wake: Notify,
    /// Fingerprint of the files as last read for a reload (or at start): the watcher reloads
    /// when what it sees differs.
    baseline: Mutex<Option<[u8; 32]>>,
}

/// What `Reloader::new` needs.
pub struct ReloadSetup {
    pub live: Arc<Live>,
    pub path: PathBuf,
    pub secrets_url: Option<String>,
    pub stores: Arc<StorePool>,
    pub metrics: Arc<Metrics>,
    pub telemetry: Arc<Telemetry>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Reloader {
    pub fn new(setup: ReloadSetup) -> Arc<Self> {
        let rt = setup.live.load();
        Arc::new(Self {
            bound: rt.listen.address,
            bound_admin: rt.listen.admin,
            started_json: rt.logging.json,
            started_tracing: rt.tracing.clone(),
            live: setup.live,
            path: setup.path,
            secrets_url: setup.secrets_url,
            stores: setup.stores,
            metrics: setup.metrics,
            telemetry: setup.telemetry,
            pending: Mutex::new(None),
            wake: Notify::new(),
            baseline: Mutex::new(None),
        })
    }

    /// Starts the reload worker, the SIGHUP handler and the file watcher. The SIGHUP handler
    /// is installed before this returns, so a signal can no longer end the process.
    pub async fn start(self: &Arc<Self>) {
        sighup(Some(self.clone()));
        let initial = self.files_fingerprint(None).await;
        *lock(&self.baseline) = initial;
        let worker = self.clone();
        tokio::spawn(async move { worker.work().await });
        let watcher = self.clone();
        tokio::spawn(async move { watcher.watch().await });
    }

    /// Asks for a reload. Coalesced: while one runs, any number of requests leave exactly
    /// one more to run after it.
    pub fn request(&self, source: Source) {
        lock(&self.pending).get_or_insert(source);
        self.wake.notify_one();
    }

    async fn work(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            let Some(source) = lock(&self.pending).take() else {
                continue;
            };
            self.reload(source).await;
        }
    }

    /// One reload attempt, logged and counted.
    pub async fn reload(&self, source: Source) {
        let started = Instant::now();
        let old = self.live.load();
        let text = read_config(&self.path).await;
        let result = match &text {
            Ok(text) => self.compile(text.clone()).await,
            Err(e) => Err(Report::single(
                &self.path,
                Position { line: 1, col: 1 },
                format!("cannot read the configuration file: {e}"),
                Some("the running configuration stays in force".into()),
            )
            .to_string()),
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(mut rt) => {
                let restart = self.restart_needed(&old, &rt);
                // The listeners stay as bound: where the metrics are served (main or admin
                // listener) follows the admin listener that exists, not the new setting.
                rt.listen.admin = self.bound_admin;
                for w in &restart {
                    tracing::warn!(source = source.as_str(), "{w}");
                }
                for w in rt.warnings.iter().filter(|w| !old.warnings.contains(w)) {
                    tracing::warn!("{w}");
                }
                if rt.logging.level != old.logging.level {
                    self.telemetry.set_level(&rt.logging.level);
                }
                let rt = Arc::new(rt);
                crate::connectors::oidc::spawn_refresher(Arc::downgrade(&rt));
                let files = rt.files.clone();
                drop(self.live.swap(rt));
                if let Ok(text) = &text {
                    self.set_baseline(text, &files).await;
                }
                self.metrics.config_loaded(true);
                tracing::info!(
                    outcome = "success",
                    source = source.as_str(),
                    duration_ms,
                    restart_needed = restart.len(),
                    "config reloaded"
                );
            }
            Err(report) => {
                if let Ok(text) = &text {
                    self.set_baseline(text, &old.files).await;
                }
                self.metrics.config_rejected();
                tracing::error!(
                    outcome = "failure",
                    source = source.as_str(),
                    duration_ms,
                    report = %report,
                    "config reload rejected"
                );
            }
        }
    }

    /// Validates and compiles `text` against the process's stores and metrics, with the
    /// secrets read afresh, then discovers new upstream IdPs like a start would.
    async fn compile(&self, text: String) -> Result<Runtime, String> {
        let secrets = SecretProvider::from_url(self.secrets_url.as_deref())
            .map_err(|e| format!("cannot read the secrets: {e}"))?;
        let stores = self.stores.clone();
        let metrics = self.metrics.clone();
        let path = self.path.clone();
        let rt = tokio::task::spawn_blocking(move || {
            let env = Environment {
                secrets: &secrets,
                stores,
                metrics,
            };
            let base = path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            config::load_str(&text, &path, &base, &env).map_err(|r| r.to_string())
        })
        .await
        .map_err(|e| format!("the reload failed: {e}"))??;
        crate::connectors::oidc::discover_all(&rt.connectors).await?;
        Ok(rt)
    }

    /// Settings the new configuration changes that only a restart applies.
    fn restart_needed(&self, old: &Runtime, new: &Runtime) -> Vec<String> {
        let mut out = Vec::new();
        if new.listen.address != self.bound {
            out.push(format!(
                "http.address changed to {}: the listener stays on {} until Tessera is restarted",
                new.listen.address, self.bound
            ));
        }
        if new.listen.admin != self.bound_admin {
            let show =
                |a: Option<SocketAddr>| a.map_or_else(|| "none".to_string(), |a| a.to_string());
            out.push(format!(
                "http.adminAddress changed to {}: the admin listener stays {} until Tessera is restarted",
                show(new.listen.admin),
                match self.bound_admin {
                    Some(a) => format!("on {a}"),
                    None => "off".to_string(),
                }
            ));
        }
        if new.logging.json != self.started_json && new.logging.json != old.logging.json {
            out.push("logger.format changed: it applies at the next restart".to_string());
        }
        let same_tracing = match (&self.started_tracing, &new.tracing) {
            (None, None) => true,
            (Some(a), Some(b)) => a.same_as(b),
            _ => false,
        };
        if !same_tracing {
            out.push("telemetry.tracing changed: it applies at the next restart".to_string());
        }
        out
    }

    /// The secret file, when secrets come from one: watched with the configuration.
    fn secret_file(&self) -> Option<PathBuf> {
        self.secrets_url
            .as_deref()
            .and_then(|u| u.trim().strip_prefix("secretfile://"))
            .map(PathBuf::from)
    }

    async fn set_baseline(&self, text: &str, files: &[PathBuf]) {
        let fp = self.fingerprint_of(text.as_bytes().to_vec(), files).await;
        *lock(&self.baseline) = Some(fp);
    }

    async fn fingerprint_of(&self, text: Vec<u8>, files: &[PathBuf]) -> [u8; 32] {
        let mut files = files.to_vec();
        files.extend(self.secret_file());
        tokio::task::spawn_blocking(move || fingerprint(&text, &files))
            .await
            .unwrap_or_default()
    }

    /// The fingerprint of the files now (`files` or the running configuration's), or `None`
    /// when the configuration file cannot be read.
    async fn files_fingerprint(&self, files: Option<Vec<PathBuf>>) -> Option<[u8; 32]> {
        let text = tokio::fs::read(&self.path).await.ok()?;
        let files = files.unwrap_or_else(|| self.live.load().files.clone());
        Some(self.fingerprint_of(text, &files).await)
    }

    async fn watch(self: Arc<Self>) {
        let mut missing_since: Option<Instant> = None;
        let mut warned = false;
        loop {
            let settings = self.live.load().reload.clone();
            tokio::time::sleep(settings.interval).await;
            if !settings.watch {
                continue;
            }
            let Some(mut seen) = self.files_fingerprint(None).await else {
                let since = *missing_since.get_or_insert_with(Instant::now);
                if !warned && since.elapsed() >= MISSING_WARNING {
                    warned = true;
                    tracing::warn!(
                        file = %self.path.display(),
                        "the configuration file cannot be read; the running configuration stays"
                    );
                }
                continue;
            };
            missing_since = None;
            warned = false;
            if Some(seen) == *lock(&self.baseline) {
                continue;
            }
            // Settle: a writer may still be at work.
            for _ in 0..8 {
                tokio::time::sleep(DEBOUNCE).await;
                match self.files_fingerprint(None).await {
                    Some(now) if now == seen => break,
                    Some(now) => seen = now,
                    None => break,
                }
            }
            // What the reload will read; it replaces this with what it did read.
            *lock(&self.baseline) = Some(seen);
            self.request(Source::File);
        }
    }
}

/// Keeps SIGHUP from ending the process, and hands it to `reloader` (when there is a file to
/// reload). Installed synchronously.
pub fn sighup(reloader: Option<Arc<Reloader>>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot handle SIGHUP: reload by signal is off");
                return;
            }
        };
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match &reloader {
                    Some(r) => r.request(Source::Sighup),
                    None => tracing::warn!(
                        "SIGHUP: nothing to reload (the embedded configuration is in use)"
                    ),
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = reloader;
}

/// Reads the configuration file; a missing or empty file (a ConfigMap swap, a writer at work)
/// is read again for about two seconds before the error stands.
async fn read_config(path: &Path) -> std::io::Result<String> {
    let mut tries = 0;
    loop {
        match tokio::fs::read_to_string(path).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < READ_RETRIES => {}
            Ok(t) if t.trim().is_empty() && tries < READ_RETRIES => {}
            r => return r,
        }
        tries += 1;
        tokio::time::sleep(READ_RETRY_DELAY).await;
    }
}

/// SHA-256 over the configuration text and each referenced file's path and content (an
/// unreadable file counts as its error, so its return is a change too).
fn fingerprint(text: &[u8], files: &[PathBuf]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((text.len() as u64).to_le_bytes());
    h.update(text);
    for f in files {
        h.update(f.as_os_str().as_encoded_bytes());
        h.update([0]);
        match std::fs::read(f) {
            Ok(bytes) => {
                h.update([1]);
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
            Err(e) => {
                h.update([2]);
                h.update(e.kind().to_string().as_bytes());
            }
        }
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_sees_referenced_files() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "one").unwrap();
        let files = vec![cert.clone()];
        let a = fingerprint(b"config", &files);
        assert_eq!(a, fingerprint(b"config", &files));
        assert_ne!(a, fingerprint(b"config2", &files));
        std::fs::write(&cert, "two").unwrap();
        let b = fingerprint(b"config", &files);
        assert_ne!(a, b);
        std::fs::remove_file(&cert).unwrap();
        assert_ne!(b, fingerprint(b"config", &files));
    }

    #[tokio::test]
    async fn a_replaced_runtime_is_dropped_and_its_refresher_ends() {
        let secrets = SecretProvider::Env;
        let env = Environment {
            secrets: &secrets,
            stores: Arc::new(StorePool::new()),
            metrics: Arc::new(Metrics::new()),
        };
        let compile = || {
            let yaml = "version: 1\nhttp: { address: \"127.0.0.1:0\" }\n";
            Arc::new(config::load_str(yaml, Path::new("t.yaml"), Path::new("."), &env).unwrap())
        };
        let first = compile();
        let refresher = crate::connectors::oidc::spawn_refresher(Arc::downgrade(&first));
        let weak = Arc::downgrade(&first);
        let live = Live::new(first);
        let second = compile();
        let _second_refresher = crate::connectors::oidc::spawn_refresher(Arc::downgrade(&second));
        drop(live.swap(second));
        assert!(
            weak.upgrade().is_none(),
            "nothing keeps the old runtime alive"
        );
        let ended = tokio::time::timeout(Duration::from_secs(5), refresher)
            .await
            .expect("the old runtime's refresher is still running")
            .unwrap_err();
        assert!(
            ended.is_cancelled(),
            "the old runtime's refresher was stopped"
        );
        assert!(Arc::ptr_eq(
            &live.load().sessions.store().clone(),
            &env.stores.memory()
        ));
    }

    #[tokio::test]
    async fn a_missing_file_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tessera.yaml");
        let writer = {
            let path = path.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(600)).await;
                std::fs::write(&path, "version: 1\n").unwrap();
            })
        };
        assert_eq!(read_config(&path).await.unwrap(), "version: 1\n");
        writer.await.unwrap();
        let gone = dir.path().join("never.yaml");
        let err = read_config(&gone).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
