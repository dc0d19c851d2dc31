//! Segment expressions: parsed with Tera's own expression grammar (one language for the
//! marketer), evaluated by a typed evaluator over the audience's columns.
//!
//! Tera only orders numbers and a per-row Tera render is too slow for live counts, so the
//! parsed expression is compiled once against the column types, then run per row.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, Utc};
use tera::ast::{Expr, ExprVal, LogicOperator, Node};

use crate::audience::{Audience, Header};
use crate::error::{Error, Location, Result, did_you_mean};
use crate::schema::{FieldType, parse_bool, parse_number};
use crate::template::ident_roots;

const WRAP_OPEN: &str = "{% if ";

/// The longest segment accepted, in characters. Far above any condition a marketer
/// writes, and small enough that nothing built from it can be deep.
pub const MAX_SEGMENT_CHARS: usize = 4096;
/// How deep brackets and `not`s may nest. Tera's parser recurses on every level (2,000
/// parentheses overflow the stack), so depth is counted here, before it sees anything.
pub const MAX_SEGMENT_DEPTH: usize = 32;

/// Why a segment is refused before any parser sees it: the 1-based character column and
/// what is wrong there.
pub fn check_limits(source: &str) -> std::result::Result<(), (usize, String)> {
    let len = source.chars().count();
    if len > MAX_SEGMENT_CHARS {
        return Err((
            MAX_SEGMENT_CHARS + 1,
            format!(
                "is {len} characters long; the limit is {MAX_SEGMENT_CHARS} (at column {})",
                MAX_SEGMENT_CHARS + 1
            ),
        ));
    }
    let chars: Vec<char> = source.chars().collect();
    let (mut brackets, mut nots) = (0usize, 0usize);
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        let deeper = match chars[i] {
            '"' | '\'' | '`' => {
                i = skip_string(&chars, i);
                nots = 0;
                continue;
            }
            '(' | '[' | '{' => {
                brackets += 1;
                true
            }
            ')' | ']' | '}' => {
                brackets = brackets.saturating_sub(1);
                nots = 0;
                false
            }
            c if c.is_whitespace() => false,
            // `not not not …` nests as surely as brackets do.
            _ if keyword_at(&chars, i, "not") => {
                nots += 1;
                i += 2;
                true
            }
            _ => {
                nots = 0;
                false
            }
        };
        i += 1;
        if deeper && brackets + nots > MAX_SEGMENT_DEPTH {
            let column = start + 1;
            return Err((
                column,
                format!(
                    "is nested more than {MAX_SEGMENT_DEPTH} levels deep (brackets and `not`) at column {column}"
                ),
            ));
        }
    }
    Ok(())
}

/// The index after the string literal opening at `i` (Tera strings have no escapes).
fn skip_string(chars: &[char], i: usize) -> usize {
    let quote = chars[i];
    chars[i + 1..]
        .iter()
        .position(|&c| c == quote)
        .map_or(chars.len(), |p| i + p + 2)
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.'
}

/// `word` stands alone at `i`: not part of a longer name.
fn keyword_at(chars: &[char], i: usize, word: &str) -> bool {
    let n = word.chars().count();
    i + n <= chars.len()
        && chars[i..i + n].iter().copied().eq(word.chars())
        && (i == 0 || !is_word_char(chars[i - 1]))
        && chars.get(i + n).is_none_or(|&c| !is_word_char(c))
}

/// The segment as quoted in errors: a long one is cut, so an error stays one line.
fn shown(source: &str) -> String {
    crate::names::excerpt(source, 60)
}

/// The boolean layer of a segment (`or`, `and`, `not`, grouping parentheses), parsed here
/// so each comparison reaches Tera's parser on its own.
///
/// Tera's grammar takes `not` only before a comparison, so `not (a or b)` and `not not a`
/// were refused; and it builds `a or b or c …` as a chain as deep as it is long. Here a
/// run of one operator becomes a balanced tree (and/or are associative, in three-valued
/// logic too), so no segment within the limits is deep.
struct Shell<'a> {
    source: &'a str,
    chars: Vec<char>,
    /// Byte offset of each char, and of the end.
    bytes: Vec<usize>,
    pos: usize,
}

/// A parse error at a 1-based character column, with Tera's or our own words
/// ("expected …").
struct ShellError {
    column: Option<usize>,
    expected: String,
}

impl<'a> Shell<'a> {
    fn new(source: &'a str) -> Shell<'a> {
        let chars: Vec<char> = source.chars().collect();
        let mut bytes: Vec<usize> = source.char_indices().map(|(b, _)| b).collect();
        bytes.push(source.len());
        Shell {
            source,
            chars,
            bytes,
            pos: 0,
        }
    }

    fn err(&self, at: usize, expected: &str) -> ShellError {
        ShellError {
            column: Some(at + 1),
            expected: format!("expected {expected}"),
        }
    }

    fn skip_ws(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn eat_keyword(&mut self, word: &str) -> bool {
        self.skip_ws();
        if keyword_at(&self.chars, self.pos, word) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn parse(mut self) -> std::result::Result<Expr, ShellError> {
        let e = self.or(0)?;
        self.skip_ws();
        if self.pos < self.chars.len() {
            return Err(self.err(self.pos, "`)` without its `(`"));
        }
        Ok(e)
    }

    fn or(&mut self, depth: usize) -> std::result::Result<Expr, ShellError> {
        let mut items = vec![self.and(depth)?];
        while self.eat_keyword("or") {
            items.push(self.and(depth)?);
        }
        Ok(balanced(items, LogicOperator::Or))
    }

    fn and(&mut self, depth: usize) -> std::result::Result<Expr, ShellError> {
        let mut items = vec![self.not(depth)?];
        while self.eat_keyword("and") {
            items.push(self.not(depth)?);
        }
        Ok(balanced(items, LogicOperator::And))
    }

    fn not(&mut self, depth: usize) -> std::result::Result<Expr, ShellError> {
        if depth > MAX_SEGMENT_DEPTH {
            return Err(self.err(self.pos, "nesting within the limit"));
        }
        if self.eat_keyword("not") {
            let mut e = self.not(depth + 1)?;
            e.negated = !e.negated;
            return Ok(e);
        }
        self.skip_ws();
        if self.chars.get(self.pos) == Some(&'(')
            && let Some(close) = self.closing(self.pos)
            && self.ends_operand(close + 1)
        {
            self.pos += 1;
            let e = self.or(depth + 1)?;
            self.skip_ws();
            if self.pos != close {
                return Err(self.err(self.pos, "`)`"));
            }
            self.pos = close + 1;
            return Ok(e);
        }
        self.leaf()
    }

    /// The `)` closing the bracket at `open`, if it is closed.
    fn closing(&self, open: usize) -> Option<usize> {
        let mut depth = 0usize;
        let mut i = open;
        while i < self.chars.len() {
            match self.chars[i] {
                '"' | '\'' | '`' => {
                    i = skip_string(&self.chars, i);
                    continue;
                }
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return (self.chars[i] == ')').then_some(i);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        None
    }

    /// Whether an operand ends at `i`: the end, a `)`, or `and`/`or`. Otherwise the
    /// bracket before `i` belongs to a comparison, as in `(total_spent) > 10`.
    fn ends_operand(&self, mut i: usize) -> bool {
        while self.chars.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
        }
        i >= self.chars.len()
            || self.chars[i] == ')'
            || keyword_at(&self.chars, i, "and")
            || keyword_at(&self.chars, i, "or")
    }

    /// One comparison, test or field, up to the next `and`/`or` or unmatched `)` outside
    /// brackets and strings: parsed by Tera.
    fn leaf(&mut self) -> std::result::Result<Expr, ShellError> {
        let start = self.pos;
        let mut depth = 0usize;
        let mut i = start;
        while i < self.chars.len() {
            match self.chars[i] {
                '"' | '\'' | '`' => {
                    i = skip_string(&self.chars, i);
                    continue;
                }
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' if depth == 0 => break,
                ')' | ']' | '}' => depth -= 1,
                _ if depth == 0
                    && (keyword_at(&self.chars, i, "and") || keyword_at(&self.chars, i, "or")) =>
                {
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        let text = self.source[self.bytes[start]..self.bytes[i.min(self.chars.len())]].trim_end();
        self.pos = i.min(self.chars.len());
        if text.is_empty() {
            return Err(self.err(start, "a condition, like country == \"GB\""));
        }
        parse_leaf(text).map_err(|(col, expected)| ShellError {
            column: col.map(|c| c + start),
            expected,
        })
    }
}

/// `items` joined by `op` as a balanced tree, so its depth is logarithmic in its length.
fn balanced(mut items: Vec<Expr>, op: LogicOperator) -> Expr {
    if items.len() == 1 {
        return items
            .pop()
            .unwrap_or_else(|| Expr::new(ExprVal::Bool(false)));
    }
    let rhs = items.split_off(items.len() / 2);
    Expr::new(ExprVal::Logic(tera::ast::LogicExpr {
        lhs: Box::new(balanced(items, op)),
        rhs: Box::new(balanced(rhs, op)),
        operator: op,
    }))
}

/// One operand through Tera's expression grammar; a parse error as the column within
/// `text` and Tera's "expected …".
fn parse_leaf(text: &str) -> std::result::Result<Expr, (Option<usize>, String)> {
    let wrapped = format!("{WRAP_OPEN}{text} %}}{{% endif %}}");
    let tpl = tera::Template::new("segment", None, &wrapped).map_err(|e| {
        let message = error_text(&e);
        let pos = message.lines().find_map(|l| {
            let (line, col) = l
                .trim_start()
                .strip_prefix("--> ")?
                .trim()
                .split_once(':')?;
            Some((line.parse::<usize>().ok()?, col.parse::<usize>().ok()?))
        });
        let expected = message
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("= "))
            .unwrap_or("cannot parse")
            .to_string();
        // Tera counts lines and columns; a segment may hold line breaks (a TOML
        // multi-line string), so count back to a column within the whole leaf.
        let col = pos.map(|(line, col)| {
            let before: usize = wrapped
                .split('\n')
                .take(line.saturating_sub(1))
                .map(|l| l.chars().count() + 1)
                .sum();
            (before + col).saturating_sub(WRAP_OPEN.len()).max(1)
        });
        (col, expected)
    })?;
    match tpl.ast.first() {
        Some(Node::If(if_node, _)) if tpl.ast.len() == 1 => {
            if_node.conditions.first().map(|c| c.1.clone())
        }
        _ => None,
    }
    .ok_or((None, "it must be a single expression".to_string()))
}

/// A parsed, not yet compiled, segment.
#[derive(Debug, Clone)]
pub struct Segment {
    pub source: String,
    expr: Expr,
    pub fields: BTreeSet<String>,
}

impl Segment {
    /// `campaign` is only used to name the file in errors.
    pub fn parse(source: &str, campaign: &Path) -> Result<Segment> {
        let refuse = |at: Option<usize>, what: String| {
            // Tera points one past a trailing space it added; never past the end.
            let end = source.chars().count() + 1;
            let at = at.map_or_else(String::new, |c| format!(" at column {}", c.min(end)));
            Error::input(
                Location::file(campaign),
                format!(
                    "segment `{}` is not a valid expression{at}: {what}",
                    shown(source)
                ),
            )
        };
        check_limits(source).map_err(|(_, msg)| {
            Error::input(
                Location::file(campaign),
                format!("segment `{}` {msg}", shown(source)),
            )
        })?;
        let expr = Shell::new(source)
            .parse()
            .map_err(|e| refuse(e.column, e.expected))?;
        let mut fields = BTreeSet::new();
        collect_idents(&expr, &mut fields);
        Ok(Segment {
            source: source.to_string(),
            expr,
            fields,
        })
    }

    /// Every field must be a column; say which one was meant.
    pub fn check_fields(&self, header: &Header, campaign: &Path) -> Result<()> {
        for f in &self.fields {
            if header.index(f).is_none() {
                return Err(Error::input(
                    Location::file(campaign),
                    format!(
                        "segment uses `{f}`, which is not a column of {}{}",
                        header.path.display(),
                        did_you_mean(f, header.names.iter().map(String::as_str))
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn compile(
        &self,
        audience: &Audience,
        now: DateTime<Utc>,
        campaign: &Path,
    ) -> Result<Compiled> {
        let c = Compiler {
            audience,
            campaign,
            source: &self.source,
        };
        Ok(Compiled {
            root: c.expr(&self.expr)?,
            now,
            lexicon: None,
        })
    }
}

fn error_text(e: &tera::Error) -> String {
    let mut text = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        text.push('\n');
        text.push_str(&s.to_string());
        cur = s.source();
    }
    text
}

fn collect_idents(expr: &Expr, out: &mut BTreeSet<String>) {
    for f in &expr.filters {
        for a in f.args.values() {
            collect_idents(a, out);
        }
    }
    match &expr.val {
        ExprVal::Ident(i) => out.extend(ident_roots(i)),
        ExprVal::Test(t) => {
            out.extend(ident_roots(&t.ident));
            for a in &t.args {
                collect_idents(a, out);
            }
        }
        ExprVal::Logic(l) => {
            collect_idents(&l.lhs, out);
            collect_idents(&l.rhs, out);
        }
        ExprVal::Math(m) => {
            collect_idents(&m.lhs, out);
            collect_idents(&m.rhs, out);
        }
        ExprVal::In(i) => {
            collect_idents(&i.lhs, out);
            collect_idents(&i.rhs, out);
        }
        ExprVal::Array(items) => items.iter().for_each(|i| collect_idents(i, out)),
        ExprVal::FunctionCall(f) => f.args.values().for_each(|a| collect_idents(a, out)),
        ExprVal::MacroCall(m) => m.args.values().for_each(|a| collect_idents(a, out)),
        ExprVal::StringConcat(c) => {
            for v in &c.values {
                if let ExprVal::Ident(i) = v {
                    out.extend(ident_roots(i));
                }
            }
        }
        ExprVal::String(_) | ExprVal::Int(_) | ExprVal::Float(_) | ExprVal::Bool(_) => {}
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    Lower,
    Upper,
    Trim,
    DaysSince,
    Length,
}

#[derive(Debug, Clone)]
enum Operand {
    Field {
        col: usize,
        ty: FieldType,
        name: String,
        filters: Vec<Filter>,
    },
    Lit(Lit),
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Num(f64),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TestKind {
    StartingWith,
    EndingWith,
    Containing,
    /// The value holds a term of the sensitive-terms lexicon (`is sensitive`).
    Sensitive,
}

#[derive(Debug, Clone)]
enum Node2 {
    And(Box<Node2>, Box<Node2>),
    Or(Box<Node2>, Box<Node2>),
    Not(Box<Node2>),
    Cmp(Operand, Cmp, Operand),
    Truthy(Operand),
    In {
        needle: Operand,
        hay: Vec<Operand>,
        substring: bool,
        negated: bool,
    },
    Test {
        operand: Operand,
        kind: TestKind,
        arg: String,
        negated: bool,
    },
    Const(bool),
}

/// A compiled segment, ready to run over rows.
#[derive(Debug, Clone)]
pub struct Compiled {
    root: Node2,
    now: DateTime<Utc>,
    /// What `is sensitive` reads: the schema's lexicon once `with_lexicon` is called, the
    /// built-in one until then (never none: a test that silently said "not sensitive"
    /// would let a segment select on what it means to exclude).
    lexicon: Option<std::sync::Arc<crate::lexicon::Lexicon>>,
}

/// Why a row could not be evaluated: its line is known to the caller, its value is not
/// repeated here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub field: String,
    pub expected: FieldType,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` is not a {}", self.field, self.expected.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Val<'a> {
    Null,
    Num(f64, &'a str),
    Date(i64, &'a str),
    Bool(bool),
    Text(std::borrow::Cow<'a, str>),
}

impl Val<'_> {
    fn raw(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Val::Null => "".into(),
            Val::Num(_, r) | Val::Date(_, r) => (*r).into(),
            Val::Bool(b) => b.to_string().into(),
            Val::Text(t) => t.as_ref().into(),
        }
    }
}

struct Compiler<'a> {
    audience: &'a Audience,
    campaign: &'a Path,
    source: &'a str,
}

impl Compiler<'_> {
    fn err(&self, msg: String) -> Error {
        Error::input(
            Location::file(self.campaign),
            format!("segment `{}`: {msg}", shown(self.source)),
        )
    }

    fn expr(&self, e: &Expr) -> Result<Node2> {
        let node = match &e.val {
            ExprVal::Logic(l) => {
                let (lhs, rhs) = (&l.lhs, &l.rhs);
                match l.operator {
                    LogicOperator::And => {
                        Node2::And(Box::new(self.expr(lhs)?), Box::new(self.expr(rhs)?))
                    }
                    LogicOperator::Or => {
                        Node2::Or(Box::new(self.expr(lhs)?), Box::new(self.expr(rhs)?))
                    }
                    op => {
                        let cmp = match op {
                            LogicOperator::Eq => Cmp::Eq,
                            LogicOperator::NotEq => Cmp::Ne,
                            LogicOperator::Lt => Cmp::Lt,
                            LogicOperator::Lte => Cmp::Le,
                            LogicOperator::Gt => Cmp::Gt,
                            _ => Cmp::Ge,
                        };
                        let (a, b) = (self.operand(lhs)?, self.operand(rhs)?);
                        self.check_cmp(&a, cmp, &b)?;
                        Node2::Cmp(a, cmp, b)
                    }
                }
            }
            ExprVal::In(i) => {
                let needle = self.operand(&i.lhs)?;
                match &i.rhs.val {
                    ExprVal::Array(items) => {
                        let hay = items
                            .iter()
                            .map(|x| self.operand(x))
                            .collect::<Result<Vec<_>>>()?;
                        Node2::In {
                            needle,
                            hay,
                            substring: false,
                            negated: i.negated,
                        }
                    }
                    _ => Node2::In {
                        needle,
                        hay: vec![self.operand(&i.rhs)?],
                        substring: true,
                        negated: i.negated,
                    },
                }
            }
            ExprVal::Test(t) => {
                let kind = match t.name.as_str() {
                    "starting_with" => TestKind::StartingWith,
                    "ending_with" => TestKind::EndingWith,
                    "containing" => TestKind::Containing,
                    "sensitive" => {
                        if !t.args.is_empty() {
                            return Err(self.err("`is sensitive` takes no argument".into()));
                        }
                        return Ok(wrap_not(
                            Node2::Test {
                                operand: self.field_operand(&t.ident, &[])?,
                                kind: TestKind::Sensitive,
                                arg: String::new(),
                                negated: t.negated,
                            },
                            e.negated,
                        ));
                    }
                    "defined" | "undefined" => {
                        self.field_col(&t.ident)?;
                        // Every column exists for every row; an empty value is a null, not
                        // an undefined variable.
                        return Ok(wrap_not(
                            Node2::Const(t.name == "defined"),
                            t.negated ^ e.negated,
                        ));
                    }
                    other => {
                        return Err(self.err(format!(
                            "the test `{other}` is not supported in segments (use starting_with, ending_with, containing or sensitive)"
                        )));
                    }
                };
                let arg = match t.args.first().map(|a| &a.val) {
                    Some(ExprVal::String(s)) => s.clone(),
                    _ => {
                        return Err(
                            self.err(format!("`is {}` needs one quoted text argument", t.name))
                        );
                    }
                };
                let operand = self.field_operand(&t.ident, &[])?;
                Node2::Test {
                    operand,
                    kind,
                    arg,
                    negated: t.negated,
                }
            }
            ExprVal::Ident(i) => Node2::Truthy(self.field_operand(i, &e.filters)?),
            ExprVal::Bool(b) => Node2::Const(*b),
            ExprVal::Math(_) => {
                return Err(self.err("arithmetic is not supported in segments".into()));
            }
            _ => {
                return Err(self.err(
                    "this is not a condition; compare a field, like country == \"GB\"".into(),
                ));
            }
        };
        Ok(wrap_not(node, e.negated))
    }

    fn field_col(&self, ident: &str) -> Result<usize> {
        let root = ident_roots(ident).into_iter().next().unwrap_or_default();
        if root != ident {
            return Err(self.err(format!(
                "`{ident}`: fields have no parts; use the column name alone"
            )));
        }
        self.audience.column_index(&root).ok_or_else(|| {
            self.err(format!(
                "`{root}` is not a column{}",
                did_you_mean(&root, self.audience.header.names.iter().map(String::as_str))
            ))
        })
    }

    fn field_operand(&self, ident: &str, filters: &[tera::ast::FunctionCall]) -> Result<Operand> {
        let col = self.field_col(ident)?;
        let column = &self.audience.columns[col];
        let mut fs = Vec::new();
        for f in filters {
            fs.push(match f.name.as_str() {
                "lower" => Filter::Lower,
                "upper" => Filter::Upper,
                "trim" => Filter::Trim,
                "length" => Filter::Length,
                "days_since" => {
                    if column.ty != FieldType::Date {
                        return Err(self.err(format!(
                            "`{}` is a {} column; days_since needs a date column (declare type = \"date\" in the schema)",
                            column.name,
                            column.ty.as_str()
                        )));
                    }
                    Filter::DaysSince
                }
                other => {
                    return Err(self.err(format!(
                        "the filter `{other}` is not supported in segments (use lower, upper, trim, length or days_since)"
                    )));
                }
            });
        }
        Ok(Operand::Field {
            col,
            ty: column.ty,
            name: column.name.clone(),
            filters: fs,
        })
    }

    fn operand(&self, e: &Expr) -> Result<Operand> {
        let op = match &e.val {
            ExprVal::Ident(i) => {
                let op = self.field_operand(i, &e.filters)?;
                if e.negated {
                    return Err(self.err(format!(
                        "`not {i}` cannot be compared; put `not` before the comparison"
                    )));
                }
                return Ok(op);
            }
            ExprVal::String(s) => Operand::Lit(Lit::Str(s.clone())),
            ExprVal::Int(n) => Operand::Lit(Lit::Num(*n as f64)),
            ExprVal::Float(n) => Operand::Lit(Lit::Num(*n)),
            ExprVal::Bool(b) => Operand::Lit(Lit::Bool(*b)),
            _ => {
                return Err(self.err("compare a field with a value, like total_spent > 100".into()));
            }
        };
        if !e.filters.is_empty() {
            return Err(self.err("filters apply to fields, not to values".into()));
        }
        Ok(op)
    }

    /// A literal that can never match its column's type is the marketer's mistake, caught
    /// once here rather than as a million row errors.
    fn check_cmp(&self, a: &Operand, cmp: Cmp, b: &Operand) -> Result<()> {
        let (field, lit) = match (a, b) {
            (Operand::Field { .. }, Operand::Lit(l)) => (a, l),
            (Operand::Lit(l), Operand::Field { .. }) => (b, l),
            _ => return Ok(()),
        };
        let Operand::Field {
            ty, name, filters, ..
        } = field
        else {
            return Ok(());
        };
        let ty = effective_type(*ty, filters);
        let ordering = !matches!(cmp, Cmp::Eq | Cmp::Ne);
        let fits = match (ty, lit) {
            (FieldType::Number, Lit::Num(_)) => true,
            (FieldType::Number, Lit::Str(s)) => !ordering || parse_number(s).is_some(),
            (FieldType::Date, Lit::Str(s)) => !ordering || crate::consent::parse_time(s).is_some(),
            (FieldType::Bool, Lit::Bool(_)) | (FieldType::Bool, Lit::Str(_)) => !ordering,
            (FieldType::Text, Lit::Str(_)) => true,
            (FieldType::Text, Lit::Num(_)) => true,
            _ => false,
        };
        if fits {
            Ok(())
        } else {
            Err(self.err(format!(
                "`{name}` is a {} column and cannot be compared that way with {lit:?}",
                ty.as_str()
            )))
        }
    }
}

fn effective_type(ty: FieldType, filters: &[Filter]) -> FieldType {
    filters.last().map_or(ty, |f| match f {
        Filter::DaysSince | Filter::Length => FieldType::Number,
        Filter::Lower | Filter::Upper | Filter::Trim => FieldType::Text,
    })
}

fn wrap_not(n: Node2, negated: bool) -> Node2 {
    if negated { Node2::Not(Box::new(n)) } else { n }
}

impl Compiled {
    /// The lexicon `is sensitive` reads (the schema's, with its additions).
    pub fn with_lexicon(mut self, lexicon: std::sync::Arc<crate::lexicon::Lexicon>) -> Compiled {
        self.lexicon = Some(lexicon);
        self
    }

    /// Whether the row is in the segment. Logic is three-valued, as in SQL: a comparison
    /// with an empty value is unknown, `not unknown` is still unknown, and unknown is not a
    /// match, so `not vip` never selects someone whose VIP status we do not know.
    pub fn matches(&self, audience: &Audience, row: usize) -> std::result::Result<bool, RowError> {
        Ok(self.eval(&self.root, audience, row)? == Some(true))
    }

    fn eval(
        &self,
        n: &Node2,
        a: &Audience,
        row: usize,
    ) -> std::result::Result<Option<bool>, RowError> {
        Ok(match n {
            Node2::Const(b) => Some(*b),
            Node2::And(x, y) => match self.eval(x, a, row)? {
                Some(false) => Some(false),
                l => match (l, self.eval(y, a, row)?) {
                    (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                },
            },
            Node2::Or(x, y) => match self.eval(x, a, row)? {
                Some(true) => Some(true),
                l => match (l, self.eval(y, a, row)?) {
                    (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                },
            },
            Node2::Not(x) => self.eval(x, a, row)?.map(|b| !b),
            Node2::Truthy(op) => match self.value(op, a, row)? {
                Val::Null => None,
                Val::Bool(b) => Some(b),
                Val::Num(n, _) => Some(n != 0.0),
                Val::Date(..) => Some(true),
                Val::Text(t) => Some(!t.is_empty()),
            },
            Node2::Cmp(x, cmp, y) => {
                let (l, r) = (self.value(x, a, row)?, self.value(y, a, row)?);
                if l == Val::Null || r == Val::Null {
                    None
                } else {
                    Some(compare(&l, *cmp, &r))
                }
            }
            Node2::In {
                needle,
                hay,
                substring,
                negated,
            } => {
                let v = self.value(needle, a, row)?;
                if v == Val::Null {
                    return Ok(None);
                }
                let mut found = false;
                for h in hay {
                    let h = self.value(h, a, row)?;
                    if h == Val::Null {
                        continue;
                    }
                    let hit = if *substring {
                        h.raw().contains(v.raw().as_ref())
                    } else {
                        compare(&v, Cmp::Eq, &h)
                    };
                    if hit {
                        found = true;
                        break;
                    }
                }
                Some(found != *negated)
            }
            Node2::Test {
                operand,
                kind,
                arg,
                negated,
            } => {
                let v = self.value(operand, a, row)?;
                if *kind == TestKind::Sensitive {
                    // An empty value is known not to hold a term: `not x is sensitive`
                    // keeps the people with no value.
                    let lex = self
                        .lexicon
                        .as_deref()
                        .unwrap_or_else(|| crate::lexicon::Lexicon::shared());
                    return Ok(Some((lex.classify(&v.raw()) != 0) != *negated));
                }
                if v == Val::Null {
                    return Ok(None);
                }
                let raw = v.raw();
                let hit = match kind {
                    TestKind::Sensitive => false,
                    TestKind::StartingWith => raw.starts_with(arg.as_str()),
                    TestKind::EndingWith => raw.ends_with(arg.as_str()),
                    TestKind::Containing => raw.contains(arg.as_str()),
                };
                Some(hit != *negated)
            }
        })
    }

    fn value<'a>(
        &self,
        op: &'a Operand,
        a: &'a Audience,
        row: usize,
    ) -> std::result::Result<Val<'a>, RowError> {
        let Operand::Field {
            col,
            ty,
            name,
            filters,
        } = op
        else {
            let Operand::Lit(l) = op else { unreachable!() };
            return Ok(match l {
                Lit::Str(s) => Val::Text(s.as_str().into()),
                Lit::Num(n) => Val::Num(*n, ""),
                Lit::Bool(b) => Val::Bool(*b),
            });
        };
        let raw = a.columns[*col].data.get(row);
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Ok(Val::Null);
        }
        let bad = || RowError {
            field: name.clone(),
            expected: *ty,
        };
        let mut v = match ty {
            FieldType::Number => Val::Num(parse_number(trimmed).ok_or_else(bad)?, trimmed),
            FieldType::Date => Val::Date(
                crate::consent::parse_time(trimmed)
                    .ok_or_else(bad)?
                    .timestamp(),
                trimmed,
            ),
            FieldType::Bool => Val::Bool(parse_bool(trimmed).ok_or_else(bad)?),
            FieldType::Text => Val::Text(raw.into()),
        };
        for f in filters {
            v = match (f, v) {
                (Filter::DaysSince, Val::Date(t, _)) => {
                    Val::Num(((self.now.timestamp() - t) as f64 / 86_400.0).floor(), "")
                }
                (Filter::Length, v) => Val::Num(v.raw().chars().count() as f64, ""),
                (Filter::Lower, v) => Val::Text(v.raw().to_lowercase().into()),
                (Filter::Upper, v) => Val::Text(v.raw().to_uppercase().into()),
                (Filter::Trim, v) => Val::Text(v.raw().trim().to_string().into()),
                (_, v) => v,
            };
        }
        Ok(v)
    }
}

fn compare(l: &Val<'_>, cmp: Cmp, r: &Val<'_>) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (l, r) {
        (Val::Null, _) | (_, Val::Null) => return false,
        (Val::Num(a, _), Val::Num(b, _)) => a.partial_cmp(b),
        (Val::Date(a, _), Val::Date(b, _)) => Some(a.cmp(b)),
        (Val::Bool(a), Val::Bool(b)) => Some(a.cmp(b)),
        (Val::Num(a, raw), Val::Text(t)) | (Val::Text(t), Val::Num(a, raw)) => {
            let flipped = matches!(l, Val::Text(_));
            let o = if matches!(cmp, Cmp::Eq | Cmp::Ne) {
                let same = raw == t || parse_number(t) == Some(*a);
                Some(if same {
                    Ordering::Equal
                } else {
                    Ordering::Less
                })
            } else {
                parse_number(t).and_then(|b| a.partial_cmp(&b))
            };
            if flipped { o.map(Ordering::reverse) } else { o }
        }
        (Val::Date(a, _), Val::Text(t)) | (Val::Text(t), Val::Date(a, _)) => {
            let flipped = matches!(l, Val::Text(_));
            let o = crate::consent::parse_time(t).map(|b| a.cmp(&b.timestamp()));
            if flipped { o.map(Ordering::reverse) } else { o }
        }
        (Val::Bool(a), Val::Text(t)) | (Val::Text(t), Val::Bool(a)) => parse_bool(t).map(|b| {
            if *a == b {
                Ordering::Equal
            } else {
                Ordering::Less
            }
        }),
        (Val::Text(a), Val::Text(b)) => Some(a.as_ref().cmp(b.as_ref())),
        (a, b) => Some(if a.raw() == b.raw() {
            Ordering::Equal
        } else {
            Ordering::Less
        }),
    };
    match (cmp, ord) {
        (_, None) => false,
        (Cmp::Eq, Some(o)) => o == Ordering::Equal,
        (Cmp::Ne, Some(o)) => o != Ordering::Equal,
        (Cmp::Lt, Some(o)) => o == Ordering::Less,
        (Cmp::Le, Some(o)) => o != Ordering::Greater,
        (Cmp::Gt, Some(o)) => o == Ordering::Greater,
        (Cmp::Ge, Some(o)) => o != Ordering::Less,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::schema::Schema;
    use std::io::Write;

    const CSV: &str = "email,country,total_spent,last_order_at,postcode,vip,note
a@x.example,GB,150,2026-10-01,BS1 4DJ,true,hello
b@x.example,DE,99.5,2025-01-01,01234,false,
c@x.example,gb,,2026-11-20,BS8 1AA,,Hi
d@x.example,FR,N/A,not a date,75001,yes,x
e@x.example,GB,20,2026-11-01,01234,no,x
f@x.example,GB,30,2026-11-01,x,no,x
g@x.example,GB,40,2026-11-01,x,no,x
h@x.example,GB,50,2026-11-01,x,no,x
i@x.example,GB,60,2026-11-01,x,no,x
j@x.example,GB,70,2026-11-01,x,no,x
k@x.example,GB,80,2026-11-01,x,no,x
";

    fn audience() -> (tempfile::NamedTempFile, Audience) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(CSV.as_bytes()).unwrap();
        let mut schema = Schema::default();
        schema.fields.insert(
            "postcode".into(),
            crate::schema::FieldSpec {
                ty: Some(FieldType::Text),
                ..Default::default()
            },
        );
        let header = crate::audience::read_header(f.path(), &schema).unwrap();
        let all = header.names.iter().cloned().collect();
        let a = Audience::load(header, &all, &schema).unwrap();
        (f, a)
    }

    fn now() -> DateTime<Utc> {
        crate::consent::parse_time("2026-11-23T12:00:00Z").unwrap()
    }

    /// Row letters that match, or the first compile error.
    fn run(seg: &str) -> Result<String> {
        let (_f, a) = audience();
        let s = Segment::parse(seg, Path::new("c.toml"))?;
        let c = s.compile(&a, now(), Path::new("c.toml"))?;
        Ok((0..a.len())
            .map(|r| match c.matches(&a, r) {
                Ok(true) => a.email(r).chars().next().unwrap_or('?').to_string(),
                Ok(false) => String::new(),
                Err(_) => "!".into(),
            })
            .collect())
    }

    #[test]
    fn is_sensitive_reads_the_lexicon_and_keeps_empty_values() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"email,product\na@x.example,Pregnancy test\nb@x.example,Test kitchen\nc@x.example,\nd@x.example,ROSARY BEADS\n").unwrap();
        let schema = Schema::default();
        let header = crate::audience::read_header(f.path(), &schema).unwrap();
        let all = header.names.iter().cloned().collect();
        let a = Audience::load(header, &all, &schema).unwrap();
        let sel = |seg: &str, lex: Option<crate::lexicon::Lexicon>| -> Result<String> {
            let mut c = Segment::parse(seg, Path::new("c.toml"))?.compile(
                &a,
                now(),
                Path::new("c.toml"),
            )?;
            if let Some(l) = lex {
                c = c.with_lexicon(std::sync::Arc::new(l));
            }
            Ok((0..a.len())
                .filter(|r| c.matches(&a, *r) == Ok(true))
                .map(|r| a.email(r).chars().next().unwrap_or('?'))
                .collect())
        };
        assert_eq!(sel("product is sensitive", None).unwrap(), "ad");
        // An empty value holds no term: leaving sensitive values out keeps it.
        assert_eq!(sel("not product is sensitive", None).unwrap(), "bc");
        assert_eq!(sel("product is not sensitive", None).unwrap(), "bc");
        let mut more = crate::lexicon::Lexicon::builtin();
        more.extend(&std::collections::BTreeMap::from([(
            "health".to_string(),
            vec!["test kitchen".to_string()],
        )]))
        .unwrap();
        assert_eq!(sel("product is sensitive", Some(more)).unwrap(), "abd");
        let e = sel(r#"product is sensitive("x")"#, None).unwrap_err();
        assert!(e.to_string().contains("no argument"), "{e}");
    }

    #[test]
    fn typed_comparisons() {
        let cases = [
            (r#"country == "GB""#, "aefghijk"),
            (r#"country == "GB" and total_spent > 100"#, "a"),
            // A null never compares, either way.
            ("total_spent < 100", "b!efghijk"),
            ("total_spent != 150", "b!efghijk"),
            (r#"last_order_at > "2026-01-01""#, "ac!efghijk"),
            ("last_order_at | days_since < 30", "c!efghijk"),
            (r#"country | lower == "gb""#, "acefghijk"),
            (r#"postcode is starting_with("BS")"#, "ac"),
            (r#"postcode == "01234""#, "be"),
            (r#"country not in ["DE", "FR"]"#, "acefghijk"),
            (r#"country in ["DE", "FR"]"#, "bd"),
            // Unknown is not a match, negated or not.
            ("not vip", "befghijk"),
            ("not total_spent > 100", "b!efghijk"),
            ("vip", "ad"),
            (r#"(country == "DE" or country == "FR") and not vip"#, "b"),
            (r#""ell" in note"#, "a"),
        ];
        for (seg, want) in cases {
            assert_eq!(run(seg).unwrap(), want, "{seg}");
        }
    }

    #[test]
    fn mistakes_are_caught_before_any_row() {
        let e = run("country == ").unwrap_err().to_string();
        assert!(e.contains("not a valid expression at column"), "{e}");
        let e = run(r#"contry == "GB""#).unwrap_err().to_string();
        assert!(e.contains("did you mean `country`"), "{e}");
        let e = run(r#"total_spent > "lots""#).unwrap_err().to_string();
        assert!(e.contains("number column"), "{e}");
        let e = run("country | days_since > 3").unwrap_err().to_string();
        assert!(e.contains("days_since needs a date"), "{e}");
        let e = run("total_spent + 1 > 3").unwrap_err().to_string();
        assert!(
            e.contains("not supported") || e.contains("compare a field"),
            "{e}"
        );
    }

    #[test]
    fn parse_error_column_points_into_the_segment() {
        let e = Segment::parse(r#"country == "GB" andd x"#, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at column 17"), "{e}");
        let e = Segment::parse("country ==\n\"GB\" andd x", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at column 17"), "{e}");
        let e = Segment::parse("country ==", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at column 11"), "{e}");
    }

    #[test]
    fn fields_are_listed() {
        let s = Segment::parse(
            r#"country == "GB" and last_order_at | days_since < 90"#,
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(
            s.fields.iter().map(String::as_str).collect::<Vec<_>>(),
            ["country", "last_order_at"]
        );
    }

    /// `not` before a group, `not not`, and groups anywhere: what Tera's grammar refused.
    /// Kleene logic keeps De Morgan and double negation, so each must equal a form the old
    /// parser took; the first is also spelt out by hand.
    #[test]
    fn not_applies_to_groups_and_to_not() {
        assert_eq!(
            run(r#"not (country == "DE" or country == "FR")"#).unwrap(),
            "acefghijk"
        );
        let same = [
            (
                r#"not (country == "GB" and total_spent > 40) or vip"#,
                r#"not country == "GB" or not total_spent > 40 or vip"#,
            ),
            ("not not vip", "vip"),
            ("not not not vip", "not vip"),
            ("not (not vip)", "vip"),
            (
                r#"not ((country == "DE") or (vip and total_spent > 10))"#,
                r#"not country == "DE" and (not vip or not total_spent > 10)"#,
            ),
            ("(total_spent) > 10", "total_spent > 10"),
            (
                r#"(country == "GB") and ((total_spent > 40))"#,
                r#"country == "GB" and total_spent > 40"#,
            ),
            (r#"not(country == "GB")"#, r#"not country == "GB""#),
        ];
        for (new, old) in same {
            assert_eq!(run(new).unwrap(), run(old).unwrap(), "{new}  vs  {old}");
        }
        // `and` binds tighter than `or`, as in Tera.
        assert_eq!(
            run(r#"country == "DE" or country == "GB" and total_spent > 100"#).unwrap(),
            "ab"
        );
    }

    #[test]
    fn keywords_inside_names_and_strings_are_not_operators() {
        let s = Segment::parse(
            r#"brand_or_store == "x and (y" or notes is starting_with("not (") and android"#,
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(
            s.fields.iter().map(String::as_str).collect::<Vec<_>>(),
            ["android", "brand_or_store", "notes"]
        );
    }

    #[test]
    fn length_and_depth_are_bounded_before_parsing() {
        let c = Path::new("c.toml");
        let deep = format!("{}country{}", "(".repeat(2_000), ")".repeat(2_000));
        let e = Segment::parse(&deep, c).unwrap_err().to_string();
        assert!(
            e.contains("nested more than 32") && e.contains("at column 33"),
            "{e}"
        );
        assert!(e.len() < 300, "{e}");
        let nots = format!("{}vip", "not ".repeat(1_000));
        let e = Segment::parse(&nots, c).unwrap_err().to_string();
        assert!(
            e.contains("nested more than 32") && e.contains("at column 129"),
            "{e}"
        );
        let arrays = format!("x in {}1{}", "[".repeat(100), "]".repeat(100));
        let e = Segment::parse(&arrays, c).unwrap_err().to_string();
        assert!(e.contains("at column 38"), "{e}");
        let long = format!("x == \"{}\"", "a".repeat(100_000));
        let e = Segment::parse(&long, c).unwrap_err().to_string();
        assert!(
            e.contains("the limit is 4096") && e.contains("at column 4097"),
            "{e}"
        );
        assert!(e.len() < 300, "{e}");
        // Brackets inside a string are text, and 32 levels are allowed.
        let quoted = format!("note == \"{}\"", "(".repeat(500));
        assert!(Segment::parse(&quoted, c).is_ok());
        let ok = format!("{}vip{}", "(".repeat(32), ")".repeat(32));
        assert!(Segment::parse(&ok, c).is_ok());
        let e = Segment::parse(&format!("({ok})"), c)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nested"), "{e}");
    }

    /// A chain as long as the limit allows is shallow: it parses, compiles and runs on a
    /// thread with a small stack.
    #[test]
    fn a_long_chain_is_not_deep() {
        let chain = vec![r#"country == "GB""#; 4096 / 20].join(" or ");
        let chain = format!("{chain} and not vip");
        let out = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || run(&chain).map_err(|e| e.to_string()))
            .unwrap()
            .join()
            .unwrap()
            .unwrap();
        assert_eq!(out, run(r#"country == "GB""#).unwrap());
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        /// Atoms over the fixture's columns, with their complement (true exactly where the
        /// atom is false): together they give each row's three-valued truth independently
        /// of `and`, `or`, `not` and brackets.
        const ATOMS: [(&str, &str); 6] = [
            (r#"country == "GB""#, r#"country != "GB""#),
            ("total_spent > 50", "total_spent <= 50"),
            ("vip", "vip == false"),
            (
                r#"postcode is starting_with("BS")"#,
                r#"postcode is not starting_with("BS")"#,
            ),
            (
                r#"country in ["DE", "FR"]"#,
                r#"country not in ["DE", "FR"]"#,
            ),
            (
                r#"last_order_at > "2026-06-01""#,
                r#"last_order_at <= "2026-06-01""#,
            ),
        ];

        #[derive(Debug, Clone)]
        enum E {
            Atom(usize),
            Not(Box<E>),
            And(Box<E>, Box<E>),
            Or(Box<E>, Box<E>),
        }

        fn expr() -> impl Strategy<Value = E> {
            (0..ATOMS.len())
                .prop_map(E::Atom)
                .prop_recursive(5, 24, 2, |inner| {
                    prop_oneof![
                        inner.clone().prop_map(|e| E::Not(Box::new(e))),
                        (inner.clone(), inner.clone())
                            .prop_map(|(a, b)| E::And(Box::new(a), Box::new(b))),
                        (inner.clone(), inner).prop_map(|(a, b)| E::Or(Box::new(a), Box::new(b))),
                    ]
                })
        }

        /// The text of `e` with as few brackets as precedence allows (`and` over `or`,
        /// `not` over both); `style` adds brackets and line breaks, never meaning.
        fn text(e: &E, style: &mut impl Iterator<Item = bool>) -> String {
            let compound = |x: &E| matches!(x, E::And(..) | E::Or(..));
            let t = match e {
                E::Atom(i) => ATOMS[*i].0.to_string(),
                E::Not(x) => {
                    let inner = text(x, style);
                    if compound(x) || style.next().unwrap_or(false) {
                        format!("not ({inner})")
                    } else {
                        format!("not {inner}")
                    }
                }
                E::And(a, b) => {
                    let side = |x: &E, t: String| {
                        if matches!(x, E::Or(..)) {
                            format!("({t})")
                        } else {
                            t
                        }
                    };
                    let (l, r) = (text(a, style), text(b, style));
                    format!("{}  and {}", side(a, l), side(b, r))
                }
                E::Or(a, b) => format!("{} or\n{}", text(a, style), text(b, style)),
            };
            if style.next().unwrap_or(false) {
                format!("({t})")
            } else {
                t
            }
        }

        /// Row by row: Err for a row error, else Kleene logic, evaluated left to right
        /// with the same short-circuit the evaluator has.
        fn reference(e: &E, atoms: &Truth, row: usize) -> std::result::Result<Option<bool>, ()> {
            Ok(match e {
                E::Atom(i) => atoms[*i][row]?,
                E::Not(x) => reference(x, atoms, row)?.map(|b| !b),
                E::And(a, b) => match reference(a, atoms, row)? {
                    Some(false) => Some(false),
                    l => match (l, reference(b, atoms, row)?) {
                        (_, Some(false)) => Some(false),
                        (Some(true), Some(true)) => Some(true),
                        _ => None,
                    },
                },
                E::Or(a, b) => match reference(a, atoms, row)? {
                    Some(true) => Some(true),
                    l => match (l, reference(b, atoms, row)?) {
                        (_, Some(true)) => Some(true),
                        (Some(false), Some(false)) => Some(false),
                        _ => None,
                    },
                },
            })
        }

        type Truth = Vec<Vec<std::result::Result<Option<bool>, ()>>>;

        /// Each atom's truth per row, worked out once.
        fn atom_truth() -> &'static Truth {
            static TRUTH: std::sync::OnceLock<Truth> = std::sync::OnceLock::new();
            TRUTH.get_or_init(|| {
                ATOMS
                    .iter()
                    .map(|(yes, no)| {
                        let (y, n) = (run(yes).unwrap(), run(no).unwrap());
                        let (_f, a) = audience();
                        (0..a.len())
                            .map(|r| {
                                let letter = a.email(r).chars().next().unwrap_or('?');
                                if y.contains('!') && bad_row(yes, r) {
                                    Err(())
                                } else if y.contains(letter) {
                                    Ok(Some(true))
                                } else if n.contains(letter) {
                                    Ok(Some(false))
                                } else {
                                    Ok(None)
                                }
                            })
                            .collect()
                    })
                    .collect()
            })
        }

        fn bad_row(seg: &str, row: usize) -> bool {
            let (_f, a) = audience();
            let c = Segment::parse(seg, Path::new("c.toml"))
                .unwrap()
                .compile(&a, now(), Path::new("c.toml"))
                .unwrap();
            c.matches(&a, row).is_err()
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn generated_segments_evaluate_as_three_valued_logic(e in expr(), style in proptest::collection::vec(any::<bool>(), 64)) {
                let atoms = atom_truth();
                let src = text(&e, &mut style.into_iter());
                let (_f, a) = audience();
                let c = Segment::parse(&src, Path::new("c.toml")).unwrap().compile(&a, now(), Path::new("c.toml")).unwrap();
                for row in 0..a.len() {
                    let want = reference(&e, atoms, row);
                    let got = c.matches(&a, row);
                    match want {
                        Err(()) => prop_assert!(got.is_err(), "row {}: {:?} for {}", row, got, src),
                        Ok(w) => prop_assert_eq!(got.ok(), Some(w == Some(true)), "row {} of {}", row, src),
                    }
                }
            }

            #[test]
            fn any_text_is_a_segment_or_an_error_with_a_column_inside_it(
                src in proptest::string::string_regex(r#"([a-z_]{1,8}|not |and |or |[()\[\]{}"'`|,=<>!~+*.-]|[0-9]{1,3}| |\n){0,40}"#).unwrap()
            ) {
                let (_f, a) = audience();
                match Segment::parse(&src, Path::new("c.toml")) {
                    Ok(s) => {
                        if let Ok(c) = s.compile(&a, now(), Path::new("c.toml")) {
                            for row in 0..a.len() {
                                let _ = c.matches(&a, row);
                            }
                        }
                    }
                    Err(e) => {
                        let e = e.to_string();
                        prop_assert!(e.starts_with("c.toml: segment"), "{}", e);
                        if let Some(at) = e.find("at column ") {
                            let col: usize = e[at + 10..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap();
                            prop_assert!(col >= 1 && col <= src.chars().count() + 1, "column {} of {:?}: {}", col, src, e);
                        }
                    }
                }
            }

            #[test]
            fn deep_or_long_text_never_overflows(
                depth in 0usize..3_000,
                open in prop_oneof![Just("("), Just("["), Just("not "), Just("not ("), Just("{")],
                tail in "[a-z =\"0-9]{0,10}",
            ) {
                let src = format!("{}{tail}{}", open.repeat(depth), ")".repeat(depth));
                let _ = Segment::parse(&src, Path::new("c.toml"));
            }
        }
    }
}
