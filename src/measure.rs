//! Measured re-identification risk (DESIGN §8): over the recipients who would see a
//! combination of fields, how many share each combination of values, how many are alone
//! in their group (`unique`), and the smallest group. Coarser versions of the fields
//! (a postcode district, a birth year, an age band, an amount band) are measured the same
//! way, so the report can say what a generalisation would buy.
//!
//! Groups are counted by hashing each recipient's value tuple into a 64-bit key, one pass
//! over the recipients per measurement, the measurements side by side on all cores. A
//! 64-bit collision would merge two groups (never split one); over a million recipients
//! its chance is below one in ten million.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use chrono::{DateTime, Datelike, Utc};
use rayon::prelude::*;
use serde::Serialize;

use crate::audience::ColumnData;
use crate::schema::FieldType;

/// How a field's value is read for grouping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Coarse {
    Exact,
    /// A postcode's outward code (`BS8 9RR` → `BS8`; the first three digits of a numeric one).
    District,
    /// A postcode's area (`BS8` → `BS`; the first two digits of a numeric one).
    Area,
    /// The year of a date.
    Year,
    /// A ten-year age band, from a birth date or an age.
    AgeBand,
    /// An amount in a 1-2-5 band (100–199, 200–499, 500–999, …).
    AmountBand,
}

impl Coarse {
    /// "an age band instead of the birth date".
    fn words(self, field: &str) -> String {
        let f = field.replace('_', " ");
        match self {
            Coarse::Exact => f,
            Coarse::District => {
                format!("the district (the part before the space) instead of the full {f}")
            }
            Coarse::Area => {
                format!("the area (its leading letters or first two digits) instead of the {f}")
            }
            Coarse::Year => format!("the year instead of the full {f}"),
            Coarse::AgeBand => format!("a ten-year age band instead of the {f}"),
            Coarse::AmountBand => {
                format!("a band (such as 100-199 or 200-499) instead of the exact {f}")
            }
        }
    }
}

/// The coarser readings worth measuring for a field, finest first.
pub fn coarsenings(name: &str, ty: FieldType) -> Vec<Coarse> {
    let words = crate::names::words(name);
    let has = |w: &[&str]| words.iter().any(|x| w.contains(&x.as_str()));
    let postal = has(&[
        "postcode",
        "zip",
        "zipcode",
        "postal",
        "plz",
        "postnummer",
        "cp",
    ]);
    let birth = has(&["birth", "dob", "born", "birthday", "birthdate"]);
    let age = has(&["age"]);
    match ty {
        _ if postal => vec![Coarse::District, Coarse::Area],
        FieldType::Date if birth => vec![Coarse::Year, Coarse::AgeBand],
        FieldType::Date => vec![Coarse::Year],
        FieldType::Number if age => vec![Coarse::AgeBand],
        FieldType::Number => vec![Coarse::AmountBand],
        _ => Vec::new(),
    }
}

/// How many recipients share each combination of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Groups {
    pub recipients: usize,
    pub unique: usize,
    pub smallest_group: usize,
}

impl Groups {
    /// "8,412 of 9,030 recipients (93%)".
    pub fn share(&self) -> String {
        format!(
            "{} of {} recipients ({})",
            thousands(self.unique),
            thousands(self.recipients),
            percent(self.unique, self.recipients)
        )
    }
}

/// A field as the measurement reads it.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub data: &'a ColumnData,
    pub coarse: Coarse,
}

/// Groups of `rows` by the values of `cols`.
pub fn groups(rows: &[u32], cols: &[Input<'_>], now: DateTime<Utc>) -> Groups {
    let mut sizes: HashMap<u64, u32, BuildHasherDefault<Prehashed>> =
        HashMap::with_capacity_and_hasher(rows.len().min(1 << 20), Default::default());
    let mut buf = Vec::with_capacity(64);
    for &row in rows {
        let mut h = std::hash::DefaultHasher::new();
        for c in cols {
            buf.clear();
            key(c.data.get(row as usize), c.coarse, now, &mut buf);
            h.write(&buf);
            // A separator no UTF-8 text contains: ("ab", "c") and ("a", "bc") differ.
            h.write_u8(0xff);
        }
        *sizes.entry(h.finish()).or_default() += 1;
    }
    Groups {
        recipients: rows.len(),
        unique: sizes.values().filter(|n| **n == 1).count(),
        smallest_group: sizes.values().min().map_or(0, |n| *n as usize),
    }
}

/// A field of a measured combination.
#[derive(Debug, Clone)]
pub struct Field<'a> {
    pub name: String,
    pub ty: FieldType,
    pub data: &'a ColumnData,
}

/// A combination measured as it is and with each field generalised or left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Measured {
    pub fields: Vec<String>,
    pub recipients: usize,
    pub unique: usize,
    pub smallest_group: usize,
    /// Safer versions of the combination, fewest unique first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub generalised: Vec<Generalised>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Generalised {
    /// In words: "a ten-year age band instead of the birth date".
    pub instead: String,
    /// Field → how it is read; a field left out is `drop`.
    pub fields: std::collections::BTreeMap<String, String>,
    pub unique: usize,
    pub smallest_group: usize,
}

impl Measured {
    /// "8,412 of 9,030 recipients (93%) are the only one with their postcode and birth date".
    pub fn sentence(&self) -> String {
        let g = Groups {
            recipients: self.recipients,
            unique: self.unique,
            smallest_group: self.smallest_group,
        };
        let names: Vec<String> = self.fields.iter().map(|f| f.replace('_', " ")).collect();
        let their = match names.as_slice() {
            [] => String::new(),
            [one] => one.clone(),
            [init @ .., last] => format!("{} and {last}", init.join(", ")),
        };
        format!(
            "{} are the only one with their {their} (smallest group: {})",
            g.share(),
            self.smallest_group
        )
    }

    /// "a ten-year age band instead of the birth date: 2% unique; …", best first, only
    /// those that leave fewer recipients alone than the combination as it is.
    pub fn alternatives(&self, at_most: usize) -> String {
        self.generalised
            .iter()
            .filter(|g| g.unique < self.unique)
            .take(at_most)
            .map(|g| {
                format!(
                    "{}: {} unique",
                    g.instead,
                    percent(g.unique, self.recipients)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Measures `fields` over `rows`, with the generalisations worth showing: each field
/// coarsened on its own, every field at its coarsest, and each field left out.
pub fn measure(rows: &[u32], fields: &[Field<'_>], now: DateTime<Utc>) -> Measured {
    struct Spec {
        instead: String,
        reading: Vec<Option<Coarse>>,
    }
    let exact: Vec<Option<Coarse>> = fields.iter().map(|_| Some(Coarse::Exact)).collect();
    let mut specs = vec![Spec {
        instead: String::new(),
        reading: exact.clone(),
    }];
    let options: Vec<Vec<Coarse>> = fields.iter().map(|f| coarsenings(&f.name, f.ty)).collect();
    for (i, (f, opts)) in fields.iter().zip(&options).enumerate() {
        for c in opts {
            let mut reading = exact.clone();
            reading[i] = Some(*c);
            specs.push(Spec {
                instead: c.words(&f.name),
                reading,
            });
        }
    }
    let coarsest: Vec<Option<Coarse>> = options
        .iter()
        .map(|o| Some(o.last().copied().unwrap_or(Coarse::Exact)))
        .collect();
    if options.iter().filter(|o| !o.is_empty()).count() >= 2 {
        let words: Vec<String> = fields
            .iter()
            .zip(&options)
            .filter_map(|(f, o)| o.last().map(|c| c.words(&f.name)))
            .collect();
        specs.push(Spec {
            instead: words.join(" and "),
            reading: coarsest,
        });
    }
    if fields.len() >= 2 {
        for (i, f) in fields.iter().enumerate() {
            let mut reading = exact.clone();
            reading[i] = None;
            specs.push(Spec {
                instead: format!("leaving out the {}", f.name.replace('_', " ")),
                reading,
            });
        }
    }
    let measured: Vec<Groups> = specs
        .par_iter()
        .map(|s| {
            let cols: Vec<Input<'_>> = fields
                .iter()
                .zip(&s.reading)
                .filter_map(|(f, r)| {
                    r.map(|coarse| Input {
                        data: f.data,
                        coarse,
                    })
                })
                .collect();
            groups(rows, &cols, now)
        })
        .collect();
    let mut generalised: Vec<Generalised> = specs
        .iter()
        .zip(&measured)
        .skip(1)
        .map(|(s, g)| Generalised {
            instead: s.instead.clone(),
            fields: fields
                .iter()
                .zip(&s.reading)
                .map(|(f, r)| {
                    let how = match r {
                        None => "drop".to_string(),
                        Some(c) => serde_json::to_value(c)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                    };
                    (f.name.clone(), how)
                })
                .collect(),
            unique: g.unique,
            smallest_group: g.smallest_group,
        })
        .collect();
    generalised.sort_by(|a, b| {
        a.unique
            .cmp(&b.unique)
            .then(b.smallest_group.cmp(&a.smallest_group))
    });
    let g = measured[0];
    Measured {
        fields: fields.iter().map(|f| f.name.clone()).collect(),
        recipients: g.recipients,
        unique: g.unique,
        smallest_group: g.smallest_group,
        generalised,
    }
}

/// The bytes a value is grouped by: trimmed and ASCII-lowercased, then coarsened. A value
/// a coarsening cannot read (a date that is not one) is grouped as it is.
fn key(value: &str, coarse: Coarse, now: DateTime<Utc>, out: &mut Vec<u8>) {
    let v = value.trim();
    match coarse {
        Coarse::Exact => out.extend(v.bytes().map(|b| b.to_ascii_lowercase())),
        Coarse::District | Coarse::Area => {
            let d = district(v);
            let d = if coarse == Coarse::Area { area(&d) } else { d };
            out.extend(d.bytes());
        }
        Coarse::Year => match ymd(v) {
            Some((y, _, _)) => out.extend(y.to_le_bytes()),
            None => out.extend(v.bytes()),
        },
        Coarse::AgeBand => {
            let age = match ymd(v) {
                Some((y, m, d)) => {
                    let before = (now.month(), now.day()) < (m, d);
                    Some(i64::from(now.year()) - i64::from(y) - i64::from(before))
                }
                None => crate::schema::parse_number(v).map(|a| a.floor() as i64),
            };
            match age {
                Some(a) => out.extend(a.div_euclid(10).to_le_bytes()),
                None => out.extend(v.bytes()),
            }
        }
        Coarse::AmountBand => match crate::schema::parse_number(v) {
            Some(x) => out.extend(amount_band(x).to_le_bytes()),
            None => out.extend(v.bytes()),
        },
    }
}

/// Year, month, day of a `YYYY-MM-DD…` value (fast path) or any date tact reads.
fn ymd(v: &str) -> Option<(i32, u32, u32)> {
    let b = v.as_bytes();
    if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
        let y = v.get(0..4)?.parse().ok()?;
        let m = v.get(5..7)?.parse().ok()?;
        let d = v.get(8..10)?.parse().ok()?;
        return Some((y, m, d));
    }
    crate::consent::parse_time(v).map(|t| (t.year(), t.month(), t.day()))
}

fn district(v: &str) -> String {
    let up = v.to_uppercase();
    if let Some((out, _)) = up.split_once(char::is_whitespace) {
        return out.to_string();
    }
    let chars: Vec<char> = up.chars().filter(|c| c.is_alphanumeric()).collect();
    if chars.iter().all(char::is_ascii_digit) {
        return chars.iter().take(3).collect();
    }
    // A UK postcode written without its space: the inward code is its last three.
    if chars.len() >= 5 {
        return chars[..chars.len() - 3].iter().collect();
    }
    chars.into_iter().collect()
}

fn area(district: &str) -> String {
    if district.starts_with(|c: char| c.is_ascii_digit()) {
        return district.chars().take(2).collect();
    }
    district.chars().take_while(|c| c.is_alphabetic()).collect()
}

/// 1-2-5 bands: each decade split at 1, 2 and 5 (…, 100–199, 200–499, 500–999, …).
fn amount_band(x: f64) -> i64 {
    if x <= 0.0 || !x.is_finite() {
        return i64::MIN + i64::from(x < 0.0);
    }
    let e = x.log10().floor();
    let m = x / 10f64.powf(e);
    let step = if m < 2.0 {
        0
    } else if m < 5.0 {
        1
    } else {
        2
    };
    e as i64 * 3 + step
}

pub fn percent(n: usize, of: usize) -> String {
    if of == 0 {
        return "0%".into();
    }
    let p = (n as f64 * 100.0 / of as f64).round() as usize;
    match p {
        0 if n > 0 => "under 1%".into(),
        100 if n < of => "over 99%".into(),
        p => format!("{p}%"),
    }
}

pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The keys are hashes already: use them as they are.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        crate::consent::parse_time("2026-11-23T12:00:00Z").expect("date")
    }

    fn field<'a>(name: &str, ty: FieldType, data: &'a ColumnData) -> Field<'a> {
        Field {
            name: name.into(),
            ty,
            data,
        }
    }

    /// Households: every postcode + birth date pair is shared by exactly `size` people,
    /// except `alone` people who each have a pair of their own.
    #[test]
    fn households_share_their_group_by_construction() {
        let (households, size, alone) = (300, 3, 40);
        let mut pc = Vec::new();
        let mut bd = Vec::new();
        for h in 0..households {
            for _ in 0..size {
                pc.push(format!("BS{} {}AA", h % 90, h / 90));
                bd.push(format!("19{:02}-0{}-1{}", 50 + h % 40, 1 + h % 9, h % 10));
            }
        }
        for a in 0..alone {
            pc.push(format!("ZZ{a} 9ZZ"));
            bd.push("1980-01-01".into());
        }
        let pcs = ColumnData::from_values(pc.iter().map(String::as_str));
        let bds = ColumnData::from_values(bd.iter().map(String::as_str));
        let rows: Vec<u32> = (0..pc.len() as u32).collect();
        let m = measure(
            &rows,
            &[
                field("postcode", FieldType::Text, &pcs),
                field("birth_date", FieldType::Date, &bds),
            ],
            now(),
        );
        assert_eq!(m.recipients, households * size + alone);
        assert_eq!(m.unique, alone);
        assert_eq!(m.smallest_group, 1);
        assert!(
            m.sentence().starts_with(
                "40 of 940 recipients (4%) are the only one with their postcode and birth date"
            ),
            "{}",
            m.sentence()
        );
        // Leaving out the postcode: the 40 share one birth date, so nobody is alone in it.
        let drop_pc = m
            .generalised
            .iter()
            .find(|g| g.fields["postcode"] == "drop")
            .expect("postcode left out");
        assert_eq!(drop_pc.unique, 0, "{drop_pc:?}");
        // Households only, over a subset of rows (the personalised ones): nobody alone.
        let rows: Vec<u32> = (0..(households * size) as u32).collect();
        let m = measure(
            &rows,
            &[
                field("postcode", FieldType::Text, &pcs),
                field("birth_date", FieldType::Date, &bds),
            ],
            now(),
        );
        assert_eq!((m.unique, m.smallest_group), (0, size));
    }

    #[test]
    fn all_distinct_birth_dates_are_all_unique_and_an_age_band_is_not() {
        let days: Vec<String> = (0..2000)
            .map(|i| {
                (chrono::NaiveDate::from_ymd_opt(1950, 1, 1).expect("date")
                    + chrono::Days::new(i * 7))
                .to_string()
            })
            .collect();
        let col = ColumnData::from_values(days.iter().map(String::as_str));
        let rows: Vec<u32> = (0..2000).collect();
        let m = measure(&rows, &[field("birth_date", FieldType::Date, &col)], now());
        assert_eq!((m.unique, m.smallest_group), (2000, 1));
        let band = m
            .generalised
            .iter()
            .find(|g| g.fields["birth_date"] == "age-band")
            .expect("age band");
        assert_eq!(band.unique, 0);
        assert!(band.smallest_group > 50, "{band:?}");
        let year = m
            .generalised
            .iter()
            .find(|g| g.fields["birth_date"] == "year")
            .expect("year");
        assert_eq!(year.unique, 0);
        assert!(
            m.alternatives(1).contains("0% unique"),
            "{}",
            m.alternatives(1)
        );
    }

    #[test]
    fn coarse_readings() {
        let mut b = Vec::new();
        let k = |v: &str, c: Coarse, b: &mut Vec<u8>| {
            b.clear();
            key(v, c, now(), b);
            b.clone()
        };
        assert_eq!(k("bs8 9rr", Coarse::District, &mut b), b"BS8");
        assert_eq!(k("BS89RR", Coarse::District, &mut b), b"BS8");
        assert_eq!(k("BS8 9RR", Coarse::Area, &mut b), b"BS");
        assert_eq!(k("01067", Coarse::District, &mut b), b"010");
        assert_eq!(k("01067", Coarse::Area, &mut b), b"01");
        assert_eq!(k(" Bs8 9rr ", Coarse::Exact, &mut b), b"bs8 9rr");
        assert_eq!(
            k("1966-09-05", Coarse::AgeBand, &mut b),
            k("1960-12-24", Coarse::AgeBand, &mut b),
            "both 60-69 on 2026-11-23"
        );
        assert_ne!(
            k("1966-11-24", Coarse::AgeBand, &mut b),
            k("1966-11-23", Coarse::AgeBand, &mut b),
            "59 and 60"
        );
        assert_eq!(amount_band(150.0), amount_band(199.0));
        assert_ne!(amount_band(199.0), amount_band(200.0));
        assert_eq!(amount_band(200.0), amount_band(499.99));
        assert_eq!(thousands(8412), "8,412");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(percent(1, 1000), "under 1%");
        assert_eq!(percent(999, 1000), "over 99%");
    }

    proptest! {
        /// The hashed count equals a brute-force one: for each recipient, compare their
        /// values with everyone else's.
        #[test]
        fn unique_equals_a_brute_force_count(
            values in proptest::collection::vec((0u8..6, 0u8..4, "[ab ]{0,2}"), 0..120),
            take in proptest::collection::vec(any::<bool>(), 120),
        ) {
            let a: Vec<String> = values.iter().map(|v| format!("P{}", v.0)).collect();
            let b: Vec<String> = values.iter().map(|v| format!("{}{}", v.1, v.2)).collect();
            let ca = ColumnData::from_values(a.iter().map(String::as_str));
            let cb = ColumnData::from_values(b.iter().map(String::as_str));
            let rows: Vec<u32> = (0..values.len() as u32).filter(|r| take[*r as usize]).collect();
            let g = groups(&rows, &[Input { data: &ca, coarse: Coarse::Exact }, Input { data: &cb, coarse: Coarse::Exact }], now());
            let norm = |s: &str| s.trim().to_ascii_lowercase();
            let tuple = |r: u32| (norm(&a[r as usize]), norm(&b[r as usize]));
            let sizes: Vec<usize> = rows.iter().map(|r| rows.iter().filter(|o| tuple(**o) == tuple(*r)).count()).collect();
            prop_assert_eq!(g.recipients, rows.len());
            prop_assert_eq!(g.unique, sizes.iter().filter(|n| **n == 1).count());
            prop_assert_eq!(g.smallest_group, sizes.iter().copied().min().unwrap_or(0));
        }
    }
}
