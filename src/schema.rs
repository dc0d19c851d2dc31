//! Field classes and types: from the schema file, else by name, else by value.
//!
//! The class of a field decides how invasive using it is (DESIGN §4); the type decides how
//! a segment compares it. Both are decided once per campaign, never per row.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Location, Result};
use crate::names;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FieldClass {
    Routing,
    Declared,
    Transactional,
    Behavioural,
    QuasiIdentifier,
    HighRisk,
    Special,
    /// Neither the schema nor the name told us. Treated as level 2 for targeting, so an
    /// unknown field never silently counts as harmless.
    Unclassified,
}

impl FieldClass {
    pub fn level(self) -> u8 {
        match self {
            FieldClass::Routing => 0,
            FieldClass::Declared => 1,
            FieldClass::Transactional | FieldClass::Unclassified => 2,
            FieldClass::Behavioural | FieldClass::QuasiIdentifier => 3,
            FieldClass::HighRisk => 4,
            FieldClass::Special => 5,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FieldClass::Routing => "routing",
            FieldClass::Declared => "declared",
            FieldClass::Transactional => "transactional",
            FieldClass::Behavioural => "behavioural",
            FieldClass::QuasiIdentifier => "quasi-identifier",
            FieldClass::HighRisk => "high-risk",
            FieldClass::Special => "special",
            FieldClass::Unclassified => "unclassified",
        }
    }
}

impl std::fmt::Display for FieldClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Number,
    Date,
    Bool,
    Text,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Number => "number",
            FieldType::Date => "date",
            FieldType::Bool => "bool",
            FieldType::Text => "text",
        }
    }

    pub fn accepts(self, value: &str) -> bool {
        let v = value.trim();
        match self {
            FieldType::Number => parse_number(v).is_some(),
            FieldType::Date => crate::consent::parse_time(v).is_some(),
            FieldType::Bool => parse_bool(v).is_some(),
            FieldType::Text => true,
        }
    }
}

pub fn parse_number(v: &str) -> Option<f64> {
    let v = v.trim();
    // "inf" and "NaN" parse as f64 but no marketer means them as numbers.
    if v.is_empty()
        || !v
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
    {
        return None;
    }
    v.parse::<f64>().ok().filter(|n| n.is_finite())
}

pub fn parse_bool(v: &str) -> Option<bool> {
    let v = v.trim();
    // Read per row while a type is inferred: no lowercased copy of each value.
    let is = |w: &str| v.eq_ignore_ascii_case(w);
    if is("true") || is("yes") {
        Some(true)
    } else if is("false") || is("no") {
        Some(false)
    } else {
        None
    }
}

/// Of the non-empty values seen, the narrowest type they fit. A column where nearly all
/// values are numbers (at least 90% of ten or more) is still a number column; the odd
/// `N/A` then makes its row a `segment_error` instead of turning the column into text.
pub fn infer_type<'a>(values: impl Iterator<Item = &'a str>) -> FieldType {
    infer_type_counted(values.map(|v| (v, 1)))
}

/// `infer_type` of values given with how many rows hold each (a dictionary column's
/// distinct values: each is read once, not once per row).
pub fn infer_type_counted<'a>(values: impl Iterator<Item = (&'a str, usize)>) -> FieldType {
    let mut total = 0usize;
    let mut fits = [0usize; 3];
    let kinds = [FieldType::Number, FieldType::Date, FieldType::Bool];
    for (v, n) in values {
        if n == 0 || v.trim().is_empty() {
            continue;
        }
        total += n;
        for (i, k) in kinds.iter().enumerate() {
            if k.accepts(v) {
                fits[i] += n;
            }
        }
    }
    if total == 0 {
        return FieldType::Text;
    }
    for (i, k) in kinds.iter().enumerate() {
        if fits[i] == total || (total >= 10 && fits[i] * 10 >= total * 9) {
            return *k;
        }
    }
    FieldType::Text
}

/// What the schema file says about one field.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub class: Option<FieldClass>,
    #[serde(rename = "type")]
    pub ty: Option<FieldType>,
    pub inferred: Option<bool>,
    pub observed_at: Option<String>,
    /// Where the values came from, when the class alone does not say (a quasi-identifier
    /// bought from a broker is not something the customer told us).
    pub origin: Option<Origin>,
    /// How `why_you_got_this` names the field to the recipient ("the product you last
    /// viewed"); without it, "your" and the words of its name.
    pub label: Option<String>,
}

/// Renamed column roles (DESIGN §2), or a consent role the file itself answers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRoles {
    pub email: Option<String>,
    pub consent_marketing: Option<RoleSpec>,
    pub consent_personalisation: Option<RoleSpec>,
    pub consent_at: Option<RoleSpec>,
}

/// Where a consent role's value comes from: a column (`consent_marketing = "opt_in"`), or
/// one value for every row, with the reason the file itself gives it
/// (`consent_marketing = { value = "yes", reason = "Mailchimp's subscribed export: being
/// in it is the consent" }`). The reason is required: it is what the check and a privacy
/// officer read instead of a column.
///
/// A platform that writes its own words for consent (Klaviyo's `SUBSCRIBED`) names them:
/// `consent_marketing = { column = "Email Marketing Consent", granted = ["SUBSCRIBED"] }`;
/// only those values grant, everything else does not.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RoleSpec {
    Column(String),
    Constant(Constant),
    Mapped(Mapped),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mapped {
    pub column: String,
    pub granted: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Constant {
    pub value: String,
    pub reason: String,
}

impl RoleSpec {
    pub fn column(&self) -> Option<&str> {
        match self {
            RoleSpec::Column(c) => Some(c),
            RoleSpec::Mapped(m) => Some(&m.column),
            RoleSpec::Constant(_) => None,
        }
    }

    pub fn constant(&self) -> Option<&Constant> {
        match self {
            RoleSpec::Constant(c) => Some(c),
            _ => None,
        }
    }

    /// The values that grant, when the column uses its own words.
    pub fn granted(&self) -> Option<&[String]> {
        match self {
            RoleSpec::Mapped(m) => Some(&m.granted),
            _ => None,
        }
    }
}

impl From<&str> for RoleSpec {
    fn from(column: &str) -> RoleSpec {
        RoleSpec::Column(column.to_string())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    #[serde(default)]
    csv: CsvFormat,
    #[serde(default)]
    columns: ColumnRoles,
    #[serde(default)]
    fields: BTreeMap<String, FieldSpec>,
    #[serde(default)]
    lexicon: BTreeMap<String, Vec<String>>,
}

/// How the file is written, when it is not UTF-8 with commas. Both are found on their
/// own where that is safe: a UTF-8 or UTF-16 byte-order mark, and the separator the
/// header row uses. An 8-bit encoding cannot be told from the bytes with certainty, so it
/// is only ever read as the schema names it (`tact new` writes it, and says so).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvFormat {
    /// `,`, `;`, `\t` or `|`.
    pub delimiter: Option<char>,
    /// A WHATWG encoding label: `windows-1252`, `iso-8859-1`, `utf-16le`, …
    pub encoding: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Schema {
    pub path: Option<PathBuf>,
    pub csv: CsvFormat,
    pub columns: ColumnRoles,
    /// Keyed by `names::squash` of the field name: use `field` to look one up.
    pub fields: BTreeMap<String, FieldSpec>,
    /// The sensitive-terms lexicon with this schema's `[lexicon]` additions.
    pub lexicon: std::sync::Arc<crate::lexicon::Lexicon>,
}

impl Default for Schema {
    fn default() -> Schema {
        Schema {
            path: None,
            csv: CsvFormat::default(),
            columns: ColumnRoles::default(),
            fields: BTreeMap::new(),
            lexicon: std::sync::Arc::new(crate::lexicon::Lexicon::builtin()),
        }
    }
}

impl Schema {
    /// What the schema says about a field, however its case and separators differ from
    /// the header's (`[fields] birth_date` covers a `BirthDate` column).
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.get(&names::squash(name))
    }
}

impl Schema {
    pub fn load(path: &Path) -> Result<Schema> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file: SchemaFile = toml::from_str(&text).map_err(|e| toml_error(path, &text, &e))?;
        let mut fields = BTreeMap::new();
        let mut spelt: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in file.fields {
            let key = names::squash(&k);
            if let Some(first) = spelt.get(&key) {
                return Err(Error::input(
                    Location::file(path),
                    format!("[fields] `{first}` and `{k}` name the same field: keep one"),
                ));
            }
            check_label(path, &text, &k, v.label.as_deref())?;
            spelt.insert(key.clone(), k);
            fields.insert(key, v);
        }
        let lexicon = crate::lexicon::Lexicon::with(&file.lexicon)
            .map_err(|e| Error::input(Location::file(path), e.to_string()))?;
        check_constants(path, &text, &file.columns)?;
        check_format(path, &text, &file.csv)?;
        Ok(Schema {
            path: Some(path.to_path_buf()),
            csv: file.csv,
            columns: file.columns,
            fields,
            lexicon: std::sync::Arc::new(lexicon),
        })
    }
}

/// A constant role must say why and hold a value the role can read: a consent word
/// (`yes`, `no`, …) for the consent flags, a date for `consent_at`.
fn check_constants(path: &Path, text: &str, roles: &ColumnRoles) -> Result<()> {
    let at = |role: &str| {
        let offset = text
            .find(&format!("{role} ="))
            .or_else(|| text.find(role))
            .unwrap_or(0);
        let (line, col) = line_col(text, offset);
        Location::at(path, line, col)
    };
    let flags = [
        ("consent_marketing", &roles.consent_marketing),
        ("consent_personalisation", &roles.consent_personalisation),
    ];
    for (role, spec) in flags {
        let Some(c) = spec.as_ref().and_then(RoleSpec::constant) else {
            continue;
        };
        if c.reason.trim().is_empty() {
            return Err(Error::input(
                at(role),
                format!(
                    "[columns] {role} is a constant without a reason: say why the file itself gives this consent"
                ),
            ));
        }
        let word = c.value.trim().to_ascii_lowercase();
        if !crate::consent::is_granted(&word) && !["no", "n", "false", "0"].contains(&word.as_str())
        {
            return Err(Error::input(
                at(role),
                format!(
                    "[columns] {role} = {{ value = \"{}\" }} is not a consent word: use \"yes\" or \"no\"",
                    names::excerpt(&c.value, 40)
                ),
            ));
        }
    }
    for (role, spec) in flags {
        if spec
            .as_ref()
            .and_then(RoleSpec::granted)
            .is_some_and(|g| g.iter().all(|v| v.trim().is_empty()))
        {
            return Err(Error::input(
                at(role),
                format!("[columns] {role} names no value in `granted`: which values mean consent?"),
            ));
        }
    }
    if roles
        .consent_at
        .as_ref()
        .and_then(RoleSpec::granted)
        .is_some()
    {
        return Err(Error::input(
            at("consent_at"),
            "[columns] consent_at is a time: `granted` applies to the consent flags only",
        ));
    }
    if let Some(c) = roles.consent_at.as_ref().and_then(RoleSpec::constant) {
        if c.reason.trim().is_empty() {
            return Err(Error::input(
                at("consent_at"),
                "[columns] consent_at is a constant without a reason: say why every row was consented then",
            ));
        }
        if crate::consent::parse_time(&c.value).is_none() {
            return Err(Error::input(
                at("consent_at"),
                "[columns] consent_at = { value = … } is not a date (RFC 3339 or YYYY-MM-DD)",
            ));
        }
    }
    Ok(())
}

/// The longest `label`: it is said in every personalised message's footer.
pub const MAX_LABEL: usize = 60;

/// A `label` is read by recipients: a few words on one line.
fn check_label(path: &Path, text: &str, field: &str, label: Option<&str>) -> Result<()> {
    let Some(label) = label else {
        return Ok(());
    };
    let problem = if label.trim().is_empty() {
        "is empty"
    } else if label.chars().any(char::is_control) {
        "holds a line break or control character"
    } else if label.chars().count() > MAX_LABEL {
        "is longer than 60 characters"
    } else {
        return Ok(());
    };
    let offset = text
        .find(field)
        .and_then(|f| text[f..].find("label").map(|l| f + l))
        .unwrap_or(0);
    let (line, col) = line_col(text, offset);
    Err(Error::input(
        Location::at(path, line, col),
        format!(
            "[fields] `{field}` has a label that {problem}: it names the field to recipients in a few words"
        ),
    ))
}

fn check_format(path: &Path, text: &str, csv: &CsvFormat) -> Result<()> {
    let at = |key: &str| {
        let (line, col) = line_col(text, text.find(&format!("{key} =")).unwrap_or(0));
        Location::at(path, line, col)
    };
    if let Some(d) = csv.delimiter
        && ![',', ';', '\t', '|'].contains(&d)
    {
        return Err(Error::input(
            at("delimiter"),
            "[csv] delimiter must be \",\", \";\", \"\\t\" or \"|\"",
        ));
    }
    if let Some(e) = &csv.encoding
        && encoding_rs::Encoding::for_label(e.trim().as_bytes()).is_none()
    {
        return Err(Error::input(
            at("encoding"),
            format!(
                "[csv] encoding `{}` is not an encoding tact knows: try \"windows-1252\", \"iso-8859-15\" or \"utf-16le\"",
                names::excerpt(e, 40)
            ),
        ));
    }
    Ok(())
}

/// `<audience stem>.schema.toml` beside the audience, if there is one (DESIGN §2).
pub fn beside(audience: &Path) -> Option<PathBuf> {
    let stem = audience
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = audience.with_file_name(format!("{stem}.schema.toml"));
    path.is_file().then_some(path)
}

/// A TOML error as file:line:col plus the parser's own words.
pub(crate) fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> Error {
    let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
    Error::input(
        Location::at(path, line, col),
        e.message().trim().to_string(),
    )
}

pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Where a field's values came from, in the words the marketer and the recipient both
/// read: the check report, the composer's Check screen and `why_you_got_this` say the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Declared,
    Transactional,
    Behavioural,
    Inferred,
    /// Nothing says: a high-risk, special or unclassified field with no `origin` key.
    Unknown,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Declared => "declared",
            Origin::Transactional => "transactional",
            Origin::Behavioural => "behavioural",
            Origin::Inferred => "inferred",
            Origin::Unknown => "unknown",
        }
    }

    /// Plain words, spoken to the recipient ("you told us"), so a marketer reading the
    /// report reads exactly what the customer will.
    pub fn words(self) -> &'static str {
        match self {
            Origin::Declared => "you told us",
            Origin::Transactional => "from your orders",
            Origin::Behavioural => "from what you browsed",
            Origin::Inferred => "we estimated",
            Origin::Unknown => "source not recorded",
        }
    }

    /// A schema's `origin` wins; an inference is always "we estimated" whatever its base
    /// class, since the customer never gave us the value itself.
    pub fn of(name: &str, schema: &Schema, class: &Classification) -> Origin {
        if class.inferred {
            return Origin::Inferred;
        }
        if let Some(o) = schema.field(name).and_then(|f| f.origin) {
            return o;
        }
        match class.base {
            FieldClass::Routing | FieldClass::Declared | FieldClass::QuasiIdentifier => {
                Origin::Declared
            }
            FieldClass::Transactional => Origin::Transactional,
            FieldClass::Behavioural => Origin::Behavioural,
            FieldClass::HighRisk | FieldClass::Special | FieldClass::Unclassified => {
                Origin::Unknown
            }
        }
    }
}

/// How a field came to have its class, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassSource {
    Schema,
    Name,
    Tool,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// The class before the `inferred` raise.
    pub base: FieldClass,
    pub inferred: bool,
    pub source: ClassSource,
}

impl Classification {
    /// The class after raising inferred fields one level (at most to high-risk; an
    /// inference of a special trait stays special).
    pub fn class(&self) -> FieldClass {
        if !self.inferred {
            return self.base;
        }
        match self.base {
            FieldClass::Routing => FieldClass::Declared,
            FieldClass::Declared => FieldClass::Transactional,
            FieldClass::Transactional | FieldClass::Unclassified => FieldClass::Behavioural,
            FieldClass::Behavioural | FieldClass::QuasiIdentifier | FieldClass::HighRisk => {
                FieldClass::HighRisk
            }
            FieldClass::Special => FieldClass::Special,
        }
    }
}

pub fn classify(name: &str, schema: &Schema) -> Classification {
    let by_name = classify_by_name(name);
    if let Some(spec) = schema.field(name) {
        if let Some(class) = spec.class {
            let inferred = spec
                .inferred
                .unwrap_or(by_name.as_ref().is_some_and(|c| c.inferred));
            // A schema may not talk a special trait down: `predicted_pregnancy` declared as
            // behavioural is still an inference about pregnancy.
            let base = match &by_name {
                Some(n) if n.base == FieldClass::Special => FieldClass::Special,
                _ => class,
            };
            return Classification {
                base,
                inferred,
                source: ClassSource::Schema,
            };
        }
        if let Some(inferred) = spec.inferred {
            let base = by_name
                .as_ref()
                .map_or(FieldClass::Unclassified, |c| c.base);
            let source = if by_name.is_some() {
                ClassSource::Name
            } else {
                ClassSource::None
            };
            return Classification {
                base,
                inferred,
                source,
            };
        }
    }
    by_name.unwrap_or(Classification {
        base: FieldClass::Unclassified,
        inferred: false,
        source: ClassSource::None,
    })
}

const SPECIAL: &[&str] = &[
    "health",
    "medical",
    "medication*",
    "prescription*",
    "symptom*",
    "allerg*",
    "vaccin*",
    "patient",
    "patients",
    "nhs",
    "blood_type",
    "blood_group",
    "blood_pressure",
    "psychiatric",
    "diagnos*",
    "condition",
    "conditions",
    "disabilit*",
    "disabled",
    "illness*",
    "disease*",
    "pregnan*",
    "religion*",
    "religious",
    "faith",
    "belief*",
    "philosophical",
    "ethnic*",
    "race",
    "racial",
    "sexual*",
    "orientation",
    "sexuality",
    "bisexual",
    "homosexual",
    "heterosexual",
    "asexual",
    "gay",
    "lesbian",
    "queer",
    "intersex",
    "transgender",
    "transsexual",
    "gender_identity",
    "sex_life",
    "lgbt*",
    "politic*",
    "union",
    "unions",
    "genetic*",
    "biometric*",
    "dna",
    "trans",
    "hiv",
    "mental",
    "therapy",
    "criminal",
    "conviction*",
    "offence",
    "offences",
    "offense",
    "offenses",
    "crime",
    "crimes",
    // Government identifiers and status, sensitive under the CPRA.
    "ssn",
    "social_security",
    "nino",
    "nat_ins",
    "national_insurance",
    "passport*",
    "drivers_license",
    "drivers_licence",
    "driver_license",
    "driving_licence",
    "driving_license",
    "citizenship",
    "immigration",
    "asylum",
];
const HIGH_RISK: &[&str] = &[
    "lat",
    "lon",
    "lng",
    "latitude",
    "longitude",
    "geo",
    "geolocation",
    "gps",
    "coordinates",
    "address",
    "street",
    "ip",
    "location",
    "income",
    "salary",
    "wage",
    "wages",
    "credit",
    "debt",
    "debts",
    "balance",
    "loan",
    "loans",
    "mortgage",
    "bankrupt*",
    "net_worth",
    "wealth",
    "arrears",
    "iban",
    "bank_account",
    "account_number",
    "card_number",
    "sort_code",
    "routing_number",
];
const QUASI: &[&str] = &[
    "dob",
    "birth",
    "birthday",
    "birthdate",
    "birthdays",
    "age",
    "zip",
    "zipcode",
    "postcode",
    "postal",
    "sex",
    "gender",
    "employer",
    "occupation",
    "job",
    "marital",
    "nationality",
];
const BEHAVIOURAL: &[&str] = &[
    "viewed",
    "browsed",
    "clicked",
    "opened",
    "cart",
    "carts",
    "opens",
    "clicks",
    "views",
    "visits",
    "visited",
    "searched",
    "search",
    "wishlist",
    "basket",
    "session",
    "sessions",
    "abandoned",
    "watched",
    "page",
    "pages",
];
const TRANSACTIONAL: &[&str] = &[
    "order",
    "orders",
    "purchase",
    "purchases",
    "purchased",
    "spent",
    "spend",
    "revenue",
    "bought",
    "ltv",
    "lifetime",
    "refund",
    "refunds",
    "returns",
    "invoice",
    "aov",
];
const DECLARED: &[&str] = &[
    "first",
    "last",
    "name",
    "firstname",
    "lastname",
    "surname",
    "given",
    "family",
    "nickname",
    "title",
    "salutation",
    "language",
    "locale",
    "favourite*",
    "favorite*",
    "preference*",
    "preferred",
    "loyalty",
    "tier",
    "interests",
    "interest",
    "newsletter",
];
const ROUTING: &[&str] = &[
    "email",
    "mail",
    "id",
    "customer_id",
    "country",
    "timezone",
    "tz",
    "region",
    "currency",
];
const INFERRED: &[&str] = &[
    "predicted",
    "likely",
    "score",
    "propensity",
    "probability",
    "predicted*",
    "affinity",
];

fn matches_any(token: &str, patterns: &[&str]) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => token.starts_with(prefix),
        None => token == *p,
    })
}

/// The built-in table of name patterns (DESIGN §4), most sensitive first, so a
/// `health_score` is special and an `email_opens` behavioural.
///
/// Judged by whole words (`names::words`: case, separators and camelCase ignored), never
/// by substring, so `reunion_date` is no union and `page_views` no age. Two neighbouring
/// words also count joined (`Post Code` is a postcode, `net_worth` a net worth).
pub fn classify_by_name(name: &str) -> Option<Classification> {
    let words = names::words(name);
    let mut candidates: Vec<String> = words.clone();
    for pair in words.windows(2) {
        candidates.push(pair.concat());
        candidates.push(pair.join("_"));
    }
    let has = |patterns: &[&str]| candidates.iter().any(|t| matches_any(t, patterns));
    let inferred = has(INFERRED);
    let is_email = words.iter().any(|t| t == "email" || t == "mail");
    let base = if has(SPECIAL) {
        FieldClass::Special
    } else if has(HIGH_RISK) && !(is_email && words.iter().any(|t| t == "address")) {
        FieldClass::HighRisk
    } else if has(QUASI) {
        FieldClass::QuasiIdentifier
    } else if has(BEHAVIOURAL) {
        FieldClass::Behavioural
    } else if has(TRANSACTIONAL) {
        FieldClass::Transactional
    } else if has(DECLARED) {
        FieldClass::Declared
    } else if has(ROUTING) {
        FieldClass::Routing
    } else if inferred {
        // A score of something we cannot name is still derived from what they did.
        FieldClass::Behavioural
    } else {
        return None;
    };
    Some(Classification {
        base,
        inferred,
        source: ClassSource::Name,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_classify_most_sensitive_first() {
        use FieldClass::*;
        let cases = [
            ("email", Routing),
            ("customer_id", Routing),
            ("email_address", Routing),
            ("first_name", Declared),
            ("language", Declared),
            ("favourite_category", Declared),
            ("loyalty_tier", Declared),
            ("last_order_category", Transactional),
            ("order_count", Transactional),
            ("total_spent", Transactional),
            ("last_viewed_product", Behavioural),
            ("cart_items", Behavioural),
            ("email_opens", Behavioural),
            ("birth_date", QuasiIdentifier),
            ("dob", QuasiIdentifier),
            ("age", QuasiIdentifier),
            ("postcode", QuasiIdentifier),
            ("zip", QuasiIdentifier),
            ("gender", QuasiIdentifier),
            ("employer", QuasiIdentifier),
            ("home_address", HighRisk),
            ("lat", HighRisk),
            ("income_band", HighRisk),
            ("credit_limit", HighRisk),
            ("health_condition", Special),
            ("diagnosis", Special),
            ("religion", Special),
            ("ethnicity", Special),
            ("sexual_orientation", Special),
            ("political_party", Special),
            ("trade_union", Special),
            ("pregnancy_due", Special),
            ("predicted_pregnancy", Special),
        ];
        for (name, want) in cases {
            assert_eq!(classify_by_name(name).map(|c| c.base), Some(want), "{name}");
        }
        assert_eq!(
            classify_by_name("package"),
            None,
            "age inside a word is not age"
        );
        assert_eq!(classify_by_name("shoe_size"), None);
    }

    #[test]
    fn inferred_raises_one_level_at_most_to_high_risk() {
        let churn = classify_by_name("churn_score").unwrap();
        assert!(churn.inferred);
        assert_eq!(churn.class(), FieldClass::HighRisk);
        let likely = classify_by_name("likely_buyer").unwrap();
        assert_eq!(likely.class(), FieldClass::HighRisk);
        let preg = classify_by_name("predicted_pregnancy").unwrap();
        assert_eq!(preg.class(), FieldClass::Special);
        let c = Classification {
            base: FieldClass::Declared,
            inferred: true,
            source: ClassSource::Schema,
        };
        assert_eq!(c.class(), FieldClass::Transactional);
    }

    #[test]
    fn schema_wins_but_cannot_hide_a_special_trait() {
        let mut schema = Schema::default();
        schema.fields.insert(
            "postcode".into(),
            FieldSpec {
                class: Some(FieldClass::Routing),
                ..Default::default()
            },
        );
        schema.fields.insert(
            "predicted_pregnancy".into(),
            FieldSpec {
                class: Some(FieldClass::Behavioural),
                ..Default::default()
            },
        );
        assert_eq!(classify("postcode", &schema).class(), FieldClass::Routing);
        assert_eq!(
            classify("predicted_pregnancy", &schema).class(),
            FieldClass::Special
        );
        assert_eq!(
            classify("shoe_size", &schema).class(),
            FieldClass::Unclassified
        );
    }

    #[test]
    fn types_by_value() {
        assert_eq!(infer_type(["1", "2.5", ""].into_iter()), FieldType::Number);
        assert_eq!(
            infer_type(["2026-01-01", "2025-03-12T10:00:00Z"].into_iter()),
            FieldType::Date
        );
        assert_eq!(infer_type(["true", "no"].into_iter()), FieldType::Bool);
        assert_eq!(infer_type(["GB", "IE"].into_iter()), FieldType::Text);
        let mostly: Vec<&str> = std::iter::repeat_n("12", 19).chain(["N/A"]).collect();
        assert_eq!(infer_type(mostly.into_iter()), FieldType::Number);
        assert_eq!(infer_type(["inf", "NaN"].into_iter()), FieldType::Text);
    }

    /// What a hostile or careless export calls its sensitive columns: plurals, past
    /// tenses, the CPRA's government identifiers and citizenship, and letters outside
    /// ASCII that the variable name loses. None may pass as unclassified or lower.
    #[test]
    fn sensitive_columns_in_every_spelling() {
        use FieldClass::*;
        let cases = [
            ("HIV_status", Special),
            ("Religious_Affiliation", Special),
            ("ethnicOrigin", Special),
            ("sexuality", Special),
            ("diagnosis2", Special),
            ("prev_diagnosis", Special),
            ("diagnosed_with", Special),
            ("medications", Special),
            ("disabilities", Special),
            ("illnesses", Special),
            ("chronic_diseases", Special),
            ("religions", Special),
            ("beliefs", Special),
            ("philosophical_beliefs", Special),
            ("trade_unions", Special),
            ("union_member", Special),
            ("transgender", Special),
            ("bisexual", Special),
            ("gender_identity", Special),
            ("sex_life", Special),
            ("allergies", Special),
            ("prescriptions", Special),
            ("symptoms", Special),
            ("patient_id", Special),
            ("nhs_number", Special),
            ("blood_type", Special),
            ("vaccination_status", Special),
            ("psychiatric_history", Special),
            ("offences", Special),
            ("criminal_record", Special),
            ("SSN", Special),
            ("social_security_number", Special),
            ("nat_ins_no", Special),
            ("national_insurance_number", Special),
            ("NINO", Special),
            ("passport_number", Special),
            ("drivers_license", Special),
            ("driving_licence_no", Special),
            ("citizenship", Special),
            ("immigration_status", Special),
            ("Religión", Special),
            ("geo_lat", HighRisk),
            ("home_lat", HighRisk),
            ("credit_card_number", HighRisk),
            ("iban", HighRisk),
            ("bank_account", HighRisk),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter_map(|(name, want)| {
                let variable = crate::names::normalise_name(name);
                let got = classify_by_name(&variable).map(|c| c.base);
                (got != Some(*want))
                    .then(|| format!("{name} ({variable}): {got:?}, wanted {want:?}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
        // And what must stay ordinary: no word inside another one counts.
        for name in [
            "transaction_count",
            "translation",
            "reunion_date",
            "page_views",
        ] {
            let c = classify_by_name(name).map(|c| c.base);
            assert!(c != Some(Special), "{name}: {c:?}");
        }
    }
}
