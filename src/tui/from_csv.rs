//! The picker's "+ new from a CSV…": the path of an export, a name, then
//! `onboard::create` (the very function `tact new` runs) off the UI thread. What it
//! recognised and what is missing is shown over the new campaign, which opens at once so
//! its check runs while the marketer reads.
//!
//! Nothing typed is lost on a mistake: the path and the name are kept here, and a refusal
//! (no such file, a CSV that cannot be read, a name refused or taken) puts the prompt back
//! with what was typed and why.

use std::path::{Path, PathBuf};

use tact::onboard::{self, Created};

use super::app::{App, Effect, Prompt, PromptKind, TextInput};

/// How many completions the path prompt lists under the field.
const SHOWN_CHOICES: usize = 6;

/// The two answers so far, where the campaign goes, and whether `create` is running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromCsv {
    /// The path typed (as typed), kept while the name is asked and after a refusal.
    pub path: String,
    /// The name typed, kept the same way.
    pub name: String,
    /// What the path prompt starts with the first time: the folder exports are likely in.
    pub start: String,
    /// Where the campaign and its templates go (`tact new`'s default, `campaigns`).
    pub dir: PathBuf,
    pub running: bool,
    /// What Tab found for the path typed when it could not complete it alone.
    pub choices: Vec<String>,
}

impl Default for FromCsv {
    fn default() -> FromCsv {
        FromCsv {
            path: String::new(),
            name: String::new(),
            start: String::new(),
            dir: PathBuf::from(onboard::DEFAULT_DIR),
            running: false,
            choices: Vec::new(),
        }
    }
}

/// What `tact new` said, shown over the campaign it made until Enter or Esc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    pub campaign: PathBuf,
    pub sections: Vec<(&'static str, Vec<String>)>,
    pub scroll: u16,
}

impl Said {
    /// At least as many lines as the panel wraps these into at any width the composer
    /// draws (40 columns of text or more): how far scrolling may go.
    pub fn most_lines(&self) -> isize {
        self.sections
            .iter()
            .map(|(_, items)| {
                1 + items
                    .iter()
                    .map(|i| i.chars().count() / 30 + 1)
                    .sum::<usize>()
            })
            .sum::<usize>() as isize
    }
}

/// Where the path prompt starts: nothing (the current folder) when it holds a CSV, else
/// `~/Downloads/` when there is one (where a browser puts an export), else nothing.
pub fn start_dir(cwd: &Path, home: Option<&Path>) -> String {
    let has_csv = |dir: &Path| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| is_table(&e.file_name().to_string_lossy()))
        })
    };
    if has_csv(cwd) {
        return String::new();
    }
    match home {
        Some(h) if h.join("Downloads").is_dir() => "~/Downloads/".to_string(),
        _ => String::new(),
    }
}

fn is_table(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".csv", ".tsv", ".txt"].iter().any(|x| lower.ends_with(x))
}

/// The typed path as a file: a leading `~/` is the home folder, as in a shell. A file
/// dragged onto the terminal arrives quoted (`'/a b.csv'`) or with its spaces escaped
/// (`/a\ b.csv`): both are read as the file.
pub fn expand(typed: &str) -> PathBuf {
    let t = typed.trim();
    let unquoted = ['\'', '"']
        .iter()
        .find_map(|q| {
            t.strip_prefix(*q)
                .and_then(|r| r.strip_suffix(*q))
                .map(str::to_string)
        })
        .unwrap_or_else(|| t.replace("\\ ", " "));
    let typed = unquoted.as_str();
    match (typed.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(typed),
    }
}

/// Asks for the CSV's path: what was typed before, else the starting folder.
pub fn ask_path(app: &mut App, error: Option<String>) {
    let text = if app.from_csv.path.is_empty() {
        app.from_csv.start.clone()
    } else {
        app.from_csv.path.clone()
    };
    app.from_csv.choices.clear();
    app.prompt = Some(Prompt {
        kind: PromptKind::CsvPath,
        input: TextInput::new(&text),
        error,
    });
}

/// Asks for the campaign's name: what was typed before, else one made from the file's
/// name when the name rule takes it.
pub fn ask_name(app: &mut App, error: Option<String>) {
    let text = if app.from_csv.name.is_empty() {
        suggested_name(&expand(&app.from_csv.path))
    } else {
        app.from_csv.name.clone()
    };
    app.prompt = Some(Prompt {
        kind: PromptKind::CsvName,
        input: TextInput::new(&text),
        error,
    });
}

/// A campaign name from a file name: `Shopify Customers (2).csv` → `shopify-customers-2`;
/// empty when the name rule would refuse what comes out.
pub fn suggested_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| tact::names::normalise_name(&s.to_string_lossy()).to_ascii_lowercase())
        .unwrap_or_default();
    let words: Vec<&str> = stem
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|w| !w.is_empty())
        .collect();
    let mut name = words.join("-");
    if name.chars().count() > tact::names::MAX_CAMPAIGN_NAME {
        name = name
            .chars()
            .take(tact::names::MAX_CAMPAIGN_NAME)
            .collect::<String>()
            .trim_end_matches('-')
            .to_string();
    }
    if tact::names::campaign_name_refusal(&name).is_some() {
        return String::new();
    }
    name
}

/// The same prompt again with exactly what was typed, and why it was refused.
fn again(app: &mut App, kind: PromptKind, typed: &str, why: String) {
    app.prompt = Some(Prompt {
        kind,
        input: TextInput::new(typed),
        error: Some(why),
    });
}

/// Enter on the path: a file that is there goes on to the name; anything else stays in
/// the prompt with why.
pub fn submit_path(app: &mut App, typed: String) {
    app.from_csv.path = typed.clone();
    let path = expand(&typed);
    let why = if typed.is_empty() {
        Some("type the path of the CSV file (Tab completes)".to_string())
    } else if path.is_dir() {
        Some(format!(
            "{} is a folder: type the file's name in it (Tab completes)",
            path.display()
        ))
    } else if !path.exists() {
        Some(format!("no file at {}", path.display()))
    } else {
        None
    };
    match why {
        Some(why) => again(app, PromptKind::CsvPath, &typed, why),
        None => ask_name(app, None),
    }
}

/// Enter on the name: refused names and taken files are said at once; otherwise the
/// campaign is made off the UI thread (reading a large export takes a moment).
pub fn submit_name(app: &mut App, typed: String) {
    app.from_csv.name = typed.clone();
    let audience = expand(&app.from_csv.path);
    if let Some(e) = onboard::refusal(&typed, &audience, &app.from_csv.dir) {
        again(app, PromptKind::CsvName, &typed, tact::error::chain(&e));
        return;
    }
    app.prompt = None;
    app.from_csv.running = true;
    app.status = Some(format!(
        "reading {} and writing the campaign {typed}…",
        audience.display()
    ));
    app.effects.push(Effect::FromCsv {
        name: typed,
        audience,
        dir: app.from_csv.dir.clone(),
    });
}

/// `create` answered: the campaign opens under what it said, or the prompt the fault
/// belongs to comes back with the typed text and the error.
pub fn finished(app: &mut App, result: Result<Created, tact::Error>) {
    app.from_csv.running = false;
    app.status = None;
    let made = match result {
        Ok(made) => made,
        Err(e) => {
            let why = tact::error::chain(&e);
            match e {
                // The name's fault, or the folder's: ask for another name.
                tact::Error::CampaignName { .. }
                | tact::Error::Exists { .. }
                | tact::Error::Write { .. } => ask_name(app, Some(why)),
                // The file's: missing, unreadable, not a CSV (with its line and column).
                _ => ask_path(app, Some(why)),
            }
            return;
        }
    };
    let path = made.targets.campaign.clone();
    if let Some(list) = app.picker.as_mut() {
        list.push(path.clone());
        list.sort();
        app.picker_index = list.iter().position(|p| p == &path).unwrap_or(0);
        app.picker_copy = app.picker_index;
    }
    app.said = Some(Said {
        campaign: path.clone(),
        sections: made.report(),
        scroll: 0,
    });
    // Typed afresh next time: this pair made its campaign.
    app.from_csv.path.clear();
    app.from_csv.name.clear();
    app.open(path);
}

/// Tab in the path prompt: completes the file or folder name being typed as far as it is
/// unambiguous, and lists the choices when there are several.
pub fn complete(app: &mut App) {
    let Some(p) = app.prompt.as_mut() else { return };
    let (text, choices) = completion(&p.input.text);
    p.input = TextInput::new(&text);
    p.error = None;
    app.from_csv.choices = choices;
}

/// The completion of `typed` among the entries of its folder: the longest common start
/// of the names that fit (a folder gets its `/` when it is the only one), and those names
/// when there is more than one. Hidden entries only when a `.` was typed.
pub fn completion(typed: &str) -> (String, Vec<String>) {
    let (dir_typed, prefix) = match typed.rfind('/') {
        Some(i) => (&typed[..=i], &typed[i + 1..]),
        None => ("", typed),
    };
    let dir = if dir_typed.is_empty() {
        PathBuf::from(".")
    } else {
        expand(dir_typed)
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return (typed.to_string(), Vec::new());
    };
    let mut fits: Vec<(String, bool)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let hidden = name.starts_with('.') && !prefix.starts_with('.');
            (name.starts_with(prefix) && !hidden).then(|| {
                let is_dir = e.path().is_dir();
                (name, is_dir)
            })
        })
        .collect();
    fits.sort();
    match fits.as_slice() {
        [] => (typed.to_string(), Vec::new()),
        [(name, is_dir)] => {
            let slash = if *is_dir { "/" } else { "" };
            (format!("{dir_typed}{name}{slash}"), Vec::new())
        }
        many => {
            let first = &many[0].0;
            let common = many.iter().fold(first.len(), |n, (name, _)| {
                first
                    .char_indices()
                    .zip(name.chars())
                    .take_while(|((_, a), b)| a == b)
                    .last()
                    .map_or(0, |((i, a), _)| (i + a.len_utf8()).min(n))
            });
            let shown: Vec<String> = many
                .iter()
                .map(|(name, is_dir)| {
                    if *is_dir {
                        format!("{name}/")
                    } else {
                        name.clone()
                    }
                })
                .collect();
            (format!("{dir_typed}{}", &first[..common]), shown)
        }
    }
}

/// The choices under the path field: the first few, and how many more.
pub fn choices_line(choices: &[String]) -> Option<String> {
    if choices.is_empty() {
        return None;
    }
    let mut line = choices
        .iter()
        .take(SHOWN_CHOICES)
        .cloned()
        .collect::<Vec<_>>()
        .join("  ");
    if choices.len() > SHOWN_CHOICES {
        line.push_str(&format!("  … {} more", choices.len() - SHOWN_CHOICES));
    }
    Some(line)
}
