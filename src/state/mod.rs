//! The state directory and its keys.
//!
//! One master key, made once by `tact init`; every other key is derived from it with HKDF
//! so that a ledger hash can never be turned into an unsubscribe token or back. State files
//! are 0600 in a 0700 directory. The ledger, suppression list and audit log live here too,
//! or in a PostgreSQL database that several hosts share (`ledger::Location`); the master key
//! never leaves the directory, and a store records only an identifier of it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

pub mod audit;
pub mod bounces;
pub mod erase;
pub mod ledger;
pub mod postgres;
pub mod retention;
pub mod sqlite;
pub mod store;
pub mod verp;

use ledger::{Ledger, Location};
use postgres::PgTarget;

pub const MASTER_KEY: &str = "master.key";

/// Where state lives: `--state`, else `$TACT_HOME`, else `$XDG_DATA_HOME/tact`, else
/// `~/.local/share/tact`.
pub fn resolve_dir(flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = env("TACT_HOME") {
        return Ok(p);
    }
    if let Some(p) = env("XDG_DATA_HOME") {
        return Ok(p.join("tact"));
    }
    match env("HOME") {
        Some(h) => Ok(h.join(".local/share/tact")),
        None => Err(Error::Other(
            "no --state, TACT_HOME, XDG_DATA_HOME or HOME: cannot place the state directory".into(),
        )),
    }
}

/// Keys derived from the master key.
#[derive(Clone)]
pub struct Keys {
    ledger: [u8; 32],
    token: TokenKey,
    token_nonce: [u8; 32],
    audit: [u8; 32],
    /// VERP bounce tokens (`verp.rs`): their own keys, so that neither kind of token
    /// opens as the other.
    bounce_mac: [u8; 32],
    bounce_enc: [u8; 32],
    report: [u8; 32],
    key_id: KeyId,
}

/// Opens unsubscribe tokens, and nothing else: the one key the internet-facing
/// unsubscribe server holds. A token carries the recipient's ledger hash sealed inside, so
/// suppressing from a token needs no ledger key; HKDF makes this key one of several
/// independent outputs of the master key, from which neither the master nor the ledger,
/// audit or nonce keys can be computed.
#[derive(Clone)]
pub struct TokenKey {
    aead: [u8; 32],
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// Opens a recipient's token; `None` for anything forged, truncated or from another
    /// key, and for a test message's token (which unsubscribes nobody). Never panics,
    /// whatever the input (`tests` below, and the property tests).
    pub fn open(&self, token: &str) -> Option<(String, RecipientHash)> {
        match self.open_any(token)? {
            Opened::Recipient { campaign, hash } => Some((campaign, hash)),
            Opened::Test { .. } => None,
        }
    }

    /// Opens any token this key sealed, saying whether it names a recipient or is the
    /// inert token of a test message.
    pub fn open_any(&self, token: &str) -> Option<Opened> {
        // A real token is ~100 characters; a long string is refused before decoding it.
        if token.len() > MAX_TOKEN {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
        if raw.len() < 24 + 33 + 16 {
            return None;
        }
        let (nonce, sealed) = raw.split_at(24);
        let cipher = XChaCha20Poly1305::new((&self.aead).into());
        let plain = cipher.decrypt(XNonce::from_slice(nonce), sealed).ok()?;
        let kind = *plain.first()?;
        let hash: RecipientHash = plain.get(1..33)?.try_into().ok()?;
        let campaign = String::from_utf8(plain.get(33..)?.to_vec()).ok()?;
        match kind {
            TOKEN_RECIPIENT => Some(Opened::Recipient { campaign, hash }),
            TOKEN_TEST => Some(Opened::Test { campaign }),
            _ => None,
        }
    }
}

/// The kind byte, first inside the seal: only the key holder can make either kind, and
/// a test token cannot be turned into a recipient's (the AEAD covers the byte).
const TOKEN_RECIPIENT: u8 = 1;
const TOKEN_TEST: u8 = 2;

/// What a sealed token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    Recipient {
        campaign: String,
        hash: RecipientHash,
    },
    /// A test message's token: it names no one, and unsubscribing with it changes nothing.
    Test { campaign: String },
}

/// The longest token `open` looks at: a campaign name of ~1 KiB, sealed and encoded.
const MAX_TOKEN: usize = 2048;

/// What `tact init --unsubscribe-key FILE` exports and `unsubscribe-server --key FILE`
/// runs on: the token key, and the master key's public identifier so that the server
/// refuses a store that belongs to another key.
#[derive(Debug, Clone)]
pub struct UnsubscribeKey {
    pub token: TokenKey,
    key_id: KeyId,
}

const UNSUBSCRIBE_KEY_HEADER: &str = "tact unsubscribe key v1";

impl UnsubscribeKey {
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    fn to_text(&self) -> String {
        format!(
            "{UNSUBSCRIBE_KEY_HEADER}\n# Opens unsubscribe tokens and adds suppressions; cannot hash addresses or seal the audit log.\ntoken-key {}\nkey-id {}\n",
            hex(&self.token.aead),
            hex(&self.key_id)
        )
    }

    /// Writes the key to a new file, 0600 from the moment it exists; an existing file is
    /// never replaced (an input error naming it).
    pub fn export(&self, path: &Path) -> Result<()> {
        match write_private(path, self.to_text().as_bytes(), true) {
            Err(Error::Write { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                Err(Error::input(
                    crate::error::Location::file(path),
                    "already exists: refusing to overwrite it (remove it first, or choose another name)",
                ))
            }
            r => r,
        }
    }

    /// Reads an exported key; it must be private to its owner, as the master key is.
    pub fn read(path: &Path) -> Result<UnsubscribeKey> {
        let meta = fs::metadata(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let at = |line: usize, message: String| {
            Error::input(crate::error::Location::at(path, line, 1), message)
        };
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(Error::input(
                crate::error::Location::file(path),
                format!(
                    "the unsubscribe key is readable by others: run `chmod 600 {}`",
                    path.display()
                ),
            ));
        }
        let text = fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
        if lines.next().map(|(_, l)| l) != Some(UNSUBSCRIBE_KEY_HEADER) {
            return Err(at(
                1,
                format!(
                    "not an unsubscribe key: expected `{UNSUBSCRIBE_KEY_HEADER}` (export one with `tact init --unsubscribe-key FILE`)"
                ),
            ));
        }
        let (mut token, mut key_id) = (None, None);
        for (n, line) in lines.filter(|(_, l)| !l.is_empty() && !l.starts_with('#')) {
            let (name, value) = line.split_once(' ').unwrap_or((line, ""));
            let slot = match name {
                "token-key" => &mut token,
                "key-id" => &mut key_id,
                _ => return Err(at(n, format!("unknown entry `{name}`"))),
            };
            *slot = Some(
                unhex(value.trim())
                    .ok_or_else(|| at(n, format!("`{name}` must be 64 hex digits")))?,
            );
        }
        match (token, key_id) {
            (Some(aead), Some(key_id)) => Ok(UnsubscribeKey {
                token: TokenKey { aead },
                key_id,
            }),
            _ => Err(Error::input(
                crate::error::Location::file(path),
                "incomplete unsubscribe key: it needs `token-key` and `key-id`",
            )),
        }
    }

    /// Opens the store of a state for the unsubscribe server, with this key alone: the
    /// SQLite file in `dir` (which must exist: a mistyped path must not start a fresh,
    /// empty list) or the shared database. A store recorded for another key is refused.
    pub fn open_store(&self, dir: &Path, target: Option<PgTarget>) -> Result<Ledger> {
        let location = match target {
            Some(t) => Location::Postgres(Box::new(t)),
            None => {
                if !dir.join(ledger::LEDGER_FILE).exists() {
                    return Err(Error::NoState {
                        path: dir.to_path_buf(),
                    });
                }
                Location::Local(dir.to_path_buf())
            }
        };
        let mut ledger = open_set_up(&location, false)?;
        ledger.check_key(&self.key_id)?;
        Ok(ledger)
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// A keyed hash of a normalised address: what the ledger and suppression list store.
pub type RecipientHash = [u8; 32];

/// Names a master key without revealing it: an HMAC of a fixed label under a key derived
/// for nothing else. A store records it so that a host with another key is refused.
pub type KeyId = [u8; 32];

pub fn normalise_address(addr: &str) -> String {
    address_key(addr).into_owned()
}

/// The one form of an address that the ledger, the suppression list and the duplicate scan
/// compare: case folded, invisible characters dropped, and the domain as IDNA reads it, so
/// `Dup@Exämple.com`, `dup@xn--exmple-cua.com` and `dup@example.com` followed by a zero-width
/// space (which IDNA ignores) are one person, mailed once and suppressed together. Merging
/// two addresses can only hold a message back; splitting one would send it twice. Plain
/// lowercase ASCII, nearly every address, is borrowed as it is.
pub fn address_key(addr: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    let addr = addr.trim_matches(|c: char| c.is_whitespace() || invisible(c));
    let plain = addr
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase())
        && !addr.contains("xn--");
    if plain {
        return Cow::Borrowed(addr);
    }
    let folded: String = addr
        .chars()
        .filter(|c| !invisible(*c))
        .collect::<String>()
        .to_lowercase();
    match folded.rsplit_once('@') {
        Some((local, domain)) => match idna::domain_to_unicode(domain) {
            (d, Ok(())) => Cow::Owned(format!("{local}@{d}")),
            _ => Cow::Owned(folded),
        },
        None => Cow::Owned(folded),
    }
}

/// Characters that print as nothing (soft hyphen, zero-width spaces and joiners, word
/// joiner, byte order mark): pasted into an address they make it look the same and hash
/// differently.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
    )
}

impl Keys {
    pub fn from_master(master: &[u8; 32]) -> Keys {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"tact state keys"), master);
        let derive = |info: &[u8]| {
            let mut out = [0u8; 32];
            // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so this cannot fail.
            let _ = hk.expand(info, &mut out);
            out
        };
        let mut id = <Hmac<Sha256> as Mac>::new_from_slice(&derive(b"tact/v1/key-id"))
            .unwrap_or_else(|_| unreachable!());
        id.update(b"tact master key identifier");
        Keys {
            ledger: derive(b"tact/v1/ledger-hash"),
            token: TokenKey {
                aead: derive(b"tact/v1/token-aead"),
            },
            token_nonce: derive(b"tact/v1/token-nonce"),
            audit: derive(b"tact/v1/audit-chain"),
            bounce_mac: derive(b"tact/v1/bounce-mac"),
            bounce_enc: derive(b"tact/v1/bounce-enc"),
            report: derive(b"tact/v1/bounce-report"),
            key_id: id.finalize().into_bytes().into(),
        }
    }

    /// What a store records to tell this key from another.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The key that only opens unsubscribe tokens, with this key's identifier.
    pub fn unsubscribe_key(&self) -> UnsubscribeKey {
        UnsubscribeKey {
            token: self.token.clone(),
            key_id: self.key_id,
        }
    }

    pub fn token_key(&self) -> &TokenKey {
        &self.token
    }

    /// The first bytes of the key identifier in hex, for people comparing two hosts.
    pub fn key_id_short(&self) -> String {
        hex(&self.key_id[..8])
    }

    pub fn recipient_hash(&self, address: &str) -> RecipientHash {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.ledger).unwrap_or_else(|_| unreachable!());
        mac.update(normalise_address(address).as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// What a store keeps of an imported bounce report's key (a hash of its Message-ID):
    /// keyed, so the store holds nothing that can be matched against a known Message-ID.
    pub fn report_hash(&self, report_key: &[u8; 32]) -> bounces::ReportHash {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.report).unwrap_or_else(|_| unreachable!());
        mac.update(report_key);
        mac.finalize().into_bytes().into()
    }

    /// The MAC that chains audit events: without the key, an edited log cannot be re-sealed.
    pub fn audit_mac(&self, data: &[u8]) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.audit).unwrap_or_else(|_| unreachable!());
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// An unsubscribe token: the AEAD seal of (campaign, recipient hash). The nonce is
    /// derived from the plaintext (SIV style) so `preview` and `send` produce the same URL,
    /// while different campaigns still give unlinkable tokens.
    pub fn seal_token(&self, campaign: &str, hash: &RecipientHash) -> String {
        self.seal(TOKEN_RECIPIENT, campaign, hash)
    }

    /// The inert token of a test message: sealed like a recipient's (so it cannot be
    /// forged, and looks like any other), but it names nobody; the endpoint answers that it
    /// came from a test, and `suppress token` suppresses no one with it.
    pub fn seal_test_token(&self, campaign: &str) -> String {
        self.seal(TOKEN_TEST, campaign, &[0; 32])
    }

    fn seal(&self, kind: u8, campaign: &str, hash: &RecipientHash) -> String {
        let mut plain = Vec::with_capacity(33 + campaign.len());
        plain.push(kind);
        plain.extend_from_slice(hash);
        plain.extend_from_slice(campaign.as_bytes());
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.token_nonce)
            .unwrap_or_else(|_| unreachable!());
        mac.update(&plain);
        let tag = mac.finalize().into_bytes();
        let nonce = XNonce::from_slice(&tag[..24]);
        let cipher = XChaCha20Poly1305::new((&self.token.aead).into());
        let sealed = cipher.encrypt(nonce, plain.as_slice()).unwrap_or_default();
        let mut out = Vec::with_capacity(24 + sealed.len());
        out.extend_from_slice(nonce);
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens a token; `None` for anything forged, truncated or from another key.
    pub fn open_token(&self, token: &str) -> Option<(String, RecipientHash)> {
        self.token.open(token)
    }
}

#[derive(Debug, Clone)]
pub struct State {
    /// The local directory: the master key, and the SQLite store unless `store` says
    /// otherwise.
    pub dir: PathBuf,
    pub keys: Keys,
    /// True when this call made the directory and its key.
    pub created: bool,
    /// Where the ledger, suppression list and audit log are.
    pub store: Location,
}

impl State {
    /// Opens the state directory, creating it and its master key when missing (`init`,
    /// `check`, `preview`).
    pub fn open_or_init(dir: &Path) -> Result<State> {
        let created = !dir.join(MASTER_KEY).exists();
        if created {
            create_private_dir(dir)?;
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| Error::State {
                path: dir.to_path_buf(),
                message: format!("no randomness: {e}"),
            })?;
            write_private(&dir.join(MASTER_KEY), hex(&key).as_bytes(), true)?;
        }
        let mut state = Self::open_existing(dir)?;
        state.created = created;
        Ok(state)
    }

    /// Opens existing state and refuses to start over: a cron job with the wrong HOME must
    /// not send with an empty suppression list (`send`, `run-due`).
    pub fn open_existing(dir: &Path) -> Result<State> {
        let key_path = dir.join(MASTER_KEY);
        if !key_path.exists() {
            return Err(Error::NoState {
                path: dir.to_path_buf(),
            });
        }
        let meta = fs::metadata(&key_path).map_err(|source| Error::Read {
            path: key_path.clone(),
            source,
        })?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(Error::State {
                path: dir.to_path_buf(),
                message: format!(
                    "{} is readable by others: run `chmod 600 {}`",
                    MASTER_KEY,
                    key_path.display()
                ),
            });
        }
        let key = read_key(&key_path, dir)?;
        Ok(State {
            dir: dir.to_path_buf(),
            keys: Keys::from_master(&key),
            created: false,
            store: Location::Local(dir.to_path_buf()),
        })
    }

    /// `tact init --import-key FILE`: makes the state directory with another host's master
    /// key, so that both hash, seal and chain alike and can share one store. The file must
    /// be private (it is the key), and an existing different key is never overwritten.
    pub fn import_key(dir: &Path, file: &Path) -> Result<State> {
        let meta = fs::metadata(file).map_err(|source| Error::Read {
            path: file.to_path_buf(),
            source,
        })?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(Error::input(
                crate::error::Location::file(file),
                format!(
                    "the key file is readable by others: run `chmod 600 {}` (and consider it \
                     exposed if others could read it)",
                    file.display()
                ),
            ));
        }
        let text = fs::read_to_string(file).map_err(|source| Error::Read {
            path: file.to_path_buf(),
            source,
        })?;
        let key = unhex(text.trim()).ok_or_else(|| {
            Error::input(
                crate::error::Location::file(file),
                format!("not a master key: expected 64 hex digits, as in {MASTER_KEY}"),
            )
        })?;
        let key_path = dir.join(MASTER_KEY);
        let created = !key_path.exists();
        if created {
            create_private_dir(dir)?;
            write_private(&key_path, hex(&key).as_bytes(), true)?;
        } else if read_key(&key_path, dir)? != key {
            return Err(Error::input(
                crate::error::Location::file(file),
                format!(
                    "{} already holds a different master key: refusing to replace it (move \
                     the old state aside first; its tokens and hashes need its key)",
                    key_path.display()
                ),
            ));
        }
        let mut state = Self::open_existing(dir)?;
        state.created = created;
        Ok(state)
    }

    /// The same state with its store elsewhere (`--state postgres://…`,
    /// `TACT_DATABASE_URL`); `None` keeps the SQLite file in the directory.
    pub fn with_store(mut self, target: Option<PgTarget>) -> State {
        if let Some(t) = target {
            self.store = Location::Postgres(Box::new(t));
        }
        self
    }

    /// Opens the store and checks that it belongs to this key (any other is refused, exit
    /// 2); a shared database that `tact init` never set up is refused too.
    pub fn ledger(&self, durable: bool) -> Result<Ledger> {
        let mut ledger = open_set_up(&self.store, durable)?;
        ledger.check_key(&self.keys.key_id())?;
        Ok(ledger)
    }

    /// `tact init`: opens the store, recording this key's identifier in a new one.
    pub fn init_ledger(&self) -> Result<Ledger> {
        let mut ledger = Ledger::open_at(&self.store, false)?;
        ledger.check_key(&self.keys.key_id())?;
        Ok(ledger)
    }
}

/// Opens a store that `tact init` set up. A shared database where no key was ever
/// recorded is refused (`NoStore`): a typo in its URL that names another database must not
/// start over there with an empty suppression list. The SQLite file comes with its state
/// directory, whose own absence is refused before this.
fn open_set_up(location: &Location, durable: bool) -> Result<Ledger> {
    let ledger = Ledger::open_at(location, durable)?;
    if matches!(location, Location::Postgres(_)) && !ledger.key_recorded()? {
        return Err(Error::NoStore {
            store: location.to_string(),
        });
    }
    Ok(ledger)
}

/// Reads a master key file the way `open_existing` expects it.
fn read_key(key_path: &Path, dir: &Path) -> Result<[u8; 32]> {
    let text = fs::read_to_string(key_path).map_err(|source| Error::Read {
        path: key_path.to_path_buf(),
        source,
    })?;
    unhex(text.trim()).ok_or_else(|| Error::State {
        path: dir.to_path_buf(),
        message: format!("{MASTER_KEY} is not a 64-digit hex key"),
    })
}

pub fn create_private_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| Error::Write {
        path: dir.to_path_buf(),
        source,
    })
}

/// Replaces `target` with `bytes` so that no reader ever sees half of them: a new file
/// beside it, owner-only from the moment it exists (`prepare` may then set its owner or
/// mode), fsynced, renamed over `target`, and the folder fsynced. `target` itself is
/// replaced, never followed: a caller that means a link's target resolves it first. On
/// failure the new file is removed.
pub fn replace_file(
    target: &Path,
    bytes: &[u8],
    prepare: impl FnOnce(&fs::File) -> Result<()>,
) -> Result<()> {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut salt = [0u8; 6];
    getrandom::fill(&mut salt).map_err(|e| Error::Other(format!("no randomness: {e}")))?;
    let salt: String = salt.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{name}.tact-{salt}.tmp"));
    let werr = |p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Write { path: p, source }
    };
    let written = (|| -> Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(werr(&tmp))?;
        prepare(&f)?;
        f.write_all(bytes).map_err(werr(&tmp))?;
        f.sync_all().map_err(werr(&tmp))?;
        fs::rename(&tmp, target).map_err(werr(target))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
        return written;
    }
    // The rename is durable once the folder is.
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes a file readable by its owner only, from the moment it exists.
pub fn write_private(path: &Path, bytes: &[u8], exclusive: bool) -> Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).mode(0o600);
    if exclusive {
        opts.create_new(true);
    } else {
        opts.create(true).truncate(true);
    }
    let mut f = opts.open(path).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })?;
    // An existing file keeps its old mode through open(); make sure.
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(|source| Error::Write {
            path: path.to_path_buf(),
            source,
        })?;
    f.write_all(bytes).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

pub fn short_hash(h: &RecipientHash) -> String {
    hex(&h[..6])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn one_mailbox_has_one_key() {
        let same = [
            "dup@example.com",
            " DUP@Example.COM\t",
            "dup@example.com\u{200B}",
            "\u{FEFF}dup@exa\u{00AD}mple.com",
        ];
        for a in same {
            assert_eq!(address_key(a), "dup@example.com", "{a:?}");
        }
        assert_eq!(address_key("Dup@XN--EXMPLE-CUA.com"), "dup@exämple.com");
        assert_eq!(address_key("dup@Exämple.com"), "dup@exämple.com");
        assert_ne!(
            address_key("dup@example.com"),
            address_key("dup2@example.com")
        );
        assert!(matches!(
            address_key("plain@example.com"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn init_makes_private_files_and_stable_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let s = State::open_or_init(&dir).unwrap();
        assert!(s.created);
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            fs::metadata(dir.join(MASTER_KEY))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        let again = State::open_existing(&dir).unwrap();
        assert_eq!(
            s.keys.recipient_hash("A@Example.com "),
            again.keys.recipient_hash("a@example.com")
        );
        assert!(
            State::open_existing(&tmp.path().join("nothing"))
                .unwrap_err()
                .to_string()
                .contains("tact init")
        );
        fs::set_permissions(dir.join(MASTER_KEY), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            State::open_existing(&dir)
                .unwrap_err()
                .to_string()
                .contains("chmod 600")
        );
    }

    #[test]
    fn tokens_open_only_with_the_key_and_differ_per_campaign() {
        let keys = Keys::from_master(&[7u8; 32]);
        let other = Keys::from_master(&[8u8; 32]);
        let h = keys.recipient_hash("ann@example.com");
        let t1 = keys.seal_token("winter-sale", &h);
        assert_eq!(
            t1,
            keys.seal_token("winter-sale", &h),
            "preview and send must agree"
        );
        let t2 = keys.seal_token("spring-sale", &h);
        assert_ne!(t1[..40], t2[..40]);
        assert_eq!(keys.open_token(&t1), Some(("winter-sale".to_string(), h)));
        assert_eq!(other.open_token(&t1), None);
        assert!(!t1.contains("ann"));
        let mut forged = t1.clone().into_bytes();
        forged[30] = if forged[30] == b'A' { b'B' } else { b'A' };
        assert_eq!(keys.open_token(std::str::from_utf8(&forged).unwrap()), None);
        assert_eq!(keys.open_token("short"), None);
    }

    #[test]
    fn a_test_token_is_sealed_but_names_nobody() {
        let keys = Keys::from_master(&[7u8; 32]);
        let other = Keys::from_master(&[8u8; 32]);
        let t = keys.seal_test_token("winter-sale");
        assert_eq!(
            keys.token_key().open_any(&t),
            Some(Opened::Test {
                campaign: "winter-sale".into()
            })
        );
        // The recipient opener never takes it for someone's token.
        assert_eq!(keys.open_token(&t), None);
        assert_eq!(other.token_key().open_any(&t), None);
        let mut forged = t.clone().into_bytes();
        forged[30] = if forged[30] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            keys.token_key()
                .open_any(std::str::from_utf8(&forged).unwrap()),
            None
        );
        let h = keys.recipient_hash("ann@example.com");
        assert!(matches!(
            keys.token_key().open_any(&keys.seal_token("winter-sale", &h)),
            Some(Opened::Recipient { hash, .. }) if hash == h
        ));
    }

    #[test]
    fn the_unsubscribe_key_opens_tokens_and_holds_no_other_key() {
        let tmp = tempfile::tempdir().unwrap();
        let master = [7u8; 32];
        let keys = Keys::from_master(&master);
        let file = tmp.path().join("unsubscribe.key");
        keys.unsubscribe_key().export(&file).unwrap();
        let text = fs::read_to_string(&file).unwrap();
        for (what, secret) in [
            ("master", master),
            ("ledger", keys.ledger),
            ("audit", keys.audit),
            ("token nonce", keys.token_nonce),
            ("bounce mac", keys.bounce_mac),
            ("bounce encryption", keys.bounce_enc),
        ] {
            assert!(
                !text.contains(&hex(&secret)),
                "the {what} key is in the file"
            );
        }
        let e = keys.unsubscribe_key().export(&file).unwrap_err();
        assert!(
            e.is_input() && e.to_string().contains("already exists"),
            "{e}"
        );
        let read = UnsubscribeKey::read(&file).unwrap();
        assert_eq!(read.key_id(), keys.key_id());
        let h = keys.recipient_hash("ann@example.com");
        let t = keys.seal_token("winter-sale", &h);
        assert_eq!(read.token.open(&t), Some(("winter-sale".to_string(), h)));
        let other = Keys::from_master(&[8u8; 32]);
        assert_eq!(
            other.unsubscribe_key().token.open(&t),
            None,
            "another state's key"
        );
        for (bad, says) in [
            ("", "not an unsubscribe key"),
            ("tact unsubscribe key v1\ntoken-key 00\n", "64 hex digits"),
            ("tact unsubscribe key v1\nmaster 00\n", "unknown entry"),
            ("tact unsubscribe key v1\n", "incomplete"),
        ] {
            let f = tmp.path().join("bad.key");
            let _ = fs::remove_file(&f);
            write_private(&f, bad.as_bytes(), true).unwrap();
            let e = UnsubscribeKey::read(&f).unwrap_err();
            assert!(e.is_input() && e.to_string().contains(says), "{bad:?}: {e}");
        }
    }

    mod decoder {
        use super::super::*;
        use proptest::prelude::*;

        fn keys() -> Keys {
            Keys::from_master(&[7u8; 32])
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

            /// Any string at all: no panic, and nothing opens.
            #[test]
            fn arbitrary_strings_never_open(s in "\\PC{0,300}") {
                prop_assert_eq!(keys().open_token(&s), None);
            }

            /// Any bytes in the token alphabet, of a token's length or not: nothing opens
            /// without the key's seal.
            #[test]
            fn arbitrary_bytes_never_open(raw in proptest::collection::vec(any::<u8>(), 0..400)) {
                let k = keys();
                prop_assert_eq!(k.open_token(&URL_SAFE_NO_PAD.encode(&raw)), None);
                prop_assert_eq!(k.open_token(&String::from_utf8_lossy(&raw)), None);
            }

            /// A sealed token opens to exactly what was sealed, for this campaign only;
            /// any one character changed, any cut, or another key, and it does not open.
            #[test]
            fn only_real_tokens_open_and_only_as_their_campaign(
                campaign in "[a-z0-9-]{1,40}",
                other in "[a-z0-9-]{1,40}",
                hash in any::<[u8; 32]>(),
                at in any::<prop::sample::Index>(),
                to in any::<u8>(),
                cut in any::<prop::sample::Index>(),
            ) {
                let k = keys();
                let t = k.seal_token(&campaign, &hash);
                prop_assert_eq!(k.open_token(&t), Some((campaign.clone(), hash)));
                if other != campaign {
                    prop_assert_ne!(k.open_token(&k.seal_token(&other, &hash)).map(|o| o.0), Some(campaign.clone()));
                }
                let mut b = t.clone().into_bytes();
                let i = at.index(b.len());
                let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                let c = alphabet[usize::from(to) % alphabet.len()];
                // The last character carries bits that base64 ignores: skip the change there.
                if c != b[i] && i + 1 < b.len() {
                    b[i] = c;
                    prop_assert_eq!(k.open_token(std::str::from_utf8(&b).unwrap_or("")), None);
                }
                let n = cut.index(t.len());
                prop_assert_eq!(k.open_token(&t[..n]), None);
                prop_assert_eq!(Keys::from_master(&[8u8; 32]).open_token(&t), None);
            }
        }
    }
}
