//! One person's rows in the ledger: what `forget` (GDPR Art. 17) deletes and `export`
//! (Art. 15) shows, plus the suppression writes of the unsubscribe paths (bulk import,
//! tokens). Every row is found by the keyed hash alone, never by an address.

use chrono::{DateTime, Utc};

/// The suppression reasons these paths write.
pub const REASON_ERASURE: &str = "erasure";
pub const REASON_UNSUBSCRIBE: &str = "unsubscribe";
pub const REASON_IMPORT: &str = "import";

/// One ledger row of one recipient.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    pub campaign: String,
    pub status: String,
    pub variant: String,
    pub attempts: u32,
    /// When the row last changed: for `sent`, when the server accepted the message.
    pub at: DateTime<Utc>,
}

/// What a valid unsubscribe token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribed {
    pub campaign: String,
    /// False when the recipient was already on the list (the request is idempotent).
    pub new: bool,
}
