//! The sensitive-terms lexicon (DESIGN §8): the words and phrases whose presence in a
//! customer value reveals a GDPR Art. 9 category or a high-risk trait, and the matcher.
//!
//! The terms live in a data file (`src/lexicon/lexicon.toml`), built into the binary so a
//! check never depends on a file beside it. A schema's `[lexicon]` table adds terms to a
//! category; nothing can take one away.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

const BUILTIN: &str = include_str!("lexicon/lexicon.toml");
const LANGUAGES: [&str; 5] = ["en", "da", "de", "fr", "es"];

/// Longest phrase, in words, a schema may add: matching tries every run of words up to
/// the longest term, so the bound keeps a hostile schema from making every value slow.
pub const MAX_PHRASE_WORDS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A special category of GDPR Art. 9.
    Art9,
    /// Not Art. 9, but as intrusive to target or print (debt, gambling, bereavement, …).
    HighRisk,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    /// The JSON and schema key: `health`, `sexual_orientation`, …
    pub key: String,
    /// The words the report uses.
    pub label: String,
    pub kind: Kind,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCategory {
    label: String,
    kind: Kind,
    en: Vec<String>,
    da: Vec<String>,
    de: Vec<String>,
    fr: Vec<String>,
    es: Vec<String>,
}

/// A set of categories, one bit each (at most 32; the built-in file has 13 and a schema
/// cannot add categories).
pub type Mask = u32;

#[derive(Debug, Clone)]
pub struct Lexicon {
    categories: Vec<Category>,
    /// Normalised phrase (words joined by one space) → the categories it reveals.
    phrases: HashMap<String, Mask>,
    max_words: usize,
}

/// Why a term could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtendError {
    UnknownCategory {
        category: String,
        known: Vec<String>,
    },
    EmptyTerm {
        category: String,
    },
    TooLong {
        category: String,
        words: usize,
    },
}

impl std::fmt::Display for ExtendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExtendError::UnknownCategory { category, known } => write!(
                f,
                "[lexicon] `{category}` is not a category of the sensitive-terms lexicon{} (known: {})",
                crate::error::did_you_mean(category, known.iter().map(String::as_str)),
                known.join(", ")
            ),
            ExtendError::EmptyTerm { category } => {
                write!(f, "[lexicon] {category}: a term has no letters or digits")
            }
            ExtendError::TooLong { category, words } => write!(
                f,
                "[lexicon] {category}: a term of {words} words; terms have at most {MAX_PHRASE_WORDS}"
            ),
        }
    }
}

impl Lexicon {
    /// The lexicon built into tact, read once per process.
    pub fn shared() -> &'static Lexicon {
        static BUILT: std::sync::OnceLock<Lexicon> = std::sync::OnceLock::new();
        BUILT.get_or_init(Lexicon::parse_builtin)
    }

    /// A copy of the built-in lexicon, to extend.
    pub fn builtin() -> Lexicon {
        Lexicon::shared().clone()
    }

    fn parse_builtin() -> Lexicon {
        // The file is part of the source and tested; a broken one is a build defect.
        #[allow(clippy::expect_used)]
        let file: BTreeMap<String, FileCategory> =
            toml::from_str(BUILTIN).expect("src/lexicon/lexicon.toml is valid");
        let mut lex = Lexicon {
            categories: Vec::new(),
            phrases: HashMap::new(),
            max_words: 0,
        };
        for (key, c) in file {
            let bit = lex.categories.len();
            lex.categories.push(Category {
                key,
                label: c.label,
                kind: c.kind,
            });
            for term in [c.en, c.da, c.de, c.fr, c.es].iter().flatten() {
                lex.add(bit, term);
            }
        }
        lex
    }

    /// The built-in lexicon with a schema's additions.
    pub fn with(
        extra: &BTreeMap<String, Vec<String>>,
    ) -> std::result::Result<Lexicon, ExtendError> {
        let mut lex = Lexicon::builtin();
        lex.extend(extra)?;
        Ok(lex)
    }

    /// Adds terms to known categories; a term already there changes nothing.
    pub fn extend(
        &mut self,
        extra: &BTreeMap<String, Vec<String>>,
    ) -> std::result::Result<(), ExtendError> {
        for (category, terms) in extra {
            let Some(bit) = self.categories.iter().position(|c| &c.key == category) else {
                return Err(ExtendError::UnknownCategory {
                    category: category.clone(),
                    known: self.categories.iter().map(|c| c.key.clone()).collect(),
                });
            };
            for t in terms {
                let words = normalised_words(t).len();
                if words == 0 {
                    return Err(ExtendError::EmptyTerm {
                        category: category.clone(),
                    });
                }
                if words > MAX_PHRASE_WORDS {
                    return Err(ExtendError::TooLong {
                        category: category.clone(),
                        words,
                    });
                }
                self.add(bit, t);
            }
        }
        Ok(())
    }

    fn add(&mut self, bit: usize, term: &str) {
        let words = normalised_words(term);
        if words.is_empty() {
            return;
        }
        self.max_words = self.max_words.max(words.len());
        *self.phrases.entry(words.join(" ")).or_default() |= 1 << bit;
    }

    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    /// The categories of the bits set in `mask`, in lexicon order.
    pub fn of(&self, mask: Mask) -> impl Iterator<Item = &Category> {
        self.categories
            .iter()
            .enumerate()
            .filter(move |(i, _)| mask & (1 << i) != 0)
            .map(|(_, c)| c)
    }

    pub fn contains(&self, phrase: &str) -> bool {
        self.phrases
            .contains_key(&normalised_words(phrase).join(" "))
    }

    /// The categories `value` reveals: 0 when none.
    pub fn classify(&self, value: &str) -> Mask {
        self.hits(value).fold(0, |m, (_, bits)| m | bits)
    }

    /// Per category, the shortest of its terms that reveals that category alone (None
    /// when every term is shared): the parts `sensitive::StandIns` is made of.
    pub fn pure_terms(&self) -> Vec<Option<String>> {
        let mut best: Vec<Option<&String>> = vec![None; self.categories.len()];
        for (phrase, bits) in &self.phrases {
            if bits.count_ones() != 1 {
                continue;
            }
            let i = bits.trailing_zeros() as usize;
            let better = best[i].is_none_or(|b| (phrase.len(), phrase) < (b.len(), b));
            if better {
                best[i] = Some(phrase);
            }
        }
        best.into_iter().map(|b| b.cloned()).collect()
    }

    /// The normalised phrases of the lexicon found in `value`, with their categories.
    pub fn phrases_in(&self, value: &str) -> Vec<(String, Mask)> {
        self.hits(value).collect()
    }

    fn hits<'a>(&'a self, value: &str) -> impl Iterator<Item = (String, Mask)> + 'a {
        let mut out = Vec::new();
        let mut phrase = String::new();
        for words in readings(value) {
            for start in 0..words.len() {
                phrase.clear();
                for (n, w) in words[start..].iter().take(self.max_words).enumerate() {
                    if n > 0 {
                        phrase.push(' ');
                    }
                    phrase.push_str(w);
                    if let Some(&bits) = self.phrases.get(phrase.as_str()) {
                        out.push((phrase.clone(), bits));
                    }
                }
            }
        }
        out.into_iter()
    }
}

/// Words as the lexicon reads them: accents dropped (`Grossesse`, `grossesse` and
/// `GROSSESSE` alike; `bébé` reads `bebe`), lowercase, split at anything that is not a
/// letter or digit, and a final plural -s dropped (`Ovulation kits` holds `ovulation
/// kit`). The same function reads the terms, so both sides always agree.
pub fn normalised_words(text: &str) -> Vec<String> {
    if text.is_ascii() {
        return words_of(&text.to_ascii_lowercase());
    }
    words_of(&deunicode::deunicode(&as_read(text, false)).to_ascii_lowercase())
}

fn words_of(folded: &str) -> Vec<String> {
    folded
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(singular)
        .collect()
}

/// The ways a person may read `text`: its words (`normalised_words`), and, when it holds
/// an invisible character or words run together in camel case, its words split there
/// too: "Preg\u{200B}nancy" shows as `pregnancy`, "pregnancy\u{200B}test" and
/// "PregnancyTest" as `pregnancy test`, and each reading is matched.
fn readings(text: &str) -> Vec<Vec<String>> {
    let mut out = vec![normalised_words(text)];
    let camel = text
        .chars()
        .zip(text.chars().skip(1))
        .any(|(a, b)| a.is_lowercase() && b.is_uppercase());
    if camel || (!text.is_ascii() && text.chars().any(is_invisible)) {
        let split = as_read(text, true);
        out.push(words_of(&deunicode::deunicode(&split).to_ascii_lowercase()));
    }
    out
}

/// Characters that show nothing: format characters (zero-width space, joiners, soft
/// hyphen, bidi marks, word joiner, byte-order mark), variation selectors, tag
/// characters, the combining grapheme joiner and the Hangul fillers. Inside a word they
/// would cut it in two for a matcher while a reader sees it whole.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// A Cyrillic or Greek letter drawn like a Latin one, as that Latin letter: transliterated,
/// `р` would read `r` and `с` `s`, so "Маternitу" would pass for another word.
fn latin_lookalike(c: char) -> Option<char> {
    Some(match c {
        'а' | 'А' | 'α' | 'Α' => 'a',
        'В' | 'Β' => 'b',
        'с' | 'С' | 'ϲ' | 'Ϲ' => 'c',
        'ԁ' => 'd',
        'е' | 'Е' | 'Ε' => 'e',
        'һ' | 'Н' | 'Η' => 'h',
        'і' | 'І' | 'ι' | 'Ι' | 'Ӏ' => 'i',
        'ј' | 'Ј' => 'j',
        'к' | 'К' | 'κ' | 'Κ' => 'k',
        'ӏ' => 'l',
        'М' | 'Μ' => 'm',
        'Ν' => 'n',
        'о' | 'О' | 'ο' | 'Ο' => 'o',
        'р' | 'Р' | 'ρ' | 'Ρ' => 'p',
        'ԛ' => 'q',
        'ѕ' | 'Ѕ' => 's',
        'Т' | 'Τ' => 't',
        'υ' => 'u',
        'ν' => 'v',
        'ԝ' | 'Ԝ' => 'w',
        'х' | 'Х' | 'χ' | 'Χ' => 'x',
        'у' | 'У' | 'Υ' => 'y',
        'Ζ' => 'z',
        _ => return None,
    })
}

/// `text` as it shows: invisible characters left out (or, with `split`, read as a break,
/// as is a change from a lowercase to an uppercase letter), look-alike letters as Latin.
fn as_read(text: &str, split: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut prev_lower = false;
    for c in text.chars() {
        if is_invisible(c) {
            if split {
                out.push(' ');
            }
            prev_lower = false;
            continue;
        }
        if split && prev_lower && c.is_uppercase() {
            out.push(' ');
        }
        prev_lower = c.is_lowercase();
        out.push(latin_lookalike(c).unwrap_or(c));
    }
    out
}

/// `kits` → `kit`; words of three letters or fewer, and -ss, -us, -is endings (`dress`,
/// `virus`, `analysis`), are kept: they are not plurals often enough to guess.
fn singular(w: &str) -> String {
    if w.len() > 3
        && w.ends_with('s')
        && !w.ends_with("ss")
        && !w.ends_with("us")
        && !w.ends_with("is")
    {
        w[..w.len() - 1].to_string()
    } else {
        w.to_string()
    }
}

/// The words of `text`, normalised, with a space before and after each, so that a
/// phrase's whole-word presence is one substring test: `" ovulation kit "`.
pub fn padded_words(text: &str) -> String {
    let mut s = String::from(" ");
    // Each reading after the first follows a `|`, which no phrase spans.
    for (i, words) in readings(text).into_iter().enumerate() {
        if i > 0 {
            s.push_str("| ");
        }
        for w in words {
            s.push_str(&w);
            s.push(' ');
        }
    }
    s
}

/// The languages the built-in terms cover.
pub fn languages() -> &'static [&'static str] {
    &LANGUAGES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cats(lex: &Lexicon, v: &str) -> Vec<String> {
        lex.of(lex.classify(v)).map(|c| c.key.clone()).collect()
    }

    #[test]
    fn hits_and_near_misses() {
        let lex = Lexicon::builtin();
        assert_eq!(cats(&lex, "Ovulation kit"), ["pregnancy"]);
        assert_eq!(cats(&lex, "OVULATION KITS (pack of 20)"), ["pregnancy"]);
        assert!(cats(&lex, "Test kitchen").is_empty());
        assert!(cats(&lex, "Pride and Prejudice").is_empty());
        assert_eq!(cats(&lex, "Rosary beads"), ["religion"]);
        assert_eq!(cats(&lex, "Schwangerschaftstest"), ["pregnancy"]);
        assert_eq!(cats(&lex, "test de grossesse"), ["pregnancy"]);
        assert_eq!(cats(&lex, "Test de GROSSESSE"), ["pregnancy"]);
        assert_eq!(cats(&lex, "Prueba de embarazo"), ["pregnancy"]);
        assert_eq!(cats(&lex, "Graviditetstest"), ["pregnancy"]);
        assert_eq!(cats(&lex, "Hörgerät"), ["health"]);
        assert_eq!(cats(&lex, "horgerat"), ["health"], "accents ignored");
        assert_eq!(cats(&lex, "Glucómetro"), ["health"]);
        assert_eq!(cats(&lex, "Sports betting voucher"), ["gambling"]);
        // Whole words only: a term inside a longer word is not a hit.
        assert!(cats(&lex, "Casinos-style lighting").contains(&"gambling".to_string()));
        assert!(cats(&lex, "Ivfield boots").is_empty());
        assert!(cats(&lex, "Harbour wool coat").is_empty());
        assert!(cats(&lex, "Bike chain lube").is_empty());
        assert!(cats(&lex, "Sober grey scarf").is_empty());
        assert!(cats(&lex, "Card slot wallet").is_empty());
    }

    /// What a reader sees as "Maternity" or "pregnancy test", written so that plain
    /// matching reads other words: invisible format characters inside or between words,
    /// Cyrillic and Greek letters that look Latin, words run together in camel case.
    #[test]
    fn disguised_terms_read_as_a_person_reads_them() {
        let lex = Lexicon::builtin();
        for v in [
            "Preg\u{200B}nancy test",
            "Mat\u{2060}ernity fleece",
            "Mat\u{00AD}ernity",
            "Mat\u{200C}ernity",
            "Mat\u{200D}ernity",
            "Mat\u{FEFF}ernity",
            "Mat\u{034F}ernity",
            "Mat\u{FE0F}ernity",
            "Mat\u{E0067}ernity",
            "Mat\u{202E}ernity",
            "Maternit\u{0443} fleece",
            "\u{0440}regnancy test",
            "\u{03C1}regnancy",
            "\u{041C}\u{0410}TERNITY",
            "ＭＡＴＥＲＮＩＴＹ",
            "PregnancyTest",
            "OvulationKit",
            "pregnancy\u{200B}test",
        ] {
            assert_ne!(lex.classify(v), 0, "{v:?} reads {:?}", normalised_words(v));
        }
        // Near misses stay misses.
        for v in [
            "Test\u{200B}kitchen",
            "Pride\u{2060}and Prejudice",
            "iPhone case",
            "eBay voucher",
            "McDonald tartan",
        ] {
            assert_eq!(lex.classify(v), 0, "{v:?}");
        }
        // The words of a rendered text find the phrase in it whichever way it is written.
        let out = padded_words("Still thinking about the Preg\u{200B}nancy\u{200B}Test?");
        assert!(
            lex.phrases_in("Preg\u{200B}nancy\u{200B}Test")
                .iter()
                .all(|(ph, _)| out.contains(&format!(" {ph} "))),
            "{out}"
        );
    }

    #[test]
    fn every_builtin_category_has_terms_in_every_language() {
        let file: BTreeMap<String, FileCategory> = toml::from_str(BUILTIN).expect("valid");
        assert_eq!(file.len(), 13);
        for (k, c) in &file {
            for (lang, terms) in LANGUAGES.iter().zip([&c.en, &c.da, &c.de, &c.fr, &c.es]) {
                assert!(!terms.is_empty(), "{k} has no {lang} terms");
                for t in terms.iter() {
                    assert!(!normalised_words(t).is_empty(), "{k}/{lang}: {t:?}");
                }
            }
        }
        let keys: Vec<&str> = Lexicon::shared()
            .categories()
            .iter()
            .map(|c| c.key.as_str())
            .collect();
        for want in [
            "health",
            "pregnancy",
            "sexual_orientation",
            "religion",
            "political",
            "ethnicity",
            "trade_union",
            "genetic",
            "debt",
            "gambling",
            "addiction",
            "bereavement",
            "children",
        ] {
            assert!(keys.contains(&want), "{want}");
        }
    }

    #[test]
    fn a_schema_extends_and_never_shrinks() {
        let extra = BTreeMap::from([("health".to_string(), vec!["Gout cream".to_string()])]);
        let lex = Lexicon::with(&extra).expect("extends");
        assert_eq!(cats(&lex, "gout creams"), ["health"]);
        assert_eq!(cats(&lex, "Ovulation kit"), ["pregnancy"], "built-in kept");
        let bad = BTreeMap::from([("helth".to_string(), vec!["x".to_string()])]);
        let e = Lexicon::with(&bad).expect_err("unknown category");
        assert!(e.to_string().contains("health"), "{e}");
        let empty = BTreeMap::from([("health".to_string(), vec!["--".to_string()])]);
        assert!(matches!(
            Lexicon::with(&empty),
            Err(ExtendError::EmptyTerm { .. })
        ));
        // An empty list for a category removes nothing.
        let none = BTreeMap::from([("religion".to_string(), Vec::new())]);
        assert_eq!(
            cats(&Lexicon::with(&none).expect("ok"), "Rosary"),
            ["religion"]
        );
    }
}
