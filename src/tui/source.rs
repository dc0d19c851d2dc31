//! The Template screen's sources: the campaign's subject and preheader and its template
//! files as written, which files each one extends, includes or imports, and where in the
//! text a customer field is used (to colour it by class).
//!
//! This is a scan of the text for display only; which fields a campaign uses is decided by
//! the core's AST walker (`Templates::usage`), and only names it found are marked here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tact::plan::Prepared;
use tact::schema::FieldClass;

/// One file (or the subject and preheader) as the Template screen shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub label: String,
    /// What `e` opens: the template file, or the campaign file for the subject.
    pub path: PathBuf,
    pub text: String,
    /// "extends base.txt.tera", "imports macros.html.tera", …
    pub uses: Vec<String>,
}

/// A run of one line of source: plain, or a customer field of some class.
pub type Run = (String, Option<FieldClass>);

/// The subject and preheader, then the text and HTML templates, then every file they pull
/// in (transitively), each once.
pub fn sources(p: &Prepared) -> Vec<SourceFile> {
    let c = &p.campaign;
    let mut out = vec![SourceFile {
        label: "subject and preheader".to_string(),
        path: c.path.clone(),
        text: format!("subject   = {}\npreheader = {}", c.subject, c.preheader),
        uses: vec!["the subject and preheader keys of the campaign file".to_string()],
    }];
    let dir = &p.templates.dir;
    let mut queue: Vec<String> = std::iter::once(p.templates.text.clone())
        .chain(p.templates.html.clone())
        .collect();
    let mut seen: Vec<String> = Vec::new();
    while !queue.is_empty() {
        let name = queue.remove(0);
        if seen.contains(&name) {
            continue;
        }
        seen.push(name.clone());
        let path = dir.join(&name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
        let refs = references(&text);
        let uses = refs.iter().map(|(verb, f)| format!("{verb} {f}")).collect();
        queue.extend(refs.into_iter().map(|(_, f)| f));
        out.push(SourceFile {
            label: name,
            path,
            text,
            uses,
        });
    }
    out
}

/// A path for the screen: `a/b/../c` shown as `a/c` (lexically; nothing is resolved).
pub fn tidy(path: &Path) -> String {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.iter().collect::<PathBuf>().display().to_string()
}

/// `{% extends "x" %}`, `{% include "x" %}` and `{% import "x" as y %}` tags, in order.
pub fn references(text: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("{%") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find("%}") else { break };
        let tag = rest[..end].trim_matches(|c: char| c == '-' || c.is_whitespace());
        for (kw, verb) in [
            ("extends", "extends"),
            ("include", "includes"),
            ("import", "imports"),
        ] {
            let Some(arg) = tag.strip_prefix(kw) else {
                continue;
            };
            let arg = arg.trim_start();
            let Some(q) = arg.chars().next().filter(|c| matches!(c, '"' | '\'' | '`')) else {
                continue;
            };
            if let Some(name) = arg[1..].split(q).next() {
                out.push((verb, name.to_string()));
            }
        }
        rest = &rest[end..];
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Text,
    Tag,
    Comment,
    Str(char),
}

/// Splits `text` into lines of runs, marking each identifier inside a `{{ }}` or `{% %}`
/// tag that names a customer field (not attributes, filters, tests, function or macro
/// names, keyword arguments or assignment targets).
pub fn highlight(text: &str, fields: &HashMap<String, FieldClass>) -> Vec<Vec<Run>> {
    let chars: Vec<char> = text.chars().collect();
    let mut lines: Vec<Vec<Run>> = vec![Vec::new()];
    let mut plain = String::new();
    let flush = |plain: &mut String, lines: &mut Vec<Vec<Run>>| {
        if !plain.is_empty()
            && let Some(l) = lines.last_mut()
        {
            l.push((std::mem::take(plain), None));
        }
    };
    let mut mode = Mode::Text;
    let mut i = 0;
    let at = |i: usize, s: &str| {
        s.chars()
            .enumerate()
            .all(|(k, c)| chars.get(i + k) == Some(&c))
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            flush(&mut plain, &mut lines);
            lines.push(Vec::new());
            i += 1;
            continue;
        }
        match mode {
            Mode::Text if at(i, "{{") || at(i, "{%") || at(i, "{#") => {
                mode = if chars[i + 1] == '#' {
                    Mode::Comment
                } else {
                    Mode::Tag
                };
                plain.push(c);
                plain.push(chars[i + 1]);
                i += 2;
                continue;
            }
            Mode::Text => {}
            Mode::Comment if at(i, "#}") => {
                plain.push_str("#}");
                mode = Mode::Text;
                i += 2;
                continue;
            }
            Mode::Comment => {}
            Mode::Str(q) if c == q => mode = Mode::Tag,
            Mode::Str(_) => {}
            Mode::Tag if at(i, "}}") || at(i, "%}") => {
                plain.push(c);
                plain.push(chars[i + 1]);
                mode = Mode::Text;
                i += 2;
                continue;
            }
            Mode::Tag if matches!(c, '"' | '\'' | '`') => mode = Mode::Str(c),
            Mode::Tag if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let class = fields.get(&word).filter(|_| is_variable(&chars, start, i));
                match class {
                    Some(class) => {
                        flush(&mut plain, &mut lines);
                        if let Some(l) = lines.last_mut() {
                            l.push((word, Some(*class)));
                        }
                    }
                    None => plain.push_str(&word),
                }
                continue;
            }
            Mode::Tag => {}
        }
        plain.push(c);
        i += 1;
    }
    flush(&mut plain, &mut lines);
    lines
}

/// Whether the identifier at `start..end` is read as a variable, judging by its neighbours.
fn is_variable(chars: &[char], start: usize, end: usize) -> bool {
    let before: String = chars[..start]
        .iter()
        .rev()
        .skip_while(|c| c.is_whitespace())
        .take(3)
        .collect::<String>()
        .chars()
        .rev()
        .collect();
    let after: String = chars[end..]
        .iter()
        .skip_while(|c| c.is_whitespace())
        .take(2)
        .collect();
    let attribute = before.ends_with('.') || before.ends_with("::");
    let filter = before.ends_with('|');
    let test = chars[..start]
        .iter()
        .collect::<String>()
        .trim_end()
        .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .is_some_and(|w| w == "is");
    let call = after.starts_with('(') || after.starts_with("::");
    let assigned = after.starts_with('=') && !after.starts_with("==");
    !(attribute || filter || test || call || assigned)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fields() -> HashMap<String, FieldClass> {
        HashMap::from([
            ("first_name".to_string(), FieldClass::Declared),
            ("postcode".to_string(), FieldClass::QuasiIdentifier),
            ("title".to_string(), FieldClass::Declared),
        ])
    }

    fn marked(text: &str) -> Vec<(String, FieldClass)> {
        highlight(text, &fields())
            .into_iter()
            .flatten()
            .filter_map(|(s, c)| c.map(|c| (s, c)))
            .collect()
    }

    fn joined(text: &str) -> String {
        highlight(text, &fields())
            .into_iter()
            .map(|l| l.into_iter().map(|(s, _)| s).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn fields_in_tags_are_marked_and_text_is_kept_whole() {
        let t = "Hi first_name {{ first_name }},\n{% if postcode %}near {{ postcode | upper }}{% endif %}";
        assert_eq!(joined(t), t);
        assert_eq!(
            marked(t),
            [
                ("first_name".to_string(), FieldClass::Declared),
                ("postcode".to_string(), FieldClass::QuasiIdentifier),
                ("postcode".to_string(), FieldClass::QuasiIdentifier),
            ]
        );
    }

    #[test]
    fn strings_comments_filters_attributes_calls_and_targets_are_not_fields() {
        for t in [
            r#"{{ "first_name" }}"#,
            "{# first_name #}",
            "{{ x | title }}",
            "{{ user.first_name }}",
            "{{ first_name(x=1) }}",
            "{{ ui::first_name() }}",
            "{% set first_name = 1 %}",
            "{{ ui::button(first_name=\"x\") }}",
            "{% if x is first_name %}{% endif %}",
        ] {
            assert_eq!(marked(t), [], "{t}");
            assert_eq!(joined(t), t);
        }
        // A field used as an argument value still is one.
        assert_eq!(marked("{{ f(x=first_name) }}").len(), 1);
    }

    #[test]
    fn a_tag_may_span_lines() {
        let lines = highlight("{{\n  first_name\n}}", &fields());
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[1][1],
            ("first_name".to_string(), Some(FieldClass::Declared))
        );
    }

    #[test]
    fn paths_are_tidied_lexically() {
        assert_eq!(
            tidy(Path::new(
                "sample-data/campaigns/../../templates/w.txt.tera"
            )),
            "templates/w.txt.tera"
        );
        assert_eq!(tidy(Path::new("../t/./x")), "../t/x");
    }

    #[test]
    fn references_name_extends_includes_and_imports() {
        let t = "{% extends \"base.txt.tera\" %}\n{%- import 'macros.html.tera' as ui -%}\n{% include \"footer.tera\" %}{% if x %}{% endif %}";
        assert_eq!(
            references(t),
            [
                ("extends", "base.txt.tera".to_string()),
                ("imports", "macros.html.tera".to_string()),
                ("includes", "footer.tera".to_string()),
            ]
        );
    }
}
