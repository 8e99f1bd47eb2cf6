//! Log-injection defence for the text log format (`logger.format: text`): every field value
//! and the message are written with control characters escaped (`\n`, `\r`, `\t`,
//! `\u{1b}`, ...), so attacker-controlled text (usernames, OAuth error descriptions,
//! parameter names, header values) can neither split a log line nor forge one, nor send
//! terminal escape sequences. Installed as the text format's field formatter, so it applies
//! to every event and span of the process, not call site by call site. (The JSON format
//! escapes by itself: a JSON string cannot hold a raw control character.)
//!
//! The output is otherwise the one of tracing-subscriber's default field formatter:
//! `message name=value name="string"`, strings quoted, without ANSI styling.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::Writer;

/// The text format's field formatter (see the module comment).
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedFields;

impl<'a> MakeVisitor<Writer<'a>> for EscapedFields {
    type Visitor = EscapingVisitor<'a>;

    fn make_visitor(&self, target: Writer<'a>) -> Self::Visitor {
        EscapingVisitor {
            writer: target,
            is_empty: true,
            result: Ok(()),
        }
    }
}

/// Writes the fields of one event or span, escaped.
pub struct EscapingVisitor<'a> {
    writer: Writer<'a>,
    is_empty: bool,
    result: fmt::Result,
}

/// Must `c` be escaped? Control characters (C0, DEL, C1), the Unicode line and paragraph
/// separators (some log viewers break lines there) and the bidirectional overrides (which
/// make a line display as something else than it says).
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A `fmt::Write` that escapes what `needs_escape` on the way through.
struct Escaper<'w, W: ?Sized>(&'w mut W);

impl<W: Write + ?Sized> Write for Escaper<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut start = 0;
        for (i, c) in s.char_indices() {
            if !needs_escape(c) {
                continue;
            }
            self.0.write_str(&s[start..i])?;
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "\\u{{{:x}}}", c as u32)?,
            }
            start = i + c.len_utf8();
        }
        self.0.write_str(&s[start..])
    }
}

/// `s` with what `needs_escape` escaped (for tests and callers that build text themselves).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let _ = Escaper(&mut out).write_str(s);
    out
}

impl EscapingVisitor<'_> {
    fn write(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        // Metadata of events bridged from the `log` crate, shown by the formatter itself.
        if name.starts_with("log.") {
            return;
        }
        self.result = self.write_field(name, value);
    }

    fn write_field(&mut self, name: &str, value: fmt::Arguments<'_>) -> fmt::Result {
        if !self.is_empty {
            self.writer.write_char(' ')?;
        }
        self.is_empty = false;
        let mut out = Escaper(&mut self.writer);
        if name != "message" {
            write!(out, "{}=", name.strip_prefix("r#").unwrap_or(name))?;
        }
        out.write_fmt(value)
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.write(field, format_args!("{value}"));
        } else {
            self.write(field, format_args!("{value:?}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(s) = source {
            let _ = write!(text, ": {s}");
            source = s.source();
        }
        self.write(field, format_args!("{text}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, format_args!("{value:?}"));
    }
}

impl VisitOutput<fmt::Result> for EscapingVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for EscapingVisitor<'_> {
    fn writer(&mut self) -> &mut dyn Write {
        &mut self.writer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    const EVIL: &str = "bob\nFAKE level=ERROR\r\t\u{1b}[31m\u{202e}x";

    fn log_all(json: bool) -> String {
        let buf = Buf::default();
        let out = buf.clone();
        let builder = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false);
        let emit = || {
            let span = tracing::info_span!("request", path = %EVIL);
            let _g = span.enter();
            let err = io::Error::other(EVIL);
            tracing::warn!(user = EVIL, description = %EVIL, dbg = ?EVIL, error = &err as &dyn std::error::Error, "message {EVIL}");
        };
        if json {
            let sub = builder.json().flatten_event(true).finish();
            tracing::subscriber::with_default(sub, emit);
        } else {
            let sub = builder.compact().fmt_fields(EscapedFields).finish();
            tracing::subscriber::with_default(sub, emit);
        }
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn text_format_escapes_every_field_and_the_message() {
        let out = log_all(false);
        assert_eq!(out.lines().count(), 1, "one event, one line: {out:?}");
        assert!(!out
            .trim_end_matches('\n')
            .contains(['\n', '\r', '\u{1b}', '\u{202e}']));
        let e = r"bob\nFAKE level=ERROR\r\t\u{1b}[31m\u{202e}x";
        for needle in [
            format!("message {e}"),
            format!("description={e}"),
            format!("path={e}"),
            format!("error={e}"),
            // Debug formatting already escapes; it is not escaped twice
            format!("user={EVIL:?}"),
            format!("dbg={EVIL:?}"),
        ] {
            assert!(out.contains(&needle), "{needle} not in {out}");
        }
        assert!(out.contains(" WARN "), "{out}");
    }

    #[test]
    fn json_format_escapes_by_itself() {
        let out = log_all(true);
        assert_eq!(out.lines().count(), 1, "one event, one line: {out:?}");
        let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(v["user"], EVIL);
        assert_eq!(v["description"], EVIL);
        assert_eq!(v["message"], format!("message {EVIL}"));
        assert!(!out.contains('\u{1b}'));
    }

    #[test]
    fn escape_keeps_ordinary_text() {
        assert_eq!(escape("plain text, ünïcode ✓"), "plain text, ünïcode ✓");
        assert_eq!(escape("a\u{0}b\u{7f}\u{85}"), r"a\u{0}b\u{7f}\u{85}");
        assert_eq!(escape("\u{2028}"), r"\u{2028}");
    }
}
