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
        let words = normalised_words(value);
        let mut out = Vec::new();
        let mut phrase = String::new();
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
        out.into_iter()
    }
}

/// Words as the lexicon reads them: accents dropped (`Grossesse`, `grossesse` and
/// `GROSSESSE` alike; `bébé` reads `bebe`), lowercase, split at anything that is not a
/// letter or digit, and a final plural -s dropped (`Ovulation kits` holds `ovulation
/// kit`). The same function reads the terms, so both sides always agree.
pub fn normalised_words(text: &str) -> Vec<String> {
    let folded = if text.is_ascii() {
        text.to_ascii_lowercase()
    } else {
        deunicode::deunicode(text).to_ascii_lowercase()
    };
    folded
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(singular)
        .collect()
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
    for w in normalised_words(text) {
        s.push_str(&w);
        s.push(' ');
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
