//! A private Dovecot for the IMAP tests: its own configuration, runtime directory, log and
//! Maildir storage in a temp dir, one test user in a passwd-file, listening on 127.0.0.1 on
//! a free port (plain IMAP, or IMAPS only with a certificate from a test CA made by
//! openssl). Started in the foreground (`dovecot -F -c CONF`) and stopped with SIGTERM on
//! drop. Nothing under /etc/dovecot is read or written, and no system service is started.
//!
//! Dovecot's master runs as root and drops to its own users (Debian's package makes
//! `dovecot` and `dovenull`); mail is kept as `nobody`. So as another user, or without
//! Dovecot, the tests print a loud SKIP, unless `CI` is set: then they fail.
//!
//! Messages are delivered the way an MDA would, as files in the Maildir's `new/`, and the
//! flags the tests check are read back from the Maildir's file names (`:2,S…` plus the
//! keyword letters of `dovecot-keywords`), not through IMAP: the client under test never
//! grades itself.

use std::fs;
use std::io::Read as _;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::util::{TestCerts, euid, free_port};

const DOVECOT: &str = "/usr/sbin/dovecot";
pub const USER: &str = "bounces@northwind.example";
pub const PASSWORD: &str = "imap-test-password";

/// Says why the tests cannot run: a loud SKIP, or under CI a failure.
fn unavailable(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but {why}: run tests/setup.sh as root (it installs dovecot-imapd)");
    }
    eprintln!(
        "\n*** SKIP: {why}; the IMAP tests did not run. tests/setup.sh installs Dovecot \
         (run the tests as root). ***\n"
    );
}

/// uid and gid of a system user.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    let f: Vec<&str> = passwd
        .lines()
        .find(|l| l.split(':').next() == Some(name))?
        .split(':')
        .collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

/// A running private Dovecot; stopped when dropped.
pub struct Dovecot {
    child: Child,
    pub port: u16,
    /// With IMAPS: the test CA that signed the server's certificate, and one that did not.
    pub certs: Option<TestCerts>,
    mail_ids: (u32, u32),
    root: TempDir,
}

impl Dovecot {
    /// Plain IMAP on 127.0.0.1 (what `imap://` may reach).
    pub fn start() -> Option<Dovecot> {
        Self::start_with(false)
    }

    /// IMAPS only, with a certificate for 127.0.0.1 and localhost from a test CA; it also
    /// listens on 127.0.0.2, a name the certificate does not carry.
    pub fn start_tls() -> Option<Dovecot> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Option<Dovecot> {
        if !Path::new(DOVECOT).is_file() {
            unavailable("Dovecot is not installed");
            return None;
        }
        if euid() != 0 {
            unavailable("a private Dovecot needs root (its master drops to its own users)");
            return None;
        }
        if user_ids("dovecot").is_none() || user_ids("dovenull").is_none() {
            unavailable(
                "the `dovecot` and `dovenull` users are missing (Debian's package makes them)",
            );
            return None;
        }
        let Some(mail_ids) = user_ids("nobody") else {
            unavailable("there is no `nobody` user to keep the test mail as");
            return None;
        };
        // Under /tmp: Dovecot's sockets live in base_dir, and a socket path may not exceed
        // 107 bytes.
        let root = tempfile::Builder::new()
            .prefix("tact-dovecot-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        // Dovecot's unprivileged processes must reach their sockets and the mail inside.
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let r = root.path().to_path_buf();
        let mail = r.join("mail");
        fs::create_dir(&mail).expect("mail dir");
        std::os::unix::fs::chown(&mail, Some(mail_ids.0), Some(mail_ids.1)).expect("chown");
        fs::write(
            r.join("passwd"),
            format!(
                "{USER}:{{PLAIN}}{PASSWORD}:{}:{}::{}::\n",
                mail_ids.0,
                mail_ids.1,
                mail.join("home").display()
            ),
        )
        .expect("passwd");
        let certs = tls.then(|| TestCerts::make(&r));
        let mut last_log = String::new();
        // A port taken between the probe and the start: try another.
        for _ in 0..5 {
            let port = free_port();
            fs::write(r.join("dovecot.conf"), config(&r, port, certs.as_ref())).expect("conf");
            let mut child = Command::new(DOVECOT)
                .arg("-F")
                .arg("-c")
                .arg(r.join("dovecot.conf"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    fs::File::create(r.join("stderr")).expect("stderr file"),
                ))
                .spawn()
                .expect("dovecot starts");
            if wait_ready(&mut child, port, tls) {
                return Some(Dovecot {
                    child,
                    port,
                    certs,
                    mail_ids,
                    root,
                });
            }
            last_log = log(&r);
            stop(&mut child);
        }
        panic!("the private Dovecot did not start:\n{last_log}");
    }

    /// `imaps://USER@127.0.0.1:PORT/MAILBOX` (or `imap://` for a plain instance), the user
    /// percent-encoded as a careful user would write it.
    pub fn url(&self, mailbox: &str) -> String {
        let scheme = if self.certs.is_some() {
            "imaps"
        } else {
            "imap"
        };
        format!(
            "{scheme}://{}@127.0.0.1:{}/{mailbox}",
            USER.replace('@', "%40"),
            self.port
        )
    }

    /// The Maildir of `mailbox` (`INBOX`, or a Maildir++ folder).
    pub fn maildir(&self, mailbox: &str) -> PathBuf {
        let home = self.root.path().join("mail/home");
        if mailbox.eq_ignore_ascii_case("INBOX") {
            home
        } else {
            home.join(format!(".{}", mailbox.replace('/', ".")))
        }
    }

    /// Puts a message into `mailbox` as an MDA would (tmp/, then renamed into new/), owned
    /// by the mail user. Returns its file name.
    pub fn deliver(&self, mailbox: &str, raw: &[u8]) -> String {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = self.maildir(mailbox);
        let home = self.root.path().join("mail/home");
        for d in [
            home.clone(),
            dir.clone(),
            dir.join("tmp"),
            dir.join("new"),
            dir.join("cur"),
        ] {
            if !d.exists() {
                fs::create_dir_all(&d).expect("maildir");
                std::os::unix::fs::chown(&d, Some(self.mail_ids.0), Some(self.mail_ids.1))
                    .expect("chown");
                fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).expect("chmod");
            }
        }
        if dir != home {
            let marker = dir.join("maildirfolder");
            if !marker.exists() {
                fs::write(&marker, "").expect("maildirfolder");
                std::os::unix::fs::chown(&marker, Some(self.mail_ids.0), Some(self.mail_ids.1))
                    .expect("chown");
            }
        }
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("1764460800.M{n}P{}.tact-test", std::process::id());
        let tmp = dir.join("tmp").join(&name);
        fs::write(&tmp, raw).expect("write message");
        std::os::unix::fs::chown(&tmp, Some(self.mail_ids.0), Some(self.mail_ids.1))
            .expect("chown");
        fs::rename(&tmp, dir.join("new").join(&name)).expect("into new/");
        name
    }

    /// Every message file in `mailbox` (new/ and cur/), by its delivered name, with its
    /// flags as Dovecot keeps them in the file name: system flags as letters (`S` seen,
    /// `T` deleted) and keywords by name.
    pub fn flags(&self, mailbox: &str) -> Vec<(String, Vec<String>)> {
        let dir = self.maildir(mailbox);
        let keywords: Vec<(char, String)> = fs::read_to_string(dir.join("dovecot-keywords"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (i, name) = l.split_once(' ')?;
                let i: u8 = i.parse().ok()?;
                Some((char::from(b'a' + i), name.to_string()))
            })
            .collect();
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            for e in fs::read_dir(dir.join(sub)).into_iter().flatten().flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                let (base, info) = file.split_once(":2,").unwrap_or((file.as_str(), ""));
                let base = base.split(',').next().unwrap_or(base).to_string();
                let mut flags = Vec::new();
                for c in info.chars() {
                    match keywords.iter().find(|(k, _)| *k == c) {
                        Some((_, name)) => flags.push(name.clone()),
                        None => flags.push(c.to_string()),
                    }
                }
                out.push((base, flags));
            }
        }
        out.sort();
        out
    }

    pub fn log(&self) -> String {
        log(self.root.path())
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Listening: the TCP port answers (and, without TLS, greets).
fn wait_ready(child: &mut Child, port: u16, tls: bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            if tls {
                return true;
            }
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut buf = [0u8; 64];
            if s.read(&mut buf)
                .is_ok_and(|n| buf[..n].starts_with(b"* OK"))
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn log(root: &Path) -> String {
    format!(
        "{}{}",
        fs::read_to_string(root.join("dovecot.log")).unwrap_or_default(),
        fs::read_to_string(root.join("stderr")).unwrap_or_default()
    )
}

/// SIGTERM to the master, which takes its processes down with it; SIGKILL after 10 s.
fn stop(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn config(r: &Path, port: u16, certs: Option<&TestCerts>) -> String {
    let r = r.display();
    let name = r
        .to_string()
        .rsplit('/')
        .next()
        .unwrap_or("tact")
        .to_string();
    let (ssl, listeners) = match certs {
        None => (
            "ssl = no\n".to_string(),
            format!(
                "  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n\
                 \x20 inet_listener imaps {{\n    port = 0\n  }}\n"
            ),
        ),
        Some(c) => (
            format!(
                "ssl = required\nssl_cert = <{}\nssl_key = <{}\n",
                c.server_crt.display(),
                c.server_key.display()
            ),
            format!(
                "  inet_listener imap {{\n    port = 0\n  }}\n\
                 \x20 inet_listener imaps {{\n    address = 127.0.0.1, 127.0.0.2\n    port = {port}\n    ssl = yes\n  }}\n"
            ),
        ),
    };
    format!(
        "# A private instance for tact's tests: loopback only, one user, Maildir in a temp dir.\n\
         base_dir = {r}/run\n\
         state_dir = {r}/state\n\
         instance_name = {name}\n\
         protocols = imap\n\
         log_path = {r}/dovecot.log\n\
         first_valid_uid = 1\n\
         mail_location = maildir:~\n\
         auth_mechanisms = plain\n\
         disable_plaintext_auth = no\n\
         {ssl}\
         service imap-login {{\n\
         {listeners}\
         \x20 chroot =\n\
         }}\n\
         service anvil {{\n  chroot =\n}}\n\
         passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {r}/passwd\n}}\n\
         userdb {{\n  driver = passwd-file\n  args = username_format=%u {r}/passwd\n}}\n"
    )
}
