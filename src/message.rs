//! A rendered letter → the RFC 5322 message `preview` writes and `send` sends. One builder
//! for both, so the two can only differ in Date, Message-ID, boundaries and signature.

use std::time::SystemTime;

use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};

use crate::campaign::Campaign;
use crate::error::{Error, Result};
use crate::plan::Letter;

fn header(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

pub fn list_id(campaign: &Campaign) -> String {
    format!(
        "{} <{}.{}>",
        campaign.name,
        campaign.name,
        campaign.from_domain()
    )
}

/// The envelope sender (MAIL FROM, `sendmail -f`) of one letter: with a bounce base
/// (`[bounces] address`, else `return_path`), its VERP form `local+TOKEN@domain`, the
/// token naming this campaign and recipient (or, in a test message, nobody); without one,
/// the From address.
pub fn envelope_sender(campaign: &Campaign, letter: &Letter) -> Result<lettre::Address> {
    let Some(base) = campaign.bounce_base() else {
        return Ok(campaign.from.email.clone());
    };
    let Some(token) = &letter.bounce_token else {
        return Ok(base.clone());
    };
    crate::state::verp::verp_address(base.as_ref(), token)
        .and_then(|a| a.parse().map_err(|e| format!("{e}")))
        .map_err(|e| Error::Other(format!("the envelope sender: {e}")))
}

/// `Feedback-ID: CAMPAIGN:LIST:tact:SENDER` for Gmail's feedback loop, which reports
/// complaint rates per field from the right: the sender, mail from tact, the audience
/// file (the list), the campaign. Names of files and domains only, never data; each part
/// is cut down to letters, digits, `.`, `_` and `-` (a `:` would shift the fields).
pub fn feedback_id(campaign: &Campaign) -> String {
    let list = campaign
        .audience
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(
        "{}:{}:tact:{}",
        feedback_part(&campaign.name, 64, "campaign"),
        feedback_part(&list, 64, "list"),
        sender_id(campaign.from_domain())
    )
}

/// Gmail wants the SenderId stable and 5 to 15 characters: the From domain when it fits,
/// else the domain without its top-level label (`northwind.example` → `northwind`), else
/// its first 15 characters; padded with `-` when shorter than 5.
fn sender_id(domain: &str) -> String {
    let domain = domain.to_ascii_lowercase();
    let without_tld = domain.rsplit_once('.').map_or(domain.as_str(), |(d, _)| d);
    let pick = if domain.len() <= 15 {
        &domain
    } else {
        without_tld
    };
    let mut id = feedback_part(pick, 15, "sender");
    while id.len() < 5 {
        id.push('-');
    }
    id
}

fn feedback_part(s: &str, max: usize, empty: &str) -> String {
    let part: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(max)
        .collect();
    if part.is_empty() {
        empty.to_string()
    } else {
        part
    }
}

/// A Message-ID in the From domain: the host name would leak which machine sent it.
pub fn message_id(campaign: &Campaign) -> String {
    let mut id = [0u8; 16];
    // Without randomness fall back to the clock: uniqueness, not secrecy, is what matters.
    if getrandom::fill(&mut id).is_err() {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        id = nanos.to_le_bytes();
    }
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!("<{hex}.{}@{}>", campaign.name, campaign.from_domain())
}

pub fn build(
    campaign: &Campaign,
    letter: &Letter,
    to: &str,
    date: SystemTime,
    subject_prefix: &str,
) -> Result<Message> {
    let to: lettre::Address = to
        .parse()
        .map_err(|e| Error::Other(format!("invalid recipient address: {e}")))?;
    let r = &letter.rendered;
    let mut b = Message::builder()
        .from(campaign.from.clone())
        .to(Mailbox::new(None, to.clone()))
        .subject(format!("{subject_prefix}{}", r.subject.trim()))
        .date(date)
        .message_id(Some(message_id(campaign)));
    if let Some(reply_to) = &campaign.reply_to {
        b = b.reply_to(reply_to.clone());
    }
    let sender = envelope_sender(campaign, letter)?;
    if campaign.bounce_base().is_some() {
        b = b.raw_header(header("Return-Path", format!("<{sender}>")));
    }
    // The SMTP and sendmail transports take MAIL FROM from here, so the envelope and the
    // Return-Path header cannot disagree.
    b = b.envelope(
        lettre::address::Envelope::new(Some(sender), vec![to.clone()])
            .map_err(|e| Error::Other(format!("invalid envelope: {e}")))?,
    );
    b = b
        .raw_header(header("Feedback-ID", feedback_id(campaign)))
        .raw_header(header("List-Id", list_id(campaign)))
        .raw_header(header(
            "List-Unsubscribe",
            format!("<{}>", letter.unsubscribe_url),
        ))
        .raw_header(header(
            "List-Unsubscribe-Post",
            "List-Unsubscribe=One-Click".into(),
        ));
    let text = SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .body(r.text.clone());
    let built = match &r.html {
        Some(html) => {
            let html = SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(html.clone());
            b.multipart(MultiPart::alternative().singlepart(text).singlepart(html))
        }
        None => b.singlepart(text),
    };
    built.map_err(|e| {
        Error::Other(format!(
            "cannot build the message for row {}: {e}",
            letter.row
        ))
    })
}

/// The HTML part as a reader of plain text sees it, wrapped to `width` columns: headings,
/// lists, links numbered with their targets listed below, images by their alt text. None
/// when it cannot be laid out that narrow.
pub fn html_as_text(html: &str, width: usize) -> Option<String> {
    let text = html2text::from_read(html.as_bytes(), width).ok()?;
    // Preheader padding (zero-width joiners and the like) shows nothing in a mail client;
    // in a terminal it would only shift the columns.
    Some(
        text.chars()
            .filter(|c| {
                !matches!(
                    c,
                    '\u{34f}' | '\u{200b}'..='\u{200f}' | '\u{2060}' | '\u{feff}'
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::{feedback_part, html_as_text, sender_id};

    #[test]
    fn feedback_id_parts_hold_no_colon_and_the_sender_id_is_5_to_15() {
        assert_eq!(sender_id("northwind.example"), "northwind");
        assert_eq!(sender_id("Shop.Example"), "shop.example");
        assert_eq!(sender_id("a.io"), "a.io-");
        assert_eq!(
            sender_id("mail.a-very-long-brand.example"),
            "mail.a-very-lon"
        );
        assert_eq!(sender_id("xn--exmple-cua.com"), "xn--exmple-cua");
        for d in ["x", "a.b", "northwind.example", &"z".repeat(300), ":::", ""] {
            let id = sender_id(d);
            assert!((5..=15).contains(&id.len()), "{d}: {id}");
            assert!(!id.contains(':'), "{id}");
        }
        assert_eq!(
            feedback_part("news:2026 list", 64, "list"),
            "news-2026-list"
        );
        assert_eq!(feedback_part("", 64, "list"), "list");
        assert_eq!(feedback_part("kunden-ä", 64, "list"), "kunden--");
        assert_eq!(feedback_part(&"a".repeat(100), 64, "list").len(), 64);
    }

    #[test]
    fn the_html_part_as_text_keeps_headings_lists_links_and_alt_text() {
        let html = r#"<h1>Winter layers</h1><ul><li>Merino</li><li>Wool</li></ul>
            <p>See <a href="https://shop.example/winter">the edit</a>.</p>
            <img src="https://shop.example/x.png" alt="A red scarf">"#;
        let text = html_as_text(html, 60).expect("60 columns are enough");
        assert!(text.contains("# Winter layers"), "{text}");
        assert!(
            text.contains("* Merino") && text.contains("* Wool"),
            "{text}"
        );
        // The link is numbered in the text and its target listed under that number.
        assert!(text.contains("[the edit][1]"), "{text}");
        assert!(text.contains("[1]: https://shop.example/winter"), "{text}");
        assert!(text.contains("A red scarf"), "{text}");
        assert!(!text.contains('<'), "no markup left: {text}");
    }
}
