//! Deny-by-default WASI (0.2) for guests built with standard toolchains.
//!
//! componentize-py, jco/StarlingMonkey, TinyGo/Go `wasip2` and Rust `wasm32-wasip2` all
//! import `wasi:cli`, `wasi:clocks`, `wasi:random`, `wasi:io` (and Python also
//! `wasi:filesystem` and `wasi:sockets`). Such a guest gets, per call:
//!
//! - clocks (wall and monotonic) and random (secure and insecure) that work;
//! - an empty environment, no arguments, an empty stdin;
//! - no preopened directory (so every path open fails: there is no directory to open from);
//! - sockets linked but denied (TCP, UDP and name lookup are all refused);
//! - stdout and stderr lines written to the gateway's log, tagged with the extension, the hook
//!   and the request id; a line is cut at [`MAX_LINE`] bytes and an extension logs at most
//!   [`LINES_PER_SECOND`] lines a second (the rest is counted and reported once a second);
//! - `wasi:cli/exit` ending the call as a failure (the caller fails closed).
//!
//! Any other import (`wasi:http`, `wasi:keyvalue`, a preview-3 interface …) is refused at load,
//! naming it. The WASI state is built lazily, on a call's first WASI function: a guest that
//! imports no WASI (or does not use it in a call) pays nothing for it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::AsyncWrite;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

use super::load::Extension;
use super::HookKind;

/// A guest output line longer than this is cut (and marked as cut).
pub const MAX_LINE: usize = 1024;
/// Output lines one extension may log per second, over all its calls together.
pub const LINES_PER_SECOND: u32 = 100;

/// WASI 0.2 interfaces a guest may import, by package. Versions: any `0.2.x` (wasmtime's
/// linker matches a guest's `@0.2.x` to its own 0.2 implementation).
const ALLOWED: [(&str, &[&str]); 6] = [
    (
        "wasi:cli",
        &[
            "environment",
            "exit",
            "stdin",
            "stdout",
            "stderr",
            "terminal-input",
            "terminal-output",
            "terminal-stdin",
            "terminal-stdout",
            "terminal-stderr",
        ],
    ),
    ("wasi:clocks", &["monotonic-clock", "wall-clock"]),
    ("wasi:random", &["random", "insecure", "insecure-seed"]),
    ("wasi:io", &["error", "poll", "streams"]),
    ("wasi:filesystem", &["types", "preopens"]),
    (
        "wasi:sockets",
        &[
            "network",
            "instance-network",
            "ip-name-lookup",
            "tcp",
            "tcp-create-socket",
            "udp",
            "udp-create-socket",
        ],
    ),
];

/// Whether `name` (`wasi:cli/stdout@0.2.3`) is a WASI interface the host provides.
pub fn allowed_import(name: &str) -> bool {
    let Some((path, version)) = name.split_once('@') else {
        return false;
    };
    let Some((package, interface)) = path.split_once('/') else {
        return false;
    };
    version.starts_with("0.2.")
        && ALLOWED
            .iter()
            .any(|(p, ifaces)| *p == package && ifaces.contains(&interface))
}

/// The WASI side of one call's store.
pub struct WasiState {
    pub ctx: WasiCtx,
    pub table: ResourceTable,
}

impl WasiState {
    pub fn new(ext: &Arc<Extension>, hook: HookKind, request_id: &str) -> Self {
        let out = |stream| GuestOutput::new(ext.clone(), hook, request_id, stream);
        let ctx = WasiCtxBuilder::new()
            // Empty environment and arguments, closed stdin, no preopens: the defaults, said
            // here so a change of defaults cannot open anything.
            .envs(&[] as &[(&str, &str)])
            .args(&[] as &[&str])
            .stdout(out("stdout"))
            .stderr(out("stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        WasiState {
            ctx,
            table: ResourceTable::new(),
        }
    }
}

/// One guest stream (stdout or stderr) of one call: bytes gathered into lines, each line
/// logged. Every WASI handle to the stream shares one buffer; what is left without a final
/// newline is logged when the call's store is dropped.
#[derive(Clone)]
struct GuestOutput {
    lines: Arc<Mutex<LineBuffer>>,
}

impl GuestOutput {
    fn new(ext: Arc<Extension>, hook: HookKind, request_id: &str, stream: &'static str) -> Self {
        GuestOutput {
            lines: Arc::new(Mutex::new(LineBuffer {
                ext,
                hook,
                request_id: request_id.to_string(),
                stream,
                lines: Lines::default(),
            })),
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.write(bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

struct LineBuffer {
    ext: Arc<Extension>,
    hook: HookKind,
    request_id: String,
    stream: &'static str,
    lines: Lines,
}

impl LineBuffer {
    fn write(&mut self, bytes: &[u8]) {
        let mut done = Vec::new();
        self.lines.push(bytes, |line, cut| done.push((line, cut)));
        for (line, cut) in done {
            self.emit(&line, cut);
        }
    }

    fn emit(&self, line: &[u8], cut: bool) {
        if !self.ext.output_budget.admit(&self.ext.name) {
            return;
        }
        let text = String::from_utf8_lossy(line);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        tracing::info!(
            extension = %self.ext.name,
            hook = self.hook.func_name(),
            request_id = %self.request_id,
            stream = self.stream,
            cut,
            line = %escape_controls(text),
            "extension output"
        );
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if let Some((line, cut)) = self.lines.rest() {
            self.emit(&line, cut);
        }
    }
}

/// Bytes gathered into lines of at most `MAX_LINE` bytes (a longer line is cut, the rest of it
/// dropped, and the line marked as cut).
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
    cut: bool,
}

impl Lines {
    /// Adds `bytes`; calls `line` with each completed line (without its newline).
    fn push(&mut self, bytes: &[u8], mut line: impl FnMut(Vec<u8>, bool)) {
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let (text, ends) = match chunk.strip_suffix(b"\n") {
                Some(t) => (t, true),
                None => (chunk, false),
            };
            let room = MAX_LINE - self.buf.len();
            if text.len() > room {
                self.buf.extend_from_slice(&text[..room]);
                self.cut = true;
            } else {
                self.buf.extend_from_slice(text);
            }
            if ends {
                line(std::mem::take(&mut self.buf), std::mem::take(&mut self.cut));
            }
        }
    }

    /// What is left without a final newline.
    fn rest(&mut self) -> Option<(Vec<u8>, bool)> {
        (!self.buf.is_empty() || self.cut)
            .then(|| (std::mem::take(&mut self.buf), std::mem::take(&mut self.cut)))
    }
}

/// Control characters written as `\u{..}` escapes: a guest cannot forge or split log lines.
fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// The output lines one extension may still log in the current second (all its calls share
/// it), so a chatty or hostile guest cannot flood the log.
#[derive(Default)]
pub struct OutputBudget {
    window: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    started: Option<Instant>,
    logged: u32,
    dropped: u64,
}

impl OutputBudget {
    /// Whether one more line may be logged now. The first line of a new second reports how
    /// many the previous one dropped.
    fn admit(&self, extension: &str) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if w.started
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1))
        {
            if w.dropped > 0 {
                tracing::warn!(
                    extension,
                    dropped = w.dropped,
                    limit_per_second = LINES_PER_SECOND,
                    "extension output over its rate limit: lines dropped"
                );
            }
            *w = Window {
                started: Some(now),
                logged: 0,
                dropped: 0,
            };
        }
        if w.logged < LINES_PER_SECOND {
            w.logged += 1;
            true
        } else {
            w.dropped += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{allowed_import, escape_controls, Lines, OutputBudget, LINES_PER_SECOND, MAX_LINE};

    #[test]
    fn output_is_split_into_bounded_lines() {
        let mut lines = Lines::default();
        let mut got = Vec::new();
        lines.push(b"one\ntw", |l, cut| got.push((l, cut)));
        lines.push(b"o\n", |l, cut| got.push((l, cut)));
        let long = vec![b'x'; MAX_LINE + 10];
        lines.push(&long, |l, cut| got.push((l, cut)));
        lines.push(b"\ntail", |l, cut| got.push((l, cut)));
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (b"one".to_vec(), false));
        assert_eq!(got[1], (b"two".to_vec(), false));
        assert_eq!(got[2], (vec![b'x'; MAX_LINE], true));
        assert_eq!(lines.rest(), Some((b"tail".to_vec(), false)));
        assert_eq!(lines.rest(), None);
        assert_eq!(escape_controls("a\u{1b}[31mb\rc"), "a\\u{1b}[31mb\\u{d}c");
    }

    #[test]
    fn output_rate_is_bounded_per_extension() {
        let budget = OutputBudget::default();
        let admitted = (0..LINES_PER_SECOND + 50)
            .filter(|_| budget.admit("x"))
            .count();
        assert_eq!(admitted, LINES_PER_SECOND as usize);
    }

    #[test]
    fn wasi_imports_allowed_and_refused() {
        for ok in [
            "wasi:cli/stdout@0.2.0",
            "wasi:cli/exit@0.2.6",
            "wasi:clocks/wall-clock@0.2.12",
            "wasi:random/random@0.2.3",
            "wasi:io/streams@0.2.9",
            "wasi:filesystem/preopens@0.2.0",
            "wasi:sockets/tcp@0.2.0",
        ] {
            assert!(allowed_import(ok), "{ok}");
        }
        for refused in [
            "wasi:http/outgoing-handler@0.2.0",
            "wasi:cli/run@0.2.0",
            "wasi:cli/stdout@0.3.0",
            "wasi:cli/stdout",
            "wasi:keyvalue/store@0.2.0",
            "wasi:clocks/timezone@0.2.0",
            "env",
        ] {
            assert!(!allowed_import(refused), "{refused}");
        }
    }
}
