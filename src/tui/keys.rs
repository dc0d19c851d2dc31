//! The one key table: it turns key presses into actions and is what the `?` overlay lists.

use ratatui::crossterm::event::{
    Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEventKind,
};

use super::app::{Action, App, Tab};

/// Where a binding applies. Text fields take precedence, then the tab, then global keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Picker,
    /// What `tact new` said about the campaign just made from a CSV, over it.
    Said,
    /// Editing a text field (the segment, or a prompt).
    Text,
    Tab(Tab),
}

impl Scope {
    pub fn title(self) -> &'static str {
        match self {
            Scope::Global => "everywhere",
            Scope::Picker => "campaign picker",
            Scope::Said => "what tact new found",
            Scope::Text => "typing",
            Scope::Tab(t) => t.title(),
        }
    }
}

pub struct Binding {
    pub scope: Scope,
    pub code: KeyCode,
    pub ctrl: bool,
    /// How the key is written in the help overlay; empty: an alias, not listed.
    pub label: &'static str,
    pub help: &'static str,
    pub action: fn() -> Action,
}

const fn b(
    scope: Scope,
    code: KeyCode,
    label: &'static str,
    help: &'static str,
    action: fn() -> Action,
) -> Binding {
    Binding {
        scope,
        code,
        ctrl: false,
        label,
        help,
        action,
    }
}

const fn ctrl(
    scope: Scope,
    c: char,
    label: &'static str,
    help: &'static str,
    action: fn() -> Action,
) -> Binding {
    Binding {
        scope,
        code: KeyCode::Char(c),
        ctrl: true,
        label,
        help,
        action,
    }
}

use KeyCode::{
    BackTab, Backspace, Char, Down, End, Enter, Esc, Home, Left, PageDown, PageUp, Right, Up,
};
use Scope::{Global, Picker, Said, Text};

pub const KEYS: &[Binding] = &[
    ctrl(
        Global,
        'c',
        "Ctrl-C",
        "quit (asks first if unsaved)",
        || Action::Quit,
    ),
    b(Text, Enter, "Enter", "apply now / confirm", || {
        Action::Submit
    }),
    b(Text, Esc, "Esc", "stop typing / cancel", || Action::Cancel),
    b(Text, Backspace, "Backspace", "delete a character", || {
        Action::Backspace
    }),
    b(Text, Left, "←/→", "move the cursor", || {
        Action::CursorLeft
    }),
    b(Text, Right, "", "", || Action::CursorRight),
    b(Text, Home, "Home/End", "start / end of the line", || {
        Action::Home
    }),
    b(Text, End, "", "", || Action::End),
    ctrl(Text, 'u', "Ctrl-U", "clear the line", || Action::ClearInput),
    b(Text, KeyCode::Tab, "", "", || Action::NextTab),
    b(Text, BackTab, "", "", || Action::PrevTab),
    b(
        Picker,
        Enter,
        "Enter",
        "open the campaign (or name a new one)",
        || Action::Select,
    ),
    b(
        Picker,
        Char('n'),
        "n",
        "new campaign: a copy of the one highlighted",
        || Action::NewCampaign,
    ),
    b(
        Picker,
        Char('c'),
        "c",
        "new campaign from a CSV file (an export), as `tact new` makes it",
        || Action::NewFromCsv,
    ),
    b(Picker, Up, "↑/↓ k/j", "choose", || Action::Up),
    b(Picker, Down, "", "", || Action::Down),
    b(Picker, Char('k'), "", "", || Action::Up),
    b(Picker, Char('j'), "", "", || Action::Down),
    ctrl(Said, 'c', "", "", || Action::Quit),
    b(Said, Up, "↑/↓ k/j PgUp/PgDn", "scroll", || Action::Up),
    b(Said, Down, "", "", || Action::Down),
    b(Said, Char('k'), "", "", || Action::Up),
    b(Said, Char('j'), "", "", || Action::Down),
    b(Said, PageUp, "", "", || Action::PageUp),
    b(Said, PageDown, "", "", || Action::PageDown),
    b(
        Said,
        Enter,
        "Enter / Esc / q",
        "on to the campaign (its check runs meanwhile)",
        || Action::CloseSaid,
    ),
    b(Said, Esc, "", "", || Action::CloseSaid),
    b(Said, Char('q'), "", "", || Action::CloseSaid),
    b(
        Scope::Tab(Tab::Audience),
        Up,
        "↑/↓ k/j",
        "browse excluded rows",
        || Action::Up,
    ),
    b(Scope::Tab(Tab::Audience), Down, "", "", || Action::Down),
    b(Scope::Tab(Tab::Audience), Char('k'), "", "", || Action::Up),
    b(Scope::Tab(Tab::Audience), Char('j'), "", "", || {
        Action::Down
    }),
    b(
        Scope::Tab(Tab::Audience),
        PageUp,
        "PgUp/PgDn",
        "page",
        || Action::PageUp,
    ),
    b(Scope::Tab(Tab::Audience), PageDown, "", "", || {
        Action::PageDown
    }),
    b(
        Scope::Tab(Tab::Audience),
        Home,
        "Home/End g/G",
        "first / last row",
        || Action::Home,
    ),
    b(Scope::Tab(Tab::Audience), End, "", "", || Action::End),
    b(Scope::Tab(Tab::Audience), Char('g'), "", "", || {
        Action::Home
    }),
    b(Scope::Tab(Tab::Audience), Char('G'), "", "", || Action::End),
    b(
        Scope::Tab(Tab::Audience),
        Left,
        "←/→ h/l",
        "show one reason / the next / every reason",
        || Action::Left,
    ),
    b(Scope::Tab(Tab::Audience), Right, "", "", || Action::Right),
    b(Scope::Tab(Tab::Audience), Char('h'), "", "", || {
        Action::Left
    }),
    b(Scope::Tab(Tab::Audience), Char('l'), "", "", || {
        Action::Right
    }),
    b(
        Scope::Tab(Tab::Segment),
        Enter,
        "Enter / i",
        "edit the segment",
        || Action::Select,
    ),
    b(Scope::Tab(Tab::Segment), Char('i'), "", "", || {
        Action::StartEdit
    }),
    b(
        Scope::Tab(Tab::Template),
        Left,
        "←/→ h/l",
        "previous / next file",
        || Action::Left,
    ),
    b(Scope::Tab(Tab::Template), Right, "", "", || Action::Right),
    b(Scope::Tab(Tab::Template), Char('h'), "", "", || {
        Action::Left
    }),
    b(Scope::Tab(Tab::Template), Char('l'), "", "", || {
        Action::Right
    }),
    b(
        Scope::Tab(Tab::Template),
        Up,
        "↑/↓ k/j PgUp/PgDn",
        "scroll",
        || Action::Up,
    ),
    b(Scope::Tab(Tab::Template), Down, "", "", || Action::Down),
    b(Scope::Tab(Tab::Template), Char('k'), "", "", || Action::Up),
    b(Scope::Tab(Tab::Template), Char('j'), "", "", || {
        Action::Down
    }),
    b(Scope::Tab(Tab::Template), PageUp, "", "", || Action::PageUp),
    b(Scope::Tab(Tab::Template), PageDown, "", "", || {
        Action::PageDown
    }),
    b(
        Scope::Tab(Tab::Check),
        Up,
        "↑/↓ k/j",
        "choose a finding",
        || Action::Up,
    ),
    b(Scope::Tab(Tab::Check), Down, "", "", || Action::Down),
    b(Scope::Tab(Tab::Check), Char('k'), "", "", || Action::Up),
    b(Scope::Tab(Tab::Check), Char('j'), "", "", || Action::Down),
    b(
        Scope::Tab(Tab::Check),
        Char('a'),
        "a",
        "acknowledge a caution (type a reason)",
        || Action::Acknowledge,
    ),
    b(
        Scope::Tab(Tab::Check),
        Char('A'),
        "A",
        "take an acknowledgement back",
        || Action::Revoke,
    ),
    b(
        Scope::Tab(Tab::Preview),
        Left,
        "←/→",
        "previous / next recipient",
        || Action::Left,
    ),
    b(Scope::Tab(Tab::Preview), Right, "", "", || Action::Right),
    b(
        Scope::Tab(Tab::Preview),
        Char('h'),
        "h",
        "HTML part (as text) / text part",
        || Action::ToggleHtml,
    ),
    b(
        Scope::Tab(Tab::Preview),
        Char('o'),
        "o",
        "open the message in the desktop's viewer",
        || Action::OpenMessage,
    ),
    b(
        Scope::Tab(Tab::Preview),
        Char('g'),
        "g",
        "generic / personalised variant",
        || Action::ToggleVariant,
    ),
    b(
        Scope::Tab(Tab::Preview),
        Char('f'),
        "f",
        "find a recipient by part of an address or name",
        || Action::Find,
    ),
    b(
        Scope::Tab(Tab::Preview),
        Up,
        "↑/↓ k/j",
        "scroll the message",
        || Action::Up,
    ),
    b(Scope::Tab(Tab::Preview), Down, "", "", || Action::Down),
    b(Scope::Tab(Tab::Preview), Char('k'), "", "", || Action::Up),
    b(Scope::Tab(Tab::Preview), Char('j'), "", "", || Action::Down),
    b(
        Scope::Tab(Tab::Send),
        Char('d'),
        "d / Enter",
        "dry run: build every message, send nothing",
        || Action::DryRun,
    ),
    b(Scope::Tab(Tab::Send), Enter, "", "", || Action::DryRun),
    b(
        Scope::Tab(Tab::Send),
        Char('t'),
        "t",
        "test: send to yourself for the sample person Alex ([TEST] subject; not in the ledger)",
        || Action::TestSend,
    ),
    b(
        Scope::Tab(Tab::Preview),
        Char('T'),
        "T",
        "test with the recipient shown (their real data; asks to confirm, audited)",
        || Action::TestAsShown,
    ),
    b(
        Scope::Tab(Tab::Overview),
        Char('b'),
        "b",
        "import bounces from the campaign's [bounces] imap mailbox",
        || Action::ImportBounces,
    ),
    b(
        Scope::Tab(Tab::Send),
        Char('b'),
        "b",
        "import bounces from the campaign's [bounces] imap mailbox",
        || Action::ImportBounces,
    ),
    b(
        Scope::Tab(Tab::Send),
        Char('S'),
        "S",
        "send for real (asks to confirm)",
        || Action::RealSend,
    ),
    b(
        Global,
        KeyCode::Tab,
        "Tab/Shift-Tab",
        "next / previous screen",
        || Action::NextTab,
    ),
    b(Global, BackTab, "", "", || Action::PrevTab),
    b(Global, Char('/'), "/", "edit the segment", || {
        Action::StartEdit
    }),
    b(
        Global,
        Char('s'),
        "s",
        "save the segment into the campaign file",
        || Action::Save,
    ),
    b(
        Global,
        Char('e'),
        "e",
        "open in $EDITOR (Template: the file shown), then reload",
        || Action::Editor,
    ),
    b(Global, Char('r'), "r", "reveal / mask addresses", || {
        Action::ToggleReveal
    }),
    b(Global, Char('?'), "?", "this help", || Action::ToggleHelp),
    b(
        Global,
        Char('q'),
        "q",
        "back to the picker; quit (asks first if unsaved)",
        || Action::Back,
    ),
    b(
        Global,
        Esc,
        "Esc",
        "close, stop typing or sending; never quits",
        || Action::Cancel,
    ),
];

/// The scopes that apply right now, most specific first.
pub fn active_scopes(app: &App) -> Vec<Scope> {
    if app.prompt.is_some() || (app.editing && !app.in_picker()) {
        return vec![Text, Global];
    }
    // Nothing reaches the campaign underneath until it is closed.
    if app.said.is_some() {
        return vec![Said];
    }
    if app.in_picker() {
        return vec![Picker, Global];
    }
    vec![Scope::Tab(app.tab), Global]
}

/// Only presses (not releases or repeats on terminals that report them) become actions.
pub fn action_for_event(app: &App, ev: &Event) -> Option<Action> {
    match ev {
        Event::Key(k) if k.kind == KeyEventKind::Press => action_for_key(app, *k),
        // A paste is text for the field being typed in, whatever it contains.
        Event::Paste(text) if !app.help => Some(Action::Paste(text.clone())),
        Event::Resize(..) => Some(Action::Resize),
        // The wheel scrolls what ↑/↓ scroll; it does nothing while a prompt or help is up.
        Event::Mouse(m) if app.prompt.is_none() && !app.help => match m.kind {
            MouseEventKind::ScrollUp => Some(Action::Up),
            MouseEventKind::ScrollDown => Some(Action::Down),
            _ => None,
        },
        _ => None,
    }
}

pub fn action_for_key(app: &App, key: KeyEvent) -> Option<Action> {
    if app.help {
        // Any key closes the overlay; it does nothing else.
        return Some(Action::ToggleHelp);
    }
    let ctrl_held = key.modifiers.contains(KeyModifiers::CONTROL);
    let scopes = active_scopes(app);
    let typing = scopes.first() == Some(&Text);
    for scope in &scopes {
        // While typing, only Ctrl and non-character global keys apply: `q` is a letter.
        let found = KEYS.iter().find(|k| {
            k.scope == *scope
                && k.code == key.code
                && k.ctrl == ctrl_held
                && !(typing && *scope == Global && !k.ctrl && matches!(k.code, Char(_) | Esc))
        });
        if let Some(k) = found {
            return Some((k.action)());
        }
        if typing
            && *scope == Text
            && let Char(c) = key.code
            && !ctrl_held
        {
            return Some(Action::Input(c));
        }
    }
    None
}
