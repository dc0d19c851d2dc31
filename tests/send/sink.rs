//! A real SMTP server for the send tests: Postfix's `smtp-sink` on 127.0.0.1, one per test,
//! keeping every accepted message as a file with its envelope (`X-Rcpt-Args: <addr>`).

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::util::{Msg, parse_eml};

/// Where smtp-sink lives, or a failure that tells the user how to get it. Never a skip.
pub fn smtp_sink_binary() -> PathBuf {
    let mut candidates = vec![PathBuf::from("/usr/sbin/smtp-sink")];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("smtp-sink")));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "smtp-sink (from Debian's postfix package) is not installed: the send tests need a \
                 real SMTP server. Run tests/setup.sh (as root) to install it."
            )
        })
}

fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// One message as the sink kept it.
#[derive(Debug)]
pub struct Delivery {
    pub file: String,
    /// `X-Mail-Args`: the envelope sender and its parameters.
    pub mail_from: String,
    /// One entry per `X-Rcpt-Args`, lowercased, without the angle brackets.
    pub rcpts: Vec<String>,
    /// The message as the client sent it (after the sink's own headers).
    pub raw: Vec<u8>,
    pub msg: Msg,
}

impl Delivery {
    pub fn rcpt(&self) -> &str {
        assert_eq!(
            self.rcpts.len(),
            1,
            "{}: one envelope recipient expected",
            self.file
        );
        &self.rcpts[0]
    }
}

/// A folder smtp-sink (running as `nobody`) can write its dump files into.
pub struct DumpDir {
    dir: TempDir,
}

impl DumpDir {
    pub fn new() -> DumpDir {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        DumpDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Files the sink has started (an accepted message is complete once the sink is idle).
    pub fn count(&self) -> usize {
        fs::read_dir(self.path()).map_or(0, |rd| rd.count())
    }

    /// Every message the sink accepted, parsed. A file still being written is waited for.
    pub fn deliveries(&self) -> Vec<Delivery> {
        let started = Instant::now();
        'again: loop {
            let mut out = Vec::new();
            let mut names: Vec<_> = fs::read_dir(self.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            for path in names {
                // The sink deletes the file of a transaction the client broke off.
                let bytes = match fs::read(&path) {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue 'again,
                    Err(e) => panic!("{}: {e}", path.display()),
                };
                match parse_dump(&path, &bytes) {
                    Some(d) => out.push(d),
                    None if started.elapsed() < Duration::from_secs(3) => {
                        std::thread::sleep(Duration::from_millis(50));
                        continue 'again;
                    }
                    None => panic!(
                        "{}: not a complete smtp-sink dump:\n{}",
                        path.display(),
                        String::from_utf8_lossy(&bytes)
                    ),
                }
            }
            return out;
        }
    }
}

impl DumpDir {
    /// Every complete message of a sink that was killed: a file it had not finished is a
    /// transaction it never acknowledged (at most uncertain for the sender), not a
    /// delivery, and nothing more will be written to it.
    pub fn deliveries_after_kill(&self) -> Vec<Delivery> {
        let mut names: Vec<_> = fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        names
            .iter()
            .filter_map(|p| parse_dump(p, &fs::read(p).unwrap()))
            .collect()
    }
}

/// Splits a dump file into the sink's envelope headers and the message.
fn parse_dump(path: &Path, bytes: &[u8]) -> Option<Delivery> {
    let text = String::from_utf8_lossy(bytes);
    let mut mail_from = None;
    let mut rcpts = Vec::new();
    let mut offset = 0;
    let mut in_received = false;
    for line in text.split_inclusive('\n') {
        if in_received {
            if line.starts_with('\t') || line.starts_with(' ') {
                offset += line.len();
                continue;
            }
            break;
        }
        let l = line.trim_end();
        if let Some(v) = l.strip_prefix("X-Mail-Args: ") {
            mail_from = Some(v.to_string());
        } else if let Some(v) = l.strip_prefix("X-Rcpt-Args: ") {
            let addr = v.split_whitespace().next().unwrap_or("");
            rcpts.push(
                addr.trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_lowercase(),
            );
        } else if l.starts_with("Received: ") {
            in_received = true;
        } else if !l.starts_with("X-") {
            return None;
        }
        offset += line.len();
    }
    if !in_received || offset >= bytes.len() || !text.ends_with('\n') {
        return None;
    }
    let raw = bytes[offset..].to_vec();
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let msg = parse_eml(&file, &raw);
    Some(Delivery {
        file,
        mail_from: mail_from?,
        rcpts,
        raw,
        msg,
    })
}

/// A running smtp-sink; killed when dropped.
pub struct Sink {
    child: Child,
    pub port: u16,
}

impl Sink {
    /// A sink on a free port that dumps into `dump`, with extra fault options (`-r rcpt`…).
    pub fn start(dump: &DumpDir, faults: &[&str]) -> Sink {
        for _ in 0..10 {
            if let Some(s) = Sink::try_start(free_port(), dump, faults) {
                return s;
            }
        }
        panic!("smtp-sink did not start on any free port");
    }

    /// A sink on this port (say, to replace one that is going away).
    pub fn start_on(port: u16, dump: &DumpDir, faults: &[&str]) -> Sink {
        let started = Instant::now();
        loop {
            if let Some(s) = Sink::try_start(port, dump, faults) {
                return s;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "smtp-sink cannot listen on port {port} again"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn try_start(port: u16, dump: &DumpDir, faults: &[&str]) -> Option<Sink> {
        let mut cmd = Command::new(smtp_sink_binary());
        if running_as_root() {
            cmd.args(["-u", "nobody"]);
        }
        cmd.args(faults)
            .arg("-d")
            .arg(format!("{}/%M.", dump.path().display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("100")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run smtp-sink ({e}): run tests/setup.sh to install it")
        });
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if let Some(status) = child.try_wait().unwrap() {
                // Most likely the port was taken in the meantime: the caller tries again.
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                eprintln!("smtp-sink on port {port} exited ({status}): {err}");
                return None;
            }
            // Another sink (of a test running in parallel, here or in another process)
            // may hold the port and greet in our sink's place: only a listener that our
            // child owns counts.
            if !listens(child.id(), port) {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                // It greets: it is our sink and it is serving.
                use std::io::Read;
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut buf = [0u8; 3];
                let mut s = s;
                if s.read_exact(&mut buf).is_ok() && &buf == b"220" {
                    return Some(Sink { child, port });
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Kills it now (it holds no state beyond the dump files, which are complete for every
    /// message it acknowledged).
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether process `pid` holds a socket listening on 127.0.0.1:`port` (from /proc: the
/// listener's inode in /proc/net/tcp among the process's open files).
fn listens(pid: u32, port: u16) -> bool {
    let Ok(tcp) = fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    // local_address is `0100007F:PORT` in hex; state 0A is LISTEN; the inode is field 9.
    let local = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = tcp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A"))
                .then(|| f.get(9).map(|i| format!("socket:[{i}]")))
                .flatten()
        })
        .collect();
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .filter_map(|e| fs::read_link(e.path()).ok())
        .any(|link| inodes.iter().any(|i| link.as_os_str() == i.as_str()))
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.kill();
    }
}
