//! The one wasmtime engine of the process, its epoch ticker, and the on-disk cache of
//! compiled components.
//!
//! One engine for the life of the process (reloads included): compiled code, the pooling
//! allocator's slots and the epoch ticker are shared by every configuration that is loaded.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

/// One epoch tick; deadlines are counted in ticks, and a running guest yields to the async
/// runtime at every tick (so a busy guest never holds a worker thread for long).
pub const TICK: Duration = Duration::from_millis(1);

/// The largest `limits.memoryMiB` an extension may have: the pooling allocator reserves
/// slots of this size.
pub const MAX_MEMORY_MIB: u64 = 1024;

/// Bytes of a pooled linear memory kept resident between instances (reset by memset).
const KEEP_RESIDENT: usize = 256 << 10;

/// Concurrent instances the pool holds. A call beyond this fails closed (and is counted).
const POOL_INSTANCES: u32 = 256;

static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();

/// The shared engine, created on first use (with its ticker thread).
pub fn engine() -> Result<&'static Engine, String> {
    ENGINE
        .get_or_init(|| {
            let engine = build(true).or_else(|pooled| {
                // Some containers cap virtual memory; the pool reserves a lot of it.
                tracing::warn!(error = %pooled, "pooling allocator unavailable; instantiating on demand");
                build(false)
            })?;
            let ticker = engine.clone();
            std::thread::Builder::new()
                .name("tessera-epoch".into())
                .spawn(move || loop {
                    std::thread::sleep(TICK);
                    ticker.increment_epoch();
                })
                .map_err(|e| format!("cannot start the epoch ticker: {e}"))?;
            Ok(engine)
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn build(pooling: bool) -> Result<Engine, String> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.cranelift_opt_level(OptLevel::Speed);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            // Interpreter guests (componentize-py) hold dozens of core modules.
            .max_core_instances_per_component(128)
            .total_core_instances(POOL_INSTANCES * 16)
            .max_memories_per_component(16)
            .total_memories(POOL_INSTANCES * 2)
            .max_tables_per_component(64)
            .total_tables(POOL_INSTANCES * 8)
            .total_stacks(POOL_INSTANCES)
            .max_memory_size((MAX_MEMORY_MIB as usize) << 20);
        // A slot's memory and tables are reset with memset rather than `madvise` (up to these
        // sizes), so the next instance in the slot takes no page faults: measured on the C
        // test guest, 5 minor faults and ≈ 30 µs of kernel time less per call (docs/benchmarks.md).
        pool.linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT / 4);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&config).map_err(|e| e.to_string())
}

/// Where compiled components are kept: `TESSERA_CACHE_DIR`, else `$XDG_CACHE_HOME/tessera`,
/// else `~/.cache/tessera`; `None` when none is known.
pub fn cache_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("TESSERA_CACHE_DIR") {
        Some(d) if !d.is_empty() => return Some(PathBuf::from(d).join("extensions")),
        _ => std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?,
    };
    Some(base.join("tessera").join("extensions"))
}

/// Compiles a component, or loads the code compiled for the same bytes and the same engine
/// settings from the cache. A cache that cannot be used only costs time.
pub fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component, String> {
    let Some(dir) = cache_dir() else {
        return Component::new(engine, bytes).map_err(|e| e.to_string());
    };
    let path = dir.join(format!("{}.cwasm", cache_key(engine, bytes)));
    if trusted(&path) {
        // SAFETY: the file was written by this gateway (`store` below) into a directory only
        // its user can write, under a name binding it to these exact bytes and this engine.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "compiled-code cache entry unusable; recompiling")
            }
        }
    }
    let code = engine
        .precompile_component(bytes)
        .map_err(|e| e.to_string())?;
    if let Err(e) = store(&dir, &path, &code) {
        tracing::info!(dir = %dir.display(), error = %e, "compiled-code cache not written");
    }
    // SAFETY: `code` was produced by this engine just now.
    unsafe { Component::deserialize(engine, &code) }.map_err(|e| e.to_string())
}

fn cache_key(engine: &Engine, bytes: &[u8]) -> String {
    struct Sha(Sha256);
    impl Hasher for Sha {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut h = Sha(Sha256::new());
    h.write(bytes);
    h.write(b"\0engine:");
    engine.precompile_compatibility_hash().hash(&mut h);
    h.write(env!("CARGO_PKG_VERSION").as_bytes());
    let digest = h.0.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A cache entry is used only if it and its directory belong to this user and nobody else
/// can write them.
fn trusted(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let uid = unsafe_free_uid();
        let ok =
            |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.uid() == uid && m.mode() & 0o022 == 0);
        path.parent().is_some_and(ok) && ok(path)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// The effective uid, read from the owner of a file this process just created (no libc).
#[cfg(unix)]
fn unsafe_free_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    static UID: OnceLock<u32> = OnceLock::new();
    *UID.get_or_init(|| {
        std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(u32::MAX)
    })
}

fn store(dir: &Path, path: &Path, code: &[u8]) -> std::io::Result<()> {
    create_private_dir(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id()
    ));
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(code)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}
