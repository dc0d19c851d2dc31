//! Bounces, complaints and auto-replies: what came back after a send (issue 13).
//!
//! ```text
//! read.rs      paths → a stream of raw messages (.eml, Maildir cur/ and new/, mbox),
//!              each bounded in size; one message in memory at a time
//! parse.rs     one raw message → Report: RFC 3464 DSNs, RFC 5965 ARF, RFC 3834
//!              auto-replies, the MTAs' and providers' own bounce texts, SES JSON
//! classify.rs  status + reply code + diagnostic text → (Kind, reason): one rule table
//! ```
//!
//! Nothing here changes state or prints: `tact bounces parse` shows the reports and the
//! import applies them. A recipient address is kept in a [`Finding`] only so that the
//! importer can hash it with the ledger key; anything printed goes through [`mask`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub mod classify;
pub mod import;
pub mod parse;
pub mod read;

pub use parse::parse_message;
pub use read::read_paths;

/// The largest report read; a bigger one is a single `unknown` finding (`too-large`).
/// Real bounces are a few kilobytes plus the returned message, which MTAs truncate.
pub const MAX_REPORT_BYTES: usize = 10 * 1024 * 1024;

/// Who is at fault, which decides what the import does with the recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The address will never accept mail: no such user or domain, moved, disabled.
    Hard,
    /// Temporary: mailbox full, timed out, too many connections, busy.
    Soft,
    /// The sender was refused (blocked, reputation, spam, policy, SPF/DKIM/DMARC, no
    /// PTR): the recipient stays mailable.
    Sender,
    /// An ARF report: abuse or opt-out.
    Complaint,
    /// A vacation notice or other RFC 3834 reply: never a bounce.
    AutoReply,
    /// A DSN saying delivered, relayed or expanded.
    Delivered,
    /// Not readable, or not recognised: never acted upon.
    Unknown,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Hard,
        Kind::Soft,
        Kind::Sender,
        Kind::Complaint,
        Kind::AutoReply,
        Kind::Delivered,
        Kind::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hard => "hard",
            Kind::Soft => "soft",
            Kind::Sender => "sender",
            Kind::Complaint => "complaint",
            Kind::AutoReply => "auto-reply",
            Kind::Delivered => "delivered",
            Kind::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One recipient's outcome in one report. Not `Serialize` on purpose: `recipient` is the
/// plain address, for hashing only; front ends print it through [`mask`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    /// The enhanced status code (RFC 3463), like `5.1.1`.
    pub status: Option<String>,
    /// The SMTP reply code, like 550.
    pub code: Option<u16>,
    /// One short word: `no-such-user`, `mailbox-full`, `blocked`, `abuse`, … (see
    /// `classify::RULES`).
    pub reason: String,
    /// The failed (or complaining, or auto-replying) address, plain.
    pub recipient: Option<String>,
    /// Candidate VERP tokens: the `TOKEN` of `local+TOKEN@domain` in the report's
    /// To/Delivered-To/X-Original-To/Envelope-To/Original-Recipient headers or the
    /// returned message's Return-Path. Unverified: the importer opens them.
    pub tokens: Vec<String>,
    /// The campaign, from the returned message's Feedback-ID or List-Id, when present.
    pub campaign: Option<String>,
}

impl Finding {
    /// A report that cannot be read, or says nothing we recognise.
    pub fn unknown(reason: &str) -> Self {
        Finding {
            kind: Kind::Unknown,
            status: None,
            code: None,
            reason: reason.to_string(),
            recipient: None,
            tokens: Vec::new(),
            campaign: None,
        }
    }
}

/// One message from the bounce mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Where it came from: the file, or `mbox:LINE` for a message in an mbox.
    pub file: String,
    /// SHA-256 of the Message-ID, else of the whole content: importing twice counts once.
    pub key: [u8; 32],
    /// At least one finding, always.
    pub findings: Vec<Finding>,
}

impl Report {
    /// A report that could not be read at all (I/O error, too large).
    pub fn unreadable(file: impl Into<String>, reason: &str) -> Self {
        let file = file.into();
        Report {
            key: sha256(format!("unreadable\0{file}").as_bytes()),
            file,
            findings: vec![Finding::unknown(reason)],
        }
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// A path's display name for [`Report::file`].
pub(crate) fn display(path: &std::path::Path) -> String {
    path.display().to_string()
}

/// The paths a caller gave that do not exist (the CLI's exit 2), without reading any.
pub fn missing(paths: &[PathBuf]) -> Vec<&PathBuf> {
    paths.iter().filter(|p| !p.exists()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialise_as_the_contract_spells_them() -> serde_json::Result<()> {
        let words: Vec<String> = Kind::ALL
            .iter()
            .map(serde_json::to_string)
            .collect::<serde_json::Result<_>>()?;
        assert_eq!(
            words,
            [
                "\"hard\"",
                "\"soft\"",
                "\"sender\"",
                "\"complaint\"",
                "\"auto-reply\"",
                "\"delivered\"",
                "\"unknown\""
            ]
        );
        for k in Kind::ALL {
            assert_eq!(serde_json::to_string(&k)?, format!("\"{k}\""));
        }
        Ok(())
    }
}
