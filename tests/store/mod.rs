//! The ledger's two stores, SQLite and PostgreSQL, pass one suite (`suite.rs`); then the
//! commands against a shared database (`cli.rs`).

mod bounces;
mod cli;
pub mod server;
mod suite;

use server::PgServer;
use suite::{Backend, CASES, Pg, Sqlite};

fn run_suite<'a>(name: &str, fresh: &dyn Fn() -> Box<dyn Backend + 'a>) {
    for (case, f) in CASES.iter().chain(bounces::CASES) {
        eprintln!("{name}: {case}");
        f(&*fresh());
    }
}

#[test]
fn the_sqlite_store_passes_the_store_suite() {
    run_suite("sqlite", &|| Box::new(Sqlite::new()));
}

#[test]
fn the_postgres_store_passes_the_store_suite() {
    let Some(server) = PgServer::start() else {
        return;
    };
    run_suite("postgres", &|| Box::new(Pg::new(&server)));
    // The sender calls the ledger from async tasks; the postgres client runs its own
    // runtime, which must not start inside another (or be dropped there).
    let b = Pg::new(&server);
    for flavour in ["multi-thread", "current-thread"] {
        let rt = if flavour == "multi-thread" {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap()
        } else {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
        };
        let mut l = b.open();
        let n = rt.block_on(async move {
            let n = tokio::spawn(async move {
                l.enqueue("rt", &[([1; 32], true)], suite_now()).unwrap();
                l.counts("rt").unwrap().pending
            });
            n.await.unwrap()
        });
        assert_eq!(n, 1, "{flavour}");
        rt.block_on(async { drop(b.open()) });
    }
}

#[test]
fn the_sqlite_ledger_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = Sqlite::new();
    s.open().suppress(&[1; 32], "manual", suite_now()).unwrap();
    let mode = std::fs::metadata(s.file()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

fn suite_now() -> chrono::DateTime<chrono::Utc> {
    tact::consent::parse_time("2026-11-23T12:00:00Z").unwrap()
}

/// TLS to the database: verified against the CA named by `sslrootcert`, refused with the
/// wrong CA or none (the Mozilla roots do not know a test CA), and plain TCP never gets in
/// (the server takes TLS only, so a connection that works was encrypted).
#[test]
fn the_postgres_store_talks_tls_and_verifies_the_server() {
    let Some(server) = PgServer::start_tls() else {
        return;
    };
    let url = server.new_database();
    let (ca, other) = server.ca.clone().unwrap();
    let open = |query: &str| {
        let t = tact::state::postgres::PgTarget::parse(
            &format!("{url}?{query}"),
            true,
            Some(server::PASSWORD.into()),
        )
        .unwrap();
        assert!(t.uses_tls() || query.is_empty() || query.contains("disable"));
        tact::state::ledger::Ledger::connect(&t)
    };
    for host_check in ["verify-full", "require"] {
        let l = open(&format!(
            "sslmode={host_check}&sslrootcert={}",
            ca.display()
        ))
        .unwrap();
        assert!(l.suppress(&[1; 32], "manual", suite_now()).unwrap() || host_check == "require");
        drop(l);
    }
    let localhost = url.replace("127.0.0.1", "localhost");
    let t = tact::state::postgres::PgTarget::parse(
        &format!(
            "{localhost}?sslmode=verify-full&sslrootcert={}",
            ca.display()
        ),
        true,
        Some(server::PASSWORD.into()),
    )
    .unwrap();
    assert!(
        tact::state::ledger::Ledger::connect(&t)
            .unwrap()
            .is_suppressed(&[1; 32])
            .unwrap()
    );
    for (query, why) in [
        (
            format!("sslmode=verify-full&sslrootcert={}", other.display()),
            "another CA",
        ),
        ("sslmode=require".to_string(), "no CA that knows the server"),
        (String::new(), "plain TCP (the loopback default)"),
        ("sslmode=disable".to_string(), "plain TCP by name"),
    ] {
        let e = open(&query)
            .err()
            .unwrap_or_else(|| panic!("connected with {why}"));
        eprintln!("refused, {why}: {e}");
        assert!(!e.to_string().contains(server::PASSWORD), "{e}");
    }
}
