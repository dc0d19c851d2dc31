//! Helpers for the CLI integration tests: hermetic `tact` commands, a writable copy of the
//! sample tree, a reader for the sample CSV and a parsed view of `.eml` files.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use mail_parser::{MessageParser, MimeHeaders, PartType};
use tempfile::TempDir;

/// The moment the sample data is built around.
pub const NOW: &str = "2026-11-23T12:00:00Z";

/// Every `reason` key of DESIGN §3, in order.
pub const REASONS: [&str; 13] = [
    "malformed_row",
    "invalid_email",
    "duplicate",
    "no_marketing_consent",
    "stale_consent",
    "suppressed",
    "no_personalisation_consent",
    "segment_error",
    "not_in_segment",
    "already_sent",
    "frequency_capped",
    "render_error",
    "bad_header_value",
];

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn sample_campaign(name: &str) -> PathBuf {
    repo()
        .join("sample-data/campaigns")
        .join(format!("{name}.toml"))
}

pub fn sample_csv() -> PathBuf {
    repo().join("sample-data/customers.csv")
}

/// `tact --state STATE --now NOW`, with no colour and none of the user's environment that
/// could point it elsewhere.
pub fn tact(state: &Path) -> Command {
    tact_at(state, NOW)
}

/// `tact` with its clock at `now`.
pub fn tact_at(state: &Path, now: &str) -> Command {
    let mut cmd = Command::cargo_bin("tact").unwrap();
    cmd.current_dir(repo())
        .env("NO_COLOR", "1")
        .env_remove("TACT_HOME")
        .env_remove("TACT_SMTP_URL")
        .env_remove("TACT_SMTP_PASSWORD")
        .env_remove("TACT_TEST_TO")
        .env_remove("TACT_DATABASE_URL")
        .env_remove("PGPASSWORD")
        .arg("--state")
        .arg(state)
        .arg("--now")
        .arg(now);
    cmd
}

/// What a finished run left behind.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Stdout and stderr together, for "appears nowhere" assertions.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

pub fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs and checks the exit code, printing both streams when it is wrong.
pub fn run_expect(cmd: &mut Command, code: i32) -> Run {
    let r = run(cmd);
    assert_eq!(
        r.code, code,
        "exit code {} (wanted {code})\n--- stdout\n{}\n--- stderr\n{}",
        r.code, r.stdout, r.stderr
    );
    r
}

pub fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

pub fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for entry in fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for entry in rd {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                out.extend(files_under(&entry.path()));
            } else {
                out.push(entry.path());
            }
        }
    }
    out
}

/// A writable copy of `sample-data/` and `templates/` in a temporary directory, so a test
/// can break one file without touching the repository. The campaigns' relative paths
/// (`../customers.csv`, `../../templates`) keep working in the copy.
pub struct Tree {
    pub dir: TempDir,
}

impl Tree {
    pub fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo().join("sample-data"), &dir.path().join("sample-data"));
        copy_dir(&repo().join("templates"), &dir.path().join("templates"));
        Tree { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn campaign(&self, name: &str) -> PathBuf {
        self.path(&format!("sample-data/campaigns/{name}.toml"))
    }

    pub fn state(&self) -> PathBuf {
        self.path("state")
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    /// Rewrites one file through `f`, failing the test if nothing changed.
    pub fn edit(&self, rel: &str, f: impl FnOnce(&str) -> String) {
        let before = self.read(rel);
        let after = f(&before);
        assert_ne!(before, after, "the edit of {rel} changed nothing");
        self.write(rel, &after);
    }

    /// `tact` with this tree's state directory, run from the tree's root.
    pub fn tact(&self) -> Command {
        self.tact_at(NOW)
    }

    pub fn tact_at(&self, now: &str) -> Command {
        let mut cmd = tact_at(&self.state(), now);
        cmd.current_dir(self.root());
        cmd
    }
}

/// One CSV record of the audience, as the test reads it independently of tact.
#[derive(Debug, Clone)]
pub struct Customer {
    /// The physical line the record starts on (1 = header), as tact names rows.
    pub line: u64,
    pub fields: HashMap<String, String>,
    /// Field count differs from the header's.
    pub ragged: bool,
}

impl Customer {
    pub fn get(&self, k: &str) -> &str {
        self.fields.get(k).map_or("", String::as_str)
    }

    pub fn email(&self) -> String {
        self.get("email").trim().to_lowercase()
    }
}

pub fn customers(path: &Path) -> Vec<Customer> {
    let bytes = fs::read(path).unwrap();
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(bytes.as_slice());
    let header: Vec<String> = rdr
        .headers()
        .unwrap()
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_string())
        .collect();
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.unwrap();
        // csv's own line count lags behind on CRLF files: count the newlines before the
        // record's first byte instead.
        let mut at = usize::try_from(rec.position().unwrap().byte()).unwrap();
        while matches!(bytes.get(at), Some(b'\r' | b'\n')) {
            at += 1;
        }
        let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64;
        let fields = header
            .iter()
            .cloned()
            .zip(rec.iter().map(str::to_string))
            .collect();
        out.push(Customer {
            line,
            fields,
            ragged: rec.len() != header.len(),
        });
    }
    out
}

/// DESIGN §2: the consent words that mean granted; everything else does not.
pub fn granted(v: &str) -> bool {
    matches!(
        v.trim().to_lowercase().as_str(),
        "yes" | "y" | "true" | "1" | "opt-in" | "opted-in" | "granted"
    )
}

/// Comfortably inside the 730-day window before NOW (boundary rows are left out).
pub fn clearly_fresh(consent_at: &str) -> bool {
    let day = consent_at.trim().get(..10).unwrap_or("");
    let ok_shape = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").is_ok();
    ok_shape && day > "2024-12-31" && day < "2026-11-20"
}

/// Rows the test expects to be sent (winter-sale: GB, current marketing consent, a plain
/// unique address and a first name that is safe in a header). `personalised` picks the
/// variant by the personalisation-consent column.
pub fn expected_recipients(all: &[Customer], personalised: bool) -> Vec<Customer> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for c in all.iter().filter(|c| !c.ragged) {
        *seen.entry(c.email()).or_default() += 1;
    }
    all.iter()
        .filter(|c| !c.ragged)
        .filter(|c| seen.get(&c.email()) == Some(&1))
        .filter(|c| {
            let e = c.email();
            e.matches('@').count() == 1
                && !e.starts_with('@')
                && !e.ends_with('@')
                && e.split('@').nth(1).is_some_and(|d| d.contains('.'))
        })
        .filter(|c| !c.get("first_name").chars().any(char::is_control))
        .filter(|c| c.get("country") == "GB")
        .filter(|c| granted(c.get("consent_marketing")))
        .filter(|c| clearly_fresh(c.get("consent_at")))
        .filter(|c| granted(c.get("consent_personalisation")) == personalised)
        .cloned()
        .collect()
}

/// A parsed `.eml`, with everything the tests look at copied out of mail-parser.
#[derive(Debug, Clone)]
pub struct Msg {
    pub name: String,
    pub raw: String,
    /// The raw header block (up to the first empty line).
    pub header_block: String,
    pub header_names: Vec<String>,
    pub from_name: Option<String>,
    pub from_addr: String,
    pub to: Vec<String>,
    pub subject: String,
    pub date: Option<i64>,
    pub message_id: String,
    pub reply_to_name: Option<String>,
    pub reply_to_addr: String,
    pub list_id: String,
    pub list_unsubscribe: String,
    pub list_unsubscribe_post: String,
    pub return_path: String,
    /// `type/subtype` of the root.
    pub content_type: String,
    /// `type/subtype` of every leaf part, in order.
    pub leaf_types: Vec<String>,
    pub text: String,
    pub html: String,
}

fn raw_header(m: &mail_parser::Message<'_>, name: &str) -> String {
    m.header_raw(name).unwrap_or("").trim().to_string()
}

fn type_of(ct: Option<&mail_parser::ContentType<'_>>) -> String {
    ct.map_or_else(
        || "text/plain".to_string(),
        |ct| format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")).to_lowercase(),
    )
}

pub fn parse_eml(name: &str, bytes: &[u8]) -> Msg {
    let m = MessageParser::default()
        .parse(bytes)
        .unwrap_or_else(|| panic!("{name}: mail-parser cannot parse it"));
    let raw = String::from_utf8_lossy(bytes).into_owned();
    let header_block = raw
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .split("\n\n")
        .next()
        .unwrap_or("")
        .to_string();
    let from = m.from().and_then(|a| a.first());
    let reply_to = m.reply_to().and_then(|a| a.first());
    let mut leaf_types = Vec::new();
    let mut text = String::new();
    let mut html = String::new();
    for part in &m.parts {
        match &part.body {
            PartType::Text(t) => {
                leaf_types.push(type_of(part.content_type()));
                if text.is_empty() {
                    text = t.to_string();
                }
            }
            PartType::Html(h) => {
                leaf_types.push(type_of(part.content_type()));
                if html.is_empty() {
                    html = h.to_string();
                }
            }
            PartType::Multipart(_) => {}
            _ => leaf_types.push(type_of(part.content_type())),
        }
    }
    Msg {
        name: name.to_string(),
        header_names: m.headers().iter().map(|h| h.name().to_string()).collect(),
        from_name: from.and_then(|a| a.name()).map(str::to_string),
        from_addr: from.and_then(|a| a.address()).unwrap_or("").to_string(),
        to: m
            .to()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.address())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        subject: m.subject().unwrap_or("").to_string(),
        date: m.date().map(mail_parser::DateTime::to_timestamp),
        message_id: m.message_id().unwrap_or("").to_string(),
        reply_to_name: reply_to.and_then(|a| a.name()).map(str::to_string),
        reply_to_addr: reply_to.and_then(|a| a.address()).unwrap_or("").to_string(),
        list_id: raw_header(&m, "List-Id"),
        list_unsubscribe: raw_header(&m, "List-Unsubscribe"),
        list_unsubscribe_post: raw_header(&m, "List-Unsubscribe-Post"),
        return_path: raw_header(&m, "Return-Path"),
        content_type: type_of(m.content_type()),
        leaf_types,
        text,
        html,
        raw,
        header_block,
    }
}

impl Msg {
    pub fn to_addr(&self) -> String {
        assert_eq!(self.to.len(), 1, "{}: To is not one address", self.name);
        self.to[0].to_lowercase()
    }

    /// The token from `List-Unsubscribe: <https://…?t=TOKEN>`.
    pub fn token(&self) -> String {
        let url = self
            .list_unsubscribe
            .trim_start_matches('<')
            .trim_end_matches('>');
        let (_, t) = url
            .split_once("t=")
            .unwrap_or_else(|| panic!("{}: no t= in {url}", self.name));
        t.to_string()
    }

    /// What a reader sees, minus the recipient's own address and token: header values
    /// other than To and List-Unsubscribe, the text part and the HTML part.
    pub fn visible(&self) -> String {
        format!(
            "{}\n{:?}\n{}\n{}\n{}\n{}",
            self.subject, self.from_name, self.list_id, self.message_id, self.text, self.html
        )
    }
}

/// Every file in a preview folder, parsed, sorted by name.
pub fn read_previews(dir: &Path) -> Vec<Msg> {
    let mut out: Vec<Msg> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            parse_eml(&name, &fs::read(e.path()).unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Runs `preview CAMPAIGN --out OUT` and returns the parsed messages.
pub fn preview_all(state: &Path, campaign: &Path, out: &Path) -> (Run, Vec<Msg>) {
    let r = run_expect(
        tact(state)
            .arg("preview")
            .arg(campaign)
            .arg("--out")
            .arg(out),
        0,
    );
    (r, read_previews(out))
}

pub fn check_json(cmd: &mut Command) -> (Run, serde_json::Value) {
    let r = run(cmd);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| {
        panic!(
            "check --json printed no JSON object ({e})\n--- stdout\n{}\n--- stderr\n{}",
            r.stdout, r.stderr
        )
    });
    (r, v)
}

/// Undoes the entity escaping Tera's autoescape applies (`&#x2F;` for `/` and friends), so
/// a test can look for a URL inside an attribute.
pub fn html_unescape(s: &str) -> String {
    s.replace("&#x2F;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `check --json` of the winter sale in a fresh copy of the tree, after `edit`.
pub fn check_after(edit: impl FnOnce(&Tree)) -> (Run, serde_json::Value) {
    let t = Tree::new();
    edit(&t);
    check_json(
        t.tact()
            .arg("check")
            .arg(t.campaign("winter-sale"))
            .arg("--json"),
    )
}

/// The fields named by every finding of `rule` in a `check --json` object.
pub fn rule_fields(v: &serde_json::Value, rule: &str) -> Vec<String> {
    v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["rule"] == rule)
        .flat_map(|f| f["fields"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect()
}

/// A port on 127.0.0.1 that nothing listened on a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (tests/setup.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Certificates made by openssl for the TLS tests: a test CA, a server certificate it signs
/// for 127.0.0.1 and localhost (key mode 0600), and an unrelated CA that signed nothing.
pub struct TestCerts {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub server_crt: PathBuf,
    pub server_key: PathBuf,
}

impl TestCerts {
    /// Writes them into `dir`.
    pub fn make(dir: &Path) -> TestCerts {
        for ca in ["ca", "other-ca"] {
            openssl(
                dir,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.crt"),
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN=tact test {ca}"),
                ],
            );
        }
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        );
        fs::write(
            dir.join("ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("ext");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "ext",
            ],
        );
        fs::set_permissions(dir.join("server.key"), fs::Permissions::from_mode(0o600))
            .expect("chmod");
        TestCerts {
            ca: dir.join("ca.crt"),
            other_ca: dir.join("other-ca.crt"),
            server_crt: dir.join("server.crt"),
            server_key: dir.join("server.key"),
        }
    }
}

/// The effective uid of this process (0: root), from /proc; `u32::MAX` when unreadable.
pub fn euid() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).and_then(|u| u.parse().ok()))
        })
        .unwrap_or(u32::MAX)
}

/// Records `email` as sent `campaign` at `at` in the state's own ledger, as a send would: for
/// tests of what a bounce report does about someone this state mailed (a bounce without a
/// token about a stranger suppresses nobody).
pub fn record_sent(state: &Path, campaign: &str, email: &str, at: &str) {
    use tact::state::ledger::{Ledger, Reply, Status};
    let keys = crate::master_keys(state);
    let mut ledger = Ledger::open(state, false).unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(at)
        .unwrap()
        .with_timezone(&chrono::Utc);
    let h = keys.recipient_hash(email);
    ledger.enqueue(campaign, &[(h, true)], at).unwrap();
    ledger.claim(campaign, &h, at).unwrap();
    ledger
        .finish(campaign, &h, Status::Sent, &Reply::default(), None, at)
        .unwrap();
}
