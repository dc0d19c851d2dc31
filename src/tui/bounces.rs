//! The bounce loop on the Overview and Send screens: what came back from this campaign's
//! sends (hard, soft, sender, complaints, each against the messages sent), and the
//! complaint rate against Gmail's lines: under 0.1% is fine, from 0.1% a warning, and at
//! 0.3% Gmail starts rejecting bulk mail. The band is written out in words as well as
//! colour, so it reads without colour (NO_COLOR, a snapshot, a colour-blind eye).

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

use tact::state::bounces::BounceFigures;

/// Gmail's bulk-sender lines for spam complaints (as a fraction of messages sent).
pub const GMAIL_WARN: f64 = 0.001;
pub const GMAIL_LIMIT: f64 = 0.003;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Band {
    /// Under 0.1%.
    Fine,
    /// From 0.1% to under 0.3%.
    Warning,
    /// 0.3% or more: "never reach 0.3%".
    Danger,
}

pub fn band(rate: f64) -> Band {
    if rate >= GMAIL_LIMIT {
        Band::Danger
    } else if rate >= GMAIL_WARN {
        Band::Warning
    } else {
        Band::Fine
    }
}

impl Band {
    fn colour(self) -> Color {
        match self {
            Band::Fine => Color::Green,
            Band::Warning => Color::Yellow,
            Band::Danger => Color::Red,
        }
    }

    fn words(self) -> &'static str {
        match self {
            Band::Fine => "fine: under Gmail's 0.1%",
            Band::Warning => "WARNING: Gmail's 0.1% reached",
            Band::Danger => "DANGER: Gmail's 0.3% reached",
        }
    }
}

/// Cells of the gauge, which spans 0 to 0.4%: 0.1% is the 5th cell's end, 0.3% the 15th's.
const CELLS: usize = 20;
const SCALE: f64 = 0.004;

/// `[███··|·········|·····]`: the rate filled in, Gmail's two lines as `|`.
pub fn gauge(rate: f64) -> String {
    let per = SCALE / CELLS as f64;
    // Rounded up, so any complaint at all shows.
    let filled = if rate <= 0.0 {
        0
    } else {
        ((rate / per).ceil() as usize).min(CELLS)
    };
    let mut s = String::from("[");
    for i in 0..CELLS {
        s.push(if i < filled { '█' } else { '·' });
        if i + 1 == 5 || i + 1 == 15 {
            s.push('|');
        }
    }
    s.push(']');
    s
}

fn pct(rate: Option<f64>) -> String {
    match rate {
        Some(r) => format!(" ({:.2}%)", r * 100.0),
        None => String::new(),
    }
}

fn style(colour: bool, c: Color) -> Style {
    if colour {
        Style::new().fg(c)
    } else {
        Style::new()
    }
}

/// The lines for the screens, each starting with a 12-column key like the screens' own.
/// `figures`: this campaign's, from the store (None without state); `mailbox`: the
/// campaign's `[bounces] imap`, as host and mailbox only.
pub fn lines(
    figures: Option<&BounceFigures>,
    mailbox: Option<&str>,
    colour: bool,
) -> Vec<Line<'static>> {
    let key = |k: &str| {
        Span::styled(
            format!("{k:<12}"),
            Style::new().add_modifier(Modifier::BOLD),
        )
    };
    let dim = style(colour, Color::DarkGray);
    let hint = match mailbox {
        Some(m) => format!("  (b imports from {m})"),
        None => "  (set [bounces] imap for b to import)".to_string(),
    };
    let f = match figures {
        Some(f) if f.sent + f.hard + f.soft + f.sender + f.complaint > 0 => f,
        _ => {
            return vec![Line::from(vec![
                key("Bounces"),
                Span::raw("none recorded"),
                Span::styled(hint, dim),
            ])];
        }
    };
    let mut out = vec![Line::from(vec![
        key("Bounces"),
        Span::raw(format!(
            "hard {}{} · soft {}{} · sender {}{} · of {} sent",
            f.hard,
            pct(f.rate(f.hard)),
            f.soft,
            pct(f.rate(f.soft)),
            f.sender,
            pct(f.rate(f.sender)),
            f.sent
        )),
    ])];
    let mut complaints = vec![key("Complaints"), Span::raw(f.complaint.to_string())];
    match f.rate(f.complaint) {
        Some(r) => {
            let b = band(r);
            let s = style(colour, b.colour());
            complaints.push(Span::raw(pct(Some(r))));
            complaints.push(Span::raw("  "));
            complaints.push(Span::styled(gauge(r), s));
            complaints.push(Span::raw(" "));
            complaints.push(Span::styled(b.words(), s.add_modifier(Modifier::BOLD)));
        }
        None => complaints.push(Span::styled("  (nothing sent to measure against)", dim)),
    }
    out.push(Line::from(complaints));
    // Its own line: a mailbox URL would push the figures past the screen's edge.
    out.push(Line::from(vec![
        Span::raw(format!("{:12}", "")),
        Span::styled(hint.trim_start().to_string(), dim),
    ]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_follow_gmails_lines() {
        assert_eq!(band(0.0), Band::Fine);
        assert_eq!(band(0.000_999), Band::Fine);
        assert_eq!(band(0.001), Band::Warning);
        assert_eq!(band(0.002_999), Band::Warning);
        assert_eq!(band(0.003), Band::Danger);
        assert_eq!(band(0.5), Band::Danger);
    }

    #[test]
    fn the_gauge_shows_any_complaint_and_caps_at_full() {
        assert_eq!(gauge(0.0), "[·····|··········|·····]");
        assert_eq!(gauge(0.000_01), "[█····|··········|·····]");
        assert_eq!(gauge(0.001), "[█████|··········|·····]");
        assert_eq!(gauge(0.003), "[█████|██████████|·····]");
        assert_eq!(gauge(0.9), "[█████|██████████|█████]");
    }
}
