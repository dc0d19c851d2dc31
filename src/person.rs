//! One person in an audience CSV: every row of their address, found for `export`
//! (GDPR Art. 15) and cut out byte-exactly for `forget` (Art. 17).
//!
//! A row belongs to the person when its email field, trimmed and case-folded, is their
//! address; a structurally broken row (wrong field count) belongs to them when any of its
//! fields is. Cutting keeps every other byte of the file as it was (quoting, line endings,
//! a byte order mark, blank lines) and replaces the file atomically: a temporary file in
//! the same folder with the same permissions, fsynced, renamed over the original, no
//! backup left behind.

use std::fs;
use std::ops::Range;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::audience::{self, Header};
use crate::error::{Error, Location, Result};
use crate::schema::Schema;
use crate::state::normalise_address;

/// One row of the person's, with where it sits in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The physical line the record starts on (1 = header).
    pub line: u64,
    /// The record's bytes, its line terminator included.
    pub range: Range<usize>,
    /// Values by column, in file order, as written (lossy for bytes that are not UTF-8).
    pub values: Vec<String>,
    /// Set when the row has a different field count than the header.
    pub malformed: Option<String>,
}

/// Every row of one address in an audience file.
#[derive(Debug, Clone)]
pub struct Found {
    pub path: PathBuf,
    pub header: Header,
    pub rows: Vec<Row>,
    /// Rows of other people where the address appears inside some field (a referrer, a
    /// note): line and column name. They are not the person's rows, so they stay; the
    /// caller tells the user where to look.
    pub elsewhere: Vec<(u64, String)>,
    /// Records in the file (the header excluded).
    pub records: usize,
    bytes: Vec<u8>,
}

impl Row {
    /// Column name → value pairs; extra fields of a ragged row are named by position.
    pub fn named<'a>(&'a self, header: &'a Header) -> Vec<(String, &'a str)> {
        self.values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let name = header
                    .raw
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("(extra field {})", i + 1));
                (name, v.as_str())
            })
            .collect()
    }

    pub fn get(&self, index: Option<usize>) -> Option<&str> {
        index.and_then(|i| self.values.get(i)).map(String::as_str)
    }
}

fn fold(field: &[u8]) -> String {
    String::from_utf8_lossy(field).trim().to_lowercase()
}

fn csv_error(path: &Path, e: &csv::Error) -> Error {
    Error::input(
        Location::file(path),
        format!("not a readable CSV file: {e}"),
    )
}

/// Finds every row of `email` in the audience file.
pub fn find(path: &Path, schema: &Schema, email: &str) -> Result<Found> {
    let wanted = normalise_address(email);
    if wanted.is_empty() {
        return Err(Error::input(
            Location::file(path),
            "the address to look for is empty",
        ));
    }
    let header = audience::read_header(path, schema)?;
    let raw = fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // A file in another encoding is searched and cut as UTF-8, and written back in its own.
    let bytes = header.format.decode(&raw);
    let width = header.raw.len();
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .delimiter(header.format.delimiter)
        .from_reader(bytes.as_slice());
    rdr.byte_headers().map_err(|e| csv_error(path, &e))?;
    let mut rec = csv::ByteRecord::new();
    let (mut rows, mut elsewhere) = (Vec::new(), Vec::new());
    let (mut records, mut counted_to, mut newlines) = (0usize, 0usize, 0u64);
    while rdr
        .read_byte_record(&mut rec)
        .map_err(|e| csv_error(path, &e))?
    {
        records += 1;
        let reported = rec
            .position()
            .map_or(0, |p| usize::try_from(p.byte()).unwrap_or(usize::MAX));
        let range = record_range(&bytes, reported, rdr.position().byte());
        newlines += count_newlines(&bytes[counted_to.min(range.start)..range.start]);
        counted_to = counted_to.max(range.start);
        let line = newlines + 1;
        let ragged = rec.len() != width;
        let mine = if ragged {
            rec.iter().any(|f| fold(f) == wanted)
        } else {
            fold(&rec[header.email]) == wanted
        };
        if mine {
            rows.push(Row {
                line,
                range,
                values: rec
                    .iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect(),
                malformed: ragged
                    .then(|| format!("has {} fields, the header has {width}", rec.len())),
            });
        } else {
            for (i, f) in rec.iter().enumerate() {
                if String::from_utf8_lossy(f).to_lowercase().contains(&wanted) {
                    let col = header
                        .raw
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| format!("field {}", i + 1));
                    elsewhere.push((line, col));
                }
            }
        }
    }
    Ok(Found {
        path: path.to_path_buf(),
        header,
        rows,
        elsewhere,
        records,
        bytes,
    })
}

/// The bytes of one record: from its first byte to the end of its line terminator. The csv
/// reader reports a record as starting where it began skipping (after a CR, on the LF;
/// before blank lines), and stops right after a CR, so both ends are put right here.
fn record_range(bytes: &[u8], reported: usize, after: u64) -> Range<usize> {
    let mut start = reported.min(bytes.len());
    while matches!(bytes.get(start), Some(b'\r' | b'\n')) {
        start += 1;
    }
    let mut end = usize::try_from(after)
        .unwrap_or(usize::MAX)
        .min(bytes.len())
        .max(start);
    if end > 0 && bytes[end - 1] == b'\r' && bytes.get(end) == Some(&b'\n') {
        end += 1;
    }
    start..end
}

fn count_newlines(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

impl Found {
    /// The file's bytes without the person's rows.
    pub fn without_rows(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len());
        let mut at = 0;
        for r in &self.rows {
            out.extend_from_slice(&self.bytes[at..r.range.start]);
            at = r.range.end;
        }
        out.extend_from_slice(&self.bytes[at..]);
        out
    }

    /// Where a line of the original file is once the person's rows are cut out.
    pub fn line_after_cut(&self, line: u64) -> u64 {
        let above: u64 = self
            .rows
            .iter()
            .filter(|r| r.line < line)
            .map(|r| count_newlines(&self.bytes[r.range.clone()]))
            .sum();
        line.saturating_sub(above)
    }

    /// Rewrites the file without the person's rows, atomically. Before anything is
    /// written, the new content is read back as CSV: it must hold exactly the other
    /// records and none of the person's, or nothing changes.
    pub fn cut(&self, email: &str) -> Result<usize> {
        if self.rows.is_empty() {
            return Ok(0);
        }
        let new = self.without_rows();
        self.verify(&new, email)?;
        let new = match self.header.format.encoding {
            None => new,
            Some(_) => self.header.format.encode(&String::from_utf8_lossy(&new)),
        };
        replace_atomically(&self.path, &new)?;
        Ok(self.rows.len())
    }

    fn verify(&self, new: &[u8], email: &str) -> Result<()> {
        let wanted = normalise_address(email);
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(true)
            .delimiter(self.header.format.delimiter)
            .from_reader(new);
        let fail = |why: &str| {
            Error::Other(format!(
                "{}: cutting the rows out would {why}; the file was not changed",
                self.path.display()
            ))
        };
        let mut rec = csv::ByteRecord::new();
        let mut n = 0;
        while rdr
            .read_byte_record(&mut rec)
            .map_err(|_| fail("leave an unreadable file"))?
        {
            n += 1;
            if rec.len() == self.header.raw.len() && fold(&rec[self.header.email]) == wanted {
                return Err(fail("leave one of the rows behind"));
            }
        }
        if n + self.rows.len() != self.records {
            return Err(fail("change other rows"));
        }
        Ok(())
    }
}

/// Replaces `path` (following a symbolic link to the real file) with `bytes`: a temporary
/// file beside it with the same mode (and owner, where allowed), fsynced, renamed over it,
/// and the folder fsynced. On failure the temporary file is removed.
pub fn replace_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let target = fs::canonicalize(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let meta = fs::metadata(&target).map_err(|source| Error::Read {
        path: target.clone(),
        source,
    })?;
    crate::state::replace_file(&target, bytes, |f| {
        // Root may give the file back to its owner; anyone else already owns it.
        let _ = std::os::unix::fs::fchown(f, Some(meta.uid()), Some(meta.gid()));
        f.set_permissions(fs::Permissions::from_mode(
            meta.permissions().mode() & 0o7777,
        ))
        .map_err(|source| Error::Write {
            path: target.clone(),
            source,
        })
    })
}

/// `jane.doe@example.com` → `j***@e***.com`, wherever an address is shown (`bounces parse`,
/// the composer's audience and preview): the first letter of the local part and of
/// the domain, and the top-level domain. A custom domain can name a person as well as the
/// local part can, so both are cut.
pub fn mask_address(address: &str) -> String {
    let address = address.trim();
    let first = |s: &str| s.chars().next().map(String::from).unwrap_or_default();
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let tld = domain
                .rsplit_once('.')
                .map(|(_, t)| format!(".{t}"))
                .unwrap_or_default();
            format!("{}***@{}***{tld}", first(local), first(domain))
        }
        None => format!("{}***", first(address)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn found(content: &[u8], email: &str) -> (tempfile::TempDir, Found) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("people.csv");
        fs::write(&p, content).unwrap();
        let f = find(&p, &Schema::default(), email).unwrap();
        (dir, f)
    }

    #[test]
    fn masking_cuts_local_part_and_domain() {
        assert_eq!(mask_address("jane.doe@example.com"), "j***@e***.com");
        assert_eq!(mask_address(" j@mail.example.org "), "j***@m***.org");
        assert_eq!(mask_address("nodomain"), "n***");
        assert_eq!(mask_address("x@localhost"), "x***@l***");
        assert_eq!(mask_address(""), "***");
        assert_eq!(mask_address("élodie@exämple.fr"), "é***@e***.fr");
    }

    #[test]
    fn ranges_cover_records_exactly_with_crlf_bom_quotes_and_blank_lines() {
        let csv = b"\xEF\xBB\xBFemail,note\r\nann@x.example,\"a\r\nb\"\r\n\r\n ANN@X.example ,\"q, \"\"r\"\"\"\r\nbob@x.example,ann@x.example wrote\r\nann@x.example,last";
        let (_d, f) = found(csv, "Ann@X.Example");
        assert_eq!(f.rows.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 5, 7]);
        assert_eq!(
            &csv[f.rows[0].range.clone()],
            b"ann@x.example,\"a\r\nb\"\r\n"
        );
        assert_eq!(f.rows[1].values[1], "q, \"r\"");
        assert_eq!(f.elsewhere, [(6, "note".to_string())]);
        assert_eq!(f.line_after_cut(6), 3, "header, blank line, then that row");
        assert_eq!(f.records, 4);
        assert_eq!(
            f.without_rows(),
            b"\xEF\xBB\xBFemail,note\r\n\r\nbob@x.example,ann@x.example wrote\r\n"
        );
    }

    proptest::proptest! {
        // No regressions folder at the top of the repo.
        #![proptest_config(proptest::prelude::ProptestConfig { failure_persistence: None, ..proptest::prelude::ProptestConfig::default() })]
        /// Whatever the line endings, quoting, blank lines and final newline, the cut file
        /// is the original with exactly the person's record texts taken out.
        #[test]
        fn cutting_removes_exactly_the_persons_records(
            rows in proptest::collection::vec(
                (0usize..3, proptest::bool::ANY, proptest::bool::ANY, proptest::bool::ANY, 0usize..3),
                0..12,
            ),
            final_newline in proptest::bool::ANY,
        ) {
            let addrs = ["ann@x.example", " ANN@x.example", "bob@x.example"];
            let mut file = b"email,note\n".to_vec();
            let mut expected = file.clone();
            let n = rows.len();
            for (i, (who, crlf, quoted, blank, note)) in rows.into_iter().enumerate() {
                let note = ["plain", "\"two\r\nlines\"", "\"a, \"\"b\"\"\""][note];
                let email = if quoted { format!("\"{}\"", addrs[who]) } else { addrs[who].to_string() };
                let mut text = format!("{email},{note}").into_bytes();
                if i + 1 < n || final_newline {
                    text.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                }
                let gap: &[u8] = if blank && i + 1 < n { b"\n" } else { b"" };
                file.extend_from_slice(&text);
                file.extend_from_slice(gap);
                if who == 2 {
                    expected.extend_from_slice(&text);
                }
                expected.extend_from_slice(gap);
            }
            let (_d, f) = found(&file, "ann@x.example");
            let cut = f.without_rows();
            proptest::prop_assert_eq!(
                String::from_utf8_lossy(&cut),
                String::from_utf8_lossy(&expected)
            );
        }
    }

    #[test]
    fn lf_files_ragged_rows_and_no_match() {
        let csv = b"id,email,name\n1,ann@x.example,Ann\n2,ann@x.example\n3,bob@x.example,Bob\n";
        let (_d, f) = found(csv, "ann@x.example");
        assert_eq!(f.rows.len(), 2);
        assert!(f.rows[1].malformed.is_some());
        assert_eq!(f.without_rows(), b"id,email,name\n3,bob@x.example,Bob\n");
        let (_d, none) = found(csv, "carol@x.example");
        assert!(none.rows.is_empty());
        assert_eq!(none.without_rows(), csv);
    }

    #[test]
    fn cut_is_atomic_keeps_the_mode_and_leaves_no_other_file() {
        let (dir, f) = found(b"email\nann@x.example\nbob@x.example\n", "ann@x.example");
        let p = dir.path().join("people.csv");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(f.cut("ann@x.example").unwrap(), 1);
        assert_eq!(fs::read(&p).unwrap(), b"email\nbob@x.example\n");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "a temporary file was left behind");
    }

    #[test]
    fn a_symlinked_audience_is_rewritten_where_it_lives() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.csv");
        fs::write(&real, "email\nann@x.example\nbob@x.example\n").unwrap();
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let f = find(&link, &Schema::default(), "ann@x.example").unwrap();
        f.cut("ann@x.example").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&real).unwrap(), b"email\nbob@x.example\n");
    }
}
