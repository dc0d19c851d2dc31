//! "+ new from a CSV…" in the picker: the path and the name typed, `onboard::create` run
//! (what `tact new` runs), what it said shown over the campaign it opened. Every refusal
//! keeps what was typed; nothing is written over; no value from the file is on screen.
//! Snapshots at 120×40 and 80×24.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{Action, App, Effect, PromptKind, update};
use super::dispatch;
use super::from_csv::{completion, suggested_name};
use super::keys::action_for_key;
use super::tests::{ctx, screen, settle, typed};

const MAILCHIMP: &str = "subscribed_members_export_5f2a.csv";

/// A folder with Mailchimp's three files, and a picker with no campaign that writes into
/// `<folder>/campaigns`. The folder's name has a fixed length so that snapshots, which
/// show it as `/tmp/snapXXXXXX`, wrap the same way on every run.
struct Desk {
    dir: tempfile::TempDir,
    app: App,
}

impl Desk {
    fn new() -> Desk {
        let dir = tempfile::Builder::new()
            .prefix("snap")
            .rand_bytes(6)
            .tempdir()
            .unwrap();
        let exports = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onboard/exports");
        for f in [
            MAILCHIMP,
            "unsubscribed_members_export_5f2a.csv",
            "cleaned_members_export_5f2a.csv",
        ] {
            std::fs::copy(exports.join(f), dir.path().join(f)).unwrap();
        }
        let mut app = App::picking(Vec::new(), ctx());
        app.colour = false;
        app.from_csv.dir = dir.path().join("campaigns");
        Desk { dir, app }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn csv(&self) -> String {
        self.path(MAILCHIMP).display().to_string()
    }

    /// The screen with the folder's random part masked (same length: same wrapping).
    fn screen(&self, w: u16, h: u16) -> String {
        let real = self.dir.path().display().to_string();
        let name = self.dir.path().file_name().unwrap().to_string_lossy();
        let masked = real.replace(name.as_ref(), "snapXXXXXX");
        assert_eq!(real.chars().count(), masked.chars().count());
        screen(&self.app, w, h).replace(&real, &masked)
    }

    fn snap(&self, name: &str) {
        for (w, h) in [(120, 40), (80, 24)] {
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), self.screen(w, h));
        }
    }

    /// Every file under the folder, relative, sorted.
    fn files(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(self.dir.path()).unwrap();
                    out.push(rel.display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    fn kind(&self) -> Option<PromptKind> {
        self.app.prompt.as_ref().map(|p| p.kind)
    }

    fn error(&self) -> String {
        self.app
            .prompt
            .as_ref()
            .and_then(|p| p.error.clone())
            .unwrap_or_default()
    }

    fn input(&self) -> String {
        self.app
            .prompt
            .as_ref()
            .map(|p| p.input.text.clone())
            .unwrap_or_default()
    }

    /// Path, Enter, name, Enter, and the work run: what a person does.
    fn make(&mut self, path: &str, name: &str) {
        dispatch(&mut self.app, Action::NewFromCsv);
        assert_eq!(self.kind(), Some(PromptKind::CsvPath));
        typed(&mut self.app, path);
        dispatch(&mut self.app, Action::Submit);
        assert_eq!(self.kind(), Some(PromptKind::CsvName), "{}", self.error());
        typed(&mut self.app, name);
        dispatch(&mut self.app, Action::Submit);
        settle(&mut self.app);
    }
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

/// Every value in the export's rows (not its header) long enough to mean something: an
/// address, a name, a note, a timestamp, an IP address.
fn values(file: &Path) -> Vec<String> {
    let mut r = csv::Reader::from_path(file).unwrap();
    let mut out: Vec<String> = r
        .records()
        .flat_map(|rec| {
            rec.unwrap()
                .iter()
                .map(|v| v.trim().trim_matches('"').to_string())
                .collect::<Vec<_>>()
        })
        .filter(|v| v.chars().count() >= 4)
        .collect();
    out.sort();
    out.dedup();
    out
}

fn assert_no_values(d: &Desk, values: &[String], when: &str) {
    for (w, h) in [(120, 40), (80, 24)] {
        let s = d.screen(w, h);
        for v in values {
            assert!(!s.contains(v.as_str()), "{when}: `{v}` is on screen:\n{s}");
        }
    }
}

#[test]
fn the_picker_offers_it_and_starts_there_without_campaigns() {
    let d = Desk::new();
    assert_eq!(d.app.picker_index, 1);
    let s = d.screen(80, 24);
    assert!(s.contains("> + new from a CSV…"), "{s}");
    d.snap("from_csv_empty_picker");
    // Enter on it (or `c`) asks for the file.
    let mut d = d;
    dispatch(&mut d.app, Action::Select);
    assert_eq!(d.kind(), Some(PromptKind::CsvPath));
    assert!(d.app.effects.is_empty());
    let esc = action_for_key(&d.app, key(KeyCode::Esc)).unwrap();
    dispatch(&mut d.app, esc);
    assert!(d.app.prompt.is_none() && d.app.in_picker() && !d.app.quit);
    let c = action_for_key(&d.app, key(KeyCode::Char('c'))).unwrap();
    dispatch(&mut d.app, c);
    assert_eq!(d.kind(), Some(PromptKind::CsvPath));
    // Below the campaigns and "+ new campaign" when there are some.
    let mut a = App::picking(vec![super::tests::campaign("winter-sale")], ctx());
    for _ in 0..5 {
        update(&mut a, Action::Down);
    }
    assert_eq!(a.picker_index, 2);
    dispatch(&mut a, Action::Select);
    assert_eq!(a.prompt.as_ref().map(|p| p.kind), Some(PromptKind::CsvPath));
}

#[test]
fn a_path_and_a_name_make_the_campaign_tact_new_makes_and_open_it() {
    let mut d = Desk::new();
    let csv = d.csv();
    d.app.from_csv.start = "~/Downloads/".into();
    dispatch(&mut d.app, Action::NewFromCsv);
    // The starting folder is typed in, ready to be completed.
    assert_eq!(d.input(), "~/Downloads/");
    typed(&mut d.app, &csv);
    dispatch(&mut d.app, Action::Submit);
    assert_eq!(d.kind(), Some(PromptKind::CsvName));
    // A name made from the file's, which the name rule takes.
    assert_eq!(d.input(), "subscribed-members-export-5f2a");
    d.snap("from_csv_name");
    typed(&mut d.app, "spring-news");
    dispatch(&mut d.app, Action::Submit);
    assert!(d.app.prompt.is_none());
    assert!(d.app.from_csv.running);
    assert!(matches!(
        &d.app.effects[..],
        [Effect::FromCsv { name, .. }] if name == "spring-news"
    ));
    assert!(d.app.status.as_deref().unwrap().contains("reading"));
    // Nothing is written until the work runs: the UI thread only asked for it.
    assert!(!d.path("campaigns").exists());
    settle(&mut d.app);
    assert_eq!(
        d.files(),
        [
            "campaigns/spring-news.toml",
            "campaigns/templates/spring-news.html.tera",
            "campaigns/templates/spring-news.txt.tera",
            "cleaned_members_export_5f2a.csv",
            "subscribed_members_export_5f2a.csv",
            "subscribed_members_export_5f2a.schema.toml",
            "unsubscribed_members_export_5f2a.csv",
        ]
    );
    // Byte for byte what `onboard::create` (the function `tact new` calls) writes for
    // the same file and name in a folder of the same shape.
    let twin = Desk::new();
    let made = tact::onboard::create(
        "spring-news",
        &twin.path(MAILCHIMP),
        &twin.path("campaigns"),
    )
    .unwrap();
    for f in d.files() {
        assert_eq!(
            std::fs::read(d.path(&f)).unwrap(),
            std::fs::read(twin.path(&f)).unwrap(),
            "{f}"
        );
    }
    // What it said is over the campaign, which opened and loads underneath.
    let said = d.app.said.as_ref().unwrap();
    let here = d.dir.path().display().to_string();
    let there = twin.dir.path().display().to_string();
    assert_eq!(
        format!("{:?}", said.sections),
        format!("{:?}", made.report()).replace(&there, &here)
    );
    let titles: Vec<&str> = said.sections.iter().map(|(t, _)| *t).collect();
    assert!(titles.contains(&"Recognised:"), "{titles:?}");
    assert!(
        titles.contains(&"Missing, and what it means:"),
        "{titles:?}"
    );
    let campaign = d.path("campaigns/spring-news.toml");
    assert_eq!(d.app.path.as_deref(), Some(campaign.as_path()));
    assert!(!d.app.in_picker());
    assert!(d.app.load_error.is_none(), "{:?}", d.app.load_error);
    let l = d.app.loaded.as_ref().unwrap();
    assert_eq!(l.prepared.campaign.name, "spring-news");
    assert!(l.checked());
    assert_eq!(l.prepared.audience.len(), 120);
    assert!(d.app.recipients_count() > 0);
    let s = d.screen(120, 40);
    assert!(s.contains("tact new wrote"), "{s}");
    assert!(s.contains("Mailchimp"), "{s}");
    assert!(s.contains("unsubscribed_members_export_5f2a.csv"), "{s}");
    d.snap("from_csv_said");
    // Scroll, then Enter: the campaign, and the picker lists it when q goes back.
    press(&mut d.app, KeyCode::Down);
    assert_eq!(d.app.said.as_ref().unwrap().scroll, 1);
    // While it is up, keys do not reach the campaign underneath.
    assert!(action_for_key(&d.app, key(KeyCode::Char('s'))).is_none());
    assert!(action_for_key(&d.app, key(KeyCode::Tab)).is_none());
    press(&mut d.app, KeyCode::Enter);
    assert!(d.app.said.is_none());
    assert!(d.screen(120, 40).contains("spring-news · Overview"));
    press(&mut d.app, KeyCode::Char('q'));
    assert!(d.app.in_picker());
    assert_eq!(d.app.picker.as_deref(), Some(&[campaign][..]));
    assert_eq!(d.app.picker_index, 0);
}

fn press(a: &mut App, code: KeyCode) {
    if let Some(action) = action_for_key(a, key(code)) {
        dispatch(a, action);
    }
}

#[test]
fn a_bad_path_keeps_what_was_typed_and_says_why() {
    let mut d = Desk::new();
    std::fs::write(d.path("empty.csv"), "").unwrap();
    dispatch(&mut d.app, Action::NewFromCsv);
    let missing = d.path("nope.csv").display().to_string();
    let folder = d.dir.path().display().to_string();
    for (path, says) in [
        ("", "type the path of the CSV file"),
        (missing.as_str(), "no file at"),
        (folder.as_str(), "is a folder"),
    ] {
        typed(&mut d.app, path);
        dispatch(&mut d.app, Action::Submit);
        assert_eq!(d.kind(), Some(PromptKind::CsvPath), "{path}");
        assert!(d.error().contains(says), "{path}: {}", d.error());
        assert_eq!(d.input(), path);
    }
    d.snap("from_csv_no_file");
    // A file that is not a CSV: refused by the reader, with its file, line and column;
    // back at the path, which is kept, and the name is kept for the next try.
    let empty = d.path("empty.csv").display().to_string();
    typed(&mut d.app, &empty);
    dispatch(&mut d.app, Action::Submit);
    typed(&mut d.app, "first-try");
    dispatch(&mut d.app, Action::Submit);
    settle(&mut d.app);
    assert_eq!(d.kind(), Some(PromptKind::CsvPath));
    assert_eq!(d.input(), empty);
    assert!(d.error().contains(&format!("{empty}:1:1")), "{}", d.error());
    assert!(d.error().contains("no header row"), "{}", d.error());
    assert!(!d.app.from_csv.running);
    assert!(d.app.in_picker() && d.app.said.is_none());
    assert!(!d.path("campaigns/first-try.toml").exists());
    assert!(!d.path("empty.schema.toml").exists());
    // Fixed: the right file, and the name typed before comes back.
    let csv = d.csv();
    typed(&mut d.app, &csv);
    dispatch(&mut d.app, Action::Submit);
    assert_eq!(d.input(), "first-try");
    dispatch(&mut d.app, Action::Submit);
    settle(&mut d.app);
    assert!(d.path("campaigns/first-try.toml").is_file());
    assert!(d.app.said.is_some());
}

#[test]
fn refused_names_and_files_already_there_write_nothing() {
    let mut d = Desk::new();
    std::fs::create_dir_all(d.path("campaigns/templates")).unwrap();
    std::fs::write(d.path("campaigns/taken.toml"), "# mine\n").unwrap();
    std::fs::write(d.path("campaigns/templates/tmpl.html.tera"), "mine").unwrap();
    let before = d.files();
    dispatch(&mut d.app, Action::NewFromCsv);
    let csv = d.csv();
    typed(&mut d.app, &csv);
    dispatch(&mut d.app, Action::Submit);
    for (name, says) in [
        ("", "type a name"),
        ("Spring", "`S` is not allowed"),
        ("spring_news", "`_` is not allowed"),
        ("../x", "`.` is not allowed"),
        ("2026-news", "start with a letter"),
        ("news-", "only joins two words"),
        ("taken", "taken.toml already exist"),
        ("tmpl", "tmpl.html.tera already exist"),
    ] {
        typed(&mut d.app, name);
        dispatch(&mut d.app, Action::Submit);
        assert_eq!(d.kind(), Some(PromptKind::CsvName), "{name}");
        assert!(d.error().contains(says), "{name}: {}", d.error());
        assert_eq!(d.input(), name);
        assert!(d.app.effects.is_empty());
        assert_eq!(d.files(), before);
    }
    d.snap("from_csv_taken");
    // Esc, then back: the path and the name come back as typed.
    press(&mut d.app, KeyCode::Esc);
    assert!(d.app.prompt.is_none() && d.app.in_picker());
    dispatch(&mut d.app, Action::NewFromCsv);
    assert_eq!(d.input(), d.csv());
    dispatch(&mut d.app, Action::Submit);
    assert_eq!(d.input(), "tmpl");
    assert_eq!(
        std::fs::read_to_string(d.path("campaigns/taken.toml")).unwrap(),
        "# mine\n"
    );
}

/// A file that appears between the check and the write (another `tact new`, an editor)
/// is not written over, and what this try wrote is taken back.
#[test]
fn a_file_that_appears_meanwhile_is_not_written_over() {
    let mut d = Desk::new();
    dispatch(&mut d.app, Action::NewFromCsv);
    let csv = d.csv();
    typed(&mut d.app, &csv);
    dispatch(&mut d.app, Action::Submit);
    typed(&mut d.app, "race");
    dispatch(&mut d.app, Action::Submit);
    assert!(matches!(&d.app.effects[..], [Effect::FromCsv { .. }]));
    std::fs::create_dir_all(d.path("campaigns/templates")).unwrap();
    std::fs::write(d.path("campaigns/templates/race.txt.tera"), "theirs").unwrap();
    settle(&mut d.app);
    assert_eq!(d.kind(), Some(PromptKind::CsvName));
    assert_eq!(d.input(), "race");
    assert!(
        d.error().contains("race.txt.tera already exist"),
        "{}",
        d.error()
    );
    assert_eq!(
        std::fs::read_to_string(d.path("campaigns/templates/race.txt.tera")).unwrap(),
        "theirs"
    );
    // The schema and campaign this try had written are gone again.
    assert!(!d.path("campaigns/race.toml").exists());
    assert!(
        !d.path("subscribed_members_export_5f2a.schema.toml")
            .exists()
    );
    assert!(d.app.in_picker() && d.app.said.is_none());
}

/// A schema beside the CSV is the marketer's: kept, and the report says so.
#[test]
fn a_schema_already_there_is_kept() {
    let mut d = Desk::new();
    let schema = d.path("subscribed_members_export_5f2a.schema.toml");
    let mine = "# mine\n[columns]\nemail = \"Email Address\"\nconsent_marketing = { value = \"yes\", reason = \"subscribed\" }\n";
    std::fs::write(&schema, mine).unwrap();
    let csv = d.csv();
    d.make(&csv, "kept");
    assert_eq!(std::fs::read_to_string(&schema).unwrap(), mine);
    let said = d.app.said.as_ref().unwrap();
    let wrote = &said.sections.last().unwrap().1;
    assert!(wrote[0].starts_with("kept your schema"), "{wrote:?}");
}

#[test]
fn no_value_from_the_file_is_on_these_screens() {
    let mut d = Desk::new();
    let values = values(&d.path(MAILCHIMP));
    assert!(values.iter().any(|v| v.contains('@')), "{values:?}");
    dispatch(&mut d.app, Action::NewFromCsv);
    assert_no_values(&d, &values, "path");
    let csv = d.csv();
    typed(&mut d.app, &csv);
    dispatch(&mut d.app, Action::Submit);
    assert_no_values(&d, &values, "name");
    typed(&mut d.app, "spring-news");
    dispatch(&mut d.app, Action::Submit);
    settle(&mut d.app);
    assert!(d.app.said.is_some());
    for _ in 0..40 {
        assert_no_values(&d, &values, "said");
        dispatch(&mut d.app, Action::Down);
    }
}

#[test]
fn tab_completes_the_path() {
    let mut d = Desk::new();
    std::fs::create_dir(d.path("subfolder")).unwrap();
    let root = format!("{}/", d.dir.path().display());
    // Several fit: as far as they agree, and the choices listed.
    let (text, choices) = completion(&format!("{root}sub"));
    assert_eq!(text, format!("{root}sub"));
    assert_eq!(choices, ["subfolder/", MAILCHIMP]);
    let (text, choices) = completion(&format!("{root}un"));
    assert_eq!(text, format!("{root}unsubscribed_members_export_5f2a.csv"));
    assert!(choices.is_empty());
    let (text, _) = completion(&format!("{root}subf"));
    assert_eq!(text, format!("{root}subfolder/"));
    let (text, choices) = completion(&format!("{root}zzz"));
    assert_eq!(text, format!("{root}zzz"));
    assert!(choices.is_empty());
    // Through the key: Tab in the path prompt completes, and never changes the screen.
    dispatch(&mut d.app, Action::NewFromCsv);
    typed(&mut d.app, &format!("{root}s"));
    press(&mut d.app, KeyCode::Tab);
    assert_eq!(d.input(), format!("{root}sub"));
    assert_eq!(d.app.from_csv.choices.len(), 2);
    assert!(d.app.in_picker());
    d.snap("from_csv_tab");
    typed(&mut d.app, &format!("{root}subs"));
    press(&mut d.app, KeyCode::Tab);
    assert_eq!(d.input(), d.csv());
}

#[test]
fn names_are_suggested_only_when_the_rule_takes_them() {
    for (file, want) in [
        (
            "subscribed_members_export_5f2a.csv",
            "subscribed-members-export-5f2a",
        ),
        ("Shopify Customers (2).csv", "shopify-customers-2"),
        ("2026 list.csv", ""),
        ("___.csv", ""),
        ("Kunden-Übersicht.csv", "kunden-ubersicht"),
        ("FirstName.csv", "firstname"),
    ] {
        assert_eq!(suggested_name(Path::new(file)), want, "{file}");
    }
    let long = format!("{}.csv", "a".repeat(100));
    assert_eq!(
        suggested_name(Path::new(&long)).len(),
        tact::names::MAX_CAMPAIGN_NAME
    );
}

/// While the campaign is being made, nothing else opens over it (it opens when written).
#[test]
fn nothing_else_opens_while_the_campaign_is_being_made() {
    let mut d = Desk::new();
    d.app.picker = Some(vec![super::tests::campaign("winter-sale")]);
    dispatch(&mut d.app, Action::NewFromCsv);
    let csv = d.csv();
    typed(&mut d.app, &csv);
    dispatch(&mut d.app, Action::Submit);
    typed(&mut d.app, "spring-news");
    dispatch(&mut d.app, Action::Submit);
    let asked = std::mem::take(&mut d.app.effects);
    d.app.picker_index = 0;
    for a in [Action::Select, Action::NewCampaign, Action::NewFromCsv] {
        dispatch(&mut d.app, a);
        assert!(d.app.effects.is_empty() && d.app.prompt.is_none());
        assert!(d.app.in_picker());
        assert!(d.app.status.as_deref().unwrap().contains("still making"));
    }
    d.app.effects = asked;
    settle(&mut d.app);
    let made = d.path("campaigns/spring-news.toml");
    assert_eq!(d.app.path.as_deref(), Some(made.as_path()));
    assert_eq!(
        d.app.picker.as_deref().unwrap(),
        [made, super::tests::campaign("winter-sale")]
    );
}

#[test]
fn the_path_prompt_starts_where_exports_are() {
    let cwd = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    assert_eq!(
        super::from_csv::start_dir(cwd.path(), Some(home.path())),
        ""
    );
    std::fs::create_dir(home.path().join("Downloads")).unwrap();
    assert_eq!(
        super::from_csv::start_dir(cwd.path(), Some(home.path())),
        "~/Downloads/"
    );
    assert_eq!(super::from_csv::start_dir(cwd.path(), None), "");
    // A CSV here: relative paths from here.
    std::fs::write(cwd.path().join("Customers.CSV"), "email\n").unwrap();
    assert_eq!(
        super::from_csv::start_dir(cwd.path(), Some(home.path())),
        ""
    );
    // `~/` is the home folder, as in a shell.
    let home_var = std::env::var_os("HOME").unwrap();
    assert_eq!(
        super::from_csv::expand("~/x.csv"),
        PathBuf::from(home_var).join("x.csv")
    );
    assert_eq!(super::from_csv::expand("x~/y"), PathBuf::from("x~/y"));
    // Dragged onto the terminal: quoted, or with its spaces escaped.
    for dragged in [
        "'/a b/c.csv'",
        "\"/a b/c.csv\"",
        "/a\\ b/c.csv",
        " /a b/c.csv ",
    ] {
        assert_eq!(
            super::from_csv::expand(dragged),
            PathBuf::from("/a b/c.csv"),
            "{dragged}"
        );
    }
}

/// `?` in the picker lists `c` with every word of its help, at both sizes.
#[test]
fn the_pickers_help_names_c() {
    let mut d = Desk::new();
    d.app.picker = Some(vec![super::tests::campaign("winter-sale")]);
    press(&mut d.app, KeyCode::Char('?'));
    assert!(d.app.help);
    for (w, h) in [(80, 24), (120, 40)] {
        let s = d.screen(w, h);
        let words: std::collections::HashSet<&str> =
            s.split(|c: char| c.is_whitespace() || c == '│').collect();
        let help = super::keys::KEYS
            .iter()
            .find(|k| k.scope == super::keys::Scope::Picker && k.code == KeyCode::Char('c'))
            .unwrap()
            .help;
        for word in help.split_whitespace() {
            assert!(words.contains(word), "{w}x{h}: `{word}` is cut:\n{s}");
        }
    }
}
