//! Tera loading (locked down), the AST walker that finds every customer field a campaign
//! touches, and rendering of the personalised and generic variants.
//!
//! Tera is pinned to 1.20.1 because the walker reads its (public but undocumented) AST.
//! Marketer-written templates are untrusted: `get_env` would print `TACT_SMTP_PASSWORD`, so
//! it is replaced by a function that errors, and only files inside the templates folder are
//! ever registered, so nothing else can be included or extended.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tera::ast::{Block, Expr, ExprVal, FunctionCall, Node};
use tera::{Context, Tera};

use crate::audience::TOOL_VARIABLES;
use crate::error::{Error, Location, Result, did_you_mean};

/// Where a field shows up (DESIGN §4). The preheader counts as `subject`: inbox lists and
/// lock screens show it next to the subject before the message is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    Segment,
    Subject,
    Body,
}

impl Place {
    pub fn as_str(self) -> &'static str {
        match self {
            Place::Segment => "segment",
            Place::Subject => "subject",
            Place::Body => "body",
        }
    }
}

pub const SUBJECT: &str = "__tact/subject";
pub const PREHEADER: &str = "__tact/preheader";

#[derive(Debug, Clone)]
pub struct Templates {
    pub dir: PathBuf,
    tera: Tera,
    /// Every template's source (and name), joined: a render failure names only what is here.
    vocabulary: std::sync::Arc<str>,
    pub text: String,
    pub html: Option<String>,
}

/// Every field the templates use, where, and the dangerous ways they use them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub fields: BTreeMap<String, BTreeSet<Place>>,
    /// Fields that reach HTML through `safe` (or `{% filter safe %}`), bypassing escaping.
    pub unescaped: BTreeSet<String>,
    /// `{{ __tera_context }}` prints everything: counted as using every field.
    pub whole_context: bool,
    /// Names that are neither a column, a tact variable nor a template-local.
    pub unknown: BTreeMap<String, String>,
    /// Templates that call `get_env`: refused before anything renders.
    pub get_env: BTreeSet<String>,
    /// Included names that are not templates of the folder (a path that climbs out of it,
    /// a symlink, a typo): refused before anything renders.
    pub missing_includes: BTreeSet<String>,
    /// Includes or macros that reach themselves again: refused, since Tera would recurse
    /// until the stack overflows.
    pub recursion: BTreeSet<String>,
    /// Includes, macro calls or `extends` chains nested deeper than `MAX_CALL_DEPTH`.
    pub too_deep: BTreeSet<String>,
    /// Per filter or function name, the fields whose value may reach it (its input or an
    /// argument): a failing call is described by these, never by the value.
    pub flows_into: BTreeMap<String, BTreeSet<String>>,
}

impl Usage {
    pub fn add(&mut self, name: &str, place: Place) {
        self.fields
            .entry(name.to_string())
            .or_default()
            .insert(place);
    }

    pub fn names(&self) -> BTreeSet<String> {
        self.fields.keys().cloned().collect()
    }
}

fn tera_location(err: &tera::Error) -> (Option<(usize, usize)>, String) {
    let mut text = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        text.push_str(&e.to_string());
        text.push('\n');
        cur = e.source();
    }
    let pos = text.lines().find_map(|l| {
        let rest = l.trim_start().strip_prefix("--> ")?;
        let (line, col) = rest.trim().split_once(':')?;
        Some((line.parse().ok()?, col.parse().ok()?))
    });
    let expected = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("= ").map(str::to_string))
        .unwrap_or_else(|| text.lines().last().unwrap_or_default().trim().to_string());
    (pos, expected)
}

/// The largest template file tact reads: a marketing email is a few kilobytes, and Tera
/// parses and keeps every template whole.
pub const MAX_TEMPLATE_BYTES: u64 = 1 << 20;
/// How deeply tags (`if`, `for`, `block`, `macro`, `filter`) and brackets may nest, and how
/// many operators one tag may chain. Tera parses and renders by recursion, one level per
/// nesting and per operator: a few hundred of either overflow a 2 MiB worker stack (a
/// render runs on one). Measured in a debug build: 200 nested `if`s or a chain of 2,000
/// `+` overflow it, while these limits, all at once, render with room to spare (see the
/// test `templates_at_the_limits_render_on_a_small_stack`).
pub const MAX_NESTING: usize = 32;
pub const MAX_OPERATORS: usize = 64;

/// Where a template nests deeper than tact allows, before Tera sees it: (line, column, what).
fn nesting_problem(src: &str) -> Option<(usize, usize, String)> {
    let b = src.as_bytes();
    let pos = |i: usize| {
        let before = &src[..i];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rfind('\n')
            .map_or(before.len(), |n| before.len() - n - 1)
            + 1;
        (line, col)
    };
    let mut tags = 0usize;
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] != b'{' || !matches!(b[i + 1], b'{' | b'%' | b'#') {
            i += 1;
            continue;
        }
        if b[i + 1] == b'#' {
            i = src[i..].find("#}").map_or(b.len(), |e| i + e + 2);
            continue;
        }
        let close: &[u8] = if b[i + 1] == b'{' { b"}}" } else { b"%}" };
        let start = i;
        i += 2;
        let (mut depth, mut ops) = (0usize, 0usize);
        let body_start = i;
        while i < b.len() && !b[i..].starts_with(close) {
            match b[i] {
                q @ (b'"' | b'\'' | b'`') => {
                    i += 1;
                    while i < b.len() && b[i] != q {
                        i += 1;
                    }
                }
                b'(' | b'[' => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        let (l, c) = pos(i);
                        return Some((l, c, format!("brackets nest more than {MAX_NESTING} deep")));
                    }
                }
                b')' | b']' => depth = depth.saturating_sub(1),
                b'+' | b'-' | b'*' | b'/' | b'%' | b'~' | b'<' | b'>' | b'=' | b'!' | b'|' => {
                    ops += 1;
                }
                c if c.is_ascii_alphabetic()
                    && !b[i - 1].is_ascii_alphanumeric()
                    && b[i - 1] != b'_' =>
                {
                    let word: String = src[i..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if matches!(word.as_str(), "and" | "or" | "not" | "in" | "is") {
                        ops += 1;
                    }
                    i += word.len().max(1) - 1;
                }
                _ => {}
            }
            if ops > MAX_OPERATORS {
                let (l, c) = pos(start);
                return Some((
                    l,
                    c,
                    format!("one tag chains more than {MAX_OPERATORS} operators"),
                ));
            }
            i += 1;
        }
        if close == b"%}" {
            let body = src[body_start..i.min(b.len())]
                .trim_start_matches('-')
                .trim_start();
            let word: String = body
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            match word.as_str() {
                "if" | "for" | "block" | "macro" | "filter" => {
                    tags += 1;
                    if tags > MAX_NESTING {
                        let (l, c) = pos(start);
                        return Some((l, c, format!("tags nest more than {MAX_NESTING} deep")));
                    }
                }
                "raw" => {
                    // Nothing inside `raw` is parsed: skip to its end.
                    let rest = &src[i..];
                    let end = rest
                        .match_indices("{%")
                        .find(|(k, _)| {
                            rest[k + 2..]
                                .trim_start_matches('-')
                                .trim_start()
                                .starts_with("endraw")
                        })
                        .map_or(rest.len(), |(k, _)| k);
                    i += end;
                    continue;
                }
                w if w.starts_with("end") => tags = tags.saturating_sub(1),
                _ => {}
            }
        }
        i += close.len();
    }
    None
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| Error::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        // A symlink could point outside the folder; follow none.
        let ft = entry.file_type().map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        if ft.is_dir() {
            collect_files(root, &path, out)?;
        } else if ft.is_file() && path.extension().is_some_and(|e| e == "tera") {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((name, path));
        }
    }
    Ok(())
}

impl Templates {
    /// Parses every template in `dir` up front, so a syntax error in any of them stops the
    /// campaign before the first recipient, and registers the subject and preheader.
    pub fn load(
        dir: &Path,
        template: &str,
        campaign_path: &Path,
        subject: &str,
        preheader: &str,
    ) -> Result<Templates> {
        if !dir.is_dir() {
            return Err(Error::input(
                Location::file(campaign_path),
                format!("templates folder {} does not exist", dir.display()),
            ));
        }
        let mut files = Vec::new();
        collect_files(dir, dir, &mut files)?;
        files.sort();
        let mut sources = Vec::with_capacity(files.len() + 2);
        for (name, path) in &files {
            let size = std::fs::metadata(path)
                .map_err(|source| Error::Read {
                    path: path.clone(),
                    source,
                })?
                .len();
            if size > MAX_TEMPLATE_BYTES {
                return Err(Error::input(
                    Location::file(path),
                    format!(
                        "template is {size} bytes; tact reads templates of at most {MAX_TEMPLATE_BYTES} bytes (1 MiB)"
                    ),
                ));
            }
            let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            if let Some((l, c, what)) = nesting_problem(&text) {
                return Err(Error::input(
                    Location::at(path, l, c),
                    format!("template too deeply nested: {what}"),
                ));
            }
            if let Err(e) = tera::Template::new(name, None, &text) {
                let (pos, msg) = tera_location(&e);
                let loc = match pos {
                    Some((l, c)) => Location::at(path, l, c),
                    None => Location::file(path),
                };
                return Err(Error::input(loc, format!("template syntax error: {msg}")));
            }
            sources.push((name.clone(), text));
        }
        for (name, text, key) in [
            (SUBJECT, subject, "subject"),
            (PREHEADER, preheader, "preheader"),
        ] {
            let problem = if text.len() as u64 > MAX_TEMPLATE_BYTES {
                Some(format!("is over {MAX_TEMPLATE_BYTES} bytes"))
            } else {
                nesting_problem(text).map(|(l, c, what)| {
                    format!("is too deeply nested at line {l}, column {c}: {what}")
                })
            };
            if let Some(problem) = problem {
                return Err(Error::input(
                    Location::file(campaign_path),
                    format!("{key} {problem}"),
                ));
            }
            if let Err(e) = tera::Template::new(name, None, text) {
                let (pos, msg) = tera_location(&e);
                let at = pos.map_or(String::new(), |(l, c)| {
                    format!(" at line {l}, column {c} of the {key}")
                });
                return Err(Error::input(
                    Location::file(campaign_path),
                    format!("{key} is not a valid template{at}: {msg}"),
                ));
            }
            sources.push((name.to_string(), text.to_string()));
        }
        let mut tera = Tera::default();
        // Autoescape by the real suffix; Tera's default list does not know `.html.tera`.
        tera.autoescape_on(vec![".html.tera", ".htm.tera", ".xml.tera"]);
        tera.set_escape_fn(escape_html);
        tera.register_function(
            "get_env",
            |_: &HashMap<String, tera::Value>| -> tera::Result<tera::Value> {
                Err(tera::Error::msg(
                    "get_env is disabled in tact templates: environment variables may hold secrets",
                ))
            },
        );
        tera.register_function("now", render_now);
        tera.register_function("get_random", render_random);
        let vocabulary: std::sync::Arc<str> = sources
            .iter()
            .flat_map(|(n, t)| [n.as_str(), "\n", t.as_str(), "\n"])
            .collect::<String>()
            .into();
        tera.add_raw_templates(sources).map_err(|e| {
            let (_, msg) = tera_location(&e);
            Error::input(
                Location::file(dir),
                format!("templates do not fit together: {msg}"),
            )
        })?;
        let text = format!("{template}.txt.tera");
        if tera.get_template(&text).is_err() {
            let names: Vec<&str> = tera.get_template_names().collect();
            return Err(Error::input(
                Location::file(campaign_path),
                format!(
                    "template `{template}` needs {}{}",
                    dir.join(&text).display(),
                    did_you_mean(&text, names)
                ),
            ));
        }
        let html = format!("{template}.html.tera");
        let html = tera.get_template(&html).is_ok().then_some(html);
        Ok(Templates {
            dir: dir.to_path_buf(),
            tera,
            vocabulary,
            text,
            html,
        })
    }

    /// `{% if not field is sensitive %}`: true when the value holds a term of `lexicon`
    /// (DESIGN §8), so a template can leave such values out. Anything but text (a number, a
    /// missing variable) holds no term.
    pub fn register_sensitive(&mut self, lexicon: std::sync::Arc<crate::lexicon::Lexicon>) {
        self.tera.register_tester(
            "sensitive",
            move |v: Option<&tera::Value>, args: &[tera::Value]| -> tera::Result<bool> {
                if !args.is_empty() {
                    return Err(tera::Error::msg("`is sensitive` takes no argument"));
                }
                Ok(v.and_then(tera::Value::as_str)
                    .is_some_and(|s| lexicon.classify(s) != 0))
            },
        );
    }

    /// Walks subject, preheader, text and HTML parts; `fields` are the customer fields the
    /// audience offers (tool variables already removed).
    pub fn usage<'a>(&self, fields: impl IntoIterator<Item = &'a str>) -> Usage {
        let fields: BTreeSet<&str> = fields.into_iter().collect();
        // Tera renders the preheader first: the parts may print it.
        let mut parts = vec![
            (PREHEADER, Place::Subject, false),
            (SUBJECT, Place::Subject, false),
            (self.text.as_str(), Place::Body, false),
        ];
        if let Some(html) = &self.html {
            parts.push((html.as_str(), Place::Body, true));
        }
        Walker::new(&self.tera, &fields).run(&parts)
    }

    pub fn render(
        &self,
        vars: &ToolVars,
        fields: &[(&str, &str)],
    ) -> std::result::Result<Rendered, RenderFailure> {
        let _env = RenderEnv::enter(vars.now, vars.seed);
        let mut ctx = Context::new();
        for (k, v) in fields {
            ctx.insert(*k, v);
        }
        ctx.insert("personalised", &vars.personalised);
        ctx.insert("unsubscribe_url", &vars.unsubscribe_url);
        ctx.insert("postal_address", &vars.postal_address);
        ctx.insert("campaign", &vars.campaign);
        ctx.insert("why_you_got_this", &vars.why_you_got_this);
        let render = |name: &str, part: &'static str, ctx: &Context| {
            // Tera 1.20 panics on some values (a subscript whose value holds a multi-byte
            // character slices it mid-character): one row's data must not bring the whole
            // run down, and the panic's text, which quotes the value, is not printed.
            quiet_panics();
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.tera.render(name, ctx)
            })) {
                Ok(r) => r.map_err(|e| self.failure(part, &e)),
                Err(_) => Err(RenderFailure::engine_fault(part)),
            }
        };
        let preheader = render(PREHEADER, "preheader", &ctx)?;
        ctx.insert("preheader", preheader.trim());
        let subject = render(SUBJECT, "subject", &ctx)?;
        let text = render(&self.text, "text", &ctx)?;
        let html = match &self.html {
            Some(h) => Some(render(h, "html", &ctx)?),
            None => None,
        };
        Ok(Rendered {
            subject,
            preheader: preheader.trim().to_string(),
            text,
            html,
        })
    }
}

/// What kind of render failure, from the structure of Tera's error. Tera's texts quote
/// values (`Error parsing "ZELDA0" as a date`, `throw(message=first_name)`), and a value
/// transformed by a filter escapes any search for the original: so no text of Tera's is
/// ever passed on. Only names that sit in a slot where Tera puts a template's own names
/// (a variable, a filter, a template file) are kept, and only if the templates contain them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    MissingVariable,
    NotANumber,
    DivisionByZero,
    NotADate,
    WrongInputType,
    WrongArgument,
    NotIterable,
    NotConcatenable,
    Thrown,
    /// Tera itself panicked on this row's values.
    EngineFault,
    /// `get_env`, which tact disables.
    GetEnv,
    Other,
}

impl FailureKind {
    fn describe(self) -> &'static str {
        match self {
            FailureKind::MissingVariable => {
                "a variable is not defined (or a subscript found nothing)"
            }
            FailureKind::NotANumber => "math on a value that is not a number",
            FailureKind::DivisionByZero => "a division or modulo by zero",
            FailureKind::NotADate => "a value that is not a date",
            FailureKind::WrongInputType => "a value of the wrong type",
            FailureKind::WrongArgument => "an argument of the wrong type",
            FailureKind::NotIterable => "a loop over a value that cannot be looped over",
            FailureKind::NotConcatenable => "`~` on a value that is not text or a number",
            FailureKind::Thrown => "the template called `throw`",
            FailureKind::GetEnv => {
                "get_env is disabled in tact templates: environment variables may hold secrets"
            }
            FailureKind::EngineFault => {
                "the template engine failed on this row's values (a fault in Tera)"
            }
            FailureKind::Other => "the render failed",
        }
    }
}

/// Why a render failed, built from the error's structure (see `FailureKind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderFailure {
    pub part: &'static str,
    pub kind: FailureKind,
    /// The filter, function or test that failed, if one did.
    pub call: Option<String>,
    /// The kind in words, with the call, the variable Tera names (as written in the
    /// template), the macro and the template file: names and kinds, never a value.
    pub message: String,
}

/// The names `classify` finds while reading Tera's error chain.
#[derive(Default)]
struct Names {
    variable: Option<String>,
    template: Option<String>,
    in_macro: Option<String>,
}

impl RenderFailure {
    fn engine_fault(part: &'static str) -> RenderFailure {
        RenderFailure {
            part,
            kind: FailureKind::EngineFault,
            call: None,
            message: format!("{part} part: {}", FailureKind::EngineFault.describe()),
        }
    }
}

/// Installs, once, a panic hook that stays silent for panics inside a render (the default
/// hook prints the panic's message, and Tera's quote the value) and defers to the previous
/// hook everywhere else.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let rendering = RENDER_ENV
                .try_with(|e| e.try_borrow().map(|e| e.is_some()).unwrap_or(true))
                .unwrap_or(false);
            if !rendering {
                previous(info);
            }
        }));
    });
}

impl Templates {
    fn failure(&self, part: &'static str, e: &tera::Error) -> RenderFailure {
        let mut f = RenderFailure {
            part,
            kind: FailureKind::Other,
            call: None,
            message: String::new(),
        };
        let mut names = Names::default();
        // Only a name the templates themselves contain can be a template's own name.
        let known = |name: &str| {
            !name.is_empty()
                && name.len() <= 200
                && name
                    .chars()
                    .all(|c| c.is_alphanumeric() || "_.[]\"'-/ ".contains(c))
                && self.vocabulary.contains(name)
        };
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cur {
            if let Some(te) = err.downcast_ref::<tera::Error>() {
                match &te.kind {
                    tera::ErrorKind::CallFilter(n)
                    | tera::ErrorKind::CallFunction(n)
                    | tera::ErrorKind::CallTest(n) => {
                        if known(n) && f.call.is_none() {
                            f.call = Some(n.clone());
                        }
                        if let tera::ErrorKind::CallFunction(n) = &te.kind {
                            match n.as_str() {
                                "throw" => f.kind = FailureKind::Thrown,
                                "get_env" => f.kind = FailureKind::GetEnv,
                                _ => {}
                            }
                        }
                    }
                    tera::ErrorKind::Msg(m) => classify(m, &mut f.kind, &mut names, &known),
                    _ => {}
                }
            }
            cur = err.source();
        }
        let mut msg = format!("{} part: {}", part, f.kind.describe());
        let named = matches!(f.kind, FailureKind::Thrown | FailureKind::GetEnv);
        if let Some(c) = f.call.as_ref().filter(|_| !named) {
            msg.push_str(&format!(" in `{c}`"));
        }
        if let Some(v) = &names.variable {
            msg.push_str(&format!(" (variable `{v}`)"));
        }
        if let Some(m) = &names.in_macro {
            msg.push_str(&format!(", in macro `{m}`"));
        }
        if let Some(t) = &names.template {
            msg.push_str(&format!(", in {t}"));
        }
        f.message = msg;
        f
    }
}

/// One message of Tera's error chain → kind and names; the message itself is dropped.
fn classify(m: &str, kind: &mut FailureKind, f: &mut Names, known: &dyn Fn(&str) -> bool) {
    let between = |s: &str, open: &str, close: char| -> Option<String> {
        let rest = &s[s.find(open)? + open.len()..];
        Some(rest[..rest.find(close)?].to_string())
    };
    let mut set_kind = |k: FailureKind| {
        if *kind == FailureKind::Other {
            *kind = k;
        }
    };
    if let Some(rest) = m.strip_prefix("Failed to render '") {
        let top = rest.split('\'').next().unwrap_or_default();
        let inner = between(m, "(error happened in '", '\'');
        if let Some(t) = inner
            .filter(|t| known(t))
            .or(Some(top.to_string()).filter(|t| known(t)))
        {
            f.template = Some(t);
        }
        if let Some(mac) =
            between(m, "error while rendering macro `", '`').filter(|t| t.split("::").all(known))
        {
            f.in_macro = Some(mac);
        }
        return;
    }
    let var = if m.starts_with("Variable `") {
        between(m, "Variable `", '`')
    } else if m.starts_with("Tried to concat") {
        m.rsplit("from ident ").next().map(str::to_string)
    } else if m.starts_with("Tried to iterate") {
        between(m, "on variable `", '`')
    } else {
        None
    };
    if let Some(v) = var.filter(|v| known(v)) {
        f.variable.get_or_insert(v);
    }
    if m.starts_with("Variable `") && m.contains("not found") {
        set_kind(FailureKind::MissingVariable);
    } else if m.contains("math operation") || m.starts_with("Tried to do math") {
        set_kind(FailureKind::NotANumber);
    } else if m.contains("by zero") {
        set_kind(FailureKind::DivisionByZero);
    } else if m.starts_with("Error parsing") && m.contains("date") {
        set_kind(FailureKind::NotADate);
    } else if m.starts_with("Tried to iterate") || m.contains("for loop") {
        set_kind(FailureKind::NotIterable);
    } else if m.contains("incorrect type for arg") || m.contains("received an incorrect") {
        set_kind(FailureKind::WrongArgument);
    } else if m.contains("incorrect value") || m.contains("isn't a") || m.contains("is not a") {
        set_kind(FailureKind::WrongInputType);
    } else if m.starts_with("Tried to concat") {
        set_kind(FailureKind::NotConcatenable);
    }
}

/// What `now()` and `get_random()` see during one render. Tera's own read the clock and
/// the thread's RNG, so two renders of one recipient differ and the self-check's comparison
/// of them would always fire. Ours are functions of the plan's "now" and a per-recipient
/// seed: check, preview and send render the same message, and the self-check compares like
/// with like. Tera functions see no context, hence a thread-local set around each render.
struct RenderEnv {
    now: DateTime<Utc>,
    seed: u64,
    draws: u64,
}

thread_local! {
    static RENDER_ENV: std::cell::RefCell<Option<RenderEnv>> = const { std::cell::RefCell::new(None) };
}

/// Restores the previous environment when a render ends, however it ends.
struct EnvGuard(Option<RenderEnv>);

impl RenderEnv {
    fn enter(now: DateTime<Utc>, seed: u64) -> EnvGuard {
        let env = RenderEnv {
            now,
            seed,
            draws: 0,
        };
        EnvGuard(RENDER_ENV.with(|e| e.replace(Some(env))))
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        let prev = self.0.take();
        RENDER_ENV.with(|e| *e.borrow_mut() = prev);
    }
}

fn bool_arg(args: &HashMap<String, tera::Value>, name: &str, f: &str) -> tera::Result<bool> {
    match args.get(name) {
        None => Ok(false),
        Some(v) => v.as_bool().ok_or_else(|| {
            tera::Error::msg(format!(
                "Function `{f}` received a `{name}` that is not a boolean"
            ))
        }),
    }
}

fn int_arg(args: &HashMap<String, tera::Value>, name: &str) -> tera::Result<Option<i64>> {
    match args.get(name) {
        None => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            tera::Error::msg(format!(
                "Function `get_random` received a `{name}` that is not a whole number"
            ))
        }),
    }
}

/// Tera's `now(utc, timestamp)`, at the render's fixed moment.
fn render_now(args: &HashMap<String, tera::Value>) -> tera::Result<tera::Value> {
    let utc = bool_arg(args, "utc", "now")?;
    let timestamp = bool_arg(args, "timestamp", "now")?;
    let now = RENDER_ENV
        .with(|e| e.borrow().as_ref().map(|e| e.now))
        .ok_or_else(|| tera::Error::msg("now() was called outside a render"))?;
    Ok(match (timestamp, utc) {
        (true, _) => tera::Value::from(now.timestamp()),
        (false, true) => tera::Value::from(now.to_rfc3339()),
        (false, false) => tera::Value::from(now.with_timezone(&chrono::Local).to_rfc3339()),
    })
}

/// Tera's `get_random(start, end)`: a number in `start..end`, drawn from the recipient's
/// seed, so the same recipient draws the same numbers in check, preview and send. (Tera's
/// own panics on an empty range; this one errors.)
fn render_random(args: &HashMap<String, tera::Value>) -> tera::Result<tera::Value> {
    let start = int_arg(args, "start")?.unwrap_or(0);
    let end = int_arg(args, "end")?.ok_or_else(|| {
        tera::Error::msg("Function `get_random` didn't receive an `end` argument")
    })?;
    if end <= start {
        return Err(tera::Error::msg(
            "Function `get_random` needs `end` greater than `start`",
        ));
    }
    let draw = RENDER_ENV
        .with(|e| {
            e.borrow_mut().as_mut().map(|e| {
                e.draws += 1;
                splitmix64(e.seed ^ e.draws.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            })
        })
        .ok_or_else(|| tera::Error::msg("get_random() was called outside a render"))?;
    let span = end.abs_diff(start);
    Ok(tera::Value::from(start.wrapping_add_unsigned(draw % span)))
}

/// Tera's `escape_html`, to the byte (`escape_html_is_teras`), but copying the runs
/// between the six characters it replaces instead of pushing a character at a time: every
/// value an HTML part prints goes through it, some twenty times a recipient.
pub fn escape_html(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + input.len() / 8);
    let mut from = 0;
    for (i, b) in input.bytes().enumerate() {
        let with = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#x27;",
            b'/' => "&#x2F;",
            _ => continue,
        };
        // An ASCII byte is a character of its own: `i` is a character boundary.
        out.push_str(&input[from..i]);
        out.push_str(with);
        from = i + 1;
    }
    out.push_str(&input[from..]);
    out
}

/// Whether `escape_html` replaces this byte.
pub fn escaped(b: u8) -> bool {
    matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'' | b'/')
}

/// SplitMix64's finaliser: spreads a seed over all 64 bits.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The tool variables of DESIGN §2, for one recipient and variant.
#[derive(Debug, Clone)]
pub struct ToolVars {
    /// The plan's "now": what `now()` returns in the templates.
    pub now: DateTime<Utc>,
    /// Per recipient: what `get_random()` draws from.
    pub seed: u64,
    pub personalised: bool,
    pub unsubscribe_url: String,
    pub postal_address: String,
    pub campaign: String,
    pub why_you_got_this: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// As rendered: a control character in it makes the recipient `bad_header_value`.
    pub subject: String,
    pub preheader: String,
    pub text: String,
    pub html: Option<String>,
}

/// What may flow into a value: the customer fields whose text can end up in it, and how
/// deeply it may be a list (`nest` 0 is a string or number). Tera prints a list's strings
/// without escaping them, so a list is as dangerous in HTML as `| safe`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Flow {
    fields: BTreeSet<String>,
    nest: u8,
}

impl Flow {
    fn join(&mut self, other: &Flow) {
        self.fields.extend(other.fields.iter().cloned());
        self.nest = self.nest.max(other.nest);
    }

    fn field(name: &str) -> Flow {
        Flow {
            fields: BTreeSet::from([name.to_string()]),
            nest: 0,
        }
    }
}

/// Filters whose result holds none of their input's text (numbers), so nothing flows on.
const NUMERIC_FILTERS: [&str; 6] = [
    "length",
    "wordcount",
    "int",
    "float",
    "round",
    "filesizeformat",
];
/// Filters that return a list built from their input's items.
const LIST_FILTERS: [&str; 8] = [
    "slice", "sort", "unique", "reverse", "filter", "map", "concat", "group_by",
];
/// Filter sections whose filter cannot turn escaped text back into markup. A section's body
/// is escaped as usual and the filter's result is printed as is, so any other filter
/// (`replace(from="&lt;", to="<")`) can undo the escaping.
const ESCAPE_KEEPING_FILTERS: [&str; 15] = [
    "safe",
    "upper",
    "lower",
    "capitalize",
    "title",
    "trim",
    "trim_start",
    "trim_end",
    "striptags",
    "linebreaksbr",
    "spaceless",
    "escape",
    "escape_xml",
    "wordcount",
    "length",
];

/// How deep includes and macro calls may nest: Tera renders them by recursion, and a
/// render runs on a worker thread with a small stack.
pub const MAX_CALL_DEPTH: usize = 16;
/// How many bodies (`if`, `for`, blocks, macros, includes) may nest in one render, across
/// files: Tera's render recursion overflowed a 2 MiB stack at about 150 nested `if`s in a
/// debug build; 64 keeps a margin of two for the expressions inside.
pub const MAX_RENDER_DEPTH: usize = 64;

/// A macro parameter as it flows through the macro's body: a name no field can have,
/// replaced by the arguments of each call (`walk_macro`) or by those of all calls where the
/// body itself prints it (`Walker::expand`).
fn param_marker(file: &str, mac: &str, param: &str) -> String {
    format!("\u{1}{file}\u{1}{mac}\u{1}{param}")
}

fn parse_marker(s: &str) -> Option<(String, String, String)> {
    let mut parts = s.strip_prefix('\u{1}')?.split('\u{1}');
    let (f, m, p) = (parts.next()?, parts.next()?, parts.next()?);
    Some((f.to_string(), m.to_string(), p.to_string()))
}

/// The walker's knowledge of what flows where; it grows pass by pass until it is stable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Flows {
    /// `set` and loop variables, by name (one scope: over-reporting is safe).
    vars: BTreeMap<String, Flow>,
    /// Macro parameters by (file, macro, parameter): what every call passes them.
    params: BTreeMap<(String, String, String), Flow>,
    /// What a macro's output may carry, by (file, macro).
    macro_out: BTreeMap<(String, String), Flow>,
    /// What the rendered preheader (a tool variable in the parts) may carry.
    preheader: Flow,
}

struct Walker<'t> {
    tera: &'t Tera,
    fields: &'t BTreeSet<&'t str>,
    usage: Usage,
    flows: Flows,
    candidates: BTreeMap<String, String>,
    visited_macros: BTreeSet<(String, String, Place, bool)>,
    /// Template-names and macros being walked, against cycles and runaway depth.
    stack: Vec<String>,
    /// Output being collected: of the macro or template (preheader) being walked.
    outs: Vec<Flow>,
    /// Bodies nested around the node being walked (see `MAX_RENDER_DEPTH`).
    depth: usize,
}

#[derive(Clone, Copy)]
struct Scope<'a> {
    file: &'a str,
    place: Place,
    html: bool,
    /// Inside a filter section whose filter may undo escaping: every print is unescaped.
    raw: bool,
    /// The template whose blocks win, and its chain of parents.
    leaf: &'a tera::Template,
    /// For `super()`: the definitions of the block being walked and which one is current.
    block: Option<(&'a [(String, Block)], usize)>,
    /// The macro whose body is being walked, for its parameters: (file, name).
    in_macro: Option<(&'a str, &'a str)>,
}

impl<'t> Walker<'t> {
    fn new(tera: &'t Tera, fields: &'t BTreeSet<&'t str>) -> Self {
        Walker {
            tera,
            fields,
            usage: Usage::default(),
            flows: Flows::default(),
            candidates: BTreeMap::new(),
            visited_macros: BTreeSet::new(),
            stack: Vec::new(),
            outs: Vec::new(),
            depth: 0,
        }
    }

    /// Walks `parts` again and again until what flows where stops growing: a `set` after its
    /// use, or a macro called with a field only further down, is then still seen.
    fn run(mut self, parts: &[(&str, Place, bool)]) -> Usage {
        // Each pass only adds to `flows`, whose size is bounded by variables × fields; the
        // cap is a guard, never reached by a template of sane size.
        for _ in 0..64 {
            let before = self.flows.clone();
            self.usage = Usage::default();
            self.candidates.clear();
            self.visited_macros.clear();
            for (name, place, html) in parts {
                if *name == PREHEADER {
                    self.outs.push(Flow::default());
                    self.walk_template(name, *place, *html);
                    let out = self.outs.pop().unwrap_or_default();
                    let fields = self.expand(&out.fields);
                    self.flows.preheader.join(&Flow { fields, nest: 0 });
                } else {
                    self.walk_template(name, *place, *html);
                }
            }
            if self.flows == before {
                break;
            }
        }
        self.finish()
    }

    fn finish(mut self) -> Usage {
        for (name, hint) in std::mem::take(&mut self.candidates) {
            if !self.flows.vars.contains_key(&name) && !self.is_param_anywhere(&name) {
                self.usage.unknown.insert(name, hint);
            }
        }
        self.usage
    }

    fn is_param_anywhere(&self, name: &str) -> bool {
        self.flows.params.keys().any(|(_, _, p)| p == name)
    }

    /// Whether one more include or macro call may be walked; records the refusal if not.
    fn enter(&mut self, what: String) -> bool {
        if self.stack.contains(&what) {
            self.usage.recursion.insert(what);
            return false;
        }
        if self.stack.len() >= MAX_CALL_DEPTH {
            self.usage.too_deep.insert(what);
            return false;
        }
        self.stack.push(what);
        true
    }

    fn output(&mut self, flow: &Flow) {
        if let Some(out) = self.outs.last_mut() {
            out.join(flow);
        }
    }

    fn walk_template(&mut self, name: &str, place: Place, html: bool) {
        let tera: &'t Tera = self.tera;
        let Ok(leaf) = tera.get_template(name) else {
            return;
        };
        if leaf.parents.len() >= MAX_CALL_DEPTH {
            self.usage.too_deep.insert(name.to_string());
            return;
        }
        if !self.enter(format!("template {name}")) {
            return;
        }
        let root = leaf
            .parents
            .last()
            .and_then(|p| tera.get_template(p).ok())
            .unwrap_or(leaf);
        let html = html || is_html(name);
        let scope = Scope {
            file: &root.name,
            place,
            html,
            raw: false,
            leaf,
            block: None,
            in_macro: None,
        };
        self.walk_nodes(&root.ast, &scope);
        self.stack.pop();
    }

    fn walk_nodes(&mut self, nodes: &'t [Node], s: &Scope<'t>) {
        // Each body is a level of Tera's render recursion, across includes and macros too.
        if self.depth >= MAX_RENDER_DEPTH {
            self.usage.too_deep.insert(format!("template {}", s.file));
            return;
        }
        self.depth += 1;
        for node in nodes {
            self.walk_node(node, s);
        }
        self.depth -= 1;
    }

    fn walk_node(&mut self, node: &'t Node, s: &Scope<'t>) {
        match node {
            Node::Text(_)
            | Node::Raw(..)
            | Node::Comment(..)
            | Node::Break(_)
            | Node::Continue(_) => {}
            Node::Extends(..) | Node::ImportMacro(..) | Node::MacroDefinition(..) => {}
            Node::VariableBlock(_, expr) => {
                let flow = self.walk_expr(expr, s);
                self.output(&flow);
                if s.html && prints_unescaped(expr, &flow, s) {
                    self.unescaped(&flow);
                }
            }
            Node::Set(_, set) => {
                let flow = self.walk_expr(&set.value, s);
                self.flows
                    .vars
                    .entry(set.key.clone())
                    .or_default()
                    .join(&flow);
            }
            Node::FilterSection(_, section, _) => {
                let args = self.walk_call(&section.filter, &Flow::default(), s);
                // The arguments (`replace(to=…)`, `truncate(end=…)`) land in the output as is.
                self.output(&args);
                if s.html {
                    self.unescaped(&args);
                }
                let keeps = ESCAPE_KEEPING_FILTERS.contains(&section.filter.name.as_str());
                let inner = Scope {
                    raw: s.raw || (s.html && !keeps),
                    ..*s
                };
                self.walk_nodes(&section.body, &inner);
            }
            Node::Forloop(_, forloop, _) => {
                let container = self.walk_expr(&forloop.container, s);
                let item = Flow {
                    fields: container.fields.clone(),
                    nest: container.nest.saturating_sub(1),
                };
                self.flows
                    .vars
                    .entry(forloop.value.clone())
                    .or_default()
                    .join(&item);
                if let Some(k) = &forloop.key {
                    let key = Flow {
                        fields: container.fields,
                        nest: 0,
                    };
                    self.flows.vars.entry(k.clone()).or_default().join(&key);
                }
                self.walk_nodes(&forloop.body, s);
                if let Some(empty) = &forloop.empty_body {
                    self.walk_nodes(empty, s);
                }
            }
            Node::If(if_node, _) => {
                for (_, cond, body) in &if_node.conditions {
                    self.walk_expr(cond, s);
                    self.walk_nodes(body, s);
                }
                if let Some((_, body)) = &if_node.otherwise {
                    self.walk_nodes(body, s);
                }
            }
            Node::Include(_, names, ignore_missing) => {
                let tera: &'t Tera = self.tera;
                if !ignore_missing && !names.iter().any(|n| tera.get_template(n).is_ok()) {
                    self.usage.missing_includes.extend(names.iter().cloned());
                }
                for name in names {
                    self.walk_template(name, s.place, s.html);
                }
            }
            Node::Block(_, block, _) => self.walk_block(block, s),
            Node::Super => {
                if let Some((defs, i)) = s.block
                    && let Some((file, def)) = defs.get(i + 1)
                {
                    let inner = Scope {
                        file,
                        block: Some((defs, i + 1)),
                        ..*s
                    };
                    self.walk_nodes(&def.body, &inner);
                }
            }
        }
    }

    fn unescaped(&mut self, flow: &Flow) {
        let fields = self.expand(&flow.fields);
        self.usage.unescaped.extend(fields);
    }

    /// Fields behind parameter markers: what every call passed (see `param_marker`).
    fn expand(&self, fields: &BTreeSet<String>) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut seen = BTreeSet::new();
        let mut todo: Vec<String> = fields.iter().cloned().collect();
        while let Some(f) = todo.pop() {
            match parse_marker(&f) {
                Some(key) => {
                    if seen.insert(f)
                        && let Some(p) = self.flows.params.get(&key)
                    {
                        todo.extend(p.fields.iter().cloned());
                    }
                }
                None => {
                    out.insert(f);
                }
            }
        }
        out
    }

    fn walk_block(&mut self, block: &'t Block, s: &Scope<'t>) {
        let tera: &'t Tera = self.tera;
        let leaf = s.leaf;
        let chain = std::iter::once(leaf).chain(
            leaf.parents
                .iter()
                .filter_map(|p| tera.get_template(p).ok()),
        );
        for t in chain {
            if let Some(defs) = t.blocks_definitions.get(&block.name) {
                if let Some((file, def)) = defs.first() {
                    let inner = Scope {
                        file,
                        block: Some((defs.as_slice(), 0)),
                        ..*s
                    };
                    self.walk_nodes(&def.body, &inner);
                }
                return;
            }
        }
        self.walk_nodes(&block.body, s);
    }

    /// A filter (or function) call: its arguments are read, and recorded as flowing into
    /// it together with `input`, so a failing call can be described by the fields it got.
    fn walk_call(&mut self, call: &'t FunctionCall, input: &Flow, s: &Scope<'t>) -> Flow {
        let mut args = Flow::default();
        for a in call.args.values() {
            let f = self.walk_expr(a, s);
            args.join(&f);
        }
        let reaching = self.expand(&input.fields.union(&args.fields).cloned().collect());
        self.usage
            .flows_into
            .entry(call.name.clone())
            .or_default()
            .extend(reaching);
        args
    }

    fn walk_expr(&mut self, expr: &'t Expr, s: &Scope<'t>) -> Flow {
        let mut flow = self.walk_val(&expr.val, s);
        for f in &expr.filters {
            let args = self.walk_call(f, &flow, s);
            let name = f.name.as_str();
            if name == "safe" {
                continue;
            }
            if NUMERIC_FILTERS.contains(&name) {
                flow = Flow::default();
                continue;
            }
            flow.fields.extend(args.fields);
            flow.nest = match name {
                "split" => 1,
                "first" | "last" | "nth" | "get" => flow.nest.saturating_sub(1),
                "default" => flow.nest.max(args.nest),
                "concat" => flow.nest.max(args.nest).max(1),
                "group_by" => flow.nest.saturating_add(1),
                n if LIST_FILTERS.contains(&n) => flow.nest,
                _ => 0,
            };
        }
        flow
    }

    fn walk_val(&mut self, val: &'t ExprVal, s: &Scope<'t>) -> Flow {
        match val {
            ExprVal::String(_) | ExprVal::Int(_) | ExprVal::Float(_) | ExprVal::Bool(_) => {
                Flow::default()
            }
            ExprVal::Ident(ident) => self.ident(ident, s),
            ExprVal::Math(m) => {
                // A number carries no markup, whatever went into it.
                self.walk_expr(&m.lhs, s);
                self.walk_expr(&m.rhs, s);
                Flow::default()
            }
            ExprVal::Logic(l) => {
                self.walk_expr(&l.lhs, s);
                self.walk_expr(&l.rhs, s);
                Flow::default()
            }
            ExprVal::In(i) => {
                self.walk_expr(&i.lhs, s);
                self.walk_expr(&i.rhs, s);
                Flow::default()
            }
            ExprVal::Test(t) => {
                let mut input = self.ident(&t.ident, s);
                for a in &t.args {
                    let f = self.walk_expr(a, s);
                    input.join(&f);
                }
                self.usage
                    .flows_into
                    .entry(t.name.clone())
                    .or_default()
                    .extend(input.fields);
                Flow::default()
            }
            ExprVal::FunctionCall(f) => {
                if f.name == "get_env" {
                    self.usage.get_env.insert(s.file.to_string());
                }
                let args = self.walk_call(f, &Flow::default(), s);
                match f.name.as_str() {
                    "range" => Flow {
                        fields: BTreeSet::new(),
                        nest: 1,
                    },
                    "now" | "get_random" => Flow::default(),
                    _ => Flow {
                        fields: args.fields,
                        nest: 0,
                    },
                }
            }
            ExprVal::Array(items) => {
                let mut flow = Flow::default();
                for i in items {
                    let f = self.walk_expr(i, s);
                    flow.join(&f);
                }
                flow.nest = flow.nest.saturating_add(1);
                flow
            }
            ExprVal::StringConcat(c) => {
                let mut flow = Flow::default();
                for v in &c.values {
                    let f = self.walk_val(v, s);
                    flow.fields.extend(f.fields);
                }
                flow
            }
            ExprVal::MacroCall(call) => self.walk_macro(call, s),
        }
    }

    /// The file a macro call refers to: its own file for `self`, else the file its caller
    /// imported under that namespace (or any import of it: a miss only over-reports).
    fn macro_file(&self, namespace: &str, s: &Scope<'t>) -> Option<String> {
        if namespace == "self" {
            return Some(s.file.to_string());
        }
        let in_file = |t: &tera::Template| {
            t.imported_macro_files
                .iter()
                .find(|(_, ns)| ns == namespace)
                .map(|(f, _)| f.clone())
        };
        self.tera
            .get_template(s.file)
            .ok()
            .and_then(in_file)
            .or_else(|| {
                self.tera
                    .get_template_names()
                    .filter_map(|n| self.tera.get_template(n).ok())
                    .find_map(in_file)
            })
    }

    fn walk_macro(&mut self, call: &'t tera::ast::MacroCall, s: &Scope<'t>) -> Flow {
        let mut passed = Vec::with_capacity(call.args.len());
        for (name, a) in &call.args {
            let f = self.walk_expr(a, s);
            passed.push((name.clone(), f));
        }
        let Some(file) = self.macro_file(&call.namespace, s) else {
            return Flow::default();
        };
        let tera: &'t Tera = self.tera;
        let Ok(tpl) = tera.get_template(&file) else {
            return Flow::default();
        };
        let Some((name, def)) = tpl.macros.get_key_value(&call.name) else {
            return Flow::default();
        };
        for (param, flow) in &passed {
            self.flows
                .params
                .entry((tpl.name.clone(), name.clone(), param.clone()))
                .or_default()
                .join(flow);
        }
        let key = (tpl.name.clone(), name.clone());
        let tag = format!("macro {}::{}", tpl.name, name);
        let first = self
            .visited_macros
            .insert((key.0.clone(), key.1.clone(), s.place, s.html));
        if self.stack.contains(&tag) {
            self.usage.recursion.insert(tag);
        } else if first && self.enter(tag) {
            for (arg, default) in &def.args {
                let mut f = Flow::default();
                if let Some(d) = default {
                    f = self.walk_expr(d, s);
                }
                self.flows
                    .params
                    .entry((tpl.name.clone(), name.clone(), arg.clone()))
                    .or_default()
                    .join(&f);
            }
            let inner = Scope {
                file: &tpl.name,
                block: None,
                in_macro: Some((&tpl.name, name)),
                ..*s
            };
            self.outs.push(Flow::default());
            self.walk_nodes(&def.body, &inner);
            let out = self.outs.pop().unwrap_or_default();
            self.flows
                .macro_out
                .entry(key.clone())
                .or_default()
                .join(&Flow {
                    fields: out.fields,
                    nest: 0,
                });
            self.stack.pop();
        }
        // This call's output: the macro's, with its parameters replaced by this call's
        // arguments (a parameter not passed stands for whatever any call gave it).
        let out = self.flows.macro_out.get(&key).cloned().unwrap_or_default();
        let mut flow = Flow::default();
        for f in out.fields {
            match parse_marker(&f) {
                Some((mf, mm, mp)) if mf == tpl.name && mm == *name => {
                    let arg = passed
                        .iter()
                        .find(|(p, _)| *p == mp)
                        .map(|(_, a)| a.clone());
                    let arg = arg.or_else(|| self.flows.params.get(&(mf, mm, mp)).cloned());
                    if let Some(a) = arg {
                        flow.fields.extend(a.fields);
                    }
                }
                _ => {
                    flow.fields.insert(f);
                }
            }
        }
        flow
    }

    fn ident(&mut self, ident: &str, s: &Scope<'t>) -> Flow {
        let mut flow = Flow::default();
        for (i, name) in ident_roots(ident).into_iter().enumerate() {
            // Only the root's value is the value; a subscript variable is merely read.
            let mut root = Flow::default();
            if name == "__tera_context" {
                self.usage.whole_context = true;
                for f in self.fields.iter() {
                    self.usage.add(f, s.place);
                    root.fields.insert((*f).to_string());
                }
                root.nest = 1;
            } else {
                let param = s.in_macro.and_then(|(file, m)| {
                    self.flows
                        .params
                        .get(&(file.to_string(), m.to_string(), name.clone()))
                });
                let known_local = param.is_some() || self.flows.vars.contains_key(&name);
                if let (Some(p), Some((file, m))) = (param, s.in_macro) {
                    // Symbolic: each call puts its own arguments in its place.
                    root.fields.insert(param_marker(file, m, &name));
                    root.nest = root.nest.max(p.nest);
                }
                if let Some(v) = self.flows.vars.get(&name) {
                    root.join(v);
                }
                if self.fields.contains(name.as_str()) {
                    // A local of the same name never hides a field: over-reporting is safe,
                    // under-reporting is not.
                    self.usage.add(&name, s.place);
                    root.join(&Flow::field(&name));
                } else if name == "preheader" {
                    root.join(&self.flows.preheader.clone());
                } else if known_local || TOOL_VARIABLES.contains(&name.as_str()) || name == "loop" {
                } else {
                    let hint = did_you_mean(&name, self.fields.iter().copied());
                    self.candidates.entry(name).or_insert(hint);
                }
            }
            if i == 0 {
                flow = root;
            }
        }
        flow
    }
}

/// Whether Tera prints this expression without escaping it, in an autoescaped part: marked
/// `safe` (anywhere in the chain: over-reporting is safe), inside a filter section that may
/// undo escaping, a bare `~` concatenation (Tera 1.20 escapes none), or a list (whose
/// strings Tera prints raw; only a list literal printed as is has its items escaped).
fn prints_unescaped(expr: &Expr, flow: &Flow, s: &Scope<'_>) -> bool {
    let filtered = expr
        .filters
        .iter()
        .any(|f| f.name != "safe" && f.name != "default");
    s.raw
        || expr.filters.iter().any(|f| f.name == "safe")
        || (!filtered && matches!(expr.val, ExprVal::StringConcat(_)))
        || (flow.nest > 0
            && !(matches!(expr.val, ExprVal::Array(_)) && !filtered && flow.nest == 1))
}

fn is_html(name: &str) -> bool {
    [".html.tera", ".htm.tera", ".xml.tera"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// `customer["last_name"]` → `customer`; `items[idx].name` → `items`, `idx`.
pub fn ident_roots(ident: &str) -> Vec<String> {
    let mut roots = Vec::new();
    let end = ident.find(['.', '[']).unwrap_or(ident.len());
    roots.push(ident[..end].trim().to_string());
    let mut rest = &ident[end..];
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']') else {
            break;
        };
        let inner = rest[open + 1..open + close].trim();
        let quoted = inner.starts_with(['"', '\'', '`']);
        if !inner.is_empty() && !quoted && !inner.chars().all(|c| c.is_ascii_digit()) {
            roots.extend(ident_roots(inner));
        }
        rest = &rest[open + close + 1..];
    }
    roots
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn escape_html_is_teras(v in "(\\PC|[&<>\"'/]|[a-z ]{1,40})*", w in "(\\PC|[&<>\"'/])*") {
            proptest::prop_assert_eq!(escape_html(&v), tera::escape_html(&v));
            // Escaping goes character by character, which the unsubscribe-link search
            // relies on: the escape of a concatenation is the concatenation of escapes,
            // and a text without the six is its own escape.
            proptest::prop_assert_eq!(
                escape_html(&format!("{v}{w}")),
                format!("{}{}", escape_html(&v), escape_html(&w))
            );
            if !w.bytes().any(escaped) {
                proptest::prop_assert_eq!(escape_html(&w), w.clone());
            }
        }
    }

    const FIELDS: [&str; 8] = [
        "first_name",
        "last_name",
        "postcode",
        "cart_items",
        "total_spent",
        "birth_date",
        "diagnosis",
        "nickname",
    ];

    fn load(files: &[(&str, &str)], subject: &str) -> Result<Templates> {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        let t = Templates::load(dir.path(), "t", Path::new("c.toml"), subject, "");
        // Keep the folder alive only as long as loading needs it; Tera holds the sources.
        drop(dir);
        t
    }

    fn used(files: &[(&str, &str)], subject: &str) -> Usage {
        load(files, subject).unwrap().usage(FIELDS)
    }

    fn fields(u: &Usage) -> Vec<&str> {
        u.fields.keys().map(String::as_str).collect()
    }

    #[test]
    fn variables_ifs_and_places() {
        let u = used(
            &[(
                "t.txt.tera",
                "{% if personalised %}Hi {{ first_name }}{% elif postcode %}x{% else %}{% endif %}",
            )],
            "{{ last_name }}",
        );
        assert_eq!(fields(&u), ["first_name", "last_name", "postcode"]);
        assert_eq!(u.fields["last_name"], BTreeSet::from([Place::Subject]));
        assert_eq!(u.fields["first_name"], BTreeSet::from([Place::Body]));
    }

    #[test]
    fn filters_tests_functions_math_concat_arrays_and_in() {
        let body = r#"{{ nickname | default(value=first_name) }}
{% if postcode is starting_with(last_name) %}a{% endif %}
{{ total_spent * 2 }}{{ "x" ~ birth_date }}
{% for x in [diagnosis] %}{{ x }}{% endfor %}
{% if "y" in cart_items %}b{% endif %}{{ range(end=3) | length }}"#;
        let u = used(&[("t.txt.tera", body)], "");
        assert_eq!(
            fields(&u),
            [
                "birth_date",
                "cart_items",
                "diagnosis",
                "first_name",
                "last_name",
                "nickname",
                "postcode",
                "total_spent"
            ]
        );
    }

    #[test]
    fn loops_alias_their_container_and_sets_are_locals() {
        let body = "{% set greeting = first_name | upper %}{{ greeting }}{% for item in cart_items %}{{ item.name }}{{ loop.index }}{% endfor %}";
        let u = used(&[("t.txt.tera", body)], "");
        assert_eq!(fields(&u), ["cart_items", "first_name"]);
        assert!(u.unknown.is_empty(), "{:?}", u.unknown);
    }

    #[test]
    fn subscripts_are_normalised() {
        let u = used(
            &[(
                "t.txt.tera",
                r#"{% set c = 1 %}{{ cart_items["last_name"] }}{{ cart_items[postcode] }}"#,
            )],
            "",
        );
        assert_eq!(fields(&u), ["cart_items", "postcode"]);
    }

    #[test]
    fn inheritance_uses_the_winning_block_and_super() {
        let base = "{% block greet %}{{ last_name }}{% endblock %}{% block foot %}{{ postcode }}{% endblock %}{{ birth_date }}";
        // `greet` is overridden without super(): last_name is never rendered.
        let child = r#"{% extends "base.txt.tera" %}{% block greet %}{{ first_name }}{% endblock %}{% block foot %}{{ super() }}{{ nickname }}{% endblock %}"#;
        let u = used(&[("base.txt.tera", base), ("t.txt.tera", child)], "");
        assert_eq!(
            fields(&u),
            ["birth_date", "first_name", "nickname", "postcode"]
        );
    }

    #[test]
    fn includes_and_imported_macros() {
        // Tera macros cannot read the context, so `diagnosis` there is over-reported: safe.
        let macros = r#"{% macro show(v, w=1) %}{{ v }}{{ w }}{{ diagnosis }}{% endmacro %}"#;
        let part = "{{ postcode }}";
        let t = r#"{% import "m.txt.tera" as m %}{% include "part.txt.tera" %}{{ m::show(v=first_name, w=total_spent) }}"#;
        let u = used(
            &[
                ("m.txt.tera", macros),
                ("part.txt.tera", part),
                ("t.txt.tera", t),
            ],
            "",
        );
        assert_eq!(
            fields(&u),
            ["diagnosis", "first_name", "postcode", "total_spent"]
        );
        assert!(u.unknown.is_empty(), "{:?}", u.unknown);
    }

    #[test]
    fn filter_sections_and_safe_in_html() {
        // `{% filter safe %}` escapes its body as usual (Tera renders the body first); a
        // `replace` section can turn the escaped text back into markup.
        let html = r#"{% filter upper %}{{ last_name }}{% endfilter %}{{ first_name | safe }}{% filter safe %}{{ postcode }}{% endfilter %}{% filter replace(from="&lt;", to="<") %}{{ cart_items }}{% endfilter %}"#;
        let u = used(
            &[
                ("t.txt.tera", "{{ nickname | safe }}"),
                ("t.html.tera", html),
            ],
            "",
        );
        assert_eq!(
            fields(&u),
            [
                "cart_items",
                "first_name",
                "last_name",
                "nickname",
                "postcode"
            ]
        );
        // `safe` only matters where autoescaping would have applied.
        assert_eq!(
            u.unescaped.iter().map(String::as_str).collect::<Vec<_>>(),
            ["cart_items", "first_name"]
        );
    }

    fn unescaped_of(files: &[(&str, &str)], preheader: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in files {
            std::fs::write(dir.path().join(name), body).unwrap();
        }
        let t = Templates::load(dir.path(), "t", Path::new("c.toml"), "", preheader).unwrap();
        t.usage(FIELDS).unescaped.into_iter().collect()
    }

    /// Every route of a value into `| safe` (or into a print Tera does not escape) in HTML.
    #[test]
    fn taint_follows_sets_loops_macros_filter_arguments_and_the_preheader() {
        let m = r#"{% macro raw(v, w="x") %}{{ v | safe }}{{ w }}{% endmacro raw %}"#;
        for (what, html, preheader) in [
            ("set", "{% set x = first_name %}{{ x | safe }}", ""),
            (
                "for",
                "{% for c in [first_name] %}{{ c | safe }}{% endfor %}",
                "",
            ),
            (
                "macro",
                r#"{% import "m.html.tera" as m %}{{ m::raw(v=first_name) }}"#,
                "",
            ),
            (
                "filter argument",
                r#"{{ "X" | replace(from="X", to=first_name) | safe }}"#,
                "",
            ),
            ("preheader", "{{ preheader | safe }}", "{{ first_name }}"),
            ("concatenation", r#"{{ "a" ~ first_name }}"#, ""),
            ("list by set", "{% set l = [first_name] %}{{ l }}", ""),
            ("split", r#"{{ first_name | split(pat=",") }}"#, ""),
            (
                "set after use",
                "{% for i in [1, 2] %}{{ y | default(value='') | safe }}{% set_global y = first_name %}{% endfor %}",
                "",
            ),
            (
                "macro output kept raw by set",
                r#"{% import "m.html.tera" as m %}{% set r = m::raw(v="a", w=first_name) %}{{ r | safe }}"#,
                "",
            ),
            (
                "filter section argument",
                r#"{% filter replace(from="a", to=first_name) %}a{% endfilter %}"#,
                "",
            ),
        ] {
            let got = unescaped_of(
                &[
                    ("t.txt.tera", "x"),
                    ("m.html.tera", m),
                    ("t.html.tera", html),
                ],
                preheader,
            );
            assert_eq!(got, ["first_name"], "{what}: {html}");
        }
        for (what, html) in [
            ("set then print", "{% set x = first_name %}{{ x }}"),
            (
                "escaped macro argument",
                r#"{% import "m.html.tera" as m %}{{ m::raw(v="a", w=first_name) }}"#,
            ),
            ("list literal", "{{ [first_name] }}"),
            ("length", "{{ first_name | length | safe }}"),
            (
                "safe tool variable",
                "{{ campaign | safe }}{{ first_name }}",
            ),
            (
                "upper section",
                "{% filter upper %}{{ first_name }}{% endfilter %}",
            ),
        ] {
            let got = unescaped_of(
                &[
                    ("t.txt.tera", "x"),
                    ("m.html.tera", m),
                    ("t.html.tera", html),
                ],
                "",
            );
            assert!(got.is_empty(), "{what}: {html}: {got:?}");
        }
    }

    #[test]
    fn recursion_and_runaway_depth_are_found() {
        let u = used(
            &[(
                "t.txt.tera",
                "{% macro f(n) %}{{ self::f(n=n) }}{% endmacro f %}{{ self::f(n=1) }}",
            )],
            "",
        );
        assert_eq!(u.recursion.len(), 1, "{u:?}");
        let u = used(
            &[
                ("t.txt.tera", r#"{% include "a.txt.tera" %}"#),
                ("a.txt.tera", r#"{% include "t.txt.tera" %}"#),
            ],
            "",
        );
        assert_eq!(u.recursion.len(), 1, "{u:?}");
        let mut files: Vec<(String, String)> = (0..40)
            .map(|i| {
                (
                    format!("i{i}.txt.tera"),
                    format!("{{% include \"i{}.txt.tera\" %}}", i + 1),
                )
            })
            .collect();
        files.push(("i40.txt.tera".into(), "end".into()));
        files.push(("t.txt.tera".into(), r#"{% include "i0.txt.tera" %}"#.into()));
        let borrowed: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let u = used(&borrowed, "");
        assert!(!u.too_deep.is_empty(), "{u:?}");
        // Each file within the per-file limit, but nested through includes past what one
        // render may recurse.
        let ifs = |inner: &str| {
            format!(
                "{}{inner}{}",
                "{% if true %}".repeat(30),
                "{% endif %}".repeat(30)
            )
        };
        let (a, b, c) = (
            ifs(r#"{% include "b.txt.tera" %}"#),
            ifs(r#"{% include "c.txt.tera" %}"#),
            ifs("deep"),
        );
        let u = used(
            &[("t.txt.tera", &a), ("b.txt.tera", &b), ("c.txt.tera", &c)],
            "",
        );
        assert!(!u.too_deep.is_empty(), "{u:?}");
        let u = used(
            &[("t.txt.tera", &a), ("b.txt.tera", "{{ first_name }}")],
            "",
        );
        assert!(u.too_deep.is_empty(), "{u:?}");
    }

    #[test]
    fn tera_context_uses_everything() {
        let u = used(&[("t.txt.tera", "{{ __tera_context }}")], "");
        assert!(u.whole_context);
        assert_eq!(u.fields.len(), FIELDS.len());
    }

    #[test]
    fn unknown_variables_are_reported_with_a_hint() {
        let u = used(&[("t.txt.tera", "{{ frist_name }}")], "");
        assert_eq!(
            u.unknown.get("frist_name").map(String::as_str),
            Some(" (did you mean `first_name`?)")
        );
    }

    #[test]
    fn syntax_errors_name_file_line_and_column() {
        let e = load(&[("t.txt.tera", "line one\nHello {{ first_name }\n")], "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.txt.tera:2:"), "{e}");
        assert!(e.contains("template syntax error"), "{e}");
        let e = load(&[("t.txt.tera", "x")], "{{ oops")
            .unwrap_err()
            .to_string();
        assert!(e.contains("subject is not a valid template"), "{e}");
    }

    #[test]
    fn nothing_outside_the_templates_folder_can_be_included() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt.tera"), "TOP SECRET").unwrap();
        let dir = tempfile::tempdir().unwrap();
        // A symlink to a file outside, and a path that climbs out: neither is reachable.
        std::os::unix::fs::symlink(
            outside.path().join("secret.txt.tera"),
            dir.path().join("link.txt.tera"),
        )
        .unwrap();
        for body in [
            r#"{% include "link.txt.tera" %}"#,
            r#"{% include "../secret.txt.tera" %}"#,
        ] {
            std::fs::write(dir.path().join("t.txt.tera"), body).unwrap();
            let t = Templates::load(dir.path(), "t", Path::new("c.toml"), "", "").unwrap();
            assert_eq!(t.usage(FIELDS).missing_includes.len(), 1, "{body}");
        }
    }

    #[test]
    fn get_env_is_locked_out() {
        let t = load(&[("t.txt.tera", r#"{{ get_env(name="HOME") }}"#)], "").unwrap();
        let vars = ToolVars {
            now: DateTime::UNIX_EPOCH,
            seed: 0,
            personalised: false,
            unsubscribe_url: "u".into(),
            postal_address: "p".into(),
            campaign: "c".into(),
            why_you_got_this: "w".into(),
        };
        let e = t.render(&vars, &[]).unwrap_err();
        assert!(e.message.contains("get_env is disabled"), "{}", e.message);
    }

    fn vars(seed: u64) -> ToolVars {
        ToolVars {
            now: crate::consent::parse_time("2026-11-23T12:00:00Z").unwrap(),
            seed,
            personalised: true,
            unsubscribe_url: "u".into(),
            postal_address: "p".into(),
            campaign: "c".into(),
            why_you_got_this: "w".into(),
        }
    }

    #[test]
    fn now_and_get_random_are_fixed_per_recipient() {
        let t = load(
            &[(
                "t.txt.tera",
                "{{ now(utc=true) }} {{ now(timestamp=true) }} {{ get_random(end=1000000) }} {{ get_random(start=5, end=10) }}",
            )],
            "",
        )
        .unwrap();
        let a = t.render(&vars(1), &[]).unwrap().text;
        assert_eq!(a, t.render(&vars(1), &[]).unwrap().text);
        assert!(
            a.starts_with("2026-11-23T12:00:00+00:00 1795435200 "),
            "{a}"
        );
        assert_ne!(a, t.render(&vars(2), &[]).unwrap().text);
        // Tera's own get_random panics on an empty range; ours is a render error.
        let t = load(&[("t.txt.tera", "{{ get_random(start=3, end=3) }}")], "").unwrap();
        assert!(t.render(&vars(1), &[]).is_err());
    }

    /// A value Tera chokes on (it panics slicing a multi-byte character in a subscript) is a
    /// render error of that row, not a crash, and the message quotes nothing.
    #[test]
    fn a_panic_inside_tera_is_a_render_error() {
        let t = load(&[("t.txt.tera", "{{ first_name[last_name] }}")], "").unwrap();
        let e = t
            .render(&vars(1), &[("first_name", "Zelda"), ("last_name", "李")])
            .unwrap_err();
        assert_eq!(e.kind, FailureKind::EngineFault);
        assert!(!e.message.contains('李'), "{}", e.message);
    }

    #[test]
    fn render_failures_are_described_by_names_only() {
        for (body, kind, call, variable) in [
            (
                r#"{{ first_name | date(format="%Y") }}"#,
                FailureKind::NotADate,
                Some("date"),
                None,
            ),
            (
                "{{ first_name * 2 }}",
                FailureKind::NotANumber,
                None,
                Some("first_name"),
            ),
            (
                "{{ throw(message=first_name) }}",
                FailureKind::Thrown,
                Some("throw"),
                None,
            ),
            (
                "{{ nickname }}",
                FailureKind::MissingVariable,
                None,
                Some("nickname"),
            ),
            (
                "{{ last_name | truncate(length=first_name) }}",
                FailureKind::WrongArgument,
                Some("truncate"),
                None,
            ),
        ] {
            let t = load(&[("t.txt.tera", body)], "").unwrap();
            let e = t
                .render(
                    &vars(1),
                    &[("first_name", "ZeLdA9"), ("last_name", "ZeLdA8")],
                )
                .unwrap_err();
            assert_eq!(e.kind, kind, "{body}");
            assert_eq!(e.call.as_deref(), call, "{body}");
            if let Some(v) = variable {
                assert!(
                    e.message.contains(&format!("(variable `{v}`)")),
                    "{body}: {}",
                    e.message
                );
            }
            assert!(
                e.message.ends_with(", in t.txt.tera"),
                "{body}: {}",
                e.message
            );
            assert!(
                !e.message.to_lowercase().contains("zelda"),
                "{body}: {}",
                e.message
            );
        }
    }

    /// A template at every limit at once parses and renders on a 2 MiB stack (a render
    /// worker's), and one step past any limit is refused with its line and column.
    #[test]
    fn templates_at_the_limits_render_on_a_small_stack() {
        let n = MAX_NESTING;
        let expr = format!("{}1{}", "(".repeat(n), ")".repeat(n));
        let chain = format!("1{}", " +1".repeat(MAX_OPERATORS));
        let body = format!(
            "{}{{{{ {expr} }}}}{{{{ {chain} }}}}{}",
            "{% if true %}".repeat(n),
            "{% endif %}".repeat(n)
        );
        let t = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let t = load(&[("t.txt.tera", &body)], "").unwrap();
                t.render(&vars(1), &[]).map(|r| r.text).unwrap()
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(t.starts_with('1'), "{t}");
        for (what, body) in [
            (
                "tags",
                format!(
                    "x\n{}y{}",
                    "{% if true %}".repeat(n + 1),
                    "{% endif %}".repeat(n + 1)
                ),
            ),
            (
                "brackets",
                format!("x\n{{{{ {}1{} }}}}", "(".repeat(n + 1), ")".repeat(n + 1)),
            ),
            (
                "operators",
                format!("x\n{{{{ 1{} }}}}", "+1".repeat(MAX_OPERATORS + 1)),
            ),
        ] {
            let e = load(&[("t.txt.tera", &body)], "").unwrap_err().to_string();
            assert!(e.contains("t.txt.tera:2:"), "{what}: {e}");
            assert!(e.contains(what), "{what}: {e}");
        }
        // Inside strings, comments and raw, nothing counts.
        let quiet = format!(
            "{{{{ \"{}\" }}}}{{# {} #}}{{% raw %}}{}{{% endraw %}}",
            "(".repeat(100),
            "{% if %}".repeat(100),
            "{% if x %}".repeat(100)
        );
        load(&[("t.txt.tera", &quiet)], "").unwrap();
        let e = load(&[("t.txt.tera", "x")], &"{% if true %}".repeat(n + 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("subject is too deeply nested"), "{e}");
    }

    #[test]
    fn get_env_calls_are_found_wherever_they_hide() {
        let u = used(
            &[
                (
                    "inc.txt.tera",
                    r#"{{ get_env(name="TACT_SMTP_PASSWORD") }}"#,
                ),
                ("t.txt.tera", r#"{% include "inc.txt.tera" %}"#),
            ],
            "",
        );
        assert_eq!(
            u.get_env.iter().map(String::as_str).collect::<Vec<_>>(),
            ["inc.txt.tera"]
        );
    }

    #[test]
    fn html_parts_are_autoescaped() {
        let t = load(
            &[
                ("t.txt.tera", "{{ first_name }}"),
                ("t.html.tera", "<p>{{ first_name }}</p>"),
            ],
            "",
        )
        .unwrap();
        let vars = ToolVars {
            now: DateTime::UNIX_EPOCH,
            seed: 0,
            personalised: true,
            unsubscribe_url: "u".into(),
            postal_address: "p".into(),
            campaign: "c".into(),
            why_you_got_this: "w".into(),
        };
        let r = t
            .render(&vars, &[("first_name", "<b>Eve</b> & co")])
            .unwrap();
        assert_eq!(r.text, "<b>Eve</b> & co");
        assert_eq!(
            r.html.unwrap(),
            "<p>&lt;b&gt;Eve&lt;&#x2F;b&gt; &amp; co</p>"
        );
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        const F: [&str; 6] = [
            "first_name",
            "last_name",
            "postcode",
            "cart_items",
            "total_spent",
            "nickname",
        ];

        /// One construct that reads field `f` in a way that always matters to the output
        /// (values are distinct and truthy, and nothing hides behind an `else`).
        fn construct(kind: u8, f: &str, i: usize) -> String {
            match kind % 14 {
                10 => format!("{{{{ \"k\" | replace(from=\"k\", to={f}) }}}}"),
                11 => format!("{{{{ m::two(a=\"x\", b={f}) }}}}"),
                12 => format!(
                    "{{% for c in [{f}] %}}{{% set_global g{i} = c | upper %}}{{% endfor %}}{{{{ g{i} | default(value=\"\") }}}}"
                ),
                13 => format!(
                    "{{% set s{i} = [{f}] %}}{{% for c in s{i} %}}{{{{ c }}}}{{% endfor %}}"
                ),
                0 => format!("{{{{ {f} }}}}"),
                1 => format!("{{{{ {f} | upper | replace(from=\"V\", to=\"w\") }}}}"),
                2 => format!("{{% if {f} %}}yes{i}{{% endif %}}"),
                3 => format!("{{% if not {f} %}}{{% else %}}no{i}{{% endif %}}"),
                4 => format!("{{% set x{i} = {f} ~ \"!\" %}}{{{{ x{i} }}}}"),
                5 => format!("{{{{ m::show(v={f}) }}}}"),
                6 => format!("{{% if {f} is starting_with(\"v_\") %}}s{i}{{% endif %}}"),
                7 => format!("{{% if \"_\" in {f} %}}in{i}{{% endif %}}"),
                8 => format!("{{% for c in [{f}, \"z\"] %}}{{{{ c }}}}{{% endfor %}}"),
                _ => format!("{{% include \"part_{f}.txt.tera\" %}}"),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]
            #[test]
            fn extracted_fields_are_exactly_the_fields_the_render_needs(
                picks in proptest::collection::vec((0u8..14, 0usize..F.len()), 0..8),
                in_subject in proptest::bool::ANY,
            ) {
                let mut body = String::from("{% import \"m.txt.tera\" as m %}");
                for (i, (kind, f)) in picks.iter().enumerate() {
                    body.push_str(&construct(*kind, F[*f], i));
                    body.push('\n');
                }
                let mut files: Vec<(String, String)> = vec![
                    ("m.txt.tera".into(), "{% macro show(v) %}[{{ v }}]{% endmacro %}{% macro two(a, b) %}{{ a }}{{ b }}{% endmacro %}".into()),
                    ("t.txt.tera".into(), if in_subject { "static".into() } else { body.clone() }),
                ];
                for f in F {
                    files.push((format!("part_{f}.txt.tera"), format!("<{{{{ {f} }}}}>")));
                }
                let subject = if in_subject { body.replace("{% import \"m.txt.tera\" as m %}", "") } else { String::new() };
                // Macros are not imported into the subject, so drop macro calls there.
                let subject = if in_subject { subject.lines().filter(|l| !l.contains("m::")).collect::<Vec<_>>().join("") } else { subject };
                let borrowed: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                let t = load(&borrowed, &subject).unwrap();
                let extracted: BTreeSet<String> = t.usage(F).fields.keys().cloned().collect();
                let vars = ToolVars {
                    now: DateTime::UNIX_EPOCH,
                    seed: 0,
                    personalised: true,
                    unsubscribe_url: "u".into(),
                    postal_address: "p".into(),
                    campaign: "c".into(),
                    why_you_got_this: "w".into(),
                };
                let values: Vec<(String, String)> = F.iter().map(|f| (f.to_string(), format!("v_{f}"))).collect();
                let ctx = |skip: Option<&str>| -> Vec<(&str, &str)> {
                    values.iter().filter(|(k, _)| Some(k.as_str()) != skip).map(|(k, v)| (k.as_str(), v.as_str())).collect()
                };
                let full = t.render(&vars, &ctx(None));
                let needed: BTreeSet<String> = F
                    .iter()
                    .filter(|f| t.render(&vars, &ctx(Some(f))) != full)
                    .map(|f| f.to_string())
                    .collect();
                prop_assert_eq!(extracted, needed, "body: {}", body);
            }
        }
        /// One construct printing field `f` in HTML, and whether Tera prints it unescaped.
        fn html_construct(kind: u8, f: &str, i: usize) -> (String, bool) {
            match kind % 14 {
                0 => (format!("{{{{ {f} }}}}"), false),
                1 => (format!("{{{{ {f} | safe }}}}"), true),
                2 => (format!("{{% set x{i} = {f} %}}{{{{ x{i} | safe }}}}"), true),
                3 => (
                    format!("{{% for c in [{f}] %}}{{{{ c | safe }}}}{{% endfor %}}"),
                    true,
                ),
                4 => (format!("{{{{ m::raw(v={f}) }}}}"), true),
                5 => (
                    format!("{{{{ \"k\" | replace(from=\"k\", to={f}) | safe }}}}"),
                    true,
                ),
                6 => (format!("{{{{ \"a\" ~ {f} }}}}"), true),
                7 => (format!("{{% set l{i} = [{f}] %}}{{{{ l{i} }}}}"), true),
                8 => (
                    format!("{{% if {f} %}}{{{{ {f} | upper }}}}{{% endif %}}"),
                    false,
                ),
                9 => (
                    format!(
                        "{{% filter replace(from=\"&lt;\", to=\"<\") %}}{{{{ {f} }}}}{{% endfilter %}}"
                    ),
                    true,
                ),
                10 => (format!("{{{{ m::show(v={f}) }}}}"), false),
                11 => (
                    format!("{{% set y{i} = {f} | upper %}}{{{{ y{i} }}}}"),
                    false,
                ),
                12 => (format!("{{{{ [{f}] }}}}"), false),
                _ => (
                    format!("{{% set r{i} = m::show(v={f}) %}}{{{{ r{i} | safe }}}}"),
                    true,
                ),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]
            /// The walker's `unescaped` is what the rendered HTML shows raw: every field's
            /// value is a canary, and a canary printed raw names its field. Soundness (nothing
            /// raw the walker missed) is the promise; equality, wherever the walker is meant to
            /// be precise, shows it is not bought by blocking everything.
            #[test]
            fn the_walkers_unescaped_fields_are_the_canaries_printed_raw(
                picks in proptest::collection::vec((0u8..14, 0usize..F.len()), 0..8),
            ) {
                let mut html = String::from("{% import \"m.html.tera\" as m %}");
                let mut expected = BTreeSet::new();
                for (i, (kind, f)) in picks.iter().enumerate() {
                    let (c, raw) = html_construct(*kind, F[*f], i);
                    html.push_str(&c);
                    html.push('\n');
                    if raw {
                        expected.insert(F[*f].to_string());
                    }
                }
                let files = [
                    ("m.html.tera", "{% macro show(v) %}[{{ v }}]{% endmacro %}{% macro raw(v) %}{{ v | safe }}{% endmacro %}"),
                    ("t.txt.tera", "x"),
                    ("t.html.tera", html.as_str()),
                ];
                let t = load(&files, "").unwrap();
                let walker = t.usage(F).unescaped;
                let canaries: Vec<String> = (0..F.len()).map(crate::check::canary).collect();
                let values: Vec<(&str, &str)> = F.iter().zip(&canaries).map(|(f, c)| (*f, c.as_str())).collect();
                let rendered = t.render(&vars(1), &values).unwrap();
                let seen: BTreeSet<String> = crate::check::unescaped_canaries(&rendered.html.unwrap_or_default())
                    .into_iter()
                    .map(|n| F[n].to_string())
                    .collect();
                prop_assert_eq!(&seen, &expected, "canaries, html: {}", html);
                prop_assert!(walker.is_superset(&expected), "walker missed {:?}, html: {}", expected.difference(&walker).collect::<Vec<_>>(), html);
                prop_assert_eq!(&walker, &expected, "walker, html: {}", html);
            }
        }
    }
}
