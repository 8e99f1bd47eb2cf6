//! Where things are in the YAML text: config paths (`apps[0].policies[1].location`), the
//! line/column index built from the parser's events, and the diagnostics that point into it.
//!
//! serde's `Value` keeps no positions, so the same text is parsed a second time at the event
//! level (yaml-rust2) only to learn where each key and item starts.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path into the configuration document, displayed the way users read it:
/// `apps[0].policies[1].location`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ConfigPath(Vec<Seg>);

impl ConfigPath {
    pub fn root() -> Self {
        Self(Vec::new())
    }
    pub fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_string()));
        Self(segs)
    }
    pub fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        Self(segs)
    }
    pub fn parent(&self) -> Self {
        let mut segs = self.0.clone();
        segs.pop();
        Self(segs)
    }
    pub fn segments(&self) -> &[Seg] {
        &self.0
    }
}

impl fmt::Display for ConfigPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub col: usize,
}

/// Position of every key (for mapping entries) and item (for sequence entries) in the text.
#[derive(Debug, Default)]
pub struct SpanIndex {
    positions: HashMap<ConfigPath, Position>,
}

impl SpanIndex {
    /// Builds the index; text that does not parse yields an empty index (the serde parse
    /// reports the syntax error with its own position).
    pub fn build(text: &str) -> Self {
        let mut builder = IndexBuilder::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut builder, false);
        Self {
            positions: builder.positions,
        }
    }

    /// The position of `path`, or of its closest ancestor that has one.
    pub fn locate(&self, path: &ConfigPath) -> Position {
        let mut p = path.clone();
        loop {
            if let Some(pos) = self.positions.get(&p) {
                return *pos;
            }
            if p.0.is_empty() {
                return Position { line: 1, col: 1 };
            }
            p.0.pop();
        }
    }
}

enum Frame {
    Map {
        path: ConfigPath,
        key: Option<String>,
        /// The mapping's own position is learnt from its first key (block mappings report
        /// their start late).
        placed: bool,
    },
    Seq {
        path: ConfigPath,
        next: usize,
    },
}

#[derive(Default)]
struct IndexBuilder {
    stack: Vec<Frame>,
    positions: HashMap<ConfigPath, Position>,
}

impl IndexBuilder {
    /// Path of the node that starts now, recording its position; for a mapping that is
    /// waiting for a key, records the key and returns `None`.
    fn node_path(&mut self, scalar: Option<&str>, mark: Marker) -> Option<ConfigPath> {
        let pos = Position {
            line: mark.line(),
            col: mark.col() + 1,
        };
        match self.stack.last_mut() {
            None => Some(ConfigPath::root()),
            Some(Frame::Seq { path, next }) => {
                let p = path.index(*next);
                *next += 1;
                if scalar.is_some() {
                    self.positions.entry(p.clone()).or_insert(pos);
                }
                Some(p)
            }
            Some(Frame::Map { path, key, placed }) => match key.take() {
                Some(k) => Some(path.key(&k)),
                None => {
                    let k = scalar.unwrap_or("?").to_string();
                    if !*placed {
                        *placed = true;
                        self.positions.entry(path.clone()).or_insert(pos);
                    }
                    self.positions.entry(path.key(&k)).or_insert(pos);
                    *key = Some(k);
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for IndexBuilder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(ref s, ..) => {
                self.node_path(Some(s), mark);
            }
            Event::Alias(_) => {
                self.node_path(Some("*"), mark);
            }
            Event::MappingStart(..) => {
                if let Some(path) = self.node_path(None, mark) {
                    self.stack.push(Frame::Map {
                        path,
                        key: None,
                        placed: false,
                    });
                } else {
                    // A complex key: index what we can underneath it.
                    self.stack.push(Frame::Map {
                        path: ConfigPath::root().key("?"),
                        key: None,
                        placed: false,
                    });
                }
            }
            Event::SequenceStart(..) => {
                // the position of a sequence is that of its first item
                let path = self
                    .node_path(None, mark)
                    .unwrap_or_else(|| ConfigPath::root().key("?"));
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

/// One problem found in the configuration.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub path: ConfigPath,
    pub message: String,
    pub hint: Option<String>,
}

/// All problems found in one file, printed as `FILE:LINE:COL: message` lines.
#[derive(Debug)]
pub struct Report {
    pub file: PathBuf,
    pub diagnostics: Vec<(Position, Diagnostic)>,
}

impl Report {
    pub fn new(file: &Path, spans: &SpanIndex, mut diags: Vec<Diagnostic>) -> Self {
        let mut diagnostics: Vec<(Position, Diagnostic)> = diags
            .drain(..)
            .map(|d| (spans.locate(&d.path), d))
            .collect();
        diagnostics.sort_by_key(|(p, _)| (p.line, p.col));
        Self {
            file: file.to_path_buf(),
            diagnostics,
        }
    }

    pub fn single(file: &Path, pos: Position, message: String, hint: Option<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            diagnostics: vec![(
                pos,
                Diagnostic {
                    path: ConfigPath::root(),
                    message,
                    hint,
                },
            )],
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (pos, d) in &self.diagnostics {
            writeln!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                pos.line,
                pos.col,
                d.message
            )?;
            if let Some(h) = &d.hint {
                writeln!(f, "    hint: {h}")?;
            }
        }
        let n = self.diagnostics.len();
        write!(
            f,
            "{} problem{} in {}",
            n,
            if n == 1 { "" } else { "s" },
            self.file.display()
        )
    }
}

impl std::error::Error for Report {}

/// Collects diagnostics while a document is decoded and compiled.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn error(&mut self, path: &ConfigPath, message: impl Into<String>) {
        self.items.push(Diagnostic {
            path: path.clone(),
            message: message.into(),
            hint: None,
        });
    }
    pub fn error_hint(
        &mut self,
        path: &ConfigPath,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.items.push(Diagnostic {
            path: path.clone(),
            message: message.into(),
            hint: Some(hint.into()),
        });
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_keys_and_items() {
        let text = "version: 1\napps:\n  - name: a\n    policies:\n      - location: /x\n";
        let idx = SpanIndex::build(text);
        let p = ConfigPath::root().key("apps").index(0).key("name");
        assert_eq!(idx.locate(&p), Position { line: 3, col: 5 });
        let loc = ConfigPath::root()
            .key("apps")
            .index(0)
            .key("policies")
            .index(0)
            .key("location");
        assert_eq!(idx.locate(&loc), Position { line: 5, col: 9 });
        assert_eq!(loc.to_string(), "apps[0].policies[0].location");
        // an unknown path falls back to its closest known ancestor
        assert_eq!(
            idx.locate(&ConfigPath::root().key("apps").index(0).key("nope")),
            Position { line: 3, col: 5 }
        );
    }
}
