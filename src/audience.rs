//! The audience CSV: header and column roles, then only the columns a campaign uses,
//! held column by column.
//!
//! A million rows of every column as owned strings costs over 1.5 GB; one string buffer
//! per kept column costs little more than the bytes themselves. A structurally broken row
//! is remembered by line number and reason, never by content, and never stops the load.

use std::collections::{BTreeSet, VecDeque};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Location, Result, did_you_mean};
use crate::names::{self, normalise_name};
use crate::schema::{FieldType, RoleSpec, Schema};

/// Variables tact provides to every template; a CSV column of the same name is hidden.
pub const TOOL_VARIABLES: [&str; 6] = [
    "personalised",
    "unsubscribe_url",
    "postal_address",
    "preheader",
    "campaign",
    "why_you_got_this",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Email,
    ConsentMarketing,
    ConsentPersonalisation,
    ConsentAt,
}

impl Role {
    pub fn default_column(self) -> &'static str {
        match self {
            Role::Email => "email",
            Role::ConsentMarketing => "consent_marketing",
            Role::ConsentPersonalisation => "consent_personalisation",
            Role::ConsentAt => "consent_at",
        }
    }

    /// What the plan does when the file has no such column (DESIGN §2).
    pub fn when_missing(self) -> &'static str {
        match self {
            Role::Email => "nothing can be read without addresses",
            Role::ConsentMarketing => "nobody can be sent marketing (no_marketing_consent)",
            Role::ConsentPersonalisation => "everyone gets the generic variant",
            Role::ConsentAt => "no consent can be shown to be current (undated-consent)",
        }
    }
}

/// A role column the audience lacks, said loudly: a marketing-consent column spelt in a
/// way tact does not know otherwise reads as "nobody consented" and nothing more.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MissingRole {
    /// The role's default column name (`consent_marketing`, …).
    pub role: &'static str,
    /// `error` when nobody can be sent anything without it, else `notice`.
    pub level: &'static str,
    /// The header most like it, if any (a header name, never a value).
    pub did_you_mean: Option<String>,
    pub effect: &'static str,
}

impl std::fmt::Display for MissingRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no `{}` column", self.role)?;
        let mapped = match &self.did_you_mean {
            Some(c) => {
                write!(f, " (did you mean `{c}`?)")?;
                c.as_str()
            }
            None => "…",
        };
        write!(
            f,
            ": {}; map it in the schema with [columns] {} = \"{mapped}\"",
            self.effect, self.role
        )
    }
}

#[derive(Debug, Clone)]
pub struct Header {
    pub path: PathBuf,
    pub format: Format,
    /// Column names as written in the file.
    pub raw: Vec<String>,
    /// Template-variable names, one per column.
    pub names: Vec<String>,
    pub email: usize,
    pub consent_marketing: Option<usize>,
    pub consent_personalisation: Option<usize>,
    pub consent_at: Option<usize>,
    /// The consent roles with no column, with the closest header.
    pub missing: Vec<MissingRole>,
    /// The consent roles the file answers for every row (schema `{ value, reason }`).
    pub constants: Vec<ConstantRole>,
    /// Consent columns in the platform's own words, with the values that grant.
    pub mapped: Vec<(Role, Vec<String>)>,
}

/// A consent role with one value for every row, and the schema's reason for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConstantRole {
    #[serde(serialize_with = "role_name")]
    pub role: Role,
    pub value: String,
    pub reason: String,
}

fn role_name<S: serde::Serializer>(role: &Role, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(role.default_column())
}

impl ConstantRole {
    /// The name of the column an audience holds it in: with a space and parentheses, so
    /// it is never a template variable (those are normalised to `[a-z0-9_]`).
    pub fn column_name(&self) -> String {
        format!("{} (constant)", self.role.default_column())
    }
}

impl Header {
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// The variable name of the column a schema entry means: exactly, else the one column
    /// that is the same but for case and separators.
    pub fn resolve(&self, name: &str) -> Option<&str> {
        if let Some(i) = self.index(name) {
            return Some(&self.names[i]);
        }
        let mut fits = self.names.iter().filter(|n| names::same(n, name));
        match (fits.next(), fits.next()) {
            (Some(n), None) => Some(n),
            _ => None,
        }
    }

    /// Whether the file answers this role, by a column or a constant.
    pub fn has_role(&self, role: Role) -> bool {
        self.role_index(role).is_some() || self.constant(role).is_some()
    }

    pub fn constant(&self, role: Role) -> Option<&ConstantRole> {
        self.constants.iter().find(|c| c.role == role)
    }

    pub fn role_index(&self, role: Role) -> Option<usize> {
        match role {
            Role::Email => Some(self.email),
            Role::ConsentMarketing => self.consent_marketing,
            Role::ConsentPersonalisation => self.consent_personalisation,
            Role::ConsentAt => self.consent_at,
        }
    }

    /// Customer fields templates can reach: every column but the ones a tool variable hides.
    pub fn template_fields(&self) -> impl Iterator<Item = &str> {
        self.names
            .iter()
            .map(String::as_str)
            .filter(|n| !TOOL_VARIABLES.contains(n))
    }

    pub fn shadowed(&self) -> Vec<&str> {
        self.names
            .iter()
            .map(String::as_str)
            .filter(|n| TOOL_VARIABLES.contains(n))
            .collect()
    }
}

/// How a file is read: its separator and, when it is not UTF-8, its encoding (decoded to
/// UTF-8 on the way in, and encoded back when `forget` rewrites the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub delimiter: u8,
    /// `None`: UTF-8, read as it is (a UTF-8 byte-order mark is dropped from the header).
    pub encoding: Option<&'static encoding_rs::Encoding>,
}

impl Default for Format {
    fn default() -> Format {
        Format {
            delimiter: b',',
            encoding: None,
        }
    }
}

impl Format {
    /// What the schema says, else what the file shows: a UTF-16 byte-order mark, and the
    /// separator the header row uses most (`,` `;` tab `|`, outside quotes). An 8-bit
    /// encoding only ever comes from the schema.
    pub fn of(path: &Path, schema: &crate::schema::CsvFormat) -> Result<Format> {
        let read = |source| Error::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut head = Vec::with_capacity(8192);
        File::open(path)
            .map_err(read)?
            .take(64 * 1024)
            .read_to_end(&mut head)
            .map_err(read)?;
        let encoding = match &schema.encoding {
            Some(label) => encoding_rs::Encoding::for_label(label.trim().as_bytes())
                .filter(|e| *e != encoding_rs::UTF_8),
            None => encoding_rs::Encoding::for_bom(&head)
                .map(|(e, _)| e)
                .filter(|e| *e != encoding_rs::UTF_8),
        };
        let delimiter = match schema.delimiter {
            Some(d) => u8::try_from(d).unwrap_or(b','),
            None => {
                let text = match encoding {
                    Some(e) => e.decode_without_bom_handling(&head).0.into_owned(),
                    None => String::from_utf8_lossy(&head).into_owned(),
                };
                sniff_delimiter(&text)
            }
        };
        Ok(Format {
            delimiter,
            encoding,
        })
    }

    /// The raw bytes of a file as UTF-8 (for `forget`, which cuts rows out of them).
    pub fn decode(&self, raw: &[u8]) -> Vec<u8> {
        match self.encoding {
            None => raw.to_vec(),
            Some(e) => e.decode_with_bom_removal(raw).0.into_owned().into_bytes(),
        }
    }

    /// UTF-8 text back in the file's own encoding, with the byte-order mark it had.
    pub fn encode(&self, utf8: &str) -> Vec<u8> {
        let Some(e) = self.encoding else {
            return utf8.as_bytes().to_vec();
        };
        // encoding_rs writes UTF-16 as UTF-8 (the web never sends UTF-16): by hand.
        if e == encoding_rs::UTF_16LE || e == encoding_rs::UTF_16BE {
            let le = e == encoding_rs::UTF_16LE;
            let mut out = if le {
                vec![0xFF, 0xFE]
            } else {
                vec![0xFE, 0xFF]
            };
            for unit in utf8.encode_utf16() {
                out.extend(if le {
                    unit.to_le_bytes()
                } else {
                    unit.to_be_bytes()
                });
            }
            return out;
        }
        e.encode(utf8).0.into_owned()
    }
}

/// The separator the first line uses most, outside quotes; `,` when none appears.
fn sniff_delimiter(text: &str) -> u8 {
    let mut counts = [0usize; 4];
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '\n' | '\r' if !quoted => break,
            ',' | ';' | '\t' | '|' if !quoted => {
                let i = [',', ';', '\t', '|']
                    .iter()
                    .position(|d| *d == c)
                    .unwrap_or(0);
                counts[i] += 1;
            }
            _ => {}
        }
    }
    let best = (0..4)
        .max_by_key(|&i| (counts[i], usize::from(i == 0)))
        .unwrap_or(0);
    if counts[best] == 0 {
        b','
    } else {
        [b',', b';', b'\t', b'|'][best]
    }
}

fn open_reader(path: &Path, format: Format) -> Result<csv::Reader<LineCounter<Box<dyn Read>>>> {
    let file = File::open(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let inner: Box<dyn Read> = match format.encoding {
        None => Box::new(file),
        Some(e) => Box::new(
            encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(Some(e))
                .strip_bom(true)
                .build(file),
        ),
    };
    let counter = LineCounter {
        inner,
        offset: 0,
        newlines: VecDeque::new(),
        passed: 0,
        row_start: 0,
    };
    Ok(csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .delimiter(format.delimiter)
        .from_reader(counter))
}

/// Counts lines by the bytes that pass through. The csv crate's own line numbers are one
/// short after every CRLF header (csv 1.4), and a marketer's spreadsheet writes CRLF.
///
/// It also bounds a row: the csv reader buffers a whole record before it returns it, so a
/// 4 GB value (or an unclosed quote swallowing the rest of the file) would otherwise be
/// read into memory first and judged after.
struct LineCounter<R> {
    inner: R,
    offset: u64,
    newlines: VecDeque<u64>,
    passed: u64,
    /// Where the record being read began (set before each read).
    row_start: u64,
}

/// No customer field is this long; a value that is has nearly always swallowed the rows
/// after an unclosed quote.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;
/// A row, quoted line breaks included: reading stops here, before the csv reader has
/// buffered more.
pub const MAX_ROW_BYTES: u64 = 1024 * 1024;

/// Columns a header may name. Every render, the canary check and the duplicate-name scan
/// cost grows with the column count, and a 1 MiB header could name half a million: far
/// past any CRM export, and minutes of `check` for nothing.
pub const MAX_COLUMNS: usize = 2_000;

/// The reader's refusal to read a row past `MAX_ROW_BYTES`.
#[derive(Debug)]
struct RowTooLong;

impl std::fmt::Display for RowTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a row longer than {} bytes", MAX_ROW_BYTES)
    }
}

impl std::error::Error for RowTooLong {}

fn is_row_too_long(e: &csv::Error) -> bool {
    matches!(e.kind(), csv::ErrorKind::Io(io) if io.get_ref().is_some_and(|r| r.is::<RowTooLong>()))
}

impl<R: Read> Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.offset.saturating_sub(self.row_start) > MAX_ROW_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                RowTooLong,
            ));
        }
        let n = self.inner.read(buf)?;
        for (i, b) in buf[..n].iter().enumerate() {
            if *b == b'\n' {
                self.newlines.push_back(self.offset + i as u64);
            }
        }
        self.offset += n as u64;
        Ok(n)
    }
}

impl<R> LineCounter<R> {
    /// The 1-based line of a record starting at `byte`, asked in increasing order. After a
    /// CR the csv crate starts the next record on the LF, so a newline at `byte` counts.
    fn line_at(&mut self, byte: u64) -> u64 {
        while self.newlines.front().is_some_and(|&nl| nl <= byte) {
            self.newlines.pop_front();
            self.passed += 1;
        }
        self.passed + 1
    }
}

/// The row starting at byte `start` (line `line`) ran past `MAX_ROW_BYTES`: read it again
/// up to the limit to name the column that had not ended there.
fn row_too_long(path: &Path, format: Format, start: u64, line: u64, names: &[String]) -> Error {
    use std::io::{Seek, SeekFrom};
    // `start` counts decoded bytes: in a file that is not UTF-8 they are not the file's.
    let column = File::open(path)
        .and_then(|mut f| f.seek(SeekFrom::Start(start)).map(|_| f))
        .ok()
        .filter(|_| format.encoding.is_none())
        .and_then(|f| {
            let mut r = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .delimiter(format.delimiter)
                .from_reader(f.take(MAX_ROW_BYTES));
            let mut rec = csv::ByteRecord::new();
            r.read_byte_record(&mut rec).ok().map(|_| rec.len())
        })
        .unwrap_or(1)
        .max(1);
    row_past_limit(path, line, column, names)
}

/// The row at `line` runs on past `MAX_ROW_BYTES` in `column` (1-based).
pub(crate) fn row_past_limit(path: &Path, line: u64, column: usize, names: &[String]) -> Error {
    Error::input(
        Location::at(path, line as usize, column),
        format!(
            "the row runs on past {} MiB in column {column}{}: is a quote left open, or is this not a CSV file?",
            MAX_ROW_BYTES / (1024 * 1024),
            column_name(names, column - 1)
        ),
    )
}

pub(crate) fn field_too_long(
    path: &Path,
    line: u64,
    index: usize,
    len: usize,
    names: &[String],
) -> Error {
    Error::input(
        Location::at(path, line as usize, index + 1),
        format!(
            "the value in column {}{} is {len} bytes long; the limit is {} KiB: is a quote left open?",
            index + 1,
            column_name(names, index),
            MAX_FIELD_BYTES / 1024
        ),
    )
}

fn column_name(names: &[String], index: usize) -> String {
    names
        .get(index)
        .map(|n| format!(" (`{n}`)"))
        .unwrap_or_default()
}

fn csv_error(path: &Path, e: &csv::Error) -> Error {
    match e.position() {
        Some(p) => Error::input(
            Location::at(path, p.line() as usize, 1),
            format!("not a readable CSV file: {e}"),
        ),
        None => Error::input(
            Location::file(path),
            format!("not a readable CSV file: {e}"),
        ),
    }
}

/// Whether a header cell is an email address: the first line is then a customer's row
/// (an export saved without its header), and its cells are values, not names.
fn is_address(cell: &str) -> bool {
    let Some((local, domain)) = cell.trim().rsplit_once('@') else {
        return false;
    };
    let tld = domain.rsplit_once('.').map_or("", |(_, t)| t);
    !local.is_empty()
        && !cell.trim().contains(char::is_whitespace)
        && domain.contains('.')
        && tld.chars().count() >= 2
        && tld.chars().all(char::is_alphanumeric)
}

/// The template variable of each header cell (`raw`: the cells, trimmed, as in the file),
/// or why the header cannot name the columns: more than `MAX_COLUMNS`, a cell too long, no
/// header at all, a customer's row where the header should be, a name with no letters or
/// digits, two names that become one variable. `tact new` asks the same before it writes
/// a schema, so that it never writes one `check` refuses.
pub fn column_names(path: &Path, raw: &[String]) -> Result<Vec<String>> {
    if raw.len() > MAX_COLUMNS {
        return Err(Error::input(
            Location::at(path, 1, MAX_COLUMNS + 1),
            format!(
                "the header row names {} columns; tact reads at most {MAX_COLUMNS}: export only the columns your campaigns use",
                raw.len()
            ),
        ));
    }
    if let Some(i) = raw.iter().position(|f| f.len() > MAX_FIELD_BYTES) {
        return Err(field_too_long(path, 1, i, raw[i].len(), &[]));
    }
    if raw.iter().all(String::is_empty) {
        return Err(Error::input(
            Location::at(path, 1, 1),
            "the file has no header row: the first line must name the columns",
        ));
    }
    // Its cells are a person's data: say where, never what.
    if let Some(i) = raw.iter().position(|c| is_address(c)) {
        return Err(Error::input(
            Location::at(path, 1, 1),
            format!(
                "line 1 is a customer's row, not a header (column {} holds an email address): add a first line that names the columns, such as email,consent_marketing,consent_at,…",
                i + 1
            ),
        ));
    }
    let mut names: Vec<String> = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let n = normalise_name(r);
        if n.is_empty() {
            return Err(Error::input(
                Location::at(path, 1, i + 1),
                format!("column {} has no usable name", i + 1),
            ));
        }
        if let Some(j) = names.iter().position(|m| *m == n) {
            return Err(Error::input(
                Location::at(path, 1, i + 1),
                format!(
                    "columns `{}` and `{}` both become the variable `{}`: rename one of them",
                    names::excerpt(&raw[j], 60),
                    names::excerpt(r, 60),
                    names::excerpt(&n, 60)
                ),
            ));
        }
        names.push(n);
    }
    Ok(names)
}

pub fn read_header(path: &Path, schema: &Schema) -> Result<Header> {
    let format = Format::of(path, &schema.csv)?;
    let mut reader = open_reader(path, format)?;
    let raw_header = reader
        .byte_headers()
        .map_err(|e| {
            if is_row_too_long(&e) {
                row_too_long(path, format, 0, 1, &[])
            } else {
                csv_error(path, &e)
            }
        })?
        .clone();
    let mut raw = Vec::with_capacity(raw_header.len());
    for (i, field) in raw_header.iter().enumerate() {
        let field = if i == 0 {
            field.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(field)
        } else {
            field
        };
        let name = std::str::from_utf8(field).map_err(|_| {
            Error::input(
                Location::at(path, 1, i + 1),
                "the header row is not UTF-8 text: is this a CSV file? Save it as CSV UTF-8",
            )
        })?;
        raw.push(name.trim().to_string());
    }
    let names = column_names(path, &raw)?;
    let schema_at = || {
        schema
            .path
            .as_deref()
            .map_or_else(|| Location::file(path), Location::file)
    };
    // A role column is found whatever its case or separators (`Consent_Marketing`,
    // `ConsentMarketing`); two columns that both fit are a question only the user can answer.
    let find = |role: Role, spec: Option<&RoleSpec>| -> Result<Option<usize>> {
        if spec.is_some_and(|s| s.constant().is_some()) {
            return Ok(None);
        }
        let renamed = spec.and_then(RoleSpec::column);
        let wanted = renamed.map_or(role.default_column(), str::trim);
        if renamed.is_some()
            && let Some(i) = raw.iter().position(|r| r == wanted)
        {
            return Ok(Some(i));
        }
        let fits: Vec<usize> = (0..raw.len())
            .filter(|&i| names::same(&raw[i], wanted))
            .collect();
        match fits.as_slice() {
            [] if renamed.is_some() => Err(Error::input(
                schema_at(),
                format!(
                    "[columns] {} = \"{wanted}\", but {} has no such column{}",
                    role.default_column(),
                    path.display(),
                    did_you_mean(wanted, raw.iter().map(String::as_str))
                ),
            )),
            [] => Ok(None),
            [i] => Ok(Some(*i)),
            [i, j, ..] => Err(Error::input(
                Location::at(path, 1, j + 1),
                format!(
                    "columns `{}` and `{}` could both be the {} column: map the right one in the schema with [columns] {} = \"…\"",
                    names::excerpt(&raw[*i], 60),
                    names::excerpt(&raw[*j], 60),
                    role.default_column(),
                    role.default_column()
                ),
            )),
        }
    };
    let email_spec = schema.columns.email.as_deref().map(RoleSpec::from);
    let email = find(Role::Email, email_spec.as_ref())?.ok_or_else(|| {
        let hint = names::closest("email", raw.iter().map(String::as_str))
            .map(|c| format!(" (did you mean `{c}`?)"))
            .unwrap_or_default();
        Error::input(
            Location::at(path, 1, 1),
            format!(
                "no `email` column{hint} (columns are: {}); name it `email` or map it in the schema with [columns] email = \"…\"",
                names::listed(raw.iter().map(String::as_str))
            ),
        )
    })?;
    let roles = &schema.columns;
    let consent_marketing = find(Role::ConsentMarketing, roles.consent_marketing.as_ref())?;
    let consent_personalisation = find(
        Role::ConsentPersonalisation,
        roles.consent_personalisation.as_ref(),
    )?;
    let consent_at = find(Role::ConsentAt, roles.consent_at.as_ref())?;
    let constants: Vec<ConstantRole> = [
        (Role::ConsentMarketing, &roles.consent_marketing),
        (Role::ConsentPersonalisation, &roles.consent_personalisation),
        (Role::ConsentAt, &roles.consent_at),
    ]
    .into_iter()
    .filter_map(|(role, spec)| {
        let c = spec.as_ref()?.constant()?;
        Some(ConstantRole {
            role,
            value: c.value.trim().to_string(),
            reason: c.reason.trim().to_string(),
        })
    })
    .collect();
    let mapped: Vec<(Role, Vec<String>)> = [
        (Role::ConsentMarketing, &roles.consent_marketing),
        (Role::ConsentPersonalisation, &roles.consent_personalisation),
    ]
    .into_iter()
    .filter_map(|(role, spec)| {
        let granted = spec.as_ref()?.granted()?;
        Some((role, granted.iter().map(|g| g.trim().to_string()).collect()))
    })
    .collect();
    let taken = [
        Some(email),
        consent_marketing,
        consent_personalisation,
        consent_at,
    ];
    let free: Vec<&str> = (0..raw.len())
        .filter(|i| !taken.contains(&Some(*i)))
        .map(|i| raw[i].as_str())
        .collect();
    let missing = [
        (Role::ConsentMarketing, consent_marketing),
        (Role::ConsentPersonalisation, consent_personalisation),
        (Role::ConsentAt, consent_at),
    ]
    .into_iter()
    .filter(|(role, idx)| idx.is_none() && !constants.iter().any(|c| c.role == *role))
    .map(|(role, _)| MissingRole {
        role: role.default_column(),
        level: if role == Role::ConsentMarketing {
            "error"
        } else {
            "notice"
        },
        did_you_mean: names::closest(role.default_column(), free.iter().copied())
            .map(str::to_string),
        effect: role.when_missing(),
    })
    .collect();
    Ok(Header {
        path: path.to_path_buf(),
        format,
        consent_marketing,
        consent_personalisation,
        consent_at,
        raw,
        names,
        email,
        missing,
        constants,
        mapped,
    })
}

/// One column's values for every well-formed row.
///
/// A column with few distinct values (consent words, country, tier: most of a customer
/// file) is kept as one byte a row and its dictionary; any other as one text buffer and
/// the end of each value. On millions of rows that is the difference between a send that
/// fits in 300 MB and one that does not.
#[derive(Debug, Clone)]
pub struct ColumnData(Store);

#[derive(Debug, Clone)]
enum Store {
    Dict {
        values: Vec<Box<str>>,
        index: std::collections::HashMap<Box<str>, u8>,
        codes: Vec<u8>,
    },
    Text {
        buf: String,
        ends: Vec<u32>,
    },
}

impl Default for ColumnData {
    fn default() -> ColumnData {
        ColumnData(Store::Dict {
            values: Vec::new(),
            index: std::collections::HashMap::new(),
            codes: Vec::new(),
        })
    }
}

impl ColumnData {
    /// `false` when the column outgrows what a `u32` end can address (4 GiB of text).
    fn push(&mut self, v: &str) -> bool {
        if let Store::Dict {
            values,
            index,
            codes,
        } = &mut self.0
        {
            if let Some(&code) = index.get(v) {
                codes.push(code);
                return true;
            }
            if let Ok(code) = u8::try_from(values.len()) {
                values.push(v.into());
                index.insert(v.into(), code);
                codes.push(code);
                return true;
            }
            // The 257th distinct value: from here on, plain text.
            let mut text = ColumnData(Store::Text {
                buf: String::new(),
                ends: Vec::with_capacity(codes.len() * 2),
            });
            for &c in codes.iter() {
                if !text.push(&values[usize::from(c)]) {
                    return false;
                }
            }
            *self = text;
        }
        let Store::Text { buf, ends } = &mut self.0 else {
            return false;
        };
        buf.push_str(v);
        match u32::try_from(buf.len()) {
            Ok(end) => {
                ends.push(end);
                true
            }
            Err(_) => false,
        }
    }

    /// A column of these values (for measurements and tests over made-up data).
    pub fn from_values<'a>(values: impl IntoIterator<Item = &'a str>) -> ColumnData {
        let mut c = ColumnData::default();
        for v in values {
            if !c.push(v) {
                break;
            }
        }
        c
    }

    /// The distinct values and each row's code, when the column is kept as a dictionary:
    /// whatever is decided per value is then decided once per distinct value.
    pub fn dictionary(&self) -> Option<(&[Box<str>], &[u8])> {
        match &self.0 {
            Store::Dict { values, codes, .. } => Some((values, codes)),
            Store::Text { .. } => None,
        }
    }

    pub fn get(&self, row: usize) -> &str {
        match &self.0 {
            Store::Dict { values, codes, .. } => &values[usize::from(codes[row])],
            Store::Text { buf, ends } => {
                let start = if row == 0 { 0 } else { ends[row - 1] as usize };
                &buf[start..ends[row] as usize]
            }
        }
    }

    pub fn len(&self) -> usize {
        match &self.0 {
            Store::Dict { codes, .. } => codes.len(),
            Store::Text { ends, .. } => ends.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The narrowest type the values fit (`schema::infer_type`); a dictionary column's
    /// distinct values are read once each, weighted by their rows.
    pub fn infer_type(&self) -> crate::schema::FieldType {
        match self.dictionary() {
            Some((values, codes)) => {
                let mut counts = vec![0usize; values.len()];
                for c in codes {
                    counts[usize::from(*c)] += 1;
                }
                crate::schema::infer_type_counted(
                    values.iter().map(|v| &**v).zip(counts.iter().copied()),
                )
            }
            None => crate::schema::infer_type(self.iter()),
        }
    }

    /// Doubling growth leaves up to half of each buffer unused; on a million rows that is
    /// tens of megabytes per column.
    fn shrink(&mut self) {
        match &mut self.0 {
            Store::Dict { index, codes, .. } => {
                // Only the loader looks values up.
                *index = std::collections::HashMap::new();
                codes.shrink_to_fit();
            }
            Store::Text { buf, ends } => {
                buf.shrink_to_fit();
                ends.shrink_to_fit();
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: FieldType,
    pub data: ColumnData,
}

/// A row that was skipped before it could be read: its line and why, never its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub line: u64,
    pub reason: String,
}

/// How many full rows are kept for the walker's self-check.
pub const SELF_CHECK_ROWS: usize = 200;

#[derive(Debug, Clone)]
pub struct Audience {
    pub header: Header,
    /// Kept columns; the role columns always, then the fields the campaign uses.
    pub columns: Vec<Column>,
    /// File line of each well-formed row.
    /// (u32: four billion lines is far beyond any CSV that fits in memory, and on
    /// millions of rows every byte a row counts.)
    lines: Vec<u32>,
    pub malformed: Vec<Malformed>,
    /// The first well-formed rows with every column, to prove the minimised context renders
    /// the same as the whole row (DESIGN §4 self-check). Indexed like `lines`.
    pub full_sample: Vec<Vec<String>>,
}

impl Audience {
    /// Reads the file keeping the role columns and `fields` (template-variable names).
    pub fn load(header: Header, fields: &BTreeSet<String>, schema: &Schema) -> Result<Audience> {
        let path = header.path.clone();
        let mut keep: Vec<usize> = Vec::new();
        for idx in [
            Some(header.email),
            header.consent_marketing,
            header.consent_personalisation,
            header.consent_at,
        ]
        .into_iter()
        .flatten()
        {
            if !keep.contains(&idx) {
                keep.push(idx);
            }
        }
        for f in fields {
            if let Some(i) = header.index(f).filter(|i| !keep.contains(i)) {
                keep.push(i);
            }
        }
        let mut data: Vec<ColumnData> = vec![ColumnData::default(); keep.len()];
        let mut lines = Vec::new();
        let mut malformed = Vec::new();
        let mut full_sample = Vec::new();
        let mut reader = open_reader(&path, header.format)?;
        // Read past the header first, so each row's start below is its own.
        reader.byte_headers().map_err(|e| csv_error(&path, &e))?;
        let width = header.names.len();
        let mut record = csv::ByteRecord::new();
        loop {
            let start = reader.position().byte();
            reader.get_mut().row_start = start;
            match reader.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) if is_row_too_long(&e) => {
                    let line = reader.get_mut().line_at(start);
                    return Err(row_too_long(
                        &path,
                        header.format,
                        start,
                        line,
                        &header.names,
                    ));
                }
                Err(e) => {
                    // An I/O error mid-file cannot be skipped past safely.
                    if let csv::ErrorKind::Io(_) = e.kind() {
                        return Err(csv_error(&path, &e));
                    }
                    let line = match e.position() {
                        Some(p) => reader.get_mut().line_at(p.byte()),
                        None => 0,
                    };
                    malformed.push(Malformed {
                        line,
                        reason: format!("unreadable row: {}", e),
                    });
                    continue;
                }
            }
            let line = match record.position() {
                Some(p) => reader.get_mut().line_at(p.byte()),
                None => 0,
            };
            if record.as_slice().len() > MAX_FIELD_BYTES
                && let Some(i) = (0..record.len()).find(|&i| record[i].len() > MAX_FIELD_BYTES)
            {
                return Err(field_too_long(
                    &path,
                    line,
                    i,
                    record[i].len(),
                    &header.names,
                ));
            }
            if record.len() != width {
                malformed.push(Malformed {
                    line,
                    reason: format!("has {} fields, the header has {width}", record.len()),
                });
                continue;
            }
            if let Some(bad) = (0..width).find(|&i| std::str::from_utf8(&record[i]).is_err()) {
                malformed.push(Malformed {
                    line,
                    reason: format!("field `{}` is not valid UTF-8", header.names[bad]),
                });
                continue;
            }
            for (slot, &idx) in keep.iter().enumerate() {
                let v = std::str::from_utf8(&record[idx]).unwrap_or_default();
                let v = if idx == header.email { v.trim() } else { v };
                if !data[slot].push(v) {
                    return Err(Error::input(
                        Location::file(&path),
                        format!(
                            "column `{}` holds more than 4 GiB of text",
                            header.names[idx]
                        ),
                    ));
                }
            }
            if full_sample.len() < SELF_CHECK_ROWS {
                full_sample.push(
                    record
                        .iter()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .collect(),
                );
            }
            let Ok(line) = u32::try_from(line) else {
                return Err(Error::input(
                    Location::file(&path),
                    "more than 4,294,967,295 lines: split the file",
                ));
            };
            lines.push(line);
        }
        for d in &mut data {
            d.shrink();
        }
        lines.shrink_to_fit();
        let columns: Vec<Column> = keep
            .iter()
            .zip(data)
            .map(|(&idx, data)| {
                let name = header.names[idx].clone();
                let ty = schema
                    .field(&name)
                    .and_then(|s| s.ty)
                    .unwrap_or_else(|| data.infer_type());
                Column { name, ty, data }
            })
            .collect();
        let mut columns: Vec<Column> = columns;
        let mut mapped_columns = Vec::new();
        // A consent column in the platform's words reads as tact's: `yes` for the values
        // that grant, `no` for every other, beside the column as written.
        for (role, granted) in &header.mapped {
            let Some(src) = header
                .role_index(*role)
                .and_then(|i| columns.iter().find(|c| c.name == header.names[i]))
            else {
                continue;
            };
            let mut data = ColumnData::default();
            for v in src.data.iter() {
                let yes = granted.iter().any(|g| g == v.trim());
                data.push(if yes { "yes" } else { "no" });
            }
            data.shrink();
            let name = format!("{} (mapped)", role.default_column());
            mapped_columns.push(Column {
                name,
                ty: FieldType::Text,
                data,
            });
        }
        for c in &header.constants {
            let mut data = ColumnData::default();
            for _ in 0..lines.len() {
                data.push(&c.value);
            }
            data.shrink();
            let ty = if c.role == Role::ConsentAt {
                FieldType::Date
            } else {
                FieldType::Text
            };
            columns.push(Column {
                name: c.column_name(),
                ty,
                data,
            });
        }
        columns.extend(mapped_columns);
        Ok(Audience {
            header,
            columns,
            lines,
            malformed,
            full_sample,
        })
    }

    /// The file line of a well-formed row.
    pub fn line(&self, row: usize) -> u64 {
        u64::from(self.lines[row])
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Rows in the file, the malformed ones included.
    pub fn rows(&self) -> usize {
        self.lines.len() + self.malformed.len()
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    pub fn role(&self, role: Role) -> Option<&Column> {
        if let Some(c) = self.header.constant(role) {
            return self.column(&c.column_name());
        }
        if self.header.mapped.iter().any(|(r, _)| *r == role) {
            return self.column(&format!("{} (mapped)", role.default_column()));
        }
        let idx = self.header.role_index(role)?;
        self.column(&self.header.names[idx])
    }

    pub fn email(&self, row: usize) -> &str {
        self.columns[0].data.get(row)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(content: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content).unwrap();
        f
    }

    proptest::proptest! {
        /// A dictionary column's type, read once per distinct value, is the type read
        /// row by row; and so is a column past 256 distinct values.
        #[test]
        fn a_dictionary_column_infers_the_type_its_rows_do(
            values in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(String::new()),
                    "(yes|no|TRUE|n/a| 12 |2026-11-23|2026-11-23T10:00:00Z|1\\.5|x)",
                    "[0-9]{1,3}",
                ],
                0..40,
            ),
            repeat in 1usize..12,
            distinct in proptest::bool::ANY,
        ) {
            let mut rows: Vec<String> = values.iter().cycle().take(values.len() * repeat).cloned().collect();
            if distinct {
                rows.extend((0..300).map(|i| format!("{}", i * 7)));
            }
            let col = ColumnData::from_values(rows.iter().map(String::as_str));
            proptest::prop_assert_eq!(col.dictionary().is_some(), !distinct);
            proptest::prop_assert_eq!(
                col.infer_type(),
                crate::schema::infer_type(rows.iter().map(String::as_str))
            );
        }
    }

    fn load_all(content: &[u8]) -> Result<Audience> {
        let f = write(content);
        let schema = Schema::default();
        let header = read_header(f.path(), &schema)?;
        let fields: BTreeSet<String> = header.names.iter().cloned().collect();
        Audience::load(header, &fields, &schema)
    }

    #[test]
    fn bom_crlf_quoted_comma_and_newline() {
        let a = load_all(b"\xEF\xBB\xBFemail,name,note\r\na@example.com,\"Smith, Jr.\",\"two\r\nlines\"\r\nb@example.com,B,x\r\n").unwrap();
        assert_eq!(a.header.names, ["email", "name", "note"]);
        assert_eq!(a.len(), 2);
        assert_eq!(a.column("name").unwrap().data.get(0), "Smith, Jr.");
        assert_eq!(a.column("note").unwrap().data.get(0), "two\r\nlines");
        // The second record starts on line 4, after the quoted newline.
        assert_eq!((a.line(0), a.line(1)), (2, 4));
    }

    #[test]
    fn a_column_reads_back_the_same_before_and_after_outgrowing_its_dictionary() {
        let values: Vec<String> = (0..600).map(|i| format!("v{}", i % 300)).collect();
        let mut c = ColumnData::default();
        for (i, v) in values.iter().enumerate() {
            assert!(c.push(v));
            if i == 255 {
                assert!(
                    matches!(c.0, Store::Dict { .. }),
                    "256 distinct values fit in a byte"
                );
            }
        }
        assert!(
            matches!(c.0, Store::Text { .. }),
            "the 257th distinct value switches"
        );
        c.shrink();
        assert_eq!(c.iter().collect::<Vec<_>>(), values);
        let mut few = ColumnData::default();
        for v in ["yes", "", "no", "yes"] {
            few.push(v);
        }
        few.shrink();
        assert_eq!(few.iter().collect::<Vec<_>>(), ["yes", "", "no", "yes"]);
    }

    #[test]
    fn line_numbers_survive_crlf_and_quoted_newlines() {
        let a =
            load_all(b"email,n\r\na@example.com,\"x\ny\"\r\nb@example.com,z\r\nc@example.com\r\n")
                .unwrap();
        assert_eq!((a.line(0), a.line(1)), (2, 4));
        assert_eq!(a.malformed[0].line, 5);
    }

    #[test]
    fn ragged_and_non_utf8_rows_are_skipped_with_their_line() {
        let a = load_all(b"email,name\na@example.com,A\nb@example.com\nc@example.com,\xff\xfe\nd@example.com,D\n").unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a.rows(), 4);
        assert_eq!(
            a.malformed[0],
            Malformed {
                line: 3,
                reason: "has 1 fields, the header has 2".into()
            }
        );
        assert_eq!(a.malformed[1].line, 4);
        assert!(a.malformed[1].reason.contains("`name` is not valid UTF-8"));
    }

    #[test]
    fn header_errors_name_the_file_and_column() {
        let e = load_all(b"E-mail,First Name,first_name\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":1:3:"), "{e}");
        assert!(e.contains("both become the variable `first_name`"), "{e}");
        let e = load_all(b"name,phone\nA,1\n").unwrap_err().to_string();
        assert!(e.contains("no `email` column"), "{e}");
        let e = load_all(b"\x89PNG\r\n\x1a\n\x00\x00\xff")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn only_used_columns_are_kept() {
        let f = write(b"email,consent_marketing,first_name,secret\na@example.com,yes,Ann,s3cr3t\n");
        let schema = Schema::default();
        let header = read_header(f.path(), &schema).unwrap();
        let fields = BTreeSet::from(["first_name".to_string()]);
        let a = Audience::load(header, &fields, &schema).unwrap();
        let kept: Vec<&str> = a.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(kept, ["email", "consent_marketing", "first_name"]);
    }

    fn load_with(content: &[u8], schema_toml: &str) -> Result<Audience> {
        let f = write(content);
        let sf = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(sf.path(), schema_toml).unwrap();
        let schema = Schema::load(sf.path())?;
        let header = read_header(f.path(), &schema)?;
        let fields: BTreeSet<String> = header.names.iter().cloned().collect();
        Audience::load(header, &fields, &schema)
    }

    fn values(a: &Audience, name: &str) -> Vec<String> {
        a.column(name)
            .unwrap()
            .data
            .iter()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn separators_are_found_from_the_header_row() {
        for (sep, file) in [
            (
                b';',
                &b"email;first_name;note\na@example.com;Ann;\"x, y; z\"\n"[..],
            ),
            (
                b'\t',
                &b"email\tfirst_name\tnote\na@example.com\tAnn\tx, y; z\n"[..],
            ),
            (
                b'|',
                &b"email|first_name|note\na@example.com|Ann|x, y; z\n"[..],
            ),
            // Commas inside a quoted header name do not outvote the real separator.
            (
                b';',
                &b"email;\"name, first\";note\na@example.com;Ann;\"x, y; z\"\n"[..],
            ),
            (
                b',',
                &b"email,first_name,note\na@example.com,Ann,\"x, y; z\"\n"[..],
            ),
        ] {
            let a = load_all(file).unwrap();
            assert_eq!(
                a.header.format.delimiter,
                sep,
                "{}",
                String::from_utf8_lossy(file)
            );
            assert_eq!(a.len(), 1);
            assert_eq!(values(&a, "note"), ["x, y; z"]);
        }
    }

    #[test]
    fn utf16_with_a_bom_is_read_and_windows_1252_only_when_the_schema_says() {
        let text =
            "email\tfirst_name\r\nsoren@example.com\tS\u{f8}ren\r\nb@example.com\tJos\u{e9}\r\n";
        let mut le = vec![0xFF, 0xFE];
        le.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        let a = load_all(&le).unwrap();
        assert_eq!(a.header.format.encoding, Some(encoding_rs::UTF_16LE));
        assert_eq!(values(&a, "first_name"), ["S\u{f8}ren", "Jos\u{e9}"]);
        assert_eq!(a.line(1), 3);

        let latin = b"email;first_name\nsoren@example.com;S\xf8ren\nb@example.com;Jos\xe9\n";
        // Unsaid, the bytes are not UTF-8: those rows are skipped by line, never guessed.
        let a = load_all(latin).unwrap();
        assert_eq!(a.len(), 0);
        assert_eq!(a.malformed.len(), 2);
        let a = load_with(latin, "[csv]\nencoding = \"windows-1252\"\n").unwrap();
        assert_eq!(values(&a, "first_name"), ["S\u{f8}ren", "Jos\u{e9}"]);
        let e = load_with(latin, "[csv]\nencoding = \"klingon\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":2:1:") && e.contains("klingon"), "{e}");
        let e = load_with(latin, "[csv]\ndelimiter = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":2:1:"), "{e}");
    }

    #[test]
    fn a_consent_column_in_a_platforms_words_grants_only_the_named_values() {
        let file = b"Email,Email Marketing Consent\na@example.com,SUBSCRIBED\nb@example.com,NEVER_SUBSCRIBED\nc@example.com,UNSUBSCRIBED\nd@example.com,yes\n";
        let schema = "[columns]\nconsent_marketing = { column = \"Email Marketing Consent\", granted = [\"SUBSCRIBED\"] }\n";
        let a = load_with(file, schema).unwrap();
        let m = a.role(Role::ConsentMarketing).unwrap();
        assert_eq!(m.data.iter().collect::<Vec<_>>(), ["yes", "no", "no", "no"]);
        let e = load_with(file, "[columns]\nconsent_marketing = { column = \"Email Marketing Consent\", granted = [] }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":2:1:"), "{e}");
    }

    #[test]
    fn a_consent_role_can_be_a_constant_with_a_reason() {
        let file =
            b"Email Address,CONFIRM_TIME\na@example.com,2025-03-01 10:00:00\nb@example.com,\n";
        let schema = "[columns]\nemail = \"Email Address\"\nconsent_at = \"CONFIRM_TIME\"\nconsent_marketing = { value = \"yes\", reason = \"subscribed export: being in it is the consent\" }\n";
        let a = load_with(file, schema).unwrap();
        let m = a.role(Role::ConsentMarketing).unwrap();
        assert_eq!(m.data.iter().collect::<Vec<_>>(), ["yes", "yes"]);
        assert!(a.header.has_role(Role::ConsentMarketing));
        assert!(
            a.header
                .missing
                .iter()
                .all(|m| m.role != "consent_marketing")
        );
        // Never a template variable: its name cannot be one.
        assert!(a.header.index(&m.name).is_none() && m.name.contains(' '));
        assert_eq!(
            a.header.constants[0].reason,
            "subscribed export: being in it is the consent"
        );
        // Without a reason, or with a value the role cannot read: refused, by line.
        for bad in [
            "[columns]\nconsent_marketing = { value = \"yes\", reason = \" \" }\n",
            "[columns]\nconsent_marketing = { value = \"maybe\", reason = \"r\" }\n",
            "[columns]\nconsent_at = { value = \"last spring\", reason = \"r\" }\n",
        ] {
            let e = load_with(file, bad).unwrap_err().to_string();
            assert!(e.contains(":2:1:"), "{bad}: {e}");
        }
        // An email role cannot be a constant: nothing to send to.
        assert!(
            load_with(
                file,
                "[columns]\nemail = { value = \"a@example.com\", reason = \"r\" }\n"
            )
            .is_err()
        );
    }

    #[test]
    fn schema_renames_roles() {
        let f = write(b"Email Address,opt_in\na@example.com,yes\n");
        let mut schema = Schema::default();
        schema.columns.email = Some("Email Address".into());
        schema.columns.consent_marketing = Some(RoleSpec::from("opt_in"));
        let h = read_header(f.path(), &schema).unwrap();
        assert_eq!(h.email, 0);
        assert_eq!(h.consent_marketing, Some(1));
        schema.columns.consent_at = Some(RoleSpec::from("opt_in_date"));
        let e = read_header(f.path(), &schema).unwrap_err().to_string();
        assert!(e.contains("no such column"), "{e}");
    }

    /// Role columns in another spelling are found; two that fit one role are an error.
    #[test]
    fn roles_are_found_in_any_spelling() {
        let f = write(b"EMAIL,ConsentMarketing,consent-personalisation,Consent At\na@x.example,yes,yes,2026-01-01\n");
        let h = read_header(f.path(), &Schema::default()).unwrap();
        assert_eq!(
            (
                h.email,
                h.consent_marketing,
                h.consent_personalisation,
                h.consent_at
            ),
            (0, Some(1), Some(2), Some(3))
        );
        assert!(h.missing.is_empty());
        let f = write(b"email,opt_in_marketing,tailoring\na@x.example,yes,yes\n");
        let h = read_header(f.path(), &Schema::default()).unwrap();
        let roles: Vec<(&str, Option<&str>)> = h
            .missing
            .iter()
            .map(|m| (m.role, m.did_you_mean.as_deref()))
            .collect();
        assert_eq!(
            roles,
            [
                ("consent_marketing", Some("opt_in_marketing")),
                ("consent_personalisation", None),
                ("consent_at", None)
            ]
        );
        let f = write(b"Email,e-mail\na@x.example,b@x.example\n");
        let e = read_header(f.path(), &Schema::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":1:2:") && e.contains("`Email` and `e-mail`"),
            "{e}"
        );
    }

    #[test]
    fn fields_and_rows_are_bounded() {
        let mut big = b"email,note\na@x.example,ok\nb@x.example,".to_vec();
        big.extend(std::iter::repeat_n(b'z', MAX_FIELD_BYTES + 1));
        big.extend(b"\nc@x.example,ok\n");
        let e = load_all(&big).unwrap_err().to_string();
        assert!(
            e.contains(":3:2:") && e.contains("`note`") && e.contains("64 KiB"),
            "{e}"
        );
        let mut open = b"email,note,x\na@x.example,\"never closed,x\n".to_vec();
        for _ in 0..40_000 {
            open.extend(b"b@x.example,fine,x\n");
        }
        let e = load_all(&open).unwrap_err().to_string();
        assert!(e.contains(":2:2:") && e.contains("quote"), "{e}");
    }

    /// A header of half a million short names fits in a row; checking it took minutes.
    #[test]
    fn the_column_count_is_bounded() {
        let header = |n: usize| {
            let mut h = b"email".to_vec();
            for i in 1..n {
                h.extend(format!(",c{i}").as_bytes());
            }
            h.extend(b"\na@x.example\n");
            h
        };
        assert!(load_all(&header(MAX_COLUMNS)).is_ok());
        let e = load_all(&header(100_000)).unwrap_err().to_string();
        assert!(
            e.contains(&format!(":1:{}:", MAX_COLUMNS + 1)) && e.contains("100000 columns"),
            "{e}"
        );
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        fn piece() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                Just(b",".to_vec()),
                Just(b"\"".to_vec()),
                Just(b"\"\"".to_vec()),
                Just(b"\n".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b"\r".to_vec()),
                Just(b"a@x.example".to_vec()),
                Just(b"yes".to_vec()),
                Just(b"email".to_vec()),
                Just(b"\xEF\xBB\xBF".to_vec()),
                Just(vec![0xff]),
                Just(vec![0xc3]),
                Just(b" ".to_vec()),
                proptest::collection::vec(any::<u8>(), 1..4),
            ]
        }

        /// The records an independent reader sees after the header.
        fn records(bytes: &[u8]) -> usize {
            let mut r = csv::ReaderBuilder::new()
                .flexible(true)
                .has_headers(true)
                .from_reader(bytes);
            let mut rec = csv::ByteRecord::new();
            let mut n = 0;
            loop {
                match r.read_byte_record(&mut rec) {
                    Ok(false) => return n,
                    Ok(true) | Err(_) => n += 1,
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 192, failure_persistence: None, ..ProptestConfig::default() })]

            /// Quotes, BOMs, CR, CRLF and invalid UTF-8 anywhere: the loader keeps every row
            /// (loaded or named as malformed, at a line inside the file) or refuses the file
            /// with an input error naming it. Never a panic.
            #[test]
            fn any_bytes_load_every_row_or_fail_with_the_file_named(
                bom in any::<bool>(),
                header in prop_oneof![
                    Just("email,consent_marketing,name"),
                    Just("EMAIL,Consent_Marketing,Name"),
                    Just("name,email"),
                    Just(""),
                ],
                crlf in any::<bool>(),
                body in proptest::collection::vec(piece(), 0..60),
            ) {
                let mut bytes = if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
                bytes.extend(header.as_bytes());
                if !header.is_empty() {
                    bytes.extend(if crlf { &b"\r\n"[..] } else { &b"\n"[..] });
                }
                for p in &body {
                    bytes.extend(p);
                }
                let f = write(&bytes);
                let schema = Schema::default();
                let loaded = read_header(f.path(), &schema).and_then(|h| {
                    let fields: BTreeSet<String> = h.names.iter().cloned().collect();
                    Audience::load(h, &fields, &schema)
                });
                match loaded {
                    Ok(a) => {
                        prop_assert_eq!(a.rows(), records(&bytes));
                        let lines = bytes.iter().filter(|b| **b == b'\n').count() as u64 + 1;
                        for l in (0..a.len()).map(|r| a.line(r)).chain(a.malformed.iter().map(|m| m.line)) {
                            prop_assert!((1..=lines).contains(&l), "line {} of {}", l, lines);
                        }
                    }
                    Err(e) => {
                        prop_assert!(e.is_input(), "{}", e);
                        let shown = f.path().display().to_string();
                        prop_assert!(e.to_string().starts_with(&shown), "{}", e);
                    }
                }
            }
        }
    }
}
