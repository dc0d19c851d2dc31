//! The bounce mailbox over IMAP: fetch the messages tact has not processed yet, hand them
//! to the caller (the bounce import) and only then flag them `$TactProcessed` and `\Seen`.
//! Nothing is ever deleted or expunged: the mailbox stays the record, and a person can
//! still read it.
//!
//! Flagging after the import, not before, makes a crash between the two harmless: the next
//! run fetches the same messages again and the import counts each report once (it is keyed
//! by its Message-ID or content).
//!
//! Trust: `imaps://` verifies the server's certificate and name against the Mozilla roots
//! (or only the CAs in `TACT_IMAP_CA_FILE`); plain `imap://` is refused unless every
//! address the host resolves to is loopback. The password comes only from
//! `TACT_IMAP_PASSWORD`: a URL carrying one is refused (it would show in `ps`, shell
//! history and cron mail). Errors name the host, port and mailbox, never the user, which
//! is usually an email address.
//!
//! Bounds: at most `max_messages` per run (the rest wait for the next), at most
//! `max_message_bytes` of each (a partial `BODY.PEEK[]<0.N>` fetch: a report's headers and
//! status part come first, an attached original last), a total byte budget on everything
//! the server sends, and a timeout on every step.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::types::Flag;
use futures_util::TryStreamExt as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::bounce::import::{BouncePolicy, ImportCounts};

/// The keyword set on every processed message.
pub const PROCESSED: &str = "$TactProcessed";
/// The environment variable holding the mailbox password.
pub const PASSWORD_ENV: &str = "TACT_IMAP_PASSWORD";
/// A PEM file whose CAs replace the Mozilla roots (a private CA).
pub const CA_FILE_ENV: &str = "TACT_IMAP_CA_FILE";

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// The URL or the environment is wrong: bad usage (exit 2).
    #[error("{0}")]
    Usage(String),
    #[error("IMAP {endpoint}: {message}")]
    Server { endpoint: String, message: String },
    #[error("IMAP {endpoint}: no answer within {}s ({step})", timeout.as_secs())]
    Timeout {
        endpoint: String,
        step: &'static str,
        timeout: Duration,
    },
    /// The caller's handler failed: the batch it was given stays unflagged.
    #[error(transparent)]
    Handler(#[from] crate::Error),
}

impl ImapError {
    pub fn is_usage(&self) -> bool {
        match self {
            ImapError::Usage(_) => true,
            ImapError::Handler(e) => e.is_input(),
            _ => false,
        }
    }
}

/// `imaps://user@host[:port]/MAILBOX` (or `imap://` to a loopback host), parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Percent-decoded; never printed.
    pub user: String,
    /// Percent-decoded; `INBOX` when the URL has no path.
    pub mailbox: String,
}

impl MailboxUrl {
    /// Whether `s` is meant as a mailbox URL rather than a path.
    pub fn is_url(s: &str) -> bool {
        let l = s.get(..8).unwrap_or(s).to_ascii_lowercase();
        l.starts_with("imaps://") || l.starts_with("imap://")
    }

    pub fn parse(s: &str) -> Result<MailboxUrl, ImapError> {
        let usage = |m: &str| ImapError::Usage(format!("mailbox URL: {m}"));
        let (tls, rest) = if let Some(r) = strip_prefix_ci(s, "imaps://") {
            (true, r)
        } else if let Some(r) = strip_prefix_ci(s, "imap://") {
            (false, r)
        } else {
            return Err(usage(
                "it must start with imaps:// (imap:// only to a loopback host)",
            ));
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains(['?', '#']) || path.contains(['?', '#']) {
            return Err(usage("a query or fragment is not allowed"));
        }
        // The user is often an address, so `@` may appear in it unencoded: the last `@`
        // ends it.
        let Some((userinfo, hostport)) = authority.rsplit_once('@') else {
            return Err(usage(
                "it names no user (imaps://USER@HOST/MAILBOX; the password comes from TACT_IMAP_PASSWORD)",
            ));
        };
        if userinfo.contains(':') {
            return Err(usage(&format!(
                "a password in the URL is refused (it would show in ps and shell history): \
                 put it in {PASSWORD_ENV}"
            )));
        }
        let user = percent_decode(userinfo).ok_or_else(|| usage("the user is not valid UTF-8"))?;
        if user.is_empty() {
            return Err(usage("the user is empty"));
        }
        let (host, port) = split_host_port(hostport).ok_or_else(|| usage("bad host or port"))?;
        let port = port.unwrap_or(if tls { 993 } else { 143 });
        let mailbox =
            percent_decode(path).ok_or_else(|| usage("the mailbox is not valid UTF-8"))?;
        let mailbox = if mailbox.is_empty() {
            "INBOX".to_string()
        } else {
            mailbox
        };
        // IMAP names outside ASCII travel in modified UTF-7; control characters never.
        if mailbox.chars().any(|c| !(' '..='~').contains(&c)) {
            return Err(usage(
                "the mailbox name must be printable ASCII (write a non-ASCII name in IMAP's modified UTF-7)",
            ));
        }
        if user.chars().any(char::is_control) {
            return Err(usage("the user contains a control character"));
        }
        let url = MailboxUrl {
            tls,
            host,
            port,
            user,
            mailbox,
        };
        if !tls && !url.host_is_loopback_literal() && url.host != "localhost" {
            return Err(usage(&format!(
                "imap:// sends the password in plain text: only a loopback host may use it; use imaps://{}",
                url.endpoint().trim_start_matches("imap://")
            )));
        }
        Ok(url)
    }

    fn host_is_loopback_literal(&self) -> bool {
        self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// `imaps://host:port/MAILBOX`: the URL without its user, for messages and file names.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "imaps" } else { "imap" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{host}:{}/{}", self.port, self.mailbox)
    }

    /// How one message is named in reports (RFC 5092's `;UID=`), without the user.
    pub fn message_name(&self, uid: u32) -> String {
        format!("{};UID={uid}", self.endpoint())
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        h.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':')?)),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_');
    if host.is_empty() || !host.chars().all(valid) {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p != 0)?),
        None => None,
    };
    Some((host.to_ascii_lowercase(), port))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// How much one run may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Messages fetched per run; the rest stay unflagged for the next run.
    pub max_messages: usize,
    /// Bytes fetched of each message (its beginning).
    pub max_message_bytes: u32,
    /// Messages per fetch, per handler call and per flag command.
    pub batch: usize,
    /// Each network step (connect, TLS, each command).
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_messages: 1000,
            max_message_bytes: 1024 * 1024,
            batch: 50,
            timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// Everything the server may send in one run: the messages plus room for the search
    /// result and the protocol chatter. A server that sends more is cut off.
    fn byte_budget(&self) -> u64 {
        let per = u64::from(self.max_message_bytes) + 4096;
        (self.max_messages as u64).saturating_mul(per) + 16 * 1024 * 1024
    }
}

/// The password and trust roots, from the environment only.
#[derive(Clone)]
pub struct Options {
    password: String,
    pub ca_file: Option<PathBuf>,
    pub limits: Limits,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("password", &"<hidden>")
            .field("ca_file", &self.ca_file)
            .field("limits", &self.limits)
            .finish()
    }
}

impl Options {
    /// `TACT_IMAP_PASSWORD` (required) and `TACT_IMAP_CA_FILE` (optional), through `env` so
    /// callers and tests choose where the environment comes from.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Options, ImapError> {
        let password = env(PASSWORD_ENV).filter(|p| !p.is_empty()).ok_or_else(|| {
            ImapError::Usage(format!(
                "the bounce mailbox needs its password in {PASSWORD_ENV}"
            ))
        })?;
        let ca_file = env(CA_FILE_ENV)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        Ok(Options {
            password,
            ca_file,
            limits: Limits::default(),
        })
    }
}

/// One fetched message.
#[derive(Debug)]
pub struct Fetched {
    pub uid: u32,
    /// The message's name in reports: [`MailboxUrl::message_name`].
    pub name: String,
    /// Its first `max_message_bytes` bytes.
    pub raw: Vec<u8>,
    /// The message is longer than `raw`.
    pub truncated: bool,
}

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Messages handed to the handler and then flagged.
    pub processed: usize,
    /// Unprocessed messages left for the next run (over `max_messages`).
    pub left: usize,
}

/// Connects, fetches every message without `$TactProcessed` (up to the limits), hands them
/// to `handle` one batch at a time, and flags each batch after its handler returned `Ok`.
/// A failing handler stops the run; its batch stays unflagged. Blocking: call it from a
/// plain thread, not inside an async runtime.
pub fn process(
    url: &MailboxUrl,
    opts: &Options,
    handle: &mut dyn FnMut(&[Fetched]) -> crate::Result<()>,
) -> Result<Outcome, ImapError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(ImapError::Server {
            endpoint: url.endpoint(),
            message: "the mailbox is read from a plain thread, not an async task".into(),
        });
    }
    let tls = if url.tls {
        Some(
            crate::tls::client_config(opts.ca_file.as_deref())
                .map_err(|e| ImapError::Usage(format!("{CA_FILE_ENV} {e}")))?,
        )
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ImapError::Server {
            endpoint: url.endpoint(),
            message: format!("cannot start the I/O runtime: {e}"),
        })?;
    rt.block_on(Run { url, opts }.go(tls, handle))
}

struct Run<'a> {
    url: &'a MailboxUrl,
    opts: &'a Options,
}

impl Run<'_> {
    fn fail(&self, message: impl Into<String>) -> ImapError {
        ImapError::Server {
            endpoint: self.url.endpoint(),
            message: message.into(),
        }
    }

    /// `fut` within the step timeout.
    async fn step<T, E: std::fmt::Display>(
        &self,
        step: &'static str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, ImapError> {
        match tokio::time::timeout(self.opts.limits.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.fail(format!("{step}: {e}"))),
            Err(_) => Err(ImapError::Timeout {
                endpoint: self.url.endpoint(),
                step,
                timeout: self.opts.limits.timeout,
            }),
        }
    }

    async fn go(
        self,
        tls: Option<rustls::ClientConfig>,
        handle: &mut dyn FnMut(&[Fetched]) -> crate::Result<()>,
    ) -> Result<Outcome, ImapError> {
        let addrs: Vec<SocketAddr> = self
            .step(
                "resolve",
                tokio::net::lookup_host((self.url.host.as_str(), self.url.port)),
            )
            .await?
            .collect();
        if addrs.is_empty() {
            return Err(self.fail("the host resolves to no address"));
        }
        // `localhost` could be pointed elsewhere: plain text goes only where every
        // address is loopback.
        if tls.is_none() && !addrs.iter().all(|a| a.ip().is_loopback()) {
            return Err(ImapError::Usage(format!(
                "{}: imap:// is allowed only to a loopback host, and this one resolves elsewhere: use imaps://",
                self.url.endpoint()
            )));
        }
        let tcp = self
            .step("connect", tokio::net::TcpStream::connect(&addrs[..]))
            .await?;
        let stream = Budget::new(tcp, self.opts.limits.byte_budget());
        match tls {
            None => self.session(stream, handle).await,
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(self.url.host.clone())
                    .map_err(|e| self.fail(format!("bad server name: {e}")))?;
                let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
                let stream = self
                    .step("TLS handshake", connector.connect(name, stream))
                    .await?;
                self.session(stream, handle).await
            }
        }
    }

    async fn session<S>(
        &self,
        stream: S,
        handle: &mut dyn FnMut(&[Fetched]) -> crate::Result<()>,
    ) -> Result<Outcome, ImapError>
    where
        S: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
    {
        let mut client = async_imap::Client::new(stream);
        let greeting = self
            .step("greeting", client.read_response())
            .await?
            .ok_or_else(|| self.fail("the server closed the connection before its greeting"))?;
        if let async_imap::imap_proto::Response::Data {
            status: async_imap::imap_proto::Status::Bye,
            ..
        } = greeting.parsed()
        {
            return Err(self.fail("the server said BYE instead of a greeting"));
        }
        let login = tokio::time::timeout(
            self.opts.limits.timeout,
            client.login(&self.url.user, &self.opts.password),
        )
        .await;
        let mut session = match login {
            Ok(Ok(s)) => s,
            // The server's text could echo the user: say what failed, not what it said.
            Ok(Err((async_imap::error::Error::No(_) | async_imap::error::Error::Bad(_), _))) => {
                return Err(self.fail(format!(
                    "the server refused the login for the URL's user (check {PASSWORD_ENV})"
                )));
            }
            Ok(Err((e, _))) => return Err(self.fail(format!("login: {}", kind_of(&e)))),
            Err(_) => {
                return Err(ImapError::Timeout {
                    endpoint: self.url.endpoint(),
                    step: "login",
                    timeout: self.opts.limits.timeout,
                });
            }
        };
        let mailbox = self
            .step("SELECT", session.select(&self.url.mailbox))
            .await?;
        let keyword_ok = mailbox.permanent_flags.iter().any(|f| match f {
            Flag::MayCreate => true,
            Flag::Custom(c) => c.eq_ignore_ascii_case(PROCESSED),
            _ => false,
        });
        if !keyword_ok {
            return Err(self.fail(format!(
                "the mailbox does not keep the keyword {PROCESSED} (its PERMANENTFLAGS allow no new keywords), \
                 so processed messages could not be told apart"
            )));
        }
        let found = self
            .step(
                "UID SEARCH",
                session.uid_search(format!("NOT KEYWORD {PROCESSED}")),
            )
            .await?;
        let uids: BTreeSet<u32> = found.into_iter().collect();
        let limits = self.opts.limits;
        let take: Vec<u32> = uids.iter().copied().take(limits.max_messages).collect();
        let mut outcome = Outcome {
            processed: 0,
            left: uids.len() - take.len(),
        };
        for chunk in take.chunks(limits.batch.max(1)) {
            let set = uid_set(chunk);
            let query = format!(
                "(UID RFC822.SIZE BODY.PEEK[]<0.{}>)",
                limits.max_message_bytes
            );
            let fetches: Vec<async_imap::types::Fetch> = self
                .step("UID FETCH", async {
                    session.uid_fetch(&set, &query).await?.try_collect().await
                })
                .await?;
            let wanted: BTreeSet<u32> = chunk.iter().copied().collect();
            let mut by_uid: HashMap<u32, Fetched> = HashMap::new();
            for f in &fetches {
                // A server may add unsolicited FETCH responses (flag changes) for other
                // messages: only what was asked for, with a body, counts.
                let (Some(uid), Some(body)) = (f.uid, f.body()) else {
                    continue;
                };
                if !wanted.contains(&uid) {
                    continue;
                }
                let cap = limits.max_message_bytes as usize;
                let raw = body[..body.len().min(cap)].to_vec();
                let truncated = f.size.is_some_and(|s| s as usize > raw.len()) || body.len() > cap;
                by_uid.insert(
                    uid,
                    Fetched {
                        uid,
                        name: self.url.message_name(uid),
                        raw,
                        truncated,
                    },
                );
            }
            drop(fetches);
            let mut batch: Vec<Fetched> = by_uid.into_values().collect();
            batch.sort_by_key(|f| f.uid);
            if batch.is_empty() {
                continue;
            }
            handle(&batch)?;
            let done: Vec<u32> = batch.iter().map(|f| f.uid).collect();
            let flags = format!("+FLAGS.SILENT ({PROCESSED} \\Seen)");
            let set = uid_set(&done);
            self.step("UID STORE", async {
                session
                    .uid_store(&set, &flags)
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await?;
            outcome.processed += batch.len();
        }
        // The work is done and flagged: a failed goodbye changes nothing.
        let _ = tokio::time::timeout(limits.timeout, session.logout()).await;
        Ok(outcome)
    }
}

/// What importing a mailbox did: the policy's counts and the mailbox's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxImport {
    pub counts: ImportCounts,
    pub mailbox: Outcome,
}

impl MailboxImport {
    /// `hard N, soft N, complaints N, sender N, unknown N` (counts only, as the import
    /// prints them), then the suppressions and what the mailbox has left.
    pub fn line(&self) -> String {
        let c = &self.counts;
        let mut s = format!(
            "hard {}, soft {}, complaints {}, sender {}, unknown {}; {} suppressed; {} report(s) from the mailbox",
            c.hard, c.soft, c.complaints, c.sender, c.unknown, c.suppressed, self.mailbox.processed
        );
        if c.duplicates > 0 {
            s.push_str(&format!(", {} imported before", c.duplicates));
        }
        if self.mailbox.left > 0 {
            s.push_str(&format!(
                ", {} more left for the next run",
                self.mailbox.left
            ));
        }
        s
    }
}

/// Imports the mailbox's unprocessed messages through the one bounce policy
/// (`bounce::import`), a batch at a time, flagging each batch once it is recorded.
/// `progress` hears the number of messages imported so far after each batch.
pub fn import_mailbox(
    ledger: &mut crate::state::ledger::Ledger,
    keys: &crate::state::Keys,
    policy: &BouncePolicy,
    url: &MailboxUrl,
    opts: &Options,
    now: chrono::DateTime<chrono::Utc>,
    progress: &mut dyn FnMut(usize),
) -> Result<MailboxImport, ImapError> {
    let mut counts = ImportCounts::default();
    let mut done = 0usize;
    let mailbox = process(url, opts, &mut |batch| {
        let reports = batch
            .iter()
            .map(|m| crate::bounce::parse_message(&m.name, &m.raw));
        counts.add(&crate::bounce::import::import(
            ledger, keys, policy, reports, now,
        )?);
        done += batch.len();
        progress(done);
        Ok(())
    })?;
    Ok(MailboxImport { counts, mailbox })
}

/// [`import_mailbox`] for a URL as the user wrote it (`[bounces] imap`, the command line),
/// with the password and CA file from `env`: what `bounces import`, `run-due` and the
/// composer's `b` all call.
pub fn import_url(
    ledger: &mut crate::state::ledger::Ledger,
    keys: &crate::state::Keys,
    policy: &BouncePolicy,
    url: &str,
    env: &dyn Fn(&str) -> Option<String>,
    now: chrono::DateTime<chrono::Utc>,
    progress: &mut dyn FnMut(usize),
) -> Result<MailboxImport, ImapError> {
    let url = MailboxUrl::parse(url)?;
    let opts = Options::from_env(env)?;
    import_mailbox(ledger, keys, policy, &url, &opts, now, progress)
}

/// The error's kind without the server's text, which may quote the user.
fn kind_of(e: &async_imap::error::Error) -> String {
    use async_imap::error::Error as E;
    match e {
        E::Io(io) => io.to_string(),
        E::ConnectionLost => "connection lost".into(),
        E::Parse(_) => "unreadable answer".into(),
        E::Validate(_) => "the user or password contains a line break".into(),
        E::No(_) => "refused (NO)".into(),
        E::Bad(_) => "refused (BAD)".into(),
        _ => "failed".into(),
    }
}

/// `1:3,7,9:10` for sorted UIDs.
fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// A stream that fails once the peer has sent more than `left` bytes, so a hostile or
/// broken server cannot make the client buffer without end.
#[derive(Debug)]
struct Budget<S> {
    inner: S,
    left: u64,
}

impl<S> Budget<S> {
    fn new(inner: S, left: u64) -> Self {
        Budget { inner, left }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Budget<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.left == 0 {
            return Poll::Ready(Err(std::io::Error::other(
                "the server sent more than this run's byte budget",
            )));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let got = (buf.filled().len() - before) as u64;
        self.left = self.left.saturating_sub(got);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Budget<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> MailboxUrl {
        MailboxUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn refused(s: &str) -> String {
        match MailboxUrl::parse(s) {
            Ok(u) => panic!("{s} was accepted: {u:?}"),
            Err(e) => {
                assert!(e.is_usage(), "{s}: {e}");
                e.to_string()
            }
        }
    }

    #[test]
    fn urls_parse_with_defaults_and_an_address_as_user() {
        let u = parse("imaps://bounces@example.com@imap.example.com/Bounces");
        assert_eq!(
            u,
            MailboxUrl {
                tls: true,
                host: "imap.example.com".into(),
                port: 993,
                user: "bounces@example.com".into(),
                mailbox: "Bounces".into(),
            }
        );
        let u = parse("IMAPS://bounces%40example.com@IMAP.example.com:1993");
        assert_eq!((u.port, u.mailbox.as_str()), (1993, "INBOX"));
        assert_eq!(u.user, "bounces@example.com");
        assert_eq!(u.host, "imap.example.com");
        let u = parse("imap://tact@127.0.0.1:1143/INBOX/Bounces%20Old");
        assert!(!u.tls);
        assert_eq!(u.mailbox, "INBOX/Bounces Old");
        assert_eq!(parse("imap://tact@[::1]/").port, 143);
        assert_eq!(parse("imap://tact@localhost/").host, "localhost");
    }

    #[test]
    fn a_password_in_the_url_is_refused_and_not_echoed() {
        for s in [
            "imaps://bounces:hunter2@imap.example.com/INBOX",
            "imaps://bounces@example.com:hunter2@imap.example.com/INBOX",
            "imaps://:hunter2@imap.example.com/INBOX",
        ] {
            let e = refused(s);
            assert!(e.contains(PASSWORD_ENV), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn plain_imap_is_refused_off_loopback() {
        for s in [
            "imap://bounces@imap.example.com/INBOX",
            "imap://bounces@10.0.0.1/INBOX",
            "imap://bounces@127.0.0.1.example.com/INBOX",
            "imap://bounces@[2001:db8::1]/INBOX",
        ] {
            let e = refused(s);
            assert!(e.contains("imaps://"), "{e}");
            assert!(e.contains("loopback"), "{e}");
        }
    }

    #[test]
    fn malformed_urls_are_refused_without_echoing_the_user() {
        for s in [
            "https://bounces@example.com/INBOX",
            "imaps://imap.example.com/INBOX",
            "imaps://@imap.example.com/INBOX",
            "imaps://secret.person@imap.example.com:99999/INBOX",
            "imaps://secret.person@imap.example.com:0/INBOX",
            "imaps://secret.person@imap example.com/INBOX",
            "imaps://secret.person@imap.example.com/INBOX?x=1",
            "imaps://secret.person@imap.example.com/Bo%0Aunces",
            "imaps://secret.person@imap.example.com/Ünicode",
            "imaps://secret.person@imap.example.com/%zz",
            "imaps://secret.person@[not-v6]/INBOX",
            "imaps://",
        ] {
            let e = refused(s);
            assert!(!e.contains("secret.person"), "{s}: {e}");
        }
    }

    #[test]
    fn the_endpoint_and_message_names_leave_the_user_out() {
        let u = parse("imaps://someone@example.com@mx.example.com/Bounces");
        assert_eq!(u.endpoint(), "imaps://mx.example.com:993/Bounces");
        assert_eq!(
            u.message_name(42),
            "imaps://mx.example.com:993/Bounces;UID=42"
        );
    }

    #[test]
    fn the_password_comes_from_the_environment_only() {
        let e = Options::from_env(&|_| None).expect_err("no password was accepted");
        assert!(e.to_string().contains(PASSWORD_ENV), "{e}");
        assert!(e.is_usage());
        let o = Options::from_env(&|k| match k {
            PASSWORD_ENV => Some("pw".into()),
            CA_FILE_ENV => Some("/etc/ca.pem".into()),
            _ => None,
        })
        .expect("options");
        assert_eq!(o.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        let dbg = format!("{o:?}");
        assert!(!dbg.contains("\"pw\""), "{dbg}");
    }

    #[test]
    fn uid_sets_collapse_runs() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[5]), "5");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn the_byte_budget_stops_a_flooding_peer() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            use tokio::io::AsyncReadExt as _;
            let data = vec![b'x'; 10_000];
            let mut b = Budget::new(&data[..], 4096);
            let mut sink = Vec::new();
            let e = b
                .read_to_end(&mut sink)
                .await
                .expect_err("read past the budget");
            assert!(e.to_string().contains("budget"), "{e}");
            assert!(sink.len() <= 4096 + 8192, "{}", sink.len());
        });
    }
}
