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
        .to(Mailbox::new(None, to))
        .subject(format!("{subject_prefix}{}", r.subject.trim()))
        .date(date)
        .message_id(Some(message_id(campaign)));
    if let Some(reply_to) = &campaign.reply_to {
        b = b.reply_to(reply_to.clone());
    }
    if let Some(rp) = &campaign.return_path {
        b = b.raw_header(header("Return-Path", format!("<{rp}>")));
    }
    b = b
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
    use super::html_as_text;

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
