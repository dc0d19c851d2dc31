//! Tera loading (locked down), the AST walker that finds every customer field a campaign
//! touches, and rendering of the personalised and generic variants.
//!
//! Tera is pinned to 1.20.1 because the walker reads its (public but undocumented) AST.
//! Marketer-written templates are untrusted: `get_env` would print `TACT_SMTP_PASSWORD`, so
//! it is replaced by a function that errors, and only files inside the templates folder are
//! ever registered, so nothing else can be included or extended.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

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
            let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
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
        tera.register_function(
            "get_env",
            |_: &HashMap<String, tera::Value>| -> tera::Result<tera::Value> {
                Err(tera::Error::msg(
                    "get_env is disabled in tact templates: environment variables may hold secrets",
                ))
            },
        );
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
            text,
            html,
        })
    }

    /// Walks subject, preheader, text and HTML parts; `fields` are the customer fields the
    /// audience offers (tool variables already removed).
    pub fn usage<'a>(&self, fields: impl IntoIterator<Item = &'a str>) -> Usage {
        let fields: BTreeSet<&str> = fields.into_iter().collect();
        let mut w = Walker::new(&self.tera, &fields);
        w.walk_template(SUBJECT, Place::Subject, false);
        w.walk_template(PREHEADER, Place::Subject, false);
        w.walk_template(&self.text, Place::Body, false);
        if let Some(html) = &self.html {
            w.walk_template(html, Place::Body, true);
        }
        w.finish()
    }

    pub fn render(
        &self,
        vars: &ToolVars,
        fields: &[(&str, &str)],
    ) -> std::result::Result<Rendered, RenderFailure> {
        let mut ctx = Context::new();
        for (k, v) in fields {
            ctx.insert(*k, v);
        }
        ctx.insert("personalised", &vars.personalised);
        ctx.insert("unsubscribe_url", &vars.unsubscribe_url);
        ctx.insert("postal_address", &vars.postal_address);
        ctx.insert("campaign", &vars.campaign);
        ctx.insert("why_you_got_this", &vars.why_you_got_this);
        let fail = |part: &'static str| {
            move |e: tera::Error| RenderFailure {
                part,
                message: chain(&e),
            }
        };
        let preheader = self
            .tera
            .render(PREHEADER, &ctx)
            .map_err(fail("preheader"))?;
        ctx.insert("preheader", preheader.trim());
        let subject = self.tera.render(SUBJECT, &ctx).map_err(fail("subject"))?;
        let text = self.tera.render(&self.text, &ctx).map_err(fail("text"))?;
        let html = match &self.html {
            Some(h) => Some(self.tera.render(h, &ctx).map_err(fail("html"))?),
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

fn chain(e: &tera::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

/// The tool variables of DESIGN §2, for one recipient and variant.
#[derive(Debug, Clone)]
pub struct ToolVars {
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

/// Why a render failed: which part, and Tera's whole cause chain. The chain names template
/// variables and positions, never values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderFailure {
    pub part: &'static str,
    pub message: String,
}

struct Walker<'t> {
    tera: &'t Tera,
    fields: &'t BTreeSet<&'t str>,
    usage: Usage,
    locals: BTreeSet<String>,
    candidates: BTreeMap<String, String>,
    visited_macros: BTreeSet<(String, String, Place, bool)>,
    /// Template-names being walked, against `include` cycles.
    stack: Vec<String>,
}

struct Scope<'a> {
    file: &'a str,
    place: Place,
    html: bool,
    safe: bool,
    /// The template whose blocks win, and its chain of parents.
    leaf: &'a tera::Template,
    /// For `super()`: the definitions of the block being walked and which one is current.
    block: Option<(&'a [(String, Block)], usize)>,
}

impl<'t> Walker<'t> {
    fn new(tera: &'t Tera, fields: &'t BTreeSet<&'t str>) -> Self {
        Walker {
            tera,
            fields,
            usage: Usage::default(),
            locals: BTreeSet::new(),
            candidates: BTreeMap::new(),
            visited_macros: BTreeSet::new(),
            stack: Vec::new(),
        }
    }

    fn finish(mut self) -> Usage {
        for (name, hint) in std::mem::take(&mut self.candidates) {
            if !self.locals.contains(&name) {
                self.usage.unknown.insert(name, hint);
            }
        }
        self.usage
    }

    fn walk_template(&mut self, name: &str, place: Place, html: bool) {
        if self.stack.iter().any(|n| n == name) {
            return;
        }
        let tera: &'t Tera = self.tera;
        let Ok(leaf) = tera.get_template(name) else {
            return;
        };
        self.stack.push(name.to_string());
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
            safe: false,
            leaf,
            block: None,
        };
        self.walk_nodes(&root.ast, &scope);
        self.stack.pop();
    }

    fn walk_nodes(&mut self, nodes: &'t [Node], s: &Scope<'t>) {
        for node in nodes {
            self.walk_node(node, s);
        }
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
                let safe = s.safe || (s.html && expr.filters.iter().any(|f| f.name == "safe"));
                self.walk_expr(expr, s, safe);
            }
            Node::Set(_, set) => {
                self.locals.insert(set.key.clone());
                self.walk_expr(&set.value, s, false);
            }
            Node::FilterSection(_, section, _) => {
                self.walk_args(&section.filter.args, s);
                let inner = Scope {
                    safe: s.safe || (s.html && section.filter.name == "safe"),
                    ..*s
                };
                self.walk_nodes(&section.body, &inner);
            }
            Node::Forloop(_, forloop, _) => {
                self.walk_expr(&forloop.container, s, false);
                self.locals.insert(forloop.value.clone());
                if let Some(k) = &forloop.key {
                    self.locals.insert(k.clone());
                }
                self.walk_nodes(&forloop.body, s);
                if let Some(empty) = &forloop.empty_body {
                    self.walk_nodes(empty, s);
                }
            }
            Node::If(if_node, _) => {
                for (_, cond, body) in &if_node.conditions {
                    self.walk_expr(cond, s, false);
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

    fn walk_args(&mut self, args: &HashMap<String, Expr>, s: &Scope<'t>) {
        for a in args.values() {
            self.walk_expr(a, s, false);
        }
    }

    fn walk_filters(&mut self, filters: &[FunctionCall], s: &Scope<'t>) {
        for f in filters {
            self.walk_args(&f.args, s);
        }
    }

    fn walk_expr(&mut self, expr: &Expr, s: &Scope<'t>, safe: bool) {
        self.walk_filters(&expr.filters, s);
        self.walk_val(&expr.val, s, safe);
    }

    fn walk_val(&mut self, val: &ExprVal, s: &Scope<'t>, safe: bool) {
        match val {
            ExprVal::String(_) | ExprVal::Int(_) | ExprVal::Float(_) | ExprVal::Bool(_) => {}
            ExprVal::Ident(ident) => self.ident(ident, s, safe),
            ExprVal::Math(m) => {
                self.walk_expr(&m.lhs, s, safe);
                self.walk_expr(&m.rhs, s, safe);
            }
            ExprVal::Logic(l) => {
                self.walk_expr(&l.lhs, s, false);
                self.walk_expr(&l.rhs, s, false);
            }
            ExprVal::In(i) => {
                self.walk_expr(&i.lhs, s, false);
                self.walk_expr(&i.rhs, s, false);
            }
            ExprVal::Test(t) => {
                self.ident(&t.ident, s, false);
                for a in &t.args {
                    self.walk_expr(a, s, false);
                }
            }
            ExprVal::FunctionCall(f) => {
                if f.name == "get_env" {
                    self.usage.get_env.insert(s.file.to_string());
                }
                self.walk_args(&f.args, s);
            }
            ExprVal::Array(items) => {
                for i in items {
                    self.walk_expr(i, s, safe);
                }
            }
            ExprVal::StringConcat(c) => {
                for v in &c.values {
                    self.walk_val(v, s, safe);
                }
            }
            ExprVal::MacroCall(call) => {
                self.walk_args(&call.args, s);
                self.walk_macro(&call.namespace, &call.name, s);
            }
        }
    }

    fn walk_macro(&mut self, namespace: &str, name: &str, s: &Scope<'t>) {
        let file = if namespace == "self" {
            Some(s.file.to_string())
        } else {
            // The namespace is bound by an import in the file that calls the macro; fall back
            // to any import of that namespace so a miss can only over-report.
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
        };
        let Some(file) = file else { return };
        let key = (file.clone(), name.to_string(), s.place, s.html);
        if !self.visited_macros.insert(key) {
            return;
        }
        let tera: &'t Tera = self.tera;
        let Ok(tpl) = tera.get_template(&file) else {
            return;
        };
        let Some(def) = tpl.macros.get(name) else {
            return;
        };
        for (arg, default) in &def.args {
            self.locals.insert(arg.clone());
            if let Some(d) = default {
                self.walk_expr(d, s, false);
            }
        }
        let inner = Scope {
            file: &tpl.name,
            block: None,
            ..*s
        };
        self.walk_nodes(&def.body, &inner);
    }

    fn ident(&mut self, ident: &str, s: &Scope<'t>, safe: bool) {
        for (i, name) in ident_roots(ident).into_iter().enumerate() {
            // Only the root of the path is printed; a subscript variable is merely read.
            let safe = safe && i == 0;
            if name == "__tera_context" {
                self.usage.whole_context = true;
                for f in self.fields.iter() {
                    self.usage.add(f, s.place);
                    if s.html {
                        self.usage.unescaped.insert((*f).to_string());
                    }
                }
            } else if self.fields.contains(name.as_str()) {
                // A local of the same name never hides a field: over-reporting is safe,
                // under-reporting is not.
                self.usage.add(&name, s.place);
                if safe {
                    self.usage.unescaped.insert(name);
                }
            } else if TOOL_VARIABLES.contains(&name.as_str())
                || name == "loop"
                || self.locals.contains(&name)
            {
            } else {
                let hint = did_you_mean(&name, self.fields.iter().copied());
                self.candidates.entry(name).or_insert(hint);
            }
        }
    }
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
        let html = "{% filter upper %}{{ last_name }}{% endfilter %}{{ first_name | safe }}{% filter safe %}{{ postcode }}{% endfilter %}";
        let u = used(
            &[
                ("t.txt.tera", "{{ nickname | safe }}"),
                ("t.html.tera", html),
            ],
            "",
        );
        assert_eq!(
            fields(&u),
            ["first_name", "last_name", "nickname", "postcode"]
        );
        // `safe` only matters where autoescaping would have applied.
        assert_eq!(
            u.unescaped.iter().map(String::as_str).collect::<Vec<_>>(),
            ["first_name", "postcode"]
        );
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
            personalised: false,
            unsubscribe_url: "u".into(),
            postal_address: "p".into(),
            campaign: "c".into(),
            why_you_got_this: "w".into(),
        };
        let e = t.render(&vars, &[]).unwrap_err();
        assert!(e.message.contains("get_env is disabled"), "{}", e.message);
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
            match kind % 10 {
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
                picks in proptest::collection::vec((0u8..10, 0usize..F.len()), 0..8),
                in_subject in proptest::bool::ANY,
            ) {
                let mut body = String::from("{% import \"m.txt.tera\" as m %}");
                for (i, (kind, f)) in picks.iter().enumerate() {
                    body.push_str(&construct(*kind, F[*f], i));
                    body.push('\n');
                }
                let mut files: Vec<(String, String)> = vec![
                    ("m.txt.tera".into(), "{% macro show(v) %}[{{ v }}]{% endmacro %}".into()),
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
    }
}
