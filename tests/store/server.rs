//! A throwaway PostgreSQL server on 127.0.0.1 for the store tests: `initdb` into a temp
//! directory, `pg_ctl start` on a free port with password (SCRAM) authentication, one
//! database per test case, `pg_ctl stop` on drop. PostgreSQL refuses to run as root, so
//! as root (CI) it runs as the `postgres` user that Debian's package creates.
//!
//! Without PostgreSQL the tests print a loud SKIP, unless `CI` is set: then they fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::util::free_port;

pub const USER: &str = "tact";
pub const PASSWORD: &str = "store-test-password";

pub struct PgServer {
    // Dropped after `drop` stops the server.
    _tmp: tempfile::TempDir,
    /// With TLS: the CA that signed the server's certificate (for 127.0.0.1 and
    /// localhost), and another CA that did not.
    pub ca: Option<(PathBuf, PathBuf)>,
    data: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    pub port: u16,
    next_db: AtomicUsize,
}

/// The newest `/usr/lib/postgresql/*/bin` with initdb (Debian's layout), else `initdb` on
/// the PATH.
fn find_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
}

fn uid() -> u32 {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("uid")
}

/// uid and gid of the `postgres` user.
fn postgres_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("running as root needs the `postgres` user (Debian's postgresql package makes it)");
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().expect("uid"), f[3].parse().expect("gid"))
}

impl PgServer {
    /// Starts a server, or `None` (after a loud SKIP) when PostgreSQL is not installed and
    /// this is not CI.
    pub fn start() -> Option<PgServer> {
        Self::start_with(false)
    }

    /// A server that accepts TCP connections over TLS only (`hostssl` in pg_hba.conf), with
    /// a certificate from a test CA made by openssl.
    pub fn start_tls() -> Option<PgServer> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Option<PgServer> {
        let Some(bin) = find_bin() else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "CI is set but PostgreSQL is not installed: run tests/setup.sh (it installs Debian's postgresql)"
                );
            }
            eprintln!(
                "\n*** SKIP: PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH); \
                 the PostgreSQL store tests did not run. tests/setup.sh installs it. ***\n"
            );
            return None;
        };
        let as_postgres = uid() == 0;
        let tmp = tempfile::Builder::new()
            .prefix("tact-pg-")
            .tempdir()
            .expect("temp dir");
        let root = tmp.path().to_path_buf();
        let data = root.join("data");
        let sock = root.join("sock");
        let pwfile = root.join("pwfile");
        std::fs::create_dir(&sock).expect("socket dir");
        std::fs::write(&pwfile, format!("{PASSWORD}\n")).expect("pwfile");
        if as_postgres {
            let (u, g) = postgres_user();
            for p in [&root, &sock, &pwfile] {
                std::os::unix::fs::chown(p, Some(u), Some(g)).expect("chown to postgres");
            }
        }
        let mut server = PgServer {
            _tmp: tmp,
            ca: None,
            data,
            bin,
            as_postgres,
            port: 0,
            next_db: AtomicUsize::new(0),
        };
        server.run(
            "initdb",
            &[
                "-D",
                path(&server.data),
                "-U",
                USER,
                "--pwfile",
                path(&pwfile),
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        let mut extra = String::new();
        if tls {
            let certs = crate::util::TestCerts::make(&root);
            server.ca = Some((certs.ca.clone(), certs.other_ca.clone()));
            let (cert, key) = (certs.server_crt, certs.server_key);
            if as_postgres {
                let (u, g) = postgres_user();
                for p in [&cert, &key] {
                    std::os::unix::fs::chown(p, Some(u), Some(g)).expect("chown to postgres");
                }
            }
            extra = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert.display(),
                key.display()
            );
            // Plain TCP is turned away: a connection that works went over TLS.
            std::fs::write(
                root.join("hba"),
                "hostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 0.0.0.0/0 reject\n",
            )
            .expect("hba");
            if as_postgres {
                let (u, g) = postgres_user();
                std::os::unix::fs::chown(root.join("hba"), Some(u), Some(g)).expect("chown");
            }
            extra.push_str(&format!(" -c hba_file={}", root.join("hba").display()));
        }
        // A port taken between the probe and the start: try another.
        for attempt in 0..5 {
            server.port = free_port();
            let opts = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40{extra}",
                server.port,
                sock.display()
            );
            let log = root.join("log");
            let ok = server.try_run(
                "pg_ctl",
                &[
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    path(&server.data),
                    "-l",
                    path(&log),
                    "-o",
                    &opts,
                ],
            );
            if ok && server.wait_ready() {
                return Some(server);
            }
            let _ = server.try_run(
                "pg_ctl",
                &["stop", "-m", "immediate", "-D", path(&server.data)],
            );
            if attempt == 4 {
                panic!(
                    "PostgreSQL did not start:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        }
        unreachable!()
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn try_run(&self, tool: &str, args: &[&str]) -> bool {
        let out = self
            .command(tool)
            .args(args)
            .env("LC_ALL", "C")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        if !out.status.success() {
            eprintln!(
                "{tool} failed: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out.status.success()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        assert!(self.try_run(tool, args), "{tool} failed");
    }

    fn wait_ready(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.admin().is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn admin(&self) -> Result<postgres::Client, String> {
        if self.ca.is_some() {
            // Through tact's own connector: the test client has no TLS of its own.
            let url = format!(
                "{}?sslmode=verify-full&sslrootcert={}",
                self.url("postgres"),
                self.ca_file().display()
            );
            let t = tact::state::postgres::PgTarget::parse(&url, false, Some(PASSWORD.into()))
                .map_err(|e| e.to_string())?;
            return t.client().map_err(|e| e.to_string());
        }
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(USER)
            .password(PASSWORD)
            .dbname("postgres")
            .connect(postgres::NoTls)
            .map_err(|e| e.to_string())
    }

    /// The CA that signed this server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.ca.as_ref().expect("a TLS server").0.clone()
    }

    /// A fresh, empty database; its URL has no password (tests pass it as PGPASSWORD).
    pub fn new_database(&self) -> String {
        let name = format!("t{}", self.next_db.fetch_add(1, Ordering::SeqCst));
        let mut admin = self.admin().expect("admin connection");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        self.url(&name)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Every row of every table of a database, as text (hashes as hex): for "no address
    /// in the store" checks.
    pub fn dump(&self, url: &str) -> String {
        let mut config: postgres::Config = url.parse().expect("test URL");
        let mut c = config
            .password(PASSWORD)
            .connect(postgres::NoTls)
            .expect("connect");
        let tables: Vec<String> = c
            .query(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
                &[],
            )
            .expect("tables")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(tables.len() >= 6, "tables: {tables:?}");
        let mut out = String::new();
        for t in tables {
            for r in c
                .query(&format!("SELECT t::text FROM {t} t"), &[])
                .expect("rows")
            {
                out.push_str(r.get::<_, &str>(0));
                out.push('\n');
            }
        }
        out
    }

    /// Runs SQL on a database as the tests' superuser: for tampering with what the store
    /// wrote, as an attacker with database access would.
    pub fn sql(&self, url: &str, sql: &str) {
        let mut config: postgres::Config = url.parse().expect("test URL");
        let mut c = config
            .password(PASSWORD)
            .connect(postgres::NoTls)
            .expect("connect");
        c.batch_execute(sql).expect("sql");
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.try_run(
            "pg_ctl",
            &["stop", "-m", "immediate", "-w", "-D", path(&self.data)],
        );
    }
}
