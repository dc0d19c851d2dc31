//! Drawing: reads the `App`, never changes it.

use std::sync::atomic::Ordering;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Gauge, List, ListItem, ListState, Paragraph, Row, StatefulWidget,
    Table, Tabs, Widget, Wrap,
};

use std::collections::HashMap;

use tact::check::Level;
use tact::plan::{Counts, Reason};
use tact::schema::FieldClass;
use tact::send::{Provider, ProviderTally};

use super::app::{App, DRY_RUN_BLOCKED, Loaded, MIN_REASON, PromptKind, Tab};
use super::keys::{KEYS, Scope, active_scopes};
use super::source;
use tact::person::mask_address as mask;

/// Every class, in level order, for the Template screen's legend.
pub const CLASSES: [FieldClass; 8] = [
    FieldClass::Routing,
    FieldClass::Declared,
    FieldClass::Transactional,
    FieldClass::Behavioural,
    FieldClass::QuasiIdentifier,
    FieldClass::HighRisk,
    FieldClass::Special,
    FieldClass::Unclassified,
];

/// Colour only when NO_COLOR is unset; bold and reverse still mark things without it.
#[derive(Clone, Copy)]
struct Theme {
    colour: bool,
}

impl Theme {
    fn fg(self, c: Color) -> Style {
        if self.colour {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    fn bold(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    fn dim(self) -> Style {
        if self.colour {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new()
        }
    }

    fn level(self, l: Level) -> Style {
        let c = match l {
            Level::Ok => Color::Green,
            Level::Notice => Color::Cyan,
            Level::Caution => Color::Yellow,
            Level::Block => Color::Red,
        };
        self.fg(c).add_modifier(Modifier::BOLD)
    }

    fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    fn class(self, c: FieldClass) -> Style {
        class_style(self.colour, c)
    }
}

/// A customer field by class: a colour each, or with NO_COLOR a distinct mix of italic,
/// underline, bold and reverse.
pub fn class_style(colour: bool, c: FieldClass) -> Style {
    if colour {
        let colour = match c {
            FieldClass::Routing => Color::Blue,
            FieldClass::Declared => Color::Green,
            FieldClass::Transactional => Color::Cyan,
            FieldClass::Behavioural => Color::Yellow,
            FieldClass::QuasiIdentifier => Color::Magenta,
            FieldClass::HighRisk => Color::LightRed,
            FieldClass::Special => Color::Red,
            FieldClass::Unclassified => Color::Gray,
        };
        let s = Style::new().fg(colour).add_modifier(Modifier::BOLD);
        match c {
            FieldClass::Special => s.add_modifier(Modifier::REVERSED),
            FieldClass::Unclassified => s.add_modifier(Modifier::UNDERLINED),
            _ => s,
        }
    } else {
        let m = match c {
            FieldClass::Routing => Modifier::ITALIC,
            FieldClass::Declared => Modifier::UNDERLINED,
            FieldClass::Transactional => Modifier::BOLD,
            FieldClass::Behavioural => Modifier::BOLD | Modifier::UNDERLINED,
            FieldClass::QuasiIdentifier => Modifier::REVERSED,
            FieldClass::HighRisk => Modifier::REVERSED | Modifier::UNDERLINED,
            FieldClass::Special => Modifier::REVERSED | Modifier::BOLD,
            FieldClass::Unclassified => Modifier::BOLD | Modifier::ITALIC,
        };
        Style::new().add_modifier(m)
    }
}

fn level_text(l: Level) -> String {
    l.as_str().to_uppercase()
}

/// The verdict, or "checking…" while every recipient is still being rendered.
fn verdict_span(l: &Loaded, t: Theme) -> Span<'static> {
    if l.checked() {
        Span::styled(level_text(l.report.verdict), t.level(l.report.verdict))
    } else {
        Span::styled(CHECKING, t.fg(Color::Yellow))
    }
}

const CHECKING: &str = "checking…";

/// What the verdict means for sending, in a few words.
fn verdict_note(l: &Loaded) -> &'static str {
    let r = &l.report;
    if !l.checked() {
        return "rendering every recipient; the verdict follows";
    }
    if !r.self_check.is_empty() {
        return "the self-check found a missed field: fix before sending";
    }
    match r.verdict {
        Level::Block => "nothing can be sent",
        _ if r.audience.recipients() == 0 => "nothing left to send",
        Level::Caution if r.sendable() => "acknowledged: may be sent",
        Level::Caution => "acknowledge or fix before sending",
        _ => "may be sent",
    }
}

/// Greedy word wrap; words longer than the width are cut.
fn wrap(s: &str, width: usize) -> Vec<String> {
    let width = width.max(8);
    let mut lines = Vec::new();
    for para in s.split('\n') {
        let mut line = String::new();
        for word in para.split(' ') {
            let wlen = word.chars().count();
            let llen = line.chars().count();
            if llen > 0 && llen + 1 + wlen > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
            while line.chars().count() > width {
                let head: String = line.chars().take(width).collect();
                let tail: String = line.chars().skip(width).collect();
                lines.push(head);
                line = tail;
            }
        }
        lines.push(line);
    }
    lines
}

/// The smallest window every screen is laid out for.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

/// Below the minimum size: one message instead of screens cut in half.
fn too_small(area: Rect, t: Theme, buf: &mut Buffer) {
    let text = format!(
        "make the window larger: tact needs {MIN_WIDTH}×{MIN_HEIGHT}, this one is {}×{}",
        area.width, area.height
    );
    let mut lines: Vec<Line> = wrap(&text, area.width.max(1) as usize)
        .into_iter()
        .map(|l| Line::styled(l, t.bold()))
        .collect();
    lines.push(Line::raw(""));
    lines.extend(
        wrap(
            "nothing is lost: the screens come back at that size",
            area.width.max(1) as usize,
        )
        .into_iter()
        .map(Line::raw),
    );
    let h = (lines.len() as u16).min(area.height);
    let r = Rect {
        y: area.y + (area.height - h) / 2,
        height: h,
        ..area
    };
    Paragraph::new(lines).render(r, buf);
}

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let t = Theme {
            colour: self.colour,
        };
        if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
            too_small(area, t, buf);
            return;
        }
        let [top, body, status] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(area);
        if self.in_picker() {
            Line::from(Span::styled(" tact: pick a campaign", t.bold())).render(top, buf);
            picker(self, t, body, buf);
        } else {
            tabs(self, t, top, buf);
            let name = self
                .loaded
                .as_ref()
                .map(|l| l.prepared.campaign.name.clone())
                .or_else(|| self.path.as_ref().map(|p| p.display().to_string()))
                .unwrap_or_default();
            let title = format!(
                " {}{} · {} ",
                name,
                if self.dirty() { " (unsaved)" } else { "" },
                self.tab.title()
            );
            let block = Block::default()
                .borders(Borders::ALL)
                .border_style(t.dim())
                .title(Span::styled(title, t.bold()));
            let inner = block.inner(body);
            block.render(body, buf);
            match (&self.loaded, &self.load_error) {
                (_, Some(e)) => {
                    let open = match &e.at {
                        Some(at) => match at.line {
                            Some(line) => format!(
                                "e opens {} at line {line} in $EDITOR; the campaign is read again when it closes",
                                source::tidy(&at.path)
                            ),
                            None => format!(
                                "e opens {} in $EDITOR; the campaign is read again when it closes",
                                source::tidy(&at.path)
                            ),
                        },
                        None => "e opens the campaign file in $EDITOR".to_string(),
                    };
                    let back = if self.picker.is_some() {
                        "q goes back to the picker"
                    } else {
                        "q quits"
                    };
                    Paragraph::new(vec![
                        Line::styled("cannot open this campaign:", t.level(Level::Block)),
                        Line::raw(""),
                        Line::raw(e.message.clone()),
                        Line::raw(""),
                        Line::raw(format!("{open}; {back}")),
                    ])
                    .wrap(Wrap { trim: false })
                    .render(inner, buf);
                }
                (None, None) => {
                    Line::raw("loading the campaign and checking every recipient…")
                        .render(inner, buf);
                }
                (Some(l), None) => match self.tab {
                    Tab::Overview => overview(self, l, t, inner, buf),
                    Tab::Audience => audience(self, l, t, inner, buf),
                    Tab::Segment => segment(self, l, t, inner, buf),
                    Tab::Template => template(self, l, t, inner, buf),
                    Tab::Check => check(self, l, t, inner, buf),
                    Tab::Preview => preview(self, t, inner, buf),
                    Tab::Send => send(self, l, t, inner, buf),
                },
            }
        }
        status_line(self, t, status, buf);
        if self.prompt.is_some() {
            prompt(self, t, area, buf);
        }
        if let Some(s) = &self.said {
            said(s, t, area, buf);
        }
        if self.help {
            help(self, t, area, buf);
        }
    }
}

fn tabs(app: &App, t: Theme, area: Rect, buf: &mut Buffer) {
    let titles: Vec<&str> = Tab::ALL.iter().map(|x| x.title()).collect();
    let selected = Tab::ALL.iter().position(|x| *x == app.tab).unwrap_or(0);
    Tabs::new(titles)
        .select(selected)
        .highlight_style(t.selected().add_modifier(Modifier::BOLD))
        .divider("│")
        .render(area, buf);
}

fn status_line(app: &App, t: Theme, area: Rect, buf: &mut Buffer) {
    let mut spans = Vec::new();
    if app.loading {
        spans.push(Span::styled("loading… ", t.fg(Color::Yellow)));
    }
    if app.counts_pending() {
        spans.push(Span::styled("recounting… ", t.fg(Color::Yellow)));
    } else if app.checking() {
        spans.push(Span::styled(format!("{CHECKING} "), t.fg(Color::Yellow)));
    }
    match &app.status {
        Some(s) => spans.push(Span::styled(s.clone(), t.bold())),
        None => {
            let hint = if app.said.is_some() {
                "↑/↓ scroll · Enter, Esc or q: on to the campaign · Ctrl-C quit"
            } else if app.in_picker() {
                "Enter open · n copy it · c new from a CSV · ↑/↓ choose · ? help · q quit"
            } else if app.editing && app.prompt.is_none() {
                "typing: Enter apply · Esc stop typing · Ctrl-U clear · Tab next screen"
            } else {
                match app.tab {
                    Tab::Audience => "↑/↓ g/G rows · ←/→ reason · r reveal · ? help · q quit",
                    Tab::Segment => "/ or Enter edit · s save · Tab next · ? help · q quit",
                    Tab::Check => "↑/↓ finding · a acknowledge · A take back · ? help · q quit",
                    Tab::Template => "←/→ file · ↑/↓ scroll · e edit this file · ? help · q quit",
                    Tab::Preview => {
                        "←/→ recipient · f find · g variant · h HTML · o open · ? help · q quit"
                    }
                    Tab::Send => "d dry run · t test to me · S send · b bounces · ? help · q quit",
                    Tab::Overview => "Tab next screen · / segment · b bounces · ? help · q quit",
                }
            };
            spans.push(Span::styled(hint, t.dim()));
        }
    }
    Line::from(spans).render(area, buf);
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

/// The picker's entry that runs `tact new` on a customer file.
pub const NEW_FROM_CSV: &str = "+ new from a CSV…";

fn picker(app: &App, t: Theme, area: Rect, buf: &mut Buffer) {
    let files = app.picker.as_deref().unwrap_or_default();
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" campaigns (./campaigns, else sample-data/campaigns) ");
    let mut area = area;
    if files.is_empty() {
        let inner = block.inner(area);
        block.render(area, buf);
        Paragraph::new(vec![
            Line::raw("no campaign files (*.toml) in ./campaigns or sample-data/campaigns:"),
            Line::raw("start from your customer file (an export from your shop or mailing list)"),
            Line::raw(""),
        ])
        .wrap(Wrap { trim: false })
        .render(inner, buf);
        area = Rect {
            y: inner.y + 3,
            height: inner.height.saturating_sub(3),
            ..inner
        };
        let items = vec![
            ListItem::new(Span::styled(
                "+ new campaign (a copy of one: none yet)",
                t.dim(),
            )),
            ListItem::new(Span::styled(NEW_FROM_CSV, t.bold())),
        ];
        let mut state = ListState::default().with_selected(Some(app.picker_index));
        StatefulWidget::render(
            List::new(items)
                .highlight_style(t.selected())
                .highlight_symbol("> "),
            area,
            buf,
            &mut state,
        );
        return;
    }
    let items: Vec<ListItem> = files
        .iter()
        .map(|f| {
            let mut spans = vec![Span::raw(f.display().to_string())];
            if let Some(said) = app.surveyed(f) {
                spans.push(Span::styled(format!("  {said}"), t.dim()));
            }
            ListItem::new(Line::from(spans))
        })
        .chain([
            ListItem::new(Span::styled("+ new campaign", t.bold())),
            ListItem::new(Span::styled(NEW_FROM_CSV, t.bold())),
        ])
        .collect();
    let mut state = ListState::default().with_selected(Some(app.picker_index));
    StatefulWidget::render(
        List::new(items)
            .block(block)
            .highlight_style(t.selected())
            .highlight_symbol("> "),
        area,
        buf,
        &mut state,
    );
}

/// The segment the counts on screen are for, and a note while the one typed differs.
fn counted_for(app: &App, t: Theme) -> Vec<Span<'static>> {
    let counted = app.counted_segment().unwrap_or_default();
    let mut spans = vec![Span::raw(if counted.is_empty() {
        "(none: everyone with consent)".to_string()
    } else {
        counted.to_string()
    })];
    if app.counts_pending() {
        spans.push(Span::styled(
            "  (counting the segment typed…)",
            t.fg(Color::Yellow),
        ));
    } else if app.segment_error.is_some() {
        spans.push(Span::styled(
            "  (the segment typed has an error; see Segment)",
            t.fg(Color::Red),
        ));
    } else if app.dirty() {
        spans.push(Span::styled("  (unsaved)", t.fg(Color::Yellow)));
    }
    spans
}

fn kv<'a>(t: Theme, key: &'a str, value: Vec<Span<'a>>) -> Line<'a> {
    let mut spans = vec![Span::styled(format!("{key:<12}"), t.bold())];
    spans.extend(value);
    Line::from(spans)
}

fn overview(app: &App, l: &Loaded, t: Theme, area: Rect, buf: &mut Buffer) {
    let p = &l.prepared;
    let c = &l.report.audience;
    let path = app
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut lines = vec![
        kv(
            t,
            "Campaign",
            vec![
                Span::styled(p.campaign.name.clone(), t.bold()),
                Span::styled(format!("  {path}"), t.dim()),
            ],
        ),
        kv(
            t,
            "Audience",
            vec![Span::raw(format!(
                "{} · {} rows",
                p.campaign.audience.display(),
                c.rows
            ))],
        ),
        kv(t, "Segment", counted_for(app, t)),
        kv(t, "Subject", subject_spans(app, t)),
        Line::raw(""),
        kv(
            t,
            "Recipients",
            vec![
                Span::styled(c.recipients().to_string(), t.bold()),
                Span::raw(format!(
                    "  ({} personalised, {} generic)",
                    c.personalised, c.generic
                )),
                Span::styled(
                    if l.checked() {
                        ""
                    } else {
                        "  before rendering: checking…"
                    },
                    t.fg(Color::Yellow),
                ),
            ],
        ),
        kv(
            t,
            "Excluded",
            vec![Span::raw(format!("{}  (see Audience)", c.excluded_total()))],
        ),
        kv(
            t,
            "Sent",
            vec![Span::raw(
                sent_state(app, l).unwrap_or_else(|| "not yet".to_string()),
            )],
        ),
    ];
    lines.extend(bounce_lines(app, l, t));
    lines.extend([
        kv(
            t,
            "Verdict",
            vec![
                verdict_span(l, t),
                Span::raw(format!(": {}", verdict_note(l))),
            ],
        ),
        Line::raw(""),
    ]);
    let width = area.width.saturating_sub(12) as usize;
    if l.report.findings.is_empty() {
        lines.push(kv(t, "Findings", vec![Span::raw("none")]));
    }
    for (i, f) in l.report.findings.iter().enumerate() {
        let head = format!(
            "{} {}",
            f.rule,
            if f.acknowledged { "(acknowledged)" } else { "" }
        );
        lines.push(kv(
            t,
            if i == 0 { "Findings" } else { "" },
            vec![
                Span::styled(format!("{:<8}", level_text(f.level)), t.level(f.level)),
                Span::raw(head.trim_end().to_string()),
            ],
        ));
        for w in wrap(&f.message, width.saturating_sub(8)) {
            lines.push(Line::raw(format!("{:20}{w}", "")));
        }
    }
    lines.push(Line::raw(""));
    if let Some(dir) = &app.ctx.state_dir {
        lines.push(kv(
            t,
            "State",
            vec![Span::styled(dir.display().to_string(), t.dim())],
        ));
    }
    Paragraph::new(lines).render(area, buf);
}

/// The bounce loop's figures with Gmail's complaint lines, then `b`'s progress or counts.
fn bounce_lines(app: &App, l: &Loaded, t: Theme) -> Vec<Line<'static>> {
    let mailbox = l.prepared.campaign.bounces.imap.as_deref().map(|u| {
        match tact::imap::MailboxUrl::parse(u) {
            Ok(u) => u.endpoint(),
            Err(_) => "[bounces] imap (not a valid URL)".to_string(),
        }
    });
    let mut out = super::bounces::lines(app.bounces.as_ref(), mailbox.as_deref(), t.colour);
    if let Some(b) = &app.bounce_import {
        let (text, colour) = match &b.result {
            None => (
                format!(
                    "importing from {}… {} message(s) so far",
                    b.mailbox, b.processed
                ),
                Color::Yellow,
            ),
            Some(Ok(line)) => (format!("imported: {line}"), Color::Green),
            Some(Err(e)) => (format!("not imported: {e}"), Color::Red),
        };
        out.push(Line::from(vec![
            Span::raw(format!("{:12}", "")),
            Span::styled(text, t.fg(colour)),
        ]));
    }
    out
}

/// What the ledger says of this campaign: "sent on <date> to N · K uncertain · M failed ·
/// L left" (the date once complete); None for a campaign never sent.
pub fn sent_state(app: &App, l: &Loaded) -> Option<String> {
    let c = app.ledger.as_ref()?;
    let left = l.report.audience.recipients();
    let when = match app.facts.completed_at {
        Some(at) => format!("on {}", at.format("%Y-%m-%d %H:%M UTC")),
        None => "so far".to_string(),
    };
    Some(format!(
        "sent {when} to {} · {} uncertain · {} failed · {left} left",
        c.sent, c.sending, c.failed
    ))
}

/// The subject as the sample recipient's inbox shows it, saying whose render it is; the
/// template itself is on the Template screen.
fn subject_spans(app: &App, t: Theme) -> Vec<Span<'static>> {
    match &app.sample_subject {
        Some((subject, whose)) => vec![
            Span::raw(subject.clone()),
            Span::styled(format!("  ({whose})"), t.dim()),
        ],
        None => vec![Span::styled("(no recipient to render it for)", t.dim())],
    }
}

/// The consent funnel of DESIGN §3, as stages with their counts: every exclusion reason
/// is one step's drop, in the order the plan decides them, so the last step splits into
/// exactly personalised + generic.
pub fn funnel(c: &Counts) -> Vec<(&'static str, usize)> {
    let after = |from: usize, reasons: &[Reason]| {
        reasons
            .iter()
            .fold(from, |n, r| n.saturating_sub(c.excluded(*r)))
    };
    let valid = after(
        c.rows,
        &[
            Reason::MalformedRow,
            Reason::InvalidEmail,
            Reason::Duplicate,
        ],
    );
    let marketing = after(valid, &[Reason::NoMarketingConsent]);
    let current = after(marketing, &[Reason::StaleConsent]);
    let unsuppressed = after(current, &[Reason::Suppressed]);
    // A segment on personal fields leaves out who did not consent to personalisation.
    let personal = after(unsuppressed, &[Reason::NoPersonalisationConsent]);
    let in_segment = after(personal, &[Reason::SegmentError, Reason::NotInSegment]);
    let not_sent = after(in_segment, &[Reason::AlreadySent, Reason::FrequencyCapped]);
    let renders = after(not_sent, &[Reason::RenderError, Reason::BadHeaderValue]);
    vec![
        ("rows", c.rows),
        ("valid", valid),
        ("marketing consent", marketing),
        ("current consent", current),
        ("not suppressed", unsuppressed),
        ("personal consent", personal),
        ("in segment", in_segment),
        ("not sent/capped", not_sent),
        ("renders cleanly", renders),
        ("personalised", c.personalised),
        ("generic", c.generic),
    ]
}

fn funnel_lines(c: &Counts, t: Theme, width: u16) -> Vec<Line<'static>> {
    let bar_width = (width as usize).saturating_sub(18 + 8).max(4);
    let max = c.rows.max(1);
    funnel(c)
        .into_iter()
        .map(|(label, n)| {
            let len = (n * bar_width).div_ceil(max);
            let colour = match label {
                "personalised" => Color::Magenta,
                "generic" => Color::Blue,
                _ => Color::Green,
            };
            Line::from(vec![
                Span::raw(format!("{label:<18}")),
                Span::styled("█".repeat(len), t.fg(colour)),
                Span::raw(format!(" {n}")),
            ])
        })
        .collect()
}

fn audience(app: &App, l: &Loaded, t: Theme, area: Rect, buf: &mut Buffer) {
    let c = &l.report.audience;
    let [label, top, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(12),
        Constraint::Min(3),
    ])
    .areas(area);
    let mut counted = vec![Span::styled("these counts are for ", t.dim())];
    counted.extend(counted_for(app, t));
    Line::from(counted).render(label, buf);
    let [left, right] =
        Layout::horizontal([Constraint::Min(40), Constraint::Length(34)]).areas(top);
    let mut lines = vec![Line::styled(
        format!("consent funnel ({} rows)", c.rows),
        t.bold(),
    )];
    lines.extend(funnel_lines(c, t, left.width));
    Paragraph::new(lines).render(left, buf);
    let mut reasons = vec![Line::styled(
        format!("excluded: {}", c.excluded_total()),
        t.bold(),
    )];
    for r in Reason::ALL {
        let n = c.excluded(r);
        if n > 0 {
            let w = (right.width as usize).saturating_sub(7);
            reasons.push(Line::raw(format!("{:<w$.w$}{n:>7}", r.key())));
        }
    }
    Paragraph::new(reasons).render(right, buf);

    let shown = l.shown_excluded(app.excluded_filter);
    let title = format!(
        " excluded rows by line: {} ({}; ←/→ reason, r {}) ",
        app.excluded_filter.unwrap_or("every reason"),
        shown.len(),
        if app.reveal {
            "masks addresses"
        } else {
            "reveals addresses"
        }
    );
    let items: Vec<ListItem> = shown
        .iter()
        .map(|r| {
            let email = match l.excluded_email(r) {
                None => "(malformed row)".to_string(),
                Some(e) if app.reveal => e.trim().to_string(),
                Some(e) => mask(e),
            };
            ListItem::new(format!("line {:>7}  {:<27} {email}", r.line, r.reason))
        })
        .collect();
    let mut state = ListState::default().with_selected(Some(app.excluded_index));
    StatefulWidget::render(
        List::new(items)
            .block(Block::default().borders(Borders::TOP).title(title))
            .highlight_style(t.selected())
            .highlight_symbol("> "),
        bottom,
        buf,
        &mut state,
    );
}

/// The column a segment error names ("at column N"), if any.
pub fn error_column(e: &str) -> Option<usize> {
    let at = e.find("at column ")? + "at column ".len();
    e[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// One line of a text field `width` columns wide, after a two-column lead: the window
/// of the text that holds `focus` (the cursor, or an error's column), the cursor cell
/// reversed when `cursor` is set, and `…` where text runs on past either edge. Returns
/// the spans and the first character shown, so a caret below can line up.
fn field<'a>(
    text: &str,
    cursor: Option<usize>,
    focus: usize,
    width: usize,
    t: Theme,
) -> (Vec<Span<'a>>, usize) {
    let chars: Vec<char> = text.chars().collect();
    // One column is kept for the cursor past the end, or for the `…` that says more follows.
    let room = width.saturating_sub(1).max(1);
    let offset = focus
        .saturating_sub(room.saturating_sub(1))
        .min(chars.len());
    let shown: Vec<char> = chars.iter().skip(offset).take(room).copied().collect();
    let mut spans = vec![Span::styled(if offset > 0 { "… " } else { "> " }, t.bold())];
    match cursor {
        Some(c) => {
            let at = c.saturating_sub(offset).min(shown.len());
            spans.push(Span::raw(shown[..at].iter().collect::<String>()));
            spans.push(Span::styled(
                shown.get(at).map_or(" ".to_string(), char::to_string),
                t.selected(),
            ));
            spans.push(Span::raw(shown.iter().skip(at + 1).collect::<String>()));
        }
        None => spans.push(Span::raw(shown.iter().collect::<String>())),
    }
    if offset + shown.len() < chars.len() {
        spans.push(Span::styled("…", t.bold()));
    }
    (spans, offset)
}

/// Where the caret of a segment error goes in the text as typed (0-based, in characters):
/// the core counts columns in the trimmed segment (1-based) and may point just past its
/// end, so leading blanks are added back and the column is kept within the text.
pub fn caret_index(typed: &str, column: usize) -> usize {
    let lead = typed.chars().take_while(|c| c.is_whitespace()).count();
    let len = typed.trim().chars().count();
    lead + column.saturating_sub(1).min(len)
}

fn segment(app: &App, l: &Loaded, t: Theme, area: Rect, buf: &mut Buffer) {
    let c = &l.report.audience;
    let mut lines = vec![Line::styled(
        if app.editing {
            "segment: typing (Enter applies now, Esc stops typing)"
        } else {
            "segment: / or Enter edits · e.g. country == \"GB\" and total_spent > 100"
        },
        t.bold(),
    )];
    let typed = &app.segment.text;
    let caret = app
        .segment_error
        .as_deref()
        .and_then(error_column)
        .map(|col| caret_index(typed, col));
    let width = area.width.saturating_sub(2) as usize;
    let focus = if app.editing {
        app.segment.cursor
    } else {
        caret.unwrap_or(0)
    };
    let (spans, offset) = field(
        typed,
        app.editing.then_some(app.segment.cursor),
        focus,
        width,
        t,
    );
    lines.push(Line::from(spans));
    match &app.segment_error {
        Some(e) => {
            let caret = caret
                .filter(|i| *i >= offset && *i - offset < width)
                .map(|i| format!("{}^", " ".repeat(i - offset + 2)))
                .unwrap_or_default();
            lines.push(Line::styled(caret, t.level(Level::Block)));
            for w in wrap(e, area.width.saturating_sub(2) as usize) {
                lines.push(Line::styled(w, t.fg(Color::Red)));
            }
        }
        None => lines.push(Line::raw("")),
    }
    lines.push(Line::from(vec![
        Span::styled("recipients ", t.bold()),
        Span::styled(c.recipients().to_string(), t.bold()),
        Span::raw(format!(
            " ({} personalised, {} generic)  verdict ",
            c.personalised, c.generic
        )),
        verdict_span(l, t),
        Span::styled(
            if l.checked() {
                ""
            } else {
                "  (before rendering)"
            },
            t.fg(Color::Yellow),
        ),
    ]));
    // The counts always say which segment they are for: while an edit is being counted,
    // or after an error, that is not the text above.
    let counted = app.counted_segment().unwrap_or_default();
    let (label, note) = if app.counts_pending() {
        ("these counts are for ", "  (counting the segment typed…)")
    } else if app.segment_error.is_some() {
        ("these counts are for ", "  (the last segment that worked)")
    } else {
        ("these counts are for ", "")
    };
    lines.push(Line::from(vec![
        Span::styled(label, t.dim()),
        Span::raw(if counted.is_empty() {
            "(no segment: everyone with consent)".to_string()
        } else {
            counted.to_string()
        }),
        Span::styled(note, t.fg(Color::Yellow)),
    ]));
    let seg_fields: Vec<String> = l
        .report
        .fields
        .iter()
        .filter(|f| f.places.contains(&tact::template::Place::Segment))
        .map(|f| format!("{} ({})", f.name, f.class.as_str()))
        .collect();
    lines.push(Line::raw(format!(
        "fields in the segment: {}",
        if seg_fields.is_empty() {
            "none".to_string()
        } else {
            seg_fields.join(", ")
        }
    )));
    lines.extend(funnel_lines(c, t, area.width.min(90)));
    Paragraph::new(lines).render(area, buf);
}

/// The subject, preheader and template sources with every customer field marked by class.
fn template(app: &App, l: &Loaded, t: Theme, area: Rect, buf: &mut Buffer) {
    let n = l.sources.len();
    let Some(src) = l.sources.get(app.template_index.min(n.saturating_sub(1))) else {
        Line::raw("no template sources").render(area, buf);
        return;
    };
    let index = app.template_index.min(n.saturating_sub(1)) + 1;
    let classes: HashMap<String, FieldClass> = l
        .prepared
        .fields
        .iter()
        .map(|f| (f.name.clone(), f.class.class()))
        .collect();
    let runs = source::highlight(&src.text, &classes);
    let mut here: Vec<(String, FieldClass)> = Vec::new();
    for (name, class) in runs.iter().flatten().filter_map(|(s, c)| c.map(|c| (s, c))) {
        if !here.iter().any(|(n, _)| n == name) {
            here.push((name.clone(), class));
        }
    }
    let mut head = vec![
        Line::from(vec![
            Span::styled(format!("file {index} of {n}: "), t.bold()),
            Span::styled(src.label.clone(), t.bold()),
            Span::styled(format!("  e edits {}", source::tidy(&src.path)), t.dim()),
        ]),
        Line::raw(if src.uses.is_empty() {
            "uses no other template file".to_string()
        } else {
            src.uses.join(" · ")
        }),
    ];
    let mut fields = vec![Span::styled("customer fields here: ", t.bold())];
    if here.is_empty() {
        fields.push(Span::raw("none"));
    }
    for (i, (name, class)) in here.iter().enumerate() {
        if i > 0 {
            fields.push(Span::raw(", "));
        }
        fields.push(Span::styled(name.clone(), t.class(*class)));
        fields.push(Span::raw(format!(" ({class})")));
    }
    head.push(Line::from(fields));
    let mut legend = vec![Span::styled("classes: ", t.dim())];
    for c in CLASSES {
        legend.push(Span::styled(c.as_str(), t.class(c)));
        legend.push(Span::raw(" "));
    }
    head.push(Line::from(legend));
    let head_height = head
        .iter()
        .map(|l| (l.width() as u16).div_ceil(area.width.max(1)).max(1))
        .sum::<u16>();
    let [top, body] =
        Layout::vertical([Constraint::Length(head_height), Constraint::Min(3)]).areas(area);
    Paragraph::new(head)
        .wrap(Wrap { trim: false })
        .render(top, buf);
    let lines: Vec<Line> = runs
        .into_iter()
        .enumerate()
        .map(|(i, runs)| {
            let mut spans = vec![Span::styled(format!("{:>4} ", i + 1), t.dim())];
            spans.extend(runs.into_iter().map(|(s, c)| match c {
                Some(c) => Span::styled(s, t.class(c)),
                None => Span::raw(s),
            }));
            Line::from(spans)
        })
        .collect();
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .scroll((app.template_scroll, 0))
        .block(Block::default().borders(Borders::TOP).border_style(t.dim()))
        .render(body, buf);
}

/// The fields a campaign uses: class, places, and where each came from in the words the
/// recipient reads, with the age of its values. Columns as wide as their longest entry;
/// a source too long for what is left goes on two lines, its age on the second. Returns
/// the table and the height of its rows.
fn fields_table(r: &tact::check::Report, width: u16, t: Theme) -> (Table<'static>, u16) {
    let class = |f: &tact::check::FieldReport| {
        format!(
            "{}{}",
            f.class.as_str(),
            if f.inferred { " (inferred)" } else { "" }
        )
    };
    let places = |f: &tact::check::FieldReport| {
        f.places
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let widest =
        |it: &mut dyn Iterator<Item = usize>, least: usize| it.max().unwrap_or(0).max(least);
    let name_w = widest(&mut r.fields.iter().map(|f| f.name.chars().count()), 5).min(24);
    let class_w = widest(&mut r.fields.iter().map(|f| class(f).len()), 5);
    let places_w = widest(&mut r.fields.iter().map(|f| places(f).len()), 6);
    let source_w = usize::from(width)
        .saturating_sub(name_w + class_w + places_w + 3 * 2)
        .max(10);
    let mut height = 0;
    let rows: Vec<Row> = r
        .fields
        .iter()
        .map(|f| {
            let source = f.source_words();
            let source = match &f.observed_days {
                Some(d) if source.chars().count() > source_w => Text::from(vec![
                    Line::raw(format!("{},", f.origin_words)),
                    Line::raw(d.words()),
                ]),
                _ => Text::raw(source),
            };
            let h = source.height() as u16;
            height += h;
            Row::new(vec![
                Cell::from(f.name.clone()),
                Cell::from(class(f)),
                Cell::from(places(f)),
                Cell::from(source),
            ])
            .height(h)
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(name_w as u16),
            Constraint::Length(class_w as u16),
            Constraint::Length(places_w as u16),
            Constraint::Min(10),
        ],
    )
    .column_spacing(2)
    .header(Row::new(vec!["field", "class", "places", "source"]).style(t.bold()));
    (table, height)
}

fn check(app: &App, l: &Loaded, t: Theme, area: Rect, buf: &mut Buffer) {
    let r = &l.report;
    let table = fields_table(r, area.width, t);
    let fields_height = (table.1 + 2).min(area.height / 2);
    let [head, gauge, fields, findings] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(2),
        Constraint::Length(fields_height),
        Constraint::Min(3),
    ])
    .areas(area);
    let ratio = match r.verdict {
        Level::Ok => 0.0,
        Level::Notice => 1.0 / 3.0,
        Level::Caution => 2.0 / 3.0,
        Level::Block => 1.0,
    };
    Line::from(vec![
        Span::styled("verdict ", t.bold()),
        verdict_span(l, t),
        Span::raw(format!(": {}", verdict_note(l))),
    ])
    .render(head, buf);
    let [bar, scale] =
        Layout::horizontal([Constraint::Length(32), Constraint::Min(10)]).areas(gauge);
    let (ratio, label, style) = if l.checked() {
        (ratio, level_text(r.verdict), t.level(r.verdict))
    } else {
        (0.0, CHECKING.to_string(), t.fg(Color::Yellow))
    };
    Gauge::default()
        .ratio(ratio)
        .label(label)
        .gauge_style(style)
        .render(Rect { height: 1, ..bar }, buf);
    Line::styled("  ok < notice < caution < block", t.dim()).render(scale, buf);

    Widget::render(table.0, fields, buf);

    let width = findings.width.saturating_sub(12) as usize;
    let items: Vec<ListItem> = r
        .findings
        .iter()
        .map(|f| {
            let mut lines = vec![Line::from(vec![
                Span::styled(format!("{:<8}", level_text(f.level)), t.level(f.level)),
                Span::styled(f.rule, t.bold()),
                Span::raw(if f.acknowledged {
                    format!("  acknowledged: {}", f.reason.clone().unwrap_or_default())
                } else {
                    String::new()
                }),
            ])];
            for w in wrap(&f.message, width) {
                lines.push(Line::raw(format!("        {w}")));
            }
            for (i, w) in wrap(&f.alternative, width).into_iter().enumerate() {
                let lead = if i == 0 { "instead " } else { "        " };
                lines.push(Line::from(vec![
                    Span::styled(lead, t.fg(Color::Green)),
                    Span::raw(w),
                ]));
            }
            // A List draws nothing of an item taller than itself: cut it to fit, and say so.
            let room = usize::from(findings.height.saturating_sub(1)).max(1);
            if lines.len() > room {
                lines.truncate(room - 1);
                lines.push(Line::styled(
                    "        … (a taller window shows the rest)",
                    t.dim(),
                ));
            }
            ListItem::new(Text::from(lines))
        })
        .collect();
    let title = if !l.checked() {
        format!(
            " findings so far ({}; the rules about renders wait for the check) ",
            r.findings.len()
        )
    } else if r.findings.is_empty() {
        " findings: none ".to_string()
    } else {
        format!(
            " findings ({}; a acknowledges a caution) ",
            r.findings.len()
        )
    };
    let mut state = ListState::default().with_selected(Some(app.finding_index));
    StatefulWidget::render(
        List::new(items)
            .block(Block::default().borders(Borders::TOP).title(title))
            .highlight_symbol("> ")
            .highlight_style(Style::new().add_modifier(Modifier::BOLD)),
        findings,
        buf,
        &mut state,
    );
}

/// Below this height the Preview keeps the message text in view: the address goes into
/// the head line, the Subject stays on top, the other headers follow the text.
const PREVIEW_COMPACT: u16 = 30;

fn preview(app: &App, t: Theme, area: Rect, buf: &mut Buffer) {
    let total = app.recipients_count();
    let Some(doc) = &app.preview else {
        Line::raw("no recipients: nothing to preview").render(area, buf);
        return;
    };
    let compact = area.height < PREVIEW_COMPACT;
    // The footer sentence names the fields a personalised message uses: room for all of
    // it, up to a third of the screen, so the consent and segment lines stay in view. A
    // compact screen keeps its rows for the message (the footer is in it too).
    let why_rows: usize = doc
        .why
        .iter()
        .map(|w| wrap(w, usize::from(area.width)).len().max(1))
        .sum();
    let why_height = if compact {
        5
    } else {
        (why_rows as u16 + 1).clamp(5, (area.height / 3).max(5))
    };
    let [head, body, why] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(why_height),
    ])
    .areas(area);
    let index = app.preview_index.min(total.saturating_sub(1)) + 1;
    let blocked = app.blocked();
    let variant = if doc.personalised {
        "personalised"
    } else if blocked {
        "generic (blocked)"
    } else if doc.planned_personalised {
        "generic (toggled with g)"
    } else {
        "generic"
    };
    let shown = |name: &str, value: &str| {
        if name == "To" && !app.reveal {
            mask(value)
        } else {
            value.to_string()
        }
    };
    let mut head_spans = vec![
        Span::styled(format!("recipient {index} of {total}"), t.bold()),
        Span::raw(format!(" · line {} · ", doc.line)),
        Span::styled(
            variant,
            t.fg(if doc.personalised {
                Color::Magenta
            } else {
                Color::Blue
            }),
        ),
    ];
    head_spans.push(Span::styled(
        if app.preview_html {
            " · HTML part"
        } else {
            " · text part"
        },
        t.bold(),
    ));
    let header = |name: &str| doc.headers.iter().find(|(n, _)| n == name);
    if compact && let Some((n, v)) = header("To") {
        head_spans.push(Span::raw(format!(" · to {}", shown(n, v))));
    }
    Line::from(head_spans).render(head, buf);
    let header_line = |name: &str, value: &str| {
        Line::from(vec![
            Span::styled(format!("{name}: "), t.bold()),
            Span::raw(shown(name, value)),
        ])
    };
    let mut lines: Vec<Line> = Vec::new();
    if blocked {
        let findings = app.loaded.as_ref().map(|l| &l.report.findings);
        for f in findings.into_iter().flatten() {
            if f.level == Level::Block {
                lines.push(Line::from(vec![
                    Span::styled("BLOCK ", t.level(Level::Block)),
                    Span::styled(f.rule, t.bold()),
                    Span::raw(format!(": {}", f.message)),
                ]));
            }
        }
        lines.push(Line::styled(
            "nothing can be sent; this is the generic variant everyone would get instead",
            t.level(Level::Block),
        ));
    }
    if let Some(e) = &doc.error {
        lines.push(Line::styled(
            format!("not sendable: {e}"),
            t.level(Level::Block),
        ));
    }
    if compact {
        if let Some((n, v)) = header("Subject") {
            lines.push(header_line(n, v));
        }
    } else {
        for (name, value) in &doc.headers {
            lines.push(header_line(name, value));
        }
    }
    // The inbox shows it beside the subject; it is not a header, so it is named apart.
    // Compact, it waits below the message with the other headers.
    let preheader = (!doc.preheader.trim().is_empty()).then(|| {
        Line::from(vec![
            Span::styled("Preheader: ", t.dim()),
            Span::raw(doc.preheader.clone()),
        ])
    });
    if !compact && let Some(p) = preheader.clone() {
        lines.push(p);
    }
    lines.push(Line::raw(""));
    let body_text = if !app.preview_html {
        doc.text.clone()
    } else if let Some(html) = &doc.html {
        tact::message::html_as_text(html, usize::from(body.width.max(1)))
            .unwrap_or_else(|| "(the window is too narrow to lay out the HTML part)".into())
    } else {
        "(this campaign has no HTML part: the message is text only; h shows the text)".into()
    };
    for l in body_text.lines() {
        lines.push(Line::raw(l.to_string()));
    }
    if compact {
        let rest: Vec<_> = doc
            .headers
            .iter()
            .filter(|(n, _)| n != "To" && n != "Subject")
            .collect();
        if !rest.is_empty() || preheader.is_some() {
            lines.push(Line::raw(""));
            lines.push(Line::styled("── other headers ──", t.dim()));
            lines.extend(preheader);
            for (name, value) in rest {
                lines.push(header_line(name, value));
            }
        }
    }
    // Compact: the head line is the top edge; the row goes to the message.
    let edge = if compact {
        Block::default()
    } else {
        Block::default().borders(Borders::TOP).border_style(t.dim())
    };
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .scroll((app.preview_scroll, 0))
        .block(edge)
        .render(body, buf);
    Paragraph::new(
        doc.why
            .iter()
            .map(|w| Line::raw(w.clone()))
            .collect::<Vec<_>>(),
    )
    .wrap(Wrap { trim: false })
    .block(
        Block::default()
            .borders(Borders::TOP)
            .title(" why this person gets it "),
    )
    .render(why, buf);
}

fn send(app: &App, l: &Loaded, t: Theme, area: Rect, buf: &mut Buffer) {
    let c = &l.report.audience;
    let relays = &l.prepared.campaign.send.relay;
    let smtp = match &app.smtp_url {
        Some(u) => tact::send::redact_url(u),
        // As `tact send`: the campaign's relays, unless a URL is given.
        None if !relays.is_empty() => relays
            .iter()
            .map(|r| server_of(&r.url))
            .collect::<Vec<_>>()
            .join(", "),
        None => "not set (TACT_SMTP_URL); S asks for it".to_string(),
    };
    let mut lines = vec![
        Line::from(vec![
            Span::styled(
                if app.ledger.is_some() {
                    "recipients left "
                } else {
                    "recipients "
                },
                t.bold(),
            ),
            Span::styled(c.recipients().to_string(), t.bold()),
            Span::raw(format!(
                " ({} personalised, {} generic) · verdict ",
                c.personalised, c.generic
            )),
            verdict_span(l, t),
            Span::raw(format!(": {}", verdict_note(l))),
        ]),
        kv(t, "Segment", counted_for(app, t)),
        kv(
            t,
            "Sent",
            vec![Span::raw(
                sent_state(app, l).unwrap_or_else(|| "not yet".to_string()),
            )],
        ),
    ];
    lines.extend(bounce_lines(app, l, t));
    lines.extend([
        kv(t, "SMTP", vec![Span::raw(smtp)]),
        Line::raw(""),
        kv(
            t,
            "d / Enter",
            vec![Span::raw(
                "dry run: build every message as send would; nothing sent, nothing recorded",
            )],
        ),
        kv(
            t,
            "t",
            vec![Span::raw(
                "test to yourself as the sample person Alex: [TEST] subject, inert unsubscribe link, not in the ledger",
            )],
        ),
        kv(
            t,
            "S",
            vec![Span::raw(
                "send for real: type the recipient count to confirm; Esc stops",
            )],
        ),
        kv(
            t,
            "b",
            vec![Span::raw(
                "import bounces from [bounces] imap: hard bounces and complaints suppress at once",
            )],
        ),
        Line::raw(""),
    ]);
    if app.testing {
        lines.push(Line::styled("test: sending to you…", t.fg(Color::Yellow)));
    }
    match &app.test_result {
        Some(Ok(s)) => lines.push(Line::raw(s.clone())),
        Some(Err(e)) => lines.push(Line::styled(
            format!("test not sent: {e}"),
            t.fg(Color::Red),
        )),
        None => {}
    }
    if app.dry_running {
        lines.push(Line::styled(
            if app.dry_run_pending {
                "dry run: waiting for the check, then building every message…"
            } else {
                "dry run: building every message…"
            },
            t.fg(Color::Yellow),
        ));
    }
    match &app.dry_run {
        Some(Ok(d)) => {
            lines.push(Line::from(vec![
                Span::styled("dry run: ", t.bold()),
                Span::raw(format!(
                    "{} message(s) built ({} personalised, {} generic), {} failed, in {:.2}s; nothing sent, nothing recorded",
                    d.built, d.personalised, d.generic, d.failed, d.seconds
                )),
            ]));
            // Like every count on screen, it says which segment it is for.
            let of = app.dry_run_for.as_deref().unwrap_or_default();
            let mut label = vec![
                Span::styled("  for ", t.dim()),
                Span::raw(if of.is_empty() {
                    "no segment (everyone with consent)".to_string()
                } else {
                    of.to_string()
                }),
            ];
            if app.dry_run_for.as_deref() != app.counted_segment() {
                label.push(Span::styled(
                    "  (an earlier segment: d builds this one)",
                    t.fg(Color::Yellow),
                ));
            }
            lines.push(Line::from(label));
        }
        Some(Err(e)) if e == DRY_RUN_BLOCKED => {
            lines.push(Line::styled(format!("dry run: {e}"), t.level(Level::Block)));
        }
        Some(Err(e)) => lines.push(Line::styled(
            format!("dry run failed: {e}"),
            t.fg(Color::Red),
        )),
        None => {}
    }
    let used = lines.len() as u16;
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .render(area, buf);
    let Some(s) = &app.sending else { return };
    let rest = Rect {
        y: area.y + used + 1,
        height: area.height.saturating_sub(used + 1),
        ..area
    };
    if rest.height < 3 {
        return;
    }
    // A gauge per provider when the run has recipients at one of the big ones (when all
    // are at `other`, the main gauge says it all).
    let providers: Vec<Provider> = Provider::ALL
        .into_iter()
        .filter(|p| s.tally.provider(*p).total.load(Ordering::Relaxed) > 0)
        .collect();
    let shown = if providers.iter().all(|p| *p == Provider::Other) {
        0
    } else {
        providers.len()
    };
    let shown = shown.min(usize::from(rest.height.saturating_sub(3)));
    let [gauge, counts, by_provider, summary] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(shown as u16),
        Constraint::Min(1),
    ])
    .areas(rest);
    let total = s.tally.total.load(Ordering::Relaxed);
    let done = s.tally.done();
    let ratio = if total == 0 {
        0.0
    } else {
        (done as f64 / total as f64).min(1.0)
    };
    Gauge::default()
        .ratio(ratio)
        .label(format!("{done}/{total}"))
        .gauge_style(t.fg(Color::Green))
        .render(gauge, buf);
    let sent = s.tally.sent.load(Ordering::Relaxed);
    // Once the run is over, its own figure: the clock keeps going, the run does not.
    let rate = match &s.result {
        Some(Ok(done)) => done.summary.rate_per_second,
        _ => sent as f64 / s.started.elapsed().as_secs_f64().max(0.001),
    };
    Line::raw(format!(
        "sent {sent} · failed {} · uncertain {} · deferred {} · {rate:.0}/s",
        s.tally.failed.load(Ordering::Relaxed),
        s.tally.uncertain.load(Ordering::Relaxed),
        s.tally.deferred.load(Ordering::Relaxed),
    ))
    .render(counts, buf);
    let rows = Layout::vertical(vec![Constraint::Length(1); shown]).split(by_provider);
    for (p, row) in providers.iter().zip(rows.iter()) {
        provider_gauge(*p, s.tally.provider(*p), *row, buf, t);
    }
    let text = match &s.result {
        None if s.stop.load(Ordering::Relaxed) => {
            "stopping: in-flight messages finish and are recorded…".to_string()
        }
        None => "sending… Esc stops after in-flight messages".to_string(),
        Some(Ok(sent)) => {
            let sum = &sent.summary;
            let mut out = format!(
                "done: sent {} in {:.1}s, failed {}, uncertain {}, deferred {}",
                sum.sent, sum.elapsed_seconds, sum.failed, sum.uncertain, sum.deferred
            );
            if let Some(note) = tact::send::orchestrate::uncertain_note(sent.uncertain_earlier) {
                out.push_str(&format!(" · {note}"));
            }
            if sum.interrupted {
                out.push_str(" · stopped: run again to continue");
            }
            if let Some(p) = &sum.paused {
                out.push_str(&format!(" · paused: {p}"));
            }
            out
        }
        Some(Err(e)) => format!("not sent: {e}"),
    };
    Paragraph::new(text)
        .wrap(Wrap { trim: false })
        .render(summary, buf);
}

/// `gmail      12/40 sent · backing off`: one provider's progress in a run.
fn provider_gauge(p: Provider, n: &ProviderTally, area: Rect, buf: &mut Buffer, t: Theme) {
    let get = |a: &std::sync::atomic::AtomicUsize| a.load(Ordering::Relaxed);
    let (total, sent) = (get(&n.total), get(&n.sent));
    let mut label = format!("{:<9} {sent}/{total} sent", p.key());
    if get(&n.failed) > 0 {
        label.push_str(&format!(" · {} failed", get(&n.failed)));
    }
    if get(&n.deferred) > 0 {
        label.push_str(&format!(" · {} wait for a later run", get(&n.deferred)));
    } else if n.backing_off.load(Ordering::Relaxed) {
        label.push_str(" · backing off");
    }
    let ratio = if total == 0 {
        0.0
    } else {
        (sent as f64 / total as f64).min(1.0)
    };
    let colour = if n.backing_off.load(Ordering::Relaxed) {
        Color::Yellow
    } else {
        Color::Green
    };
    Gauge::default()
        .ratio(ratio)
        .label(label)
        .gauge_style(t.fg(colour))
        .render(area, buf);
}

/// Where a relay URL sends: scheme and host:port, never a user or password (nor a path
/// or query, which could carry one); `sendmail:` as the word.
fn server_of(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.split(':').next().unwrap_or_default().to_string();
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{scheme}://{host}")
}

/// Everything a send is about to do, on one screen before the count is typed: where it
/// goes, from whom, the subject, who gets which variant, what was already sent, and the
/// verdict with the acknowledgements it rests on.
pub fn send_summary(app: &App) -> String {
    let Some(l) = &app.loaded else {
        return String::new();
    };
    let c = &l.prepared.campaign;
    let relays: Vec<String> = c
        .send
        .relay
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let name = r.name.clone().unwrap_or_else(|| format!("relay-{}", i + 1));
            format!("{name} ({})", server_of(&r.url))
        })
        .collect();
    // A URL given in the composer wins over the campaign's relays, as `--smtp` does.
    let via = match (&app.smtp_url, relays.is_empty()) {
        (Some(u), _) => format!("server:   {}", server_of(u)),
        (None, false) => format!("relays:   {}", relays.join(", ")),
        (None, true) => "server:   not set".to_string(),
    };
    let a = &l.report.audience;
    let subject = app
        .sample_subject
        .as_ref()
        .map_or_else(|| c.subject.clone(), |(s, whose)| format!("{s}  ({whose})"));
    let already = app.ledger.as_ref().map_or(0, |c| c.sent);
    let mut out = vec![
        via,
        format!("from:     {}", c.from),
        format!("subject:  {subject}"),
        format!(
            "to:       {} personalised, {} generic",
            a.personalised, a.generic
        ),
        format!("already:  {already} sent before"),
        format!(
            "verdict:  {}: {}",
            level_text(l.report.verdict),
            verdict_note(l)
        ),
    ];
    for f in l.report.findings.iter().filter(|f| f.acknowledged) {
        out.push(format!(
            "          acknowledged {} ({}): {}",
            f.rule,
            f.fields.join(", "),
            f.reason.clone().unwrap_or_default()
        ));
    }
    out.join("\n")
}

fn prompt(app: &App, t: Theme, area: Rect, buf: &mut Buffer) {
    let Some(p) = &app.prompt else { return };
    let (title, explain) = match p.kind {
        PromptKind::SmtpUrl => (
            " SMTP server ".to_string(),
            "smtp://[user@]host:port or smtps://…; the password comes from TACT_SMTP_PASSWORD"
                .to_string(),
        ),
        PromptKind::ConfirmCount(n) => (
            " confirm the send ".to_string(),
            format!(
                "{}\nthis sends {n} real emails. Type {n} and Enter to send; Esc cancels",
                send_summary(app)
            ),
        ),
        PromptKind::TestTo => (
            " test to yourself ".to_string(),
            format!(
                "your own address(es), comma-separated ([send] test_to and TACT_TEST_TO fill this in): {}, subject [TEST], an unsubscribe link that unsubscribes nobody, not recorded in the ledger",
                match app.test_who {
                    tact::send::test_send::Who::Sample => {
                        "each gets the personalised and the generic message for the sample person Alex"
                    }
                    _ => "each gets the message of the recipient you picked (recorded in the audit log by hash)",
                }
            ),
        ),
        PromptKind::ConfirmOtherTestAddress => (
            " not one of your test addresses ".to_string(),
            "an address is not in [send] test_to or TACT_TEST_TO. Type yes and Enter to send the test there anyway; Esc cancels"
                .to_string(),
        ),
        PromptKind::ConfirmTestAs(_) => (
            " test with this person's data? ".to_string(),
            "the test will carry the real name and fields of the recipient shown in Preview, to your test address; the audit log records the pick (by hash). Type yes and Enter; Esc cancels (t tests with the sample person instead)"
                .to_string(),
        ),
        PromptKind::Find => (
            " find a recipient ".to_string(),
            "part of an address or a name (any case); the same text again finds the next; it is not written anywhere".to_string(),
        ),
        PromptKind::NewCampaign(i) => (
            " new campaign ".to_string(),
            format!(
                "its name (lowercase letters and digits, words joined by '-'): a copy of {} beside it as <name>.toml, with its own copy of the template files (to copy another: Esc, highlight it, n)",
                app.picker
                    .as_ref()
                    .and_then(|p| p.get(i))
                    .map_or(String::new(), |p| p.display().to_string())
            ),
        ),
        PromptKind::CsvPath => (
            " new campaign from a CSV: the file (1 of 2) ".to_string(),
            "the customer file: an export from Mailchimp, Shopify, Klaviyo, HubSpot or WooCommerce, or your own CSV. Tab completes; ~/ is your home folder. It is read, never changed; a schema is written beside it unless one is there".to_string(),
        ),
        PromptKind::CsvName => (
            " new campaign from a CSV: its name (2 of 2) ".to_string(),
            format!(
                "lowercase letters and digits, words joined by '-': written as {}/<name>.toml with its templates in {}/templates, from {}; nothing is overwritten (Esc cancels; the path is kept)",
                app.from_csv.dir.display(),
                app.from_csv.dir.display(),
                app.from_csv.path
            ),
        ),
        PromptKind::AckReason(_) => (
            " acknowledge the caution ".to_string(),
            format!("why is this acceptable? A sentence, at least {MIN_REASON} characters (saved in [policy].acknowledge with the fields it covers)"),
        ),
    };
    // As tall as what it says (the error wraps too), within the window.
    let width = 76u16.min(area.width);
    let text_width = width.saturating_sub(2) as usize;
    let mut lines: Vec<Line> = wrap(&explain, text_width)
        .into_iter()
        .map(Line::raw)
        .collect();
    let (spans, _) = field(
        &p.input.text,
        Some(p.input.cursor),
        p.input.cursor,
        text_width.saturating_sub(2),
        t,
    );
    lines.push(Line::from(spans));
    if p.kind == PromptKind::CsvPath
        && let Some(choices) = super::from_csv::choices_line(&app.from_csv.choices)
    {
        lines.extend(
            wrap(&choices, text_width)
                .into_iter()
                .map(|l| Line::styled(l, t.dim())),
        );
    }
    if let Some(e) = &p.error {
        lines.extend(
            wrap(e, text_width)
                .into_iter()
                .map(|l| Line::styled(l, t.fg(Color::Red))),
        );
    }
    let r = centered(area, width, (lines.len() as u16 + 2).max(8));
    Clear.render(r, buf);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(title, t.bold()));
    let inner = block.inner(r);
    block.render(r, buf);
    Paragraph::new(lines).render(inner, buf);
}

/// What `tact new` said about the campaign just made (the lines the command prints), over
/// the campaign, which loads and checks underneath.
fn said(s: &super::from_csv::Said, t: Theme, area: Rect, buf: &mut Buffer) {
    let width = area.width.saturating_sub(4).min(100);
    // Border, then "  - " before each item; continuation lines line up under its text.
    let text_width = (width as usize).saturating_sub(2 + 4);
    let mut lines = Vec::new();
    for (title, items) in &s.sections {
        lines.push(Line::styled(*title, t.bold()));
        for item in items {
            for (i, w) in wrap(item, text_width).into_iter().enumerate() {
                let lead = if i == 0 { "  - " } else { "    " };
                lines.push(Line::raw(format!("{lead}{w}")));
            }
        }
    }
    let room = area.height.saturating_sub(4) as usize;
    let max_scroll = lines.len().saturating_sub(room);
    let scroll = (s.scroll as usize).min(max_scroll);
    let shown: Vec<Line> = lines.into_iter().skip(scroll).take(room).collect();
    let more = if scroll < max_scroll {
        format!("↓ {} more line(s) · ", max_scroll - scroll)
    } else if max_scroll > 0 {
        "↑ back up · ".to_string()
    } else {
        String::new()
    };
    let h = shown.len() as u16 + 3;
    let r = centered(area, width, h);
    Clear.render(r, buf);
    let block = Block::default().borders(Borders::ALL).title(Span::styled(
        format!(" tact new wrote {} ", source::tidy(&s.campaign)),
        t.bold(),
    ));
    let inner = block.inner(r);
    block.render(r, buf);
    let mut shown = shown;
    shown.push(Line::styled(
        format!("{more}Enter: on to the campaign (its check is running)"),
        t.dim(),
    ));
    Paragraph::new(shown).render(inner, buf);
}

fn help(app: &App, t: Theme, area: Rect, buf: &mut Buffer) {
    let mut scopes = active_scopes(app);
    if app.tab == Tab::Segment && !scopes.contains(&Scope::Text) {
        scopes.insert(0, Scope::Text);
    }
    let width = area.width.saturating_sub(4).min(96);
    // Border, two-space indent, the key column and a space; the text wraps after that.
    const KEY: usize = 14;
    let text_width = (width as usize).saturating_sub(2 + 2 + KEY + 1);
    let mut lines = Vec::new();
    for scope in scopes {
        let listed: Vec<_> = KEYS
            .iter()
            .filter(|k| k.scope == scope && !k.label.is_empty())
            .collect();
        if listed.is_empty() {
            continue;
        }
        lines.push(Line::styled(scope.title(), t.bold()));
        for k in listed {
            for (i, w) in wrap(k.help, text_width).into_iter().enumerate() {
                let label = if i == 0 { k.label } else { "" };
                lines.push(Line::from(vec![
                    Span::styled(format!("  {label:<KEY$} "), t.bold()),
                    Span::raw(w),
                ]));
            }
        }
    }
    let room = area.height.saturating_sub(2) as usize;
    if lines.len() + 1 > room {
        lines.truncate(room.saturating_sub(1));
        lines.push(Line::styled(
            "… more keys in a taller window; any key closes this",
            t.dim(),
        ));
    } else {
        lines.push(Line::styled("any key closes this", t.dim()));
    }
    let h = lines.len() as u16 + 2;
    let r = centered(area, width, h);
    Clear.render(r, buf);
    Paragraph::new(lines)
        .block(Block::default().borders(Borders::ALL).title(" keys "))
        .render(r, buf);
}
