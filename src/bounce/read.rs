//! Paths → a stream of reports, one message in memory at a time.
//!
//! A path is a Maildir (a directory with `cur/` or `new/`), another directory (each
//! regular file in it), an mbox (a file starting with `From `), or one message (`.eml`).
//! Directories are read in the order the file system lists them: sorting would hold every
//! name of a large Maildir in memory.
//!
//! mail-parser's own mbox and Maildir iterators read each message whole with no bound;
//! these readers stop keeping a message past [`MAX_REPORT_BYTES`] (it becomes one
//! `too-large` finding) and keep reading to the next one.

use std::collections::VecDeque;
use std::fs::{self, File, ReadDir};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::{MAX_REPORT_BYTES, Report, display, parse_message};

/// Every report under `paths`, parsed as it is read. Never fails: a path or message that
/// cannot be read is a report with one `unknown` finding saying why.
pub fn read_paths(paths: &[PathBuf]) -> impl Iterator<Item = Report> + Send + use<> {
    Reader {
        todo: paths.iter().cloned().collect(),
        stack: Vec::new(),
    }
}

struct Reader {
    todo: VecDeque<PathBuf>,
    /// At most a directory and an mbox found in it: directories are not descended into.
    stack: Vec<Source>,
}

enum Source {
    /// A Maildir's `cur/` then `new/` (the second still to open).
    Maildir {
        dir: ReadDir,
        then: Option<PathBuf>,
    },
    /// A plain directory's regular files.
    Dir(ReadDir),
    Mbox(Box<Mbox>),
}

enum Opened {
    Report(Report),
    Source(Source),
}

impl Iterator for Reader {
    type Item = Report;

    fn next(&mut self) -> Option<Report> {
        loop {
            let opened = match self.stack.last_mut() {
                None => open(&self.todo.pop_front()?),
                Some(Source::Mbox(m)) => match m.next() {
                    Some(r) => return Some(r),
                    None => {
                        self.stack.pop();
                        continue;
                    }
                },
                Some(Source::Dir(dir)) => match next_file(dir) {
                    Some(Ok(p)) => open_file(&p),
                    Some(Err(e)) => return Some(e),
                    None => {
                        self.stack.pop();
                        continue;
                    }
                },
                Some(Source::Maildir { dir, then }) => match next_file(dir) {
                    Some(Ok(p)) => open_file(&p),
                    Some(Err(e)) => return Some(e),
                    None => {
                        let then = then.take();
                        self.stack.pop();
                        match then.map(|p| (fs::read_dir(&p), p)) {
                            Some((Ok(dir), _)) => {
                                self.stack.push(Source::Maildir { dir, then: None })
                            }
                            Some((Err(e), p)) => {
                                return Some(Report::unreadable(display(&p), io_reason(&e)));
                            }
                            None => {}
                        }
                        continue;
                    }
                },
            };
            match opened {
                Opened::Report(r) => return Some(r),
                Opened::Source(s) => self.stack.push(s),
            }
        }
    }
}

fn open(path: &Path) -> Opened {
    let name = display(path);
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return Opened::Report(Report::unreadable(name, io_reason(&e))),
    };
    if !meta.is_dir() {
        return open_file(path);
    }
    let (cur, new) = (path.join("cur"), path.join("new"));
    let (first, then) = match (cur.is_dir(), new.is_dir()) {
        (true, true) => (cur, Some(new)),
        (true, false) => (cur, None),
        (false, true) => (new, None),
        (false, false) => {
            return match fs::read_dir(path) {
                Ok(dir) => Opened::Source(Source::Dir(dir)),
                Err(e) => Opened::Report(Report::unreadable(name, io_reason(&e))),
            };
        }
    };
    match fs::read_dir(&first) {
        Ok(dir) => Opened::Source(Source::Maildir { dir, then }),
        Err(e) => Opened::Report(Report::unreadable(display(&first), io_reason(&e))),
    }
}

/// The next regular, non-hidden file of a directory.
fn next_file(dir: &mut ReadDir) -> Option<Result<PathBuf, Report>> {
    for entry in dir.by_ref() {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => return Some(Err(Report::unreadable("(directory entry)", io_reason(&e)))),
        };
        let hidden = entry.file_name().as_encoded_bytes().first() == Some(&b'.');
        let file = entry.file_type().is_ok_and(|t| t.is_file());
        if file && !hidden {
            return Some(Ok(entry.path()));
        }
    }
    None
}

/// A file: an mbox (it starts with `From `) to stream, else one message, read whole
/// unless it is larger than a report may be. Never reads more than that bound plus one
/// byte, whatever the file claims to be (`/dev/zero`).
fn open_file(path: &Path) -> Opened {
    let name = display(path);
    let opened = (|| -> io::Result<Opened> {
        let f = File::open(path)?;
        let hint = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut r = BufReader::with_capacity(64 * 1024, f);
        if r.fill_buf()?.starts_with(b"From ") {
            let m = Mbox::new(name.clone(), r);
            return Ok(Opened::Source(Source::Mbox(Box::new(m))));
        }
        let too_large = || Opened::Report(Report::unreadable(name.clone(), "too-large"));
        if hint > MAX_REPORT_BYTES as u64 {
            return Ok(too_large());
        }
        let mut raw = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
        r.take(MAX_REPORT_BYTES as u64 + 1).read_to_end(&mut raw)?;
        if raw.len() > MAX_REPORT_BYTES {
            return Ok(too_large());
        }
        Ok(Opened::Report(parse_message(&name, &raw)))
    })();
    opened.unwrap_or_else(|e| Opened::Report(Report::unreadable(name, io_reason(&e))))
}

fn io_reason(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::NotFound => "not-found",
        io::ErrorKind::PermissionDenied => "permission-denied",
        _ => "read-error",
    }
}

/// An mbox, message by message: a `From ` line after an empty line (or at the start)
/// begins one; `>From ` quoting (mboxrd) is undone. A message past the size bound is
/// dropped as it is read, so memory stays at one message whatever the file's size.
pub(crate) struct Mbox {
    name: String,
    reader: Box<dyn BufRead + Send>,
    line: Vec<u8>,
    /// Lines read so far (1-based number of the last one).
    line_no: usize,
    /// The line number of the `From ` line of the message being read, if one began.
    start: Option<usize>,
    prev_blank: bool,
    done: bool,
}

impl Mbox {
    pub(crate) fn new(name: String, reader: impl BufRead + Send + 'static) -> Self {
        Mbox {
            name,
            reader: Box::new(reader),
            line: Vec::new(),
            line_no: 0,
            start: None,
            prev_blank: true,
            done: false,
        }
    }

    fn report(&self, start: usize, raw: Option<&[u8]>) -> Report {
        let name = format!("{}:{start}", self.name);
        match raw {
            Some(raw) => parse_message(&name, raw),
            None => Report::unreadable(name, "too-large"),
        }
    }
}

impl Iterator for Mbox {
    type Item = Report;

    fn next(&mut self) -> Option<Report> {
        if self.done {
            return None;
        }
        let mut msg: Vec<u8> = Vec::new();
        let mut oversize = false;
        loop {
            let n = match read_line(&mut *self.reader, &mut self.line, MAX_REPORT_BYTES + 1) {
                Ok(n) => n,
                Err(e) => {
                    self.done = true;
                    let at = format!("{}:{}", self.name, self.line_no + 1);
                    return Some(Report::unreadable(at, io_reason(&e)));
                }
            };
            if n == 0 {
                self.done = true;
                let start = self.start.take()?;
                return Some(self.report(start, (!oversize).then_some(&msg[..])));
            }
            self.line_no += 1;
            let line = &self.line[..];
            let blank = line == b"\n" || line == b"\r\n";
            let first = self.line_no == 1 && line.starts_with(b"From ");
            if self.prev_blank && (first || is_from_line(line)) {
                self.prev_blank = false;
                let begun = self.start.replace(self.line_no);
                if let Some(start) = begun {
                    // The blank line before a `From ` line belongs to the separator.
                    if msg.ends_with(b"\r\n") {
                        msg.truncate(msg.len() - 2);
                    } else if msg.ends_with(b"\n") {
                        msg.truncate(msg.len() - 1);
                    }
                    return Some(self.report(start, (!oversize).then_some(&msg[..])));
                }
                continue;
            }
            self.prev_blank = blank;
            if self.start.is_none() || oversize {
                continue;
            }
            let body = match line.iter().position(|&b| b != b'>') {
                Some(i) if i > 0 && line[i..].starts_with(b"From ") => &line[1..],
                _ => line,
            };
            if msg.len() + body.len() > MAX_REPORT_BYTES {
                oversize = true;
                msg = Vec::new();
                continue;
            }
            msg.extend_from_slice(body);
        }
    }
}

/// `From sender Mon Nov 30 04:00:00 2026`: a separator has a time of day in it, which
/// a body line beginning "From here on" (in an mbox that did not quote it) does not.
fn is_from_line(line: &[u8]) -> bool {
    line.starts_with(b"From ")
        && line.windows(5).any(|w| {
            w[0].is_ascii_digit()
                && w[1].is_ascii_digit()
                && w[2] == b':'
                && w[3].is_ascii_digit()
                && w[4].is_ascii_digit()
        })
}

/// One line into `out` (cleared first), keeping at most `cap` bytes of it; the rest of an
/// overlong line is consumed and dropped. Returns the bytes consumed (0 at the end).
fn read_line(r: &mut dyn BufRead, out: &mut Vec<u8>, cap: usize) -> io::Result<usize> {
    out.clear();
    let mut consumed = 0;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(consumed);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&buf[..take.min(room)]);
        r.consume(take);
        consumed += take;
        if done {
            return Ok(consumed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbox(text: &[u8]) -> Vec<(String, usize)> {
        Mbox::new("m".into(), BufReader::new(io::Cursor::new(text.to_vec())))
            .map(|r| (r.file, r.findings.len()))
            .collect()
    }

    #[test]
    fn an_mbox_splits_on_from_lines_after_a_blank_line_only() {
        let text = b"From a@example.org Mon Nov 30 04:00:00 2026\nSubject: one\n\nFrom here on it is the body.\n>From quoted\n\nFrom b@example.org Mon Nov 30 04:00:01 2026\nSubject: two\n\nbody\n";
        let got = mbox(text);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["m:1", "m:7"]);
    }

    #[test]
    fn an_empty_or_headless_mbox_gives_nothing_and_does_not_panic() {
        assert!(mbox(b"").is_empty());
        assert!(mbox(b"no from line at all\n").is_empty());
        assert_eq!(mbox(b"From x\n").len(), 1);
    }

    #[test]
    fn lines_are_bounded() -> io::Result<()> {
        let mut out = Vec::new();
        let data = vec![b'x'; 100_000];
        let mut r = BufReader::with_capacity(1024, io::Cursor::new(data));
        assert_eq!(read_line(&mut r, &mut out, 10)?, 100_000);
        assert_eq!(out.len(), 10);
        assert_eq!(read_line(&mut r, &mut out, 10)?, 0);
        Ok(())
    }
}
