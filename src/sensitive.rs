//! The `sensitive-value` rule's observations (DESIGN §8): which recipients' values of the
//! fields a campaign uses hold a term of the sensitive-terms lexicon, and where such a
//! value would reach them.
//!
//! The subject and body are judged on the rendered output, not on the template: a value
//! counts for a place only when the walker found its field there *and* the matched term
//! is in what that recipient's render shows. A value a template leaves out
//! (`{% if not last_viewed_product is sensitive %}`, or any other branch) does not count,
//! however the template is written. The segment is judged on who it selects: a recipient
//! it picks whose value of a segment field holds a term.

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;

use crate::audience::ColumnData;
use crate::lexicon::{Lexicon, Mask, padded_words};
use crate::plan::{FieldInfo, Prepared};
use crate::schema::FieldType;
use crate::template::{Place, Rendered};

/// How many example rows a finding names.
pub const EXAMPLES: usize = 5;

/// A field whose values are scanned, with each row's categories.
#[derive(Debug)]
pub struct Scanned {
    pub name: String,
    pub places: BTreeSet<Place>,
    masks: Vec<Mask>,
}

/// What one place showed, over all recipients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub fields: BTreeSet<String>,
    pub recipients: usize,
    /// Recipients per category key.
    pub categories: BTreeMap<String, usize>,
    /// (row index, category mask), the first rows in file order.
    pub examples: Vec<(usize, Mask)>,
}

impl Seen {
    fn add(&mut self, lex: &Lexicon, row: usize, mask: Mask, fields: &[&str]) {
        self.recipients += 1;
        for c in lex.of(mask) {
            *self.categories.entry(c.key.clone()).or_default() += 1;
        }
        self.fields.extend(fields.iter().map(|f| (*f).to_string()));
        // Rows come in file order within one accumulator; `merge` keeps the first overall.
        if self.examples.len() < EXAMPLES {
            self.examples.push((row, mask));
        }
    }

    pub fn merge(&mut self, other: Seen) {
        self.recipients += other.recipients;
        for (k, n) in other.categories {
            *self.categories.entry(k).or_default() += n;
        }
        self.fields.extend(other.fields);
        self.examples.extend(other.examples);
        self.examples.sort_unstable();
        self.examples.truncate(EXAMPLES);
    }
}

/// A person's name is not scanned: someone called Faith, Grace or Gay reveals no belief
/// or orientation, and their own name is what they expect to read.
fn is_person_name(field: &str) -> bool {
    const NAME_WORDS: [&str; 14] = [
        "name",
        "first",
        "last",
        "full",
        "given",
        "family",
        "middle",
        "nick",
        "nickname",
        "surname",
        "forename",
        "preferred",
        "display",
        "customer",
    ];
    let words = crate::names::words(field);
    words
        .iter()
        .any(|w| ["name", "surname", "forename", "nickname"].contains(&w.as_str()))
        && words.iter().all(|w| NAME_WORDS.contains(&w.as_str()))
}

/// The fields that are not the address, a person's name or a special-category field,
/// with every row's categories.
pub fn scan(p: &Prepared) -> Vec<Scanned> {
    let lex = &p.schema.lexicon;
    let email = p
        .audience
        .header
        .names
        .get(p.audience.header.email)
        .cloned()
        .unwrap_or_default();
    p.fields
        .iter()
        // A special-category field blocks for any use already (`special-category`).
        .filter(|f| f.class.class() != crate::schema::FieldClass::Special)
        .filter(|f| f.name != email && !is_person_name(&f.name))
        .filter_map(|f: &FieldInfo| {
            let col = p.audience.column(&f.name)?;
            Some(Scanned {
                name: f.name.clone(),
                places: f.places.clone(),
                masks: masks(lex, &col.data, f.ty),
            })
        })
        .filter(|s| s.masks.iter().any(|m| *m != 0))
        .collect()
}

/// Each row's categories: once per distinct value for a dictionary column, else per row
/// on all cores. In a column of another type only the values that type does not accept
/// are read: the type is the schema's word or a guess from most values, and neither
/// keeps "Maternity rain parka" from printing.
fn masks(lex: &Lexicon, data: &ColumnData, ty: FieldType) -> Vec<Mask> {
    let judge = |v: &str| {
        // No term is shorter than two letters in a row; numbers and dates have none, so
        // most typed values are passed over without parsing them.
        let wordy = !v.is_ascii()
            || v.as_bytes()
                .windows(2)
                .any(|w| w[0].is_ascii_alphabetic() && w[1].is_ascii_alphabetic());
        if ty == FieldType::Text || (wordy && !ty.accepts(v)) {
            lex.classify(v)
        } else {
            0
        }
    };
    match data.dictionary() {
        Some((values, codes)) => {
            let per: Vec<Mask> = values.iter().map(|v| judge(v)).collect();
            codes.iter().map(|c| per[usize::from(*c)]).collect()
        }
        None => (0..data.len())
            .into_par_iter()
            .map(|r| judge(data.get(r)))
            .collect(),
    }
}

/// What a recipient's render shows of their sensitive values: the categories it showed
/// in the subject (or preheader) and in the body.
#[allow(clippy::too_many_arguments)]
pub fn observe(
    lex: &Lexicon,
    p: &Prepared,
    keys: &crate::state::Keys,
    scanned: &[Scanned],
    stand_ins: &StandIns,
    row: usize,
    rendered: &Rendered,
    subject: &mut Seen,
    body: &mut Seen,
) {
    let hits: Vec<&Scanned> = scanned.iter().filter(|s| s.masks[row] != 0).collect();
    if hits.is_empty() {
        return;
    }
    let mut head: Option<String> = None;
    let mut text: Option<String> = None;
    let (mut in_subject, mut in_body) = (0, 0);
    let (mut subject_fields, mut body_fields) = (Vec::new(), Vec::new());
    for s in hits {
        let Some(col) = p.audience.column(&s.name) else {
            continue;
        };
        let phrases = lex.phrases_in(col.data.get(row));
        let shown = |out: &str| -> Mask {
            phrases
                .iter()
                .filter(|(ph, _)| out.contains(&format!(" {ph} ")))
                .fold(0, |m, (_, bits)| m | bits)
        };
        if s.places.contains(&Place::Subject) {
            let h = head.get_or_insert_with(|| {
                padded_words(&format!("{}\n{}", rendered.subject, rendered.preheader))
            });
            let m = shown(h);
            if m != 0 {
                in_subject |= m;
                subject_fields.push(s.name.as_str());
            }
        }
        if s.places.contains(&Place::Body) {
            let b = text.get_or_insert_with(|| {
                padded_words(&format!(
                    "{}\n{}",
                    rendered.text,
                    rendered.html.as_deref().unwrap_or("")
                ))
            });
            let m = shown(b);
            if m != 0 {
                in_body |= m;
                body_fields.push(s.name.as_str());
            }
        }
    }
    // Printing is not the only way to show a value: a branch on it, a cut or disguised
    // copy, its length. Render again with each matched value replaced by a stand-in of
    // the same categories: whatever changes was decided by more than the category, so
    // it counts where it changed. The recommended guard (`is sensitive`) gives the
    // stand-in the same branch, so a guarded template stays clean.
    let replaced: Vec<&Scanned> = scanned
        .iter()
        .filter(|s| s.masks[row] != 0)
        .filter(|s| s.places.contains(&Place::Subject) || s.places.contains(&Place::Body))
        .collect();
    if !replaced.is_empty() {
        let stand: Vec<(&str, String)> = replaced
            .iter()
            .filter_map(|s| Some((s.name.as_str(), stand_ins.for_mask(lex, s.masks[row])?)))
            .collect();
        let fields: Vec<(&str, &str)> = p
            .render_fields(row)
            .into_iter()
            .map(|(name, v)| {
                let alt = stand.iter().find(|(n, _)| *n == name);
                (name, alt.map_or(v, |(_, a)| a.as_str()))
            })
            .collect();
        let (vars, _) = p.tool_vars(keys, row, true);
        let alt = p.templates.render(&vars, &fields).ok();
        let head_changed = alt
            .as_ref()
            .is_none_or(|a| a.subject != rendered.subject || a.preheader != rendered.preheader);
        let body_changed = alt
            .as_ref()
            .is_none_or(|a| a.text != rendered.text || a.html != rendered.html);
        for s in &replaced {
            if !stand.iter().any(|(n, _)| *n == s.name) {
                continue;
            }
            if head_changed && s.places.contains(&Place::Subject) {
                in_subject |= s.masks[row];
                if !subject_fields.contains(&s.name.as_str()) {
                    subject_fields.push(s.name.as_str());
                }
            }
            if body_changed && s.places.contains(&Place::Body) {
                in_body |= s.masks[row];
                if !body_fields.contains(&s.name.as_str()) {
                    body_fields.push(s.name.as_str());
                }
            }
        }
    }
    if in_subject != 0 {
        subject.add(lex, row, in_subject, &subject_fields);
    }
    if in_body != 0 {
        body.add(lex, row, in_body, &body_fields);
    }
}

/// Values that reveal given categories and nothing else, and that no real value spells:
/// "zz ovulation zz rosary" for pregnancy and religion. Made once per check.
#[derive(Debug, Clone)]
pub struct StandIns {
    pure: Vec<Option<String>>,
}

impl StandIns {
    pub fn new(lex: &Lexicon) -> StandIns {
        let pure = lex
            .pure_terms()
            .into_iter()
            .map(|t| t.map(|t| format!("zz {t}")))
            .collect();
        StandIns { pure }
    }

    /// None when a category has no term of its own, or the joined terms would read as
    /// another category: that row is then judged by what it prints alone.
    pub fn for_mask(&self, lex: &Lexicon, mask: Mask) -> Option<String> {
        let mut parts = Vec::new();
        for (i, t) in self.pure.iter().enumerate() {
            if mask & (1 << i) != 0 {
                parts.push(t.as_deref()?);
            }
        }
        let joined = parts.join(" ");
        (lex.classify(&joined) == mask).then_some(joined)
    }
}

/// The recipients a segment selects whose value of a segment field holds a term.
pub fn selected(lex: &Lexicon, scanned: &[Scanned], rows: impl Iterator<Item = usize>) -> Seen {
    let mut seen = Seen::default();
    let in_segment: Vec<&Scanned> = scanned
        .iter()
        .filter(|s| s.places.contains(&Place::Segment))
        .collect();
    if in_segment.is_empty() {
        return seen;
    }
    for row in rows {
        let mut mask = 0;
        let mut fields = Vec::new();
        for s in &in_segment {
            if s.masks[row] != 0 {
                mask |= s.masks[row];
                fields.push(s.name.as_str());
            }
        }
        if mask != 0 {
            seen.add(lex, row, mask, &fields);
        }
    }
    seen
}

/// The segment's quoted texts that hold a term (`last_viewed_product == "Pregnancy
/// test"`): a segment written to pick people by a sensitive value, whoever it selects today.
pub fn segment_terms(lex: &Lexicon, segment: &str) -> Mask {
    let mut mask = 0;
    let mut rest = segment;
    while let Some(start) = rest.find(['"', '\'', '`']) {
        let quote = rest[start..].chars().next().unwrap_or('"');
        let after = &rest[start + 1..];
        let Some(end) = after.find(quote) else { break };
        mask |= lex.classify(&after[..end]);
        rest = &after[end + 1..];
    }
    mask
}

/// "line 12 (pregnancy or fertility), line 40 (health)".
pub fn examples(lex: &Lexicon, p: &Prepared, seen: &Seen) -> String {
    seen.examples
        .iter()
        .take(EXAMPLES)
        .map(|(row, mask)| {
            let cats: Vec<&str> = lex.of(*mask).map(|c| c.label.as_str()).collect();
            format!("line {} ({})", p.audience.line(*row), cats.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// "pregnancy or fertility (3), health (2)".
pub fn by_category(lex: &Lexicon, seen: &Seen) -> String {
    lex.categories()
        .iter()
        .filter_map(|c| {
            seen.categories
                .get(&c.key)
                .map(|n| format!("{}: {n}", c.label))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_not_scanned_but_product_names_are() {
        for n in [
            "first_name",
            "LastName",
            "customer_name",
            "surname",
            "Full Name",
            "nickname",
        ] {
            assert!(is_person_name(n), "{n}");
        }
        for n in [
            "product_name",
            "last_viewed_product",
            "category",
            "brand_name",
            "notes",
        ] {
            assert!(!is_person_name(n), "{n}");
        }
    }

    #[test]
    fn every_category_and_every_pair_has_a_stand_in_of_exactly_its_categories() {
        let lex = Lexicon::shared();
        let stand = StandIns::new(lex);
        let n = lex.categories().len();
        for a in 0..n {
            for b in a..n {
                let mask = (1 << a) | (1 << b);
                let s = stand.for_mask(lex, mask).expect("a stand-in");
                assert_eq!(lex.classify(&s), mask, "{s}");
            }
        }
    }

    #[test]
    fn quoted_terms_in_a_segment() {
        let lex = Lexicon::shared();
        let m = segment_terms(
            lex,
            r#"last_viewed_product == "Pregnancy test" or country == "GB""#,
        );
        assert_eq!(
            lex.of(m).map(|c| c.key.as_str()).collect::<Vec<_>>(),
            ["pregnancy"]
        );
        let m = segment_terms(lex, "tag in ['Rosary beads', \"Kids' boots\"]");
        assert_eq!(
            lex.of(m).map(|c| c.key.as_str()).collect::<Vec<_>>(),
            ["children", "religion"]
        );
        assert_eq!(
            segment_terms(lex, r#"country == "GB" and note is containing("kitchen")"#),
            0
        );
        assert_eq!(segment_terms(lex, r#"x == "unterminated"#), 0);
    }
}
