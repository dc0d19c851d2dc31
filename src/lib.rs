//! tact: a terminal email-campaign composer that knows which customer fields a campaign
//! touches before anything is sent.
//!
//! The core (this crate's library) never sees a terminal: no ratatui, crossterm or clap.
//! The binary's `cli` and `tui` modules are front ends over the same plan.
//!
//! How a campaign flows through the modules:
//!
//! ```text
//! campaign.rs   campaign TOML → checked Campaign (paths resolved, keys validated)
//! names.rs      header → variable name; case-, separator- and camelCase-blind matching
//! schema.rs     schema TOML + name patterns → field classes and types
//! audience.rs   CSV header → column roles; rows → only the used columns, columnar
//! template.rs   Tera (locked down) → every field used, by place; renders both variants
//! segment.rs    segment expression (Tera grammar) → typed evaluator over the columns
//! consent.rs    consent words and consent-time rules
//! plan.rs       Prepared (all of the above) × ledger facts → one Decision per row
//! check.rs      renders every recipient, applies the creepiness rules → Report, verdict
//! measure.rs    group sizes of the values an email shows (re-identification), generalised
//! lexicon.rs    the sensitive-terms lexicon (src/lexicon/lexicon.toml) and its matcher
//! sensitive.rs  which recipients' sensitive values a segment selects or a render shows
//! privacy_report.rs the check as a record for the privacy officer: HTML or Markdown
//! sample.rs     the synthetic sample person test messages are rendered for
//! message.rs    rendered letter → RFC 5322 message (preview and send share it)
//! person.rs     one person's rows in an audience CSV: found (export), cut out (forget)
//! onboard.rs    an export (Mailchimp, Shopify, …) → roles, guessed classes, notes; `tact new`
//! send/         the send loop: relays with their own connections, rates and quotas,
//!               retries, claims and group commits in the ledger
//!   smtp.rs     SMTP with TCP_NODELAY and PIPELINING, step by step (before/after hand-over)
//!   sendmail.rs the local MTA's queue (Postfix's sendmail), exit statuses → outcomes
//!   commit.rs   group commit of concurrent connections' ledger steps
//!   dkim.rs     DKIM signing (RSA, Ed25519)
//!   test_send.rs test messages: sample person or an audited pick, inert tokens, test_to
//! state/        state directory, master key, HKDF-derived keys, key identifier, tokens;
//!   store.rs    the Store trait: ledger, suppression, audit, retention, erasure operations
//!   ledger.rs   the Ledger handle (Box<dyn Store>), its Location, statuses and replies
//!   sqlite.rs   the embedded store: one SQLite file in the state directory
//!   postgres.rs the shared store: PostgreSQL over rustls, SKIP LOCKED claims
//!   audit.rs    the hash-chained audit log (sealing and verifying, store-independent)
//!   erase.rs    one recipient's ledger rows (forget, export); unsubscribe and bulk suppression
//! bounce/      what came back: DSNs, ARF complaints, auto-replies, MTA bounce texts →
//!               findings classified by who is at fault (hard, soft, sender, …)
//! imap.rs      the bounce mailbox: fetch unprocessed messages, flag them after import
//! tls.rs       the one rustls client configuration (Mozilla roots or a private CA file)
//! unsubscribe.rs the one-click endpoint: answers, and an HTTP server for hostile clients
//! error.rs      typed errors naming file, line and column, never a customer's data
//! ```

pub mod audience;
pub mod bounce;
pub mod campaign;
pub mod check;
pub mod consent;
pub mod error;
pub mod imap;
pub mod lexicon;
pub mod measure;
pub mod message;
pub mod names;
pub mod onboard;
pub mod person;
pub mod plan;
pub mod privacy_report;
pub mod sample;
pub mod schema;
pub mod segment;
pub mod send;
pub mod sensitive;
pub mod state;
pub mod template;
pub mod tls;
pub mod unsubscribe;
pub mod why;

pub use error::{Error, Result};
