//! Human-readable output shared by `check` and `preview`, written through `io::Write` so
//! tests can read it from a buffer.

use std::io::{self, IsTerminal, Write};

use tact::check::{Level, Report, RowProblem};
use tact::plan::{Prepared, Reason};

/// ANSI colour only on a terminal, and never with NO_COLOR set.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    colour: bool,
}

impl Style {
    pub fn detect() -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            colour: !no_color && io::stdout().is_terminal(),
        }
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    pub fn level(&self, l: Level) -> String {
        let text = l.as_str().to_uppercase();
        match l {
            Level::Ok => self.paint("1;32", &text),
            Level::Notice => self.paint("1;36", &text),
            Level::Caution => self.paint("1;33", &text),
            Level::Block => self.paint("1;31", &text),
        }
    }

    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }

    pub fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
}

pub fn write_report(w: &mut dyn Write, p: &Prepared, r: &Report, style: Style) -> io::Result<()> {
    let c = &r.audience;
    let suffix = match r.verdict {
        Level::Caution | Level::Block => format!(" ({})", r.verdict_note()),
        Level::Ok | Level::Notice => String::new(),
    };
    writeln!(
        w,
        "{} {}{}: {} recipients ({} personalised, {} generic)",
        style.bold("verdict:"),
        style.level(r.verdict),
        suffix,
        c.recipients(),
        c.personalised,
        c.generic
    )?;
    writeln!(w)?;
    writeln!(w, "{}", style.bold("fields used"))?;
    if r.fields.is_empty() {
        writeln!(w, "  (none: every recipient gets the same message)")?;
    }
    let width = r
        .fields
        .iter()
        .map(|f| f.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let places: Vec<String> = r
        .fields
        .iter()
        .map(|f| {
            let places: Vec<&str> = f.places.iter().map(|p| p.as_str()).collect();
            let inferred = if f.inferred { " (inferred)" } else { "" };
            format!("{}{inferred}", places.join(", "))
        })
        .collect();
    let places_width = places.iter().map(String::len).max().unwrap_or(0);
    for (f, places) in r.fields.iter().zip(&places) {
        writeln!(
            w,
            "  {:width$}  {:<16}  {places:places_width$}  {}",
            f.name,
            f.class.as_str(),
            f.source_words()
        )?;
    }
    writeln!(w)?;
    writeln!(
        w,
        "{} {}",
        style.bold("audience"),
        p.audience.header.path.display()
    )?;
    for m in &p.audience.header.missing {
        let level = if m.level == "error" {
            style.paint("1;31", "ERROR")
        } else {
            style.level(Level::Notice)
        };
        writeln!(w, "  {level} {m}")?;
    }
    // Consent the file answers for everyone: the reason stands where a column would.
    for k in &p.audience.header.constants {
        writeln!(
            w,
            "  {} {} is \"{}\" for every row: {}",
            style.level(Level::Notice),
            k.role.default_column(),
            k.value,
            k.reason
        )?;
    }
    writeln!(w, "  {:<28}{:>9}", "rows", c.rows)?;
    writeln!(w, "  {:<28}{:>9}", "personalised", c.personalised)?;
    writeln!(w, "  {:<28}{:>9}", "generic", c.generic)?;
    writeln!(w, "  {:<28}{:>9}", "excluded", c.excluded_total())?;
    for reason in Reason::ALL {
        let n = c.excluded(reason);
        if n > 0 {
            writeln!(w, "    {:<26}{:>9}", reason.key(), n)?;
        }
    }
    writeln!(w)?;
    writeln!(w, "{}", style.bold("findings"))?;
    if r.findings.is_empty() {
        writeln!(w, "  none")?;
    }
    for f in &r.findings {
        writeln!(w, "  {:<8} {}: {}", style.level(f.level), f.rule, f.message)?;
        if let Some(reason) = &f.reason {
            writeln!(w, "           acknowledged: {reason}")?;
        }
        writeln!(w, "           {} {}", style.dim("instead:"), f.alternative)?;
    }
    if !r.self_check.is_empty() {
        writeln!(w)?;
        writeln!(w, "{}", style.bold("self-check failed"))?;
        for m in &r.self_check {
            writeln!(
                w,
                "  line {}: the {} {} part renders differently from the whole row than from the fields found; \
                 the field finder missed a field, so this report may under-report",
                m.line, m.variant, m.part
            )?;
        }
    }
    Ok(())
}

/// Rows skipped before or during rendering, by file and line: never by content.
pub fn write_row_warnings(
    w: &mut dyn Write,
    p: &Prepared,
    problems: &[RowProblem],
    limit: usize,
) -> io::Result<()> {
    let file = p.audience.header.path.display();
    let mut lines: Vec<(u64, String)> = p
        .audience
        .malformed
        .iter()
        .map(|m| {
            (
                m.line,
                format!("{}: {}", Reason::MalformedRow.key(), m.reason),
            )
        })
        .chain(
            problems
                .iter()
                .map(|x| (x.line, format!("{}: {}", x.reason, x.detail))),
        )
        .collect();
    lines.sort();
    for (line, text) in lines.iter().take(limit) {
        writeln!(w, "warning: {file}:{line}: skipped: {text}")?;
    }
    if lines.len() > limit {
        writeln!(
            w,
            "warning: … and {} more skipped rows",
            lines.len() - limit
        )?;
    }
    Ok(())
}
