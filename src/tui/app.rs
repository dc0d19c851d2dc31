//! The composer's state and its one `update` function. Nothing here touches the terminal or
//! spawns threads: work that takes time is asked for as an `Effect`, which the loop in
//! `mod.rs` performs and answers with another `Action`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tact::campaign::{Acknowledgement, Campaign};
use tact::check::{Level, Report};
use tact::plan::{BasePlan, Facts, Outcome, Plan, Prepared, Reason};
use tact::send::Tally;
use tact::send::orchestrate::Sent;
use tact::send::test_send::{self, Who};
use tact::state::Keys;

use super::from_csv::{self, FromCsv, Said};
use super::source::SourceFile;

/// The start of the status that asks to wait for the check; the check's end clears it.
const STILL_CHECKING: &str = "still checking every recipient";

/// The shortest reason an acknowledgement may give: a sentence, not "ok".
pub const MIN_REASON: usize = 20;

/// What a dry run of a blocked campaign says instead of a count of built messages.
pub const DRY_RUN_BLOCKED: &str = "blocked: nothing would be sent (see Check)";

/// How long the segment must stay unchanged before it is recounted.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Overview,
    Audience,
    Segment,
    Template,
    Check,
    Preview,
    Send,
}

impl Tab {
    pub const ALL: [Tab; 7] = [
        Tab::Overview,
        Tab::Audience,
        Tab::Segment,
        Tab::Template,
        Tab::Check,
        Tab::Preview,
        Tab::Send,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Overview => "Overview",
            Tab::Audience => "Audience",
            Tab::Segment => "Segment",
            Tab::Template => "Template",
            Tab::Check => "Check",
            Tab::Preview => "Preview",
            Tab::Send => "Send",
        }
    }

    fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    fn step(self, by: isize) -> Tab {
        let n = Tab::ALL.len() as isize;
        Tab::ALL[(self.index() as isize + by).rem_euclid(n) as usize]
    }
}

/// What the loop passes in: keys, things the workers finished, and the clock.
#[derive(Debug)]
pub enum Action {
    Quit,
    /// q / Esc: close what is open, else leave the campaign, else quit.
    Back,
    NextTab,
    PrevTab,
    Up,
    Down,
    PageUp,
    PageDown,
    Left,
    Right,
    /// Enter outside a text field: open the picked campaign, start editing the segment.
    Select,
    ToggleHelp,
    ToggleReveal,
    ToggleVariant,
    StartEdit,
    Input(char),
    /// Text pasted by the terminal (bracketed paste): always text, never keys.
    Paste(String),
    Backspace,
    CursorLeft,
    CursorRight,
    Home,
    End,
    ClearInput,
    /// Enter in a text field.
    Submit,
    /// Esc in a text field.
    Cancel,
    DryRun,
    RealSend,
    /// Send → a test to the marketer's own address(es) with the sample person, not
    /// recorded in the ledger.
    TestSend,
    /// Preview → a test rendered for the recipient shown (asks to confirm; audited).
    TestAsShown,
    /// Preview → jump to a recipient by part of an address or a name.
    Find,
    /// Picker → a new campaign copied from the one highlighted.
    NewCampaign,
    /// Picker → a new campaign from a customer file, as `tact new` makes it.
    NewFromCsv,
    /// `onboard::create` answered for "+ new from a CSV…".
    FromCsvDone(Box<tact::Result<tact::onboard::Created>>),
    /// Close what `tact new` said, on to the campaign underneath.
    CloseSaid,
    /// Esc while sending: in-flight messages finish, nothing new starts.
    Stop,
    Save,
    Acknowledge,
    /// `A` on the Check screen: take back an acknowledgement written earlier.
    Revoke,
    Editor,
    /// The editor came back: Err says how it failed (the files are reloaded either way).
    EditorDone(Result<(), String>),
    Reload,
    Resize,
    Tick(Instant),
    Loaded(Box<Result<(Loaded, Facts), LoadError>>),
    Recounted {
        generation: u64,
        result: Box<Result<Loaded, String>>,
    },
    /// The full check of the plan counted for `generation`.
    Checked {
        generation: u64,
        result: Box<Checked>,
    },
    DryRunDone(Result<DryRunSummary, String>),
    TestSent(Result<String, String>),
    /// Preview → `h`: the HTML part as text, or back to the text part.
    ToggleHtml,
    /// Preview → `o`: the message on screen in the desktop's viewer.
    OpenMessage,
    /// What the viewer did (or why there is none).
    Opened(Result<String, String>),
    /// One picker entry's verdict and sent state.
    Surveyed(PathBuf, String),
    SendDone(Result<Box<Sent>, String>),
    /// `b` on Overview or Send: import from the campaign's `[bounces] imap` mailbox.
    ImportBounces,
    /// Messages of the mailbox imported so far.
    BouncesProgress(usize),
    /// The import's counts line, or why it stopped.
    BouncesImported(Result<String, String>),
    Saved {
        /// The segment was written, so the file now matches the screen.
        segment: bool,
        result: Result<String, String>,
    },
}

/// Work the loop performs off the UI thread (or, for the editor, with the terminal
/// suspended). Each answers with an `Action`.
#[derive(Debug)]
pub enum Effect {
    Load(PathBuf),
    /// Plan `campaign` again on `base`'s audience (its segment or acknowledgements
    /// changed in memory).
    Recount {
        generation: u64,
        base: Arc<Prepared>,
        /// The part of `base`'s plan no segment changes.
        rows: Arc<BasePlan>,
        campaign: Box<Campaign>,
    },
    /// Render every recipient of the plan just counted: the verdict and the final counts.
    /// Abandoned as soon as the generation moves on.
    Check {
        generation: u64,
        prepared: Arc<Prepared>,
        plan: Box<Plan>,
    },
    DryRun,
    /// Import this campaign's bounce mailbox off the UI thread.
    ImportBounces(Box<Campaign>),
    /// None: through the campaign's `[[send.relay]]` entries.
    Send {
        url: Option<String>,
    },
    /// `send --test`: the sample person's (or a confirmed pick's) renderings.
    TestSend {
        url: String,
        order: TestOrder,
    },
    /// Write the segment back into the campaign file (None: remove the key).
    Save {
        path: PathBuf,
        segment: Option<String>,
    },
    /// Append an acknowledgement to the file's `[policy].acknowledge`.
    Acknowledge {
        path: PathBuf,
        ack: Acknowledgement,
    },
    /// Remove the acknowledgement of this rule and these fields from `[policy].acknowledge`.
    Revoke {
        path: PathBuf,
        rule: String,
        fields: Vec<String>,
    },
    /// Write this message to a 0600 temporary file and open it in the desktop's viewer.
    Open(Vec<u8>),
    /// Check each campaign of the picker and read its ledger: the verdict and sent state.
    Survey(Vec<PathBuf>),
    /// `onboard::create`: what `tact new NAME --audience FILE --dir DIR` does.
    FromCsv {
        name: String,
        audience: PathBuf,
        dir: PathBuf,
    },
    /// Open this file in $EDITOR (at this line, for editors that take `+LINE`).
    Editor {
        path: PathBuf,
        line: Option<usize>,
    },
}

/// Why a campaign did not open: the message, and where the fault is when the core knows
/// (a template syntax error names its file, line and column): `e` opens that place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub message: String,
    pub at: Option<tact::error::Location>,
}

impl From<String> for LoadError {
    fn from(message: String) -> LoadError {
        LoadError { message, at: None }
    }
}

/// What the loader and the recount hand back: one plan, counted at once; `report` is
/// `check::preliminary` (not `rendered`) until the full check's `Checked` replaces it.
#[derive(Debug)]
pub struct Loaded {
    pub prepared: Arc<Prepared>,
    /// The segment-independent part of the plan, reused by every segment edit.
    pub base: Arc<BasePlan>,
    pub plan: Plan,
    pub report: Report,
    /// Every excluded row by line, malformed rows included, in file order.
    pub excluded: Vec<ExcludedRow>,
    /// The subject, preheader and template files, for the Template screen.
    pub sources: Vec<SourceFile>,
    /// This campaign's rows in the ledger by status, when it has been sent (read at load).
    pub ledger: Option<tact::state::ledger::StatusCounts>,
    /// What came back from this campaign's sends (read at load; None without state).
    pub bounces: Option<tact::state::bounces::BounceFigures>,
}

/// The full check of a `Loaded` plan: every recipient rendered.
#[derive(Debug)]
pub struct Checked {
    pub prepared: Arc<Prepared>,
    pub plan: Plan,
    pub report: Report,
    pub excluded: Vec<ExcludedRow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExcludedRow {
    pub line: u64,
    pub reason: &'static str,
    /// The audience row, for its address; None for a malformed row: it has no
    /// trustworthy address.
    pub row: Option<u32>,
}

/// The excluded rows of a plan by line: decisions are in file order, and so are the
/// malformed rows, so the two lists merge without a sort.
pub fn excluded_rows(p: &Prepared, plan: &Plan) -> Vec<ExcludedRow> {
    let a = &p.audience;
    let mut planned = plan
        .decisions
        .iter()
        .filter_map(|d| match d.outcome {
            Outcome::Excluded(r) => Some(ExcludedRow {
                line: a.line(d.row as usize),
                reason: r.key(),
                row: Some(d.row),
            }),
            _ => None,
        })
        .peekable();
    let mut malformed = p
        .audience
        .malformed
        .iter()
        .map(|m| ExcludedRow {
            line: m.line,
            reason: Reason::MalformedRow.key(),
            row: None,
        })
        .peekable();
    let mut out = Vec::new();
    loop {
        let take_planned = match (planned.peek(), malformed.peek()) {
            (Some(a), Some(b)) => a.line <= b.line,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        out.extend(if take_planned {
            planned.next()
        } else {
            malformed.next()
        });
    }
    out
}

impl Loaded {
    pub fn new(prepared: Prepared, base: Arc<BasePlan>, plan: Plan, report: Report) -> Loaded {
        Loaded {
            excluded: excluded_rows(&prepared, &plan),
            sources: super::source::sources(&prepared),
            prepared: Arc::new(prepared),
            base,
            plan,
            report,
            ledger: None,
            bounces: None,
        }
    }

    /// Every recipient rendered: the verdict and counts are final.
    pub fn checked(&self) -> bool {
        self.report.rendered
    }

    /// Takes the full check's plan and report.
    pub fn finish(&mut self, c: Checked) {
        self.plan = c.plan;
        self.report = c.report;
        self.excluded = c.excluded;
    }

    pub fn recipients(&self) -> Vec<(usize, bool)> {
        self.plan.recipients().collect()
    }

    /// The excluded rows with `reason` (every one for None), in file order.
    pub fn shown_excluded(&self, reason: Option<&str>) -> Vec<&ExcludedRow> {
        self.excluded
            .iter()
            .filter(|r| reason.is_none_or(|want| r.reason == want))
            .collect()
    }

    /// The reasons that exclude at least one row, in the order of `Reason::ALL`.
    pub fn exclusion_reasons(&self) -> Vec<&'static str> {
        Reason::ALL
            .iter()
            .map(|r| r.key())
            .filter(|k| self.excluded.iter().any(|r| r.reason == *k))
            .collect()
    }

    /// The address of an excluded row (None for a malformed one).
    pub fn excluded_email(&self, r: &ExcludedRow) -> Option<&str> {
        r.row.map(|row| self.prepared.audience.email(row as usize))
    }
}

pub type DryRunSummary = tact::send::orchestrate::DryRun;

/// A one-line text field with a cursor (in characters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextInput {
    pub text: String,
    pub cursor: usize,
}

impl TextInput {
    pub fn new(text: &str) -> TextInput {
        TextInput {
            text: text.to_string(),
            cursor: text.chars().count(),
        }
    }

    fn byte(&self, at: usize) -> usize {
        self.text
            .char_indices()
            .nth(at)
            .map_or(self.text.len(), |(i, _)| i)
    }

    fn insert(&mut self, c: char) {
        let at = self.byte(self.cursor);
        self.text.insert(at, c);
        self.cursor += 1;
    }

    fn insert_str(&mut self, s: &str) {
        let at = self.byte(self.cursor);
        self.text.insert_str(at, s);
        self.cursor += s.chars().count();
    }

    fn backspace(&mut self) -> bool {
        if self.cursor == 0 {
            return false;
        }
        self.cursor -= 1;
        let at = self.byte(self.cursor);
        self.text.remove(at);
        true
    }

    fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.text.chars().count());
    }
}

/// Pasted text as one line of a text field: a line break (CR, LF or CRLF) or a tab is a
/// space, other control characters are dropped. A paste is never a key press.
pub fn pasted(text: &str) -> String {
    let text = text.replace("\r\n", " ");
    text.chars()
        .filter_map(|c| match c {
            '\r' | '\n' | '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    SmtpUrl,
    ConfirmCount(usize),
    AckReason(usize),
    /// The marketer's own address(es) for a test send.
    TestTo,
    /// A test address outside `test_to` / TACT_TEST_TO: type `yes` to send there anyway.
    ConfirmOtherTestAddress,
    /// Type `yes` to render this audience row's real data in a test.
    ConfirmTestAs(usize),
    /// An address to find on the Preview screen.
    Find,
    /// The name of a new campaign, copied from this entry of the picker.
    NewCampaign(usize),
    /// "+ new from a CSV…": the customer file's path.
    CsvPath,
    /// "+ new from a CSV…": the new campaign's name.
    CsvName,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub kind: PromptKind,
    pub input: TextInput,
    pub error: Option<String>,
}

/// `b`: an import from the campaign's bounce mailbox, running or done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceImport {
    /// The mailbox without its user: `imaps://host:port/MAILBOX`.
    pub mailbox: String,
    pub running: bool,
    /// Messages imported and flagged so far.
    pub processed: usize,
    /// The counts line, or why it failed.
    pub result: Option<Result<String, String>>,
}

/// A live or finished real send.
#[derive(Debug)]
pub struct Sending {
    pub tally: Arc<Tally>,
    pub stop: Arc<AtomicBool>,
    pub started: Instant,
    pub result: Option<Result<Box<Sent>, String>>,
}

/// What the loader needs besides the file: keys, where the ledger lives, and "now".
#[derive(Debug, Clone)]
pub struct Ctx {
    pub keys: Keys,
    /// None in tests: no ledger, so no suppression or already-sent facts.
    pub state_dir: Option<PathBuf>,
    /// The shared database holding the ledger, when one is configured.
    pub store: Option<tact::state::postgres::PgTarget>,
    pub now: chrono::DateTime<chrono::Utc>,
}

/// One rendered recipient for the Preview tab, computed when the selection changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewDoc {
    pub email: String,
    pub line: u64,
    pub personalised: bool,
    /// Whether the recipient's plan says personalised (the variant shown may be toggled).
    pub planned_personalised: bool,
    pub headers: Vec<(String, String)>,
    pub preheader: String,
    pub text: String,
    /// The HTML part as sent (the Preview shows it as text on `h`).
    pub html: Option<String>,
    /// The whole message as `tact preview` writes it, for `o`.
    pub eml: Vec<u8>,
    pub why: Vec<String>,
    pub error: Option<String>,
}

#[derive(Debug)]
pub struct App {
    pub ctx: Ctx,
    pub colour: bool,
    pub quit: bool,
    /// Asked to quit with unsaved changes once already.
    pub quit_armed: bool,
    /// Campaign files to pick from, when started without one.
    pub picker: Option<Vec<PathBuf>>,
    pub picker_index: usize,
    /// The campaign last highlighted in the picker: "+ new campaign" copies it.
    pub picker_copy: usize,
    /// "+ new from a CSV…": what was typed, and where the campaign goes.
    pub from_csv: FromCsv,
    /// What `tact new` said about the campaign just made, over it until closed.
    pub said: Option<Said>,
    pub path: Option<PathBuf>,
    pub loading: bool,
    pub loaded: Option<Loaded>,
    pub load_error: Option<LoadError>,
    pub facts: Arc<Facts>,
    pub tab: Tab,
    pub help: bool,
    pub status: Option<String>,
    // Audience
    pub reveal: bool,
    pub excluded_index: usize,
    /// Audience: only the excluded rows with this reason (None: every reason).
    pub excluded_filter: Option<&'static str>,
    /// Preview: the last text searched for, offered again so `f` Enter finds the next.
    pub find_last: String,
    // Segment
    pub segment: TextInput,
    pub editing: bool,
    pub segment_error: Option<String>,
    pub recount_due: Option<Instant>,
    /// Counts every load and recount; an answer for an older one is ignored.
    pub generation: u64,
    /// `generation`, for the workers: a full check stops when it moves on.
    pub latest: Arc<AtomicU64>,
    /// `d` was pressed while the check was still running: the dry run starts after it.
    pub dry_run_pending: bool,
    /// The generation of the recount in flight. A recount whose generation was overtaken
    /// (a reload, a newer recount) is not "running" any more, so nothing waits on it.
    pub counting: Option<u64>,
    /// The segment as the campaign file holds it (trimmed): the screen is unsaved when the
    /// typed segment differs from it.
    pub saved_segment: String,
    /// The segment text of the save just asked for, until the file answers.
    pub saving: Option<String>,
    // Check
    pub finding_index: usize,
    // Template
    pub template_index: usize,
    pub template_scroll: u16,
    // Preview
    pub preview_index: usize,
    pub preview_generic: bool,
    pub preview_scroll: u16,
    pub preview: Option<PreviewDoc>,
    /// `h`: the HTML part (as text) instead of the text part.
    pub preview_html: bool,
    /// This campaign's ledger rows by status as last read (None: never sent, or no state).
    pub ledger: Option<tact::state::ledger::StatusCounts>,
    /// This campaign's bounce figures as last read.
    pub bounces: Option<tact::state::bounces::BounceFigures>,
    /// `b`: the import from the bounce mailbox, while it runs and after.
    pub bounce_import: Option<BounceImport>,
    /// The picker's campaigns with their verdict and sent state, as each is surveyed.
    pub survey: Vec<(PathBuf, String)>,
    /// The subject as a sample recipient sees it, and what it was rendered for.
    pub sample_subject: Option<(String, String)>,
    // Send
    pub smtp_url: Option<String>,
    pub prompt: Option<Prompt>,
    pub dry_running: bool,
    pub dry_run: Option<Result<DryRunSummary, String>>,
    /// The segment the dry run was built for.
    pub dry_run_for: Option<String>,
    /// A test waiting for a confirmation or the SMTP URL prompt.
    pub pending_test: Option<TestOrder>,
    /// Whose render the test prompt is for: the sample person unless a pick was confirmed.
    pub test_who: Who,
    pub testing: bool,
    pub test_result: Option<Result<String, String>>,
    pub sending: Option<Sending>,
    /// TACT_TEST_TO as the composer started with it: configured test addresses, with the
    /// campaign's `[send] test_to`.
    pub test_to: String,
    /// An unsaved segment to put back after a reload (the editor came and went).
    pub keep_segment: Option<String>,
    /// `s` was pressed while this segment (trimmed) was still being counted: it is saved
    /// when its own count arrives, and cancelled if the text changes or the file reloads.
    pub save_pending: Option<String>,
    pub effects: Vec<Effect>,
}

impl App {
    fn new(ctx: Ctx) -> App {
        App {
            ctx,
            colour: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            quit: false,
            quit_armed: false,
            picker: None,
            picker_index: 0,
            picker_copy: 0,
            from_csv: FromCsv::default(),
            said: None,
            path: None,
            loading: false,
            loaded: None,
            load_error: None,
            facts: Arc::new(Facts::default()),
            tab: Tab::Overview,
            help: false,
            status: None,
            reveal: false,
            excluded_index: 0,
            excluded_filter: None,
            find_last: String::new(),
            segment: TextInput::default(),
            editing: false,
            segment_error: None,
            recount_due: None,
            generation: 0,
            latest: Arc::new(AtomicU64::new(0)),
            dry_run_pending: false,
            counting: None,
            saved_segment: String::new(),
            saving: None,
            finding_index: 0,
            template_index: 0,
            template_scroll: 0,
            preview_index: 0,
            preview_generic: false,
            preview_scroll: 0,
            preview: None,
            preview_html: false,
            ledger: None,
            bounces: None,
            bounce_import: None,
            survey: Vec::new(),
            sample_subject: None,
            smtp_url: std::env::var("TACT_SMTP_URL")
                .ok()
                .filter(|s| !s.trim().is_empty()),
            prompt: None,
            dry_running: false,
            dry_run: None,
            dry_run_for: None,
            pending_test: None,
            test_who: Who::Sample,
            testing: false,
            test_result: None,
            sending: None,
            test_to: std::env::var("TACT_TEST_TO").unwrap_or_default(),
            keep_segment: None,
            save_pending: None,
            effects: Vec::new(),
        }
    }

    /// Opens one campaign: the load starts as soon as the loop runs.
    pub fn opening(path: PathBuf, ctx: Ctx) -> App {
        let mut app = App::new(ctx);
        app.open(path);
        app
    }

    pub fn picking(campaigns: Vec<PathBuf>, ctx: Ctx) -> App {
        let mut app = App::new(ctx);
        // With nothing to open or copy, the customer file is where to start.
        if campaigns.is_empty() {
            app.picker_index = 1;
        }
        app.picker = Some(campaigns);
        app
    }

    /// Asks for each picker entry's verdict and sent state (checked off the UI thread).
    pub fn survey_picker(&mut self) {
        if let Some(files) = &self.picker {
            self.effects.push(Effect::Survey(files.clone()));
        }
    }

    pub(super) fn open(&mut self, path: PathBuf) {
        self.next_generation();
        self.loading = true;
        self.loaded = None;
        self.load_error = None;
        // Whatever was waiting on the plan being replaced waits no more: a count in flight
        // is answered for an old generation (ignored), and a save or dry run asked for
        // that plan must not land on the new one.
        self.counting = None;
        self.recount_due = None;
        self.dry_run_pending = false;
        self.dry_running = false;
        if self.save_pending.take().is_some() {
            self.set_status("save cancelled: the campaign was read again; s saves");
        }
        self.tab = Tab::Overview;
        self.effects.push(Effect::Load(path.clone()));
        self.path = Some(path);
    }

    /// `b`: the import runs on a worker; the screens show its progress, then its counts.
    fn start_bounce_import(&mut self) {
        let Some(l) = &self.loaded else {
            return;
        };
        if self.bounce_import.as_ref().is_some_and(|b| b.running) {
            self.set_status("already importing bounces…");
            return;
        }
        let campaign = l.prepared.campaign.clone();
        let Some(url) = &campaign.bounces.imap else {
            self.set_status(
                "no bounce mailbox: set [bounces] imap = \"imaps://user@host/MAILBOX\" in the campaign file",
            );
            return;
        };
        let mailbox = match tact::imap::MailboxUrl::parse(url) {
            Ok(u) => u.endpoint(),
            Err(e) => {
                self.set_status(format!("bounces not imported: {e}"));
                return;
            }
        };
        self.set_status(format!("importing bounces from {mailbox}…"));
        self.bounce_import = Some(BounceImport {
            mailbox,
            running: true,
            processed: 0,
            result: None,
        });
        self.effects.push(Effect::ImportBounces(Box::new(campaign)));
    }

    /// The picker shows when it exists and no campaign is open.
    pub fn in_picker(&self) -> bool {
        self.picker.is_some() && self.path.is_none()
    }

    /// The segment typed differs from the one in the campaign file.
    pub fn dirty(&self) -> bool {
        self.segment.text.trim() != self.saved_segment
    }

    /// A recount of the segment typed is on its way.
    pub fn recounting(&self) -> bool {
        self.counting == Some(self.generation)
    }

    /// The segment typed is not the one the counts on screen are for (yet).
    pub fn counts_pending(&self) -> bool {
        self.recount_due.is_some() || self.recounting()
    }

    pub fn is_sending(&self) -> bool {
        self.sending.as_ref().is_some_and(|s| s.result.is_none())
    }

    pub fn recipients_count(&self) -> usize {
        self.loaded
            .as_ref()
            .map_or(0, |l| l.report.audience.recipients())
    }

    fn set_status(&mut self, s: impl Into<String>) {
        self.status = Some(s.into());
    }

    fn campaign_path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Whether the report on screen blocks the campaign (the rules that need no render
    /// are known at once, as `tact preview` knows them; the others once checked).
    pub fn blocked(&self) -> bool {
        self.loaded
            .as_ref()
            .is_some_and(|l| l.report.verdict == Level::Block)
    }

    /// The picker's line for a campaign file: its verdict and sent state, once surveyed.
    pub fn surveyed(&self, path: &Path) -> Option<&str> {
        self.survey
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, s)| s.as_str())
    }

    /// The subject as an inbox shows it, not the template: rendered for the synthetic
    /// sample person of a test send (never a customer's row); the generic variant when
    /// the campaign is blocked, as on Preview.
    fn sample_subject(&self) -> Option<(String, String)> {
        let l = self.loaded.as_ref()?;
        let letters = tact::send::test_send::letters(&l.prepared, &self.ctx.keys, None).ok()?;
        let (letter, whose) = if self.blocked() {
            (
                letters.last()?,
                "generic: the campaign is blocked".to_string(),
            )
        } else {
            (
                letters.first()?,
                format!("for the sample person {}", tact::sample::FIRST_NAME),
            )
        };
        Some((letter.rendered.subject.clone(), whose))
    }

    /// Rebuilds the preview of the selected recipient.
    pub fn refresh_preview(&mut self) {
        self.sample_subject = self.sample_subject();
        let blocked = self.blocked();
        self.preview = self.loaded.as_ref().and_then(|l| {
            let n = l.report.audience.recipients();
            if n == 0 {
                return None;
            }
            let i = self.preview_index.min(n - 1);
            let (row, planned) = l.plan.recipients().nth(i)?;
            Some(render_preview(
                &l.prepared,
                &self.ctx.keys,
                self.ctx.now,
                row,
                planned,
                planned && !self.preview_generic,
                blocked,
            ))
        });
    }

    /// The segment text changed: recount soon, and drop a save asked for the old text.
    fn schedule_recount(&mut self) {
        self.recount_due = Some(Instant::now() + DEBOUNCE);
        if let Some(old) = self.save_pending.take() {
            self.set_status(format!(
                "save of `{old}` cancelled: the segment changed; s saves the new one"
            ));
        }
    }

    /// A new load or recount: whatever the workers still do for the old one is moot.
    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.latest.store(self.generation, Ordering::SeqCst);
        self.generation
    }

    fn start_recount(&mut self) -> Option<Action> {
        let l = self.loaded.as_ref()?;
        let mut campaign = l.prepared.campaign.clone();
        let s = self.segment.text.trim();
        campaign.segment = (!s.is_empty()).then(|| s.to_string());
        self.recount_due = None;
        self.recount(campaign);
        None
    }

    /// Plans `campaign` again on the loaded audience (off the UI thread).
    fn recount(&mut self, campaign: Campaign) {
        let generation = self.next_generation();
        let Some(l) = &self.loaded else { return };
        self.counting = Some(generation);
        self.effects.push(Effect::Recount {
            generation,
            base: Arc::clone(&l.prepared),
            rows: Arc::clone(&l.base),
            campaign: Box::new(campaign),
        });
    }

    /// Starts the full check of the plan on screen, unless it already has one.
    fn start_check(&mut self) {
        let Some(l) = &self.loaded else { return };
        if l.checked() {
            return;
        }
        self.effects.push(Effect::Check {
            generation: self.generation,
            prepared: Arc::clone(&l.prepared),
            plan: Box::new(l.plan.clone()),
        });
    }

    /// Installs the full check of the plan on screen, staying on the recipient shown.
    fn finish_check(&mut self, c: Checked) {
        let Some(l) = &mut self.loaded else { return };
        if !Arc::ptr_eq(&l.prepared, &c.prepared) {
            return;
        }
        let shown = l
            .plan
            .recipients()
            .nth(self.preview_index)
            .map(|(row, _)| row);
        self.preview_index = shown
            .and_then(|row| c.plan.recipients().position(|(r, _)| r == row))
            .unwrap_or(0);
        l.finish(c);
        self.excluded_index = self.excluded_index.min(
            l.shown_excluded(self.excluded_filter)
                .len()
                .saturating_sub(1),
        );
        self.finding_index = self
            .finding_index
            .min(l.report.findings.len().saturating_sub(1));
        self.refresh_preview();
        if self
            .status
            .as_deref()
            .is_some_and(|s| s.starts_with(STILL_CHECKING))
        {
            self.status = None;
        }
        if std::mem::take(&mut self.dry_run_pending) {
            self.start_dry_run();
        }
    }

    /// Asks for the dry run of the plan on screen, remembering which segment it is for;
    /// a blocked campaign builds nothing, since a count of built messages would say
    /// something could be sent.
    fn start_dry_run(&mut self) {
        self.dry_run_for = self.counted_segment().map(str::to_string);
        if self.blocked() {
            self.dry_running = false;
            self.dry_run = Some(Err(DRY_RUN_BLOCKED.to_string()));
        } else {
            self.effects.push(Effect::DryRun);
        }
    }

    /// Whether the plan on screen is still being checked (its verdict not known yet).
    pub fn checking(&self) -> bool {
        self.loaded.as_ref().is_some_and(|l| !l.checked())
    }

    /// Writes the segment into the campaign file, unless it has an error or is not the
    /// segment the counts on screen are for.
    fn save_now(&mut self) {
        let Some(path) = self.campaign_path().map(Path::to_path_buf) else {
            return;
        };
        if self.segment_error.is_some() {
            self.set_status("not saved: the segment has an error; fix it first");
            return;
        }
        let s = self.segment.text.trim().to_string();
        if self.counted_segment() != Some(s.as_str()) {
            self.set_status("not saved: the segment typed has not been counted yet");
            return;
        }
        self.saving = Some(s.clone());
        self.effects.push(Effect::Save {
            path,
            segment: (!s.is_empty()).then_some(s),
        });
    }

    /// The segment the plan on screen was counted for ("" for none).
    pub fn counted_segment(&self) -> Option<&str> {
        let l = self.loaded.as_ref()?;
        Some(l.prepared.campaign.segment.as_deref().unwrap_or("").trim())
    }

    /// After a recount, stays on the recipient shown if they still get a message.
    fn install_keeping_recipient(&mut self, loaded: Loaded) {
        let shown = self.loaded.as_ref().and_then(|l| {
            l.plan
                .recipients()
                .nth(self.preview_index)
                .map(|(row, _)| row)
        });
        self.preview_index = shown
            .and_then(|row| loaded.plan.recipients().position(|(r, _)| r == row))
            .unwrap_or(0);
        self.install(loaded);
    }

    fn install(&mut self, loaded: Loaded) {
        self.excluded_index = self.excluded_index.min(
            loaded
                .shown_excluded(self.excluded_filter)
                .len()
                .saturating_sub(1),
        );
        self.finding_index = self
            .finding_index
            .min(loaded.report.findings.len().saturating_sub(1));
        self.loaded = Some(loaded);
        self.refresh_preview();
    }
}

/// Renders one recipient exactly as `send` would build it: the headers a marketer cares
/// about, the text part, and why this person gets the message. A blocked campaign shows
/// nobody's personal render and no segment values: only the generic variant, since what
/// is blocked is showing those fields at all, on screen as in a mailbox.
pub fn render_preview(
    p: &Prepared,
    keys: &Keys,
    now: chrono::DateTime<chrono::Utc>,
    row: usize,
    planned: bool,
    personalised: bool,
    blocked: bool,
) -> PreviewDoc {
    let personalised = personalised && !blocked;
    let email = p.audience.email(row).to_string();
    let line = p.audience.line(row);
    let (vars, _) = p.tool_vars(keys, row, personalised);
    let mut why = vec![vars.why_you_got_this.clone()];
    why.push(if planned && blocked {
        "consent: marketing, and personalisation (the personalised variant is blocked)".to_string()
    } else if planned {
        "consent: marketing, and personalisation (gets the personalised variant)".to_string()
    } else {
        "consent: marketing only (gets the generic variant)".to_string()
    });
    match &p.segment {
        Some(seg) if blocked => why.push(format!("segment: {}", seg.source)),
        Some(seg) => {
            let values: Vec<String> = seg
                .fields
                .iter()
                .map(|f| {
                    let v = p.audience.column(f).map_or("", |c| c.data.get(row));
                    format!("{f} = {v}")
                })
                .collect();
            why.push(format!("segment: {}  ({})", seg.source, values.join(", ")));
        }
        None => why.push("segment: none (everyone with consent)".to_string()),
    }
    let mut doc = PreviewDoc {
        email: email.clone(),
        line,
        personalised,
        planned_personalised: planned,
        headers: Vec::new(),
        preheader: String::new(),
        text: String::new(),
        html: None,
        eml: Vec::new(),
        why,
        error: None,
    };
    let letter = match p.letter(keys, row, personalised) {
        Ok(l) => l,
        Err(e) => {
            doc.error = Some(format!("{}: {}", e.reason.key(), e.detail));
            return doc;
        }
    };
    let date = SystemTime::from(now);
    match tact::message::build(&p.campaign, &letter, &email, date, "") {
        Ok(msg) => {
            for name in [
                "From",
                "To",
                "Reply-To",
                "Return-Path",
                "Subject",
                "List-Id",
                "List-Unsubscribe",
                "List-Unsubscribe-Post",
            ] {
                if let Some(v) = msg.headers().get_raw(name) {
                    doc.headers.push((name.to_string(), v.to_string()));
                }
            }
            doc.eml = msg.formatted();
        }
        Err(e) => doc.error = Some(e.to_string()),
    }
    doc.preheader = letter.rendered.preheader;
    doc.text = letter.rendered.text;
    doc.html = letter.rendered.html;
    doc
}

/// What a test is to do once every question is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOrder {
    pub to: Vec<String>,
    /// `[send] test_to` and TACT_TEST_TO when the addresses were typed.
    pub configured: Vec<String>,
    /// The marketer typed `yes` for an address outside the configured ones.
    pub allow_other: bool,
    pub who: Who,
}

fn start_test(app: &mut App, url: String, order: TestOrder) {
    app.prompt = None;
    app.testing = true;
    app.test_result = None;
    app.effects.push(Effect::TestSend { url, order });
}

/// The SMTP URL if known, else its prompt (the order waits).
fn test_or_ask_url(app: &mut App, order: TestOrder) {
    match app.smtp_url.clone() {
        Some(url) => start_test(app, url, order),
        None => {
            app.pending_test = Some(order);
            app.prompt = Some(Prompt {
                kind: PromptKind::SmtpUrl,
                input: TextInput::default(),
                error: None,
            });
        }
    }
}

impl App {
    /// `[send] test_to` and TACT_TEST_TO (as the composer started).
    pub fn configured_test_to(&self) -> Vec<String> {
        let Some(l) = &self.loaded else {
            return Vec::new();
        };
        let env = self.test_to.clone();
        test_send::configured(&l.prepared.campaign, &|k| {
            (k == test_send::TEST_TO_ENV).then(|| env.clone())
        })
    }

    /// Whether a test may start now; says why not in the status line.
    fn may_test(&mut self) -> bool {
        let Some(l) = &self.loaded else { return false };
        if self.is_sending() || self.testing {
            return false;
        }
        self.tab = Tab::Send;
        if !l.checked() {
            self.set_status(format!("{STILL_CHECKING}: test once the verdict shows"));
            return false;
        }
        // The same gate as `tact send --test`: a test of a campaign that cannot be
        // sent would only rehearse something that will not happen.
        if !l.report.sendable() {
            let v = l.report.verdict.as_str();
            self.set_status(format!("no test either: the verdict is {v} (see Check)"));
            return false;
        }
        if l.report.audience.recipients() == 0 {
            self.set_status("no recipients: nothing to render for a test");
            return false;
        }
        true
    }

    fn ask_test_to(&mut self, who: Who) {
        self.test_who = who;
        self.prompt = Some(Prompt {
            kind: PromptKind::TestTo,
            input: TextInput::new(&self.configured_test_to().join(", ")),
            error: None,
        });
    }
}

/// Where a search lands in the plan.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// A recipient: its position (as the Preview screen counts them), which match it is
    /// (1-based) and how many recipients match.
    Recipient {
        index: usize,
        nth: usize,
        matches: usize,
    },
    /// No recipient matches; the first excluded row that does, and how many others do.
    Excluded {
        line: u64,
        reason: &'static str,
        more: usize,
    },
    Nowhere,
}

/// The columns a search looks in besides the address: the names loaded (`first_name`,
/// `last_name`, `name`, …).
fn name_columns(a: &tact::audience::Audience) -> Vec<&tact::audience::Column> {
    a.columns
        .iter()
        .skip(1)
        .filter(|c| c.name.to_lowercase().contains("name"))
        .collect()
}

/// Finds recipients whose address or name contains `query` (trimmed, any case): the
/// first after the recipient at `after` (so the same search again moves on), else the
/// first of all. A repeated address is decided by its first row, as the plan does.
pub fn find(l: &Loaded, query: &str, after: Option<usize>) -> Found {
    let want = query.trim().to_lowercase();
    if want.is_empty() {
        return Found::Nowhere;
    }
    let a = &l.prepared.audience;
    let names = name_columns(a);
    let hit = |row: usize| {
        a.email(row).trim().to_lowercase().contains(&want)
            || names
                .iter()
                .any(|c| c.data.get(row).to_lowercase().contains(&want))
    };
    let mut recipients = 0;
    let mut hits: Vec<usize> = Vec::new();
    let mut excluded: Option<(u64, &'static str)> = None;
    let mut excluded_hits = 0;
    for d in &l.plan.decisions {
        let row = d.row as usize;
        match d.outcome {
            Outcome::Excluded(r) => {
                if hit(row) {
                    excluded_hits += 1;
                    excluded.get_or_insert((a.line(row), r.key()));
                }
            }
            _ => {
                if hit(row) {
                    hits.push(recipients);
                }
                recipients += 1;
            }
        }
    }
    if hits.is_empty() {
        return match excluded {
            Some((line, reason)) => Found::Excluded {
                line,
                reason,
                more: excluded_hits - 1,
            },
            None => Found::Nowhere,
        };
    }
    let nth = after
        .and_then(|at| hits.iter().position(|i| *i > at))
        .unwrap_or(0);
    Found::Recipient {
        index: hits[nth],
        nth: nth + 1,
        matches: hits.len(),
    }
}

/// The one place the composer's state changes. Returns a follow-up action, if any.
pub fn update(app: &mut App, action: Action) -> Option<Action> {
    // "q again leaves without saving" holds only for the very next key.
    if !matches!(
        action,
        Action::Back
            | Action::Quit
            | Action::Tick(_)
            | Action::Resize
            | Action::Loaded(_)
            | Action::Recounted { .. }
            | Action::Checked { .. }
            | Action::DryRunDone(_)
            | Action::TestSent(_)
            | Action::Opened(_)
            | Action::Surveyed(..)
            | Action::SendDone(_)
            | Action::Saved { .. }
            | Action::FromCsvDone(_)
    ) {
        app.quit_armed = false;
    }
    match action {
        Action::Quit => {
            if app.is_sending() {
                if let Some(s) = &app.sending {
                    s.stop.store(true, Ordering::SeqCst);
                }
                app.set_status("stopping: in-flight messages finish first; quit when it ends");
            } else if app.dirty() && app.path.is_some() && !app.quit_armed {
                app.quit_armed = true;
                app.editing = false;
                app.set_status(
                    "the segment is not saved: s saves it, Ctrl-C again quits without saving",
                );
            } else {
                app.quit = true;
            }
        }
        Action::Back => {
            if app.help {
                app.help = false;
            } else if app.prompt.is_some() {
                app.prompt = None;
                app.pending_test = None;
            } else if app.is_sending() {
                return Some(Action::Stop);
            } else if app.editing {
                app.editing = false;
            } else if app.dirty() && app.path.is_some() && !app.quit_armed {
                // Asked before leaving the campaign, whether for the picker or the shell.
                app.quit_armed = true;
                app.set_status(if app.picker.is_some() {
                    "the segment is not saved: s saves it, q again leaves without saving"
                } else {
                    "the segment is not saved: s saves it, q again quits without saving"
                });
            } else if app.picker.is_some() && app.path.is_some() {
                app.quit_armed = false;
                app.next_generation();
                app.path = None;
                app.loaded = None;
                app.loading = false;
                app.load_error = None;
                app.status = None;
                app.save_pending = None;
                app.counting = None;
                app.recount_due = None;
                app.segment = TextInput::default();
                app.saved_segment = String::new();
                app.editing = false;
            } else {
                app.quit = true;
            }
        }
        Action::NextTab | Action::PrevTab => {
            if matches!(action, Action::NextTab)
                && app.prompt.as_ref().map(|p| p.kind) == Some(PromptKind::CsvPath)
            {
                from_csv::complete(app);
                return None;
            }
            if app.in_picker() || app.prompt.is_some() {
                return None;
            }
            let by = if matches!(action, Action::NextTab) {
                1
            } else {
                -1
            };
            app.tab = app.tab.step(by);
            // The Segment screen shows the segment; typing starts with `/`, Enter or `i`,
            // so a key meant as a command is never typed into it by arriving there.
            app.editing = false;
            app.help = false;
            // A message about the screen left behind would read as about this one.
            app.status = None;
        }
        Action::Up | Action::Down | Action::PageUp | Action::PageDown => {
            let delta: isize = match action {
                Action::Up => -1,
                Action::Down => 1,
                Action::PageUp => -10,
                _ => 10,
            };
            let step = |v: usize, len: usize| -> usize {
                (v as isize + delta).clamp(0, len.saturating_sub(1) as isize) as usize
            };
            if let Some(said) = &mut app.said {
                said.scroll = (said.scroll as isize + delta).clamp(0, said.most_lines()) as u16;
                return None;
            }
            if app.in_picker() {
                // The campaigns, then "+ new campaign" and "+ new from a CSV…".
                let len = app.picker.as_ref().map_or(0, Vec::len);
                app.picker_index = step(app.picker_index, len + 2);
                if app.picker_index < len {
                    app.picker_copy = app.picker_index;
                }
                return None;
            }
            let Some(l) = &app.loaded else { return None };
            match app.tab {
                Tab::Audience => {
                    let len = l.shown_excluded(app.excluded_filter).len();
                    app.excluded_index = step(app.excluded_index, len);
                }
                Tab::Check => {
                    app.finding_index = step(app.finding_index, l.report.findings.len());
                }
                Tab::Preview => {
                    app.preview_scroll = (app.preview_scroll as isize + delta).max(0) as u16;
                }
                Tab::Template => {
                    let lines = l
                        .sources
                        .get(app.template_index)
                        .map_or(0, |s| s.text.lines().count());
                    app.template_scroll =
                        (app.template_scroll as isize + delta).clamp(0, lines as isize) as u16;
                }
                _ => {}
            }
        }
        Action::Left | Action::Right if app.tab == Tab::Template && !app.in_picker() => {
            let len = app.loaded.as_ref().map_or(0, |l| l.sources.len());
            if len == 0 {
                return None;
            }
            app.template_index = if matches!(action, Action::Right) {
                (app.template_index + 1) % len
            } else {
                (app.template_index + len - 1) % len
            };
            app.template_scroll = 0;
        }
        Action::Left | Action::Right if app.tab == Tab::Audience && !app.in_picker() => {
            let Some(l) = &app.loaded else { return None };
            // Every reason, then each reason that excludes someone, round and round.
            let mut choices: Vec<Option<&'static str>> = vec![None];
            choices.extend(l.exclusion_reasons().into_iter().map(Some));
            let at = choices
                .iter()
                .position(|c| *c == app.excluded_filter)
                .unwrap_or(0);
            let n = choices.len();
            let next = if matches!(action, Action::Right) {
                (at + 1) % n
            } else {
                (at + n - 1) % n
            };
            app.excluded_filter = choices[next];
            app.excluded_index = 0;
        }
        Action::Left | Action::Right => {
            if app.tab != Tab::Preview || app.in_picker() {
                return None;
            }
            let len = app.recipients_count();
            if len == 0 {
                return None;
            }
            app.preview_index = if matches!(action, Action::Right) {
                (app.preview_index + 1) % len
            } else {
                (app.preview_index + len - 1) % len
            };
            app.preview_scroll = 0;
            app.refresh_preview();
        }
        // The campaign being made from a CSV opens when it is written: nothing else opens
        // meanwhile (it would be left for it, unsaved edits and all).
        Action::Select | Action::NewCampaign | Action::NewFromCsv
            if app.in_picker() && app.from_csv.running =>
        {
            app.set_status("still making the campaign from the CSV…");
        }
        Action::Select => {
            let len = app.picker.as_ref().map_or(0, Vec::len);
            if app.in_picker() && app.picker_index > len {
                return Some(Action::NewFromCsv);
            }
            if app.in_picker() {
                let picked = app
                    .picker
                    .as_ref()
                    .and_then(|p| p.get(app.picker_index))
                    .cloned();
                match picked {
                    Some(path) => app.open(path),
                    None if app.picker.as_ref().is_some_and(|p| p.is_empty()) => {
                        app.set_status("no campaign file to copy: a new campaign starts from one");
                    }
                    None => {
                        let len = app.picker.as_ref().map_or(0, Vec::len);
                        app.prompt = Some(Prompt {
                            kind: PromptKind::NewCampaign(app.picker_copy.min(len - 1)),
                            input: TextInput::default(),
                            error: None,
                        });
                    }
                }
            } else if app.tab == Tab::Segment {
                app.editing = true;
            } else if app.tab == Tab::Send {
                return Some(Action::DryRun);
            }
        }
        Action::ToggleHelp => app.help = !app.help,
        Action::ToggleReveal => app.reveal = !app.reveal,
        Action::ToggleVariant => {
            app.preview_generic = !app.preview_generic;
            app.refresh_preview();
        }
        Action::ToggleHtml => {
            app.preview_html = !app.preview_html;
            app.preview_scroll = 0;
        }
        Action::OpenMessage => match &app.preview {
            Some(doc) if !doc.eml.is_empty() => {
                app.effects.push(Effect::Open(doc.eml.clone()));
                app.set_status("opening the message in the desktop's viewer…");
            }
            Some(_) => app.set_status("nothing to open: this message cannot be built"),
            None => app.set_status("nothing to open: no recipients"),
        },
        Action::Surveyed(path, said) => app.survey.push((path, said)),
        Action::Opened(r) => app.set_status(match r {
            Ok(said) => said,
            Err(why) => format!("not opened: {why}"),
        }),
        Action::StartEdit => {
            if app.loaded.is_some() {
                app.tab = Tab::Segment;
                app.editing = true;
            }
        }
        Action::Input(c) => {
            if let Some(p) = &mut app.prompt {
                p.input.insert(c);
            } else if app.editing {
                app.segment.insert(c);
                app.schedule_recount();
            }
        }
        Action::Paste(text) => {
            let text = pasted(&text);
            // Twice what any field takes (a segment stops at MAX_SEGMENT_CHARS): a paste
            // this long is a mistake, not something to render on every frame.
            let limit = 2 * tact::segment::MAX_SEGMENT_CHARS;
            let len = text.chars().count();
            if len > limit {
                app.set_status(format!(
                    "not pasted: {len} characters; a field takes at most {limit}"
                ));
                return None;
            }
            if let Some(p) = &mut app.prompt {
                p.input.insert_str(&text);
            } else if app.editing {
                app.segment.insert_str(&text);
                app.schedule_recount();
            } else if !text.is_empty() {
                app.set_status("not typing: press / to edit the segment, then paste");
            }
        }
        Action::Backspace => {
            if let Some(p) = &mut app.prompt {
                p.input.backspace();
            } else if app.editing && app.segment.backspace() {
                app.schedule_recount();
            }
        }
        Action::CursorLeft | Action::CursorRight | Action::Home | Action::End => {
            if app.prompt.is_none() && !app.editing && app.tab == Tab::Audience && !app.in_picker()
            {
                let Some(l) = &app.loaded else { return None };
                let len = l.shown_excluded(app.excluded_filter).len();
                app.excluded_index = match action {
                    Action::Home => 0,
                    Action::End => len.saturating_sub(1),
                    _ => app.excluded_index,
                };
                return None;
            }
            let input = match &mut app.prompt {
                Some(p) => &mut p.input,
                None if app.editing => &mut app.segment,
                None => return None,
            };
            match action {
                Action::CursorLeft => input.left(),
                Action::CursorRight => input.right(),
                Action::Home => input.cursor = 0,
                _ => input.cursor = input.text.chars().count(),
            }
        }
        Action::ClearInput => {
            if let Some(p) = &mut app.prompt {
                p.input = TextInput::default();
            } else if app.editing {
                app.segment = TextInput::default();
                app.schedule_recount();
            }
        }
        Action::Submit => {
            if app.prompt.is_some() {
                return submit_prompt(app);
            }
            if app.editing {
                app.editing = false;
                if app.recount_due.is_some() {
                    return app.start_recount();
                }
            }
        }
        // Esc closes what is open and stops typing or sending; it never leaves or quits.
        Action::Cancel => {
            if app.help {
                app.help = false;
            } else if app.prompt.is_some() {
                app.prompt = None;
                app.pending_test = None;
            } else if app.is_sending() {
                return Some(Action::Stop);
            } else if app.editing {
                app.editing = false;
            } else {
                app.status = None;
            }
        }
        Action::DryRun => {
            if app.loaded.is_none() || app.dry_running || app.is_sending() {
                return None;
            }
            app.tab = Tab::Send;
            if app.segment_error.is_some() {
                app.set_status("no dry run: the segment typed has an error (see Segment)");
                return None;
            }
            app.dry_running = true;
            app.dry_run = None;
            // Built on the checked plan of the segment typed, so render failures are not
            // counted as recipients and an edit still being counted is not skipped.
            if app.counts_pending() {
                app.dry_run_pending = true;
                if app.recount_due.is_some() && !app.recounting() {
                    return app.start_recount();
                }
            } else if app.checking() && !app.blocked() {
                app.dry_run_pending = true;
            } else {
                app.start_dry_run();
            }
        }
        Action::RealSend => {
            let Some(l) = &app.loaded else { return None };
            if app.is_sending() {
                return None;
            }
            app.tab = Tab::Send;
            if !l.checked() {
                app.set_status(format!("{STILL_CHECKING}: send once the verdict shows"));
                return None;
            }
            if !l.report.sendable() {
                app.set_status(format!(
                    "nothing can be sent: the verdict is {} (see Check)",
                    l.report.verdict.as_str()
                ));
                return None;
            }
            if app.dirty() || app.counts_pending() {
                app.set_status("save the campaign first (s), so the file says what was sent");
                return None;
            }
            if l.report.audience.recipients() == 0 {
                let why = match app.facts.completed_at {
                    Some(at) => {
                        tact::send::orchestrate::completed_note(&l.prepared.campaign.name, at)
                    }
                    None => "no recipients to send to".into(),
                };
                app.set_status(why);
                return None;
            }
            // A campaign that names its relays sends through them, as `tact send` does.
            let relays = !l.prepared.campaign.send.relay.is_empty();
            let kind = if app.smtp_url.is_some() || relays {
                PromptKind::ConfirmCount(l.report.audience.recipients())
            } else {
                PromptKind::SmtpUrl
            };
            app.prompt = Some(Prompt {
                kind,
                input: TextInput::default(),
                error: None,
            });
        }
        Action::TestSend => {
            if app.may_test() {
                app.ask_test_to(Who::Sample);
            }
        }
        Action::TestAsShown => {
            let shown = app.loaded.as_ref().and_then(|l| {
                l.plan
                    .recipients()
                    .nth(app.preview_index)
                    .map(|(row, _)| row)
            });
            let tab = app.tab;
            if let Some(row) = shown
                && app.may_test()
            {
                app.prompt = Some(Prompt {
                    kind: PromptKind::ConfirmTestAs(row),
                    input: TextInput::default(),
                    error: None,
                });
            } else {
                app.tab = tab;
            }
        }
        Action::Find => {
            app.loaded.as_ref()?;
            app.tab = Tab::Preview;
            app.prompt = Some(Prompt {
                kind: PromptKind::Find,
                input: TextInput::new(&app.find_last),
                error: None,
            });
        }
        Action::NewCampaign => {
            let len = app.picker.as_ref().map_or(0, Vec::len);
            if !app.in_picker() || len == 0 {
                return None;
            }
            let from = app.picker_index.min(len - 1);
            app.picker_copy = from;
            app.prompt = Some(Prompt {
                kind: PromptKind::NewCampaign(from),
                input: TextInput::default(),
                error: None,
            });
        }
        Action::NewFromCsv => {
            if !app.in_picker() {
                return None;
            }
            app.picker_index = app.picker.as_ref().map_or(0, Vec::len) + 1;
            from_csv::ask_path(app, None);
        }
        Action::FromCsvDone(result) => from_csv::finished(app, *result),
        Action::CloseSaid => app.said = None,
        Action::Stop => {
            if let Some(s) = &app.sending
                && s.result.is_none()
            {
                s.stop.store(true, Ordering::SeqCst);
                app.set_status("stopping: in-flight messages finish and are recorded");
            }
        }
        Action::Save => {
            if app.loaded.is_none() || app.is_sending() {
                return None;
            }
            // The error shown may belong to a segment already typed over: a save pressed
            // while the recount is due or running waits for the count of exactly this
            // text rather than judging (or writing) it on stale facts.
            if app.counts_pending() {
                let want = app.segment.text.trim().to_string();
                app.set_status(format!("saving `{want}` once it is counted…"));
                app.save_pending = Some(want);
                if app.recount_due.is_some() && !app.recounting() {
                    return app.start_recount();
                }
                return None;
            }
            app.save_now();
        }
        Action::Acknowledge => {
            let Some(l) = &app.loaded else { return None };
            app.tab = Tab::Check;
            if !l.checked() {
                app.set_status(format!(
                    "{STILL_CHECKING}: acknowledge once the verdict shows"
                ));
                return None;
            }
            match l.report.findings.get(app.finding_index) {
                Some(f) if f.level == Level::Caution && !f.acknowledged => {
                    app.prompt = Some(Prompt {
                        kind: PromptKind::AckReason(app.finding_index),
                        input: TextInput::default(),
                        error: None,
                    });
                }
                Some(f) if f.acknowledged => {
                    app.set_status("already acknowledged: A takes the acknowledgement back");
                }
                Some(f) if f.level == Level::Block => {
                    app.set_status("a block cannot be acknowledged: change the campaign");
                }
                _ => app.set_status("only a caution can be acknowledged"),
            }
        }
        Action::Revoke => {
            let Some(l) = &app.loaded else { return None };
            app.tab = Tab::Check;
            let f = l.report.findings.get(app.finding_index)?;
            if !f.acknowledged {
                app.set_status("nothing to take back: this finding is not acknowledged");
                return None;
            }
            let (rule, fields) = (f.rule.to_string(), f.fields.clone());
            let path = app.path.clone()?;
            let mut campaign = l.prepared.campaign.clone();
            campaign
                .policy
                .acknowledge
                .retain(|a| !a.covers(&rule, &fields));
            app.effects.push(Effect::Revoke { path, rule, fields });
            // As with `a`: the file changes only there; an unsaved segment stays unsaved.
            let s = app.segment.text.trim();
            campaign.segment = (!s.is_empty()).then(|| s.to_string());
            app.recount(campaign);
        }
        Action::Editor => {
            if app.is_sending() {
                return None;
            }
            // A campaign that failed to open: the file and line at fault. On the Template
            // screen: the file shown. Elsewhere the campaign file.
            let at_fault = app
                .load_error
                .as_ref()
                .and_then(|e| e.at.as_ref())
                .map(|at| (at.path.clone(), at.line));
            let shown = match (&app.loaded, app.tab) {
                (Some(l), Tab::Template) => l
                    .sources
                    .get(app.template_index)
                    .map(|s| (s.path.clone(), None)),
                _ => None,
            };
            if let Some((path, line)) = at_fault
                .or(shown)
                .or_else(|| app.campaign_path().map(|p| (p.to_path_buf(), None)))
            {
                app.effects.push(Effect::Editor { path, line });
            }
        }
        Action::EditorDone(result) => match result {
            Ok(()) => app.set_status("back from the editor: the campaign was read again"),
            Err(e) => app.set_status(format!("{e}; the files were read again as they are")),
        },
        Action::Reload => {
            if let Some(path) = app.path.clone() {
                let tab = app.tab;
                app.keep_segment = app.dirty().then(|| app.segment.text.clone());
                app.open(path);
                app.tab = tab;
            }
        }
        Action::Resize => {}
        Action::Tick(now) => {
            if let Some(due) = app.recount_due
                && now >= due
                && !app.recounting()
            {
                return app.start_recount();
            }
        }
        Action::Loaded(result) => {
            app.loading = false;
            match *result {
                Ok((mut l, facts)) => {
                    app.facts = Arc::new(facts);
                    app.ledger = l.ledger.take();
                    app.bounces = l.bounces.take();
                    let file = l.prepared.campaign.segment.clone().unwrap_or_default();
                    app.segment = TextInput::new(&file);
                    app.segment_error = None;
                    app.saved_segment = file.trim().to_string();
                    app.preview_index = 0;
                    app.install(l);
                    app.load_error = None;
                    app.start_check();
                    // A reload (after the editor) keeps a segment typed but not saved.
                    if let Some(kept) = app.keep_segment.take()
                        && kept != file
                    {
                        app.segment = TextInput::new(&kept);
                        app.schedule_recount();
                    }
                }
                Err(e) => app.load_error = Some(e),
            }
        }
        Action::Recounted { generation, result } => {
            if generation != app.generation {
                return None;
            }
            app.counting = None;
            match *result {
                Ok(l) => {
                    app.segment_error = None;
                    app.install_keeping_recipient(l);
                }
                Err(e) => app.segment_error = Some(e),
            }
            // Also after an error: the recount's generation stopped the check of the plan
            // still on screen, which must not stay "checking…".
            app.start_check();
            if app.segment_error.is_some() && std::mem::take(&mut app.dry_run_pending) {
                app.dry_running = false;
                app.set_status("no dry run: the segment typed has an error (see Segment)");
            }
            // Edits cancel a pending save, so one still here was asked for this very text;
            // save_now checks once more that it is the text these counts are for.
            if app.save_pending.is_some() && app.recount_due.is_none() {
                app.save_pending = None;
                app.save_now();
            }
        }
        Action::Checked { generation, result } => {
            if generation == app.generation {
                app.finish_check(*result);
            }
        }
        Action::DryRunDone(r) => {
            // None running: it was for a campaign read again since; its count would be
            // shown against a plan it was not built from.
            if app.dry_running {
                app.dry_running = false;
                // The plan may have become blocked while the messages were being built.
                app.dry_run = Some(if app.blocked() {
                    Err(DRY_RUN_BLOCKED.to_string())
                } else {
                    r
                });
            }
        }
        Action::TestSent(r) => {
            app.testing = false;
            app.test_result = Some(r);
        }
        Action::SendDone(r) => {
            if let Some(s) = &mut app.sending {
                s.result = Some(r);
            }
            // The ledger changed: the counts, the verdict line and `S` must say what is
            // left now, not what was there before the send.
            return Some(Action::Reload);
        }
        Action::ImportBounces => app.start_bounce_import(),
        Action::BouncesProgress(n) => {
            if let Some(b) = &mut app.bounce_import {
                b.processed = n;
            }
        }
        Action::BouncesImported(r) => {
            let Some(b) = &mut app.bounce_import else {
                return None;
            };
            b.running = false;
            let ok = r.is_ok();
            let status = match &r {
                Ok(line) => format!("bounces imported: {line}"),
                Err(e) => format!("bounces not imported: {e}"),
            };
            b.result = Some(r);
            app.set_status(status);
            // Suppressions may have changed: the counts, the figures and `S` must say so.
            if ok {
                return Some(Action::Reload);
            }
        }
        Action::Saved { segment, result } => match result {
            Ok(msg) => {
                if segment && let Some(s) = app.saving.take() {
                    app.saved_segment = s;
                }
                app.set_status(msg);
            }
            Err(e) => {
                if segment {
                    app.saving = None;
                }
                app.set_status(format!("not saved: {e}"));
            }
        },
    }
    None
}

fn submit_prompt(app: &mut App) -> Option<Action> {
    let prompt = app.prompt.as_mut()?;
    let typed = prompt.input.text.trim().to_string();
    match prompt.kind {
        PromptKind::SmtpUrl => {
            match tact::send::Transport::parse(&typed, std::env::var("TACT_SMTP_PASSWORD").ok()) {
                Ok(_) => {
                    app.smtp_url = Some(typed.clone());
                    if let Some(order) = app.pending_test.take() {
                        start_test(app, typed, order);
                        return None;
                    }
                    let n = app.recipients_count();
                    app.prompt = Some(Prompt {
                        kind: PromptKind::ConfirmCount(n),
                        input: TextInput::default(),
                        error: None,
                    });
                }
                Err(e) => prompt.error = Some(e.to_string()),
            }
        }
        PromptKind::ConfirmCount(n) => {
            if typed == n.to_string() {
                let url = app.smtp_url.clone();
                app.prompt = None;
                app.sending = Some(Sending {
                    tally: Arc::new(Tally::default()),
                    stop: Arc::new(AtomicBool::new(false)),
                    started: Instant::now(),
                    result: None,
                });
                app.effects.push(Effect::Send { url });
            } else {
                prompt.error = Some(format!("type {n} (the number of recipients) to send"));
            }
        }
        PromptKind::TestTo => {
            let to: Vec<String> = typed
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if to.is_empty() {
                prompt.error = Some("type your own address (several: separate with commas)".into());
            } else if let Some(bad) = to.iter().find(|a| a.parse::<lettre::Address>().is_err()) {
                prompt.error = Some(format!("`{bad}` is not an address"));
            } else {
                let order = TestOrder {
                    to,
                    configured: app.configured_test_to(),
                    allow_other: false,
                    who: app.test_who.clone(),
                };
                match test_send::addresses(&order.to, &order.configured, false) {
                    Ok(_) => test_or_ask_url(app, order),
                    Err(test_send::Refusal::OutsideTestTo(_)) => {
                        app.pending_test = Some(order);
                        app.prompt = Some(Prompt {
                            kind: PromptKind::ConfirmOtherTestAddress,
                            input: TextInput::default(),
                            error: None,
                        });
                    }
                    Err(r) => {
                        if let Some(p) = app.prompt.as_mut() {
                            p.error = Some(r.message());
                        }
                    }
                }
            }
        }
        PromptKind::ConfirmOtherTestAddress => {
            if typed == "yes" {
                if let Some(mut order) = app.pending_test.take() {
                    order.allow_other = true;
                    test_or_ask_url(app, order);
                }
            } else {
                prompt.error = Some("type yes to send the test there, or Esc".into());
            }
        }
        PromptKind::ConfirmTestAs(row) => {
            if typed == "yes" {
                app.ask_test_to(Who::Row(row));
            } else {
                prompt.error = Some("type yes to test with this person's data, or Esc".into());
            }
        }
        PromptKind::Find => {
            let l = app.loaded.as_ref()?;
            // The same text again moves on from the recipient shown; a new text starts
            // from the top.
            let after = (typed == app.find_last).then_some(app.preview_index);
            match find(l, &typed, after) {
                Found::Recipient {
                    index,
                    nth,
                    matches,
                } => {
                    app.prompt = None;
                    app.find_last = typed;
                    app.preview_index = index;
                    app.preview_scroll = 0;
                    app.refresh_preview();
                    if matches > 1 {
                        app.set_status(format!(
                            "match {nth} of {matches}: f then Enter shows the next"
                        ));
                    }
                }
                Found::Excluded { line, reason, more } => {
                    let others = if more > 0 {
                        format!("; {more} other excluded row(s) match too")
                    } else {
                        String::new()
                    };
                    prompt.error = Some(format!(
                        "no recipient matches; line {line} does but gets no message ({reason}){others}"
                    ));
                }
                Found::Nowhere => {
                    prompt.error =
                        Some("no address or name in the audience file contains that".into());
                }
            }
        }
        PromptKind::NewCampaign(i) => {
            let source = app.picker.as_ref()?.get(i)?.clone();
            match super::work::create_campaign(&source, &typed) {
                Ok(path) => {
                    app.prompt = None;
                    let list = app.picker.as_mut()?;
                    list.push(path.clone());
                    list.sort();
                    app.picker_index = list.iter().position(|p| p == &path).unwrap_or(0);
                    app.picker_copy = app.picker_index;
                    app.set_status(format!(
                        "created {} from {}",
                        path.display(),
                        source.display()
                    ));
                    app.open(path);
                }
                Err(e) => prompt.error = Some(e),
            }
        }
        PromptKind::CsvPath => from_csv::submit_path(app, typed),
        PromptKind::CsvName => from_csv::submit_name(app, typed),
        PromptKind::AckReason(i) => {
            if typed.chars().count() < MIN_REASON {
                prompt.error = Some(format!(
                    "say why in a sentence, at least {MIN_REASON} characters (a ticket, a DPO decision, …)"
                ));
                return None;
            }
            let l = app.loaded.as_ref()?;
            let f = l.report.findings.get(i)?;
            let ack = Acknowledgement {
                rule: f.rule.to_string(),
                fields: f.fields.clone(),
                reason: typed,
            };
            let path = app.path.clone()?;
            app.prompt = None;
            let mut campaign = l.prepared.campaign.clone();
            campaign.policy.acknowledge.push(ack.clone());
            // The file gets only the acknowledgement; an unsaved segment stays unsaved.
            app.effects.push(Effect::Acknowledge { path, ack });
            let s = app.segment.text.trim();
            campaign.segment = (!s.is_empty()).then(|| s.to_string());
            app.recount(campaign);
        }
    }
    None
}
