//! Usage and bad input (DESIGN §5): a mistyped state is refused, never started over; bad
//! arguments exit 2 with one clear line that does not echo an address; a campaign given by
//! a bare file name loads as `./name` does; no terminal is an error, not a panic.

use std::fs;
use std::path::Path;

use assert_cmd::Command;

use crate::util::*;

/// `tact --now NOW` with no state flag and nothing of the user's environment: the test
/// says where the state is (`--state` or `TACT_HOME`).
fn bare(cwd: &Path) -> Command {
    let mut cmd = Command::cargo_bin("tact").unwrap();
    cmd.current_dir(cwd)
        .env("NO_COLOR", "1")
        .env_remove("TACT_HOME")
        .env_remove("TACT_SMTP_URL")
        .env_remove("TACT_SMTP_PASSWORD")
        .env_remove("TACT_DATABASE_URL")
        .env_remove("PGPASSWORD")
        .env("HOME", cwd.join("no-home"))
        .env_remove("XDG_DATA_HOME")
        .args(["--now", NOW]);
    cmd
}

/// An address of the sample audience (the test reads the CSV itself).
fn someone(t: &Tree) -> String {
    customers(&t.path("sample-data/customers.csv"))
        .iter()
        .map(Customer::email)
        .find(|e| e.contains('@'))
        .unwrap()
}

/// Every command that only works on existing state, with arguments that are otherwise
/// good, so that the missing state is the only thing wrong.
fn state_commands(t: &Tree, email: &str) -> Vec<Vec<String>> {
    let csv = t.path("sample-data/customers.csv").display().to_string();
    let campaign = t.campaign("winter-sale").display().to_string();
    let list = t.path("optouts.txt");
    fs::write(&list, format!("{email}\n")).unwrap();
    let list = list.display().to_string();
    let folder = t.path("sample-data/campaigns").display().to_string();
    // The unsubscribe server runs on an exported key; its store is the missing state.
    let key = t.path("unsubscribe.key");
    run_expect(
        bare(t.root())
            .arg("--state")
            .arg(t.path("elsewhere"))
            .args(["init", "--unsubscribe-key"])
            .arg(&key),
        0,
    );
    let key = key.display().to_string();
    let token = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    [
        vec!["suppress", "add", email],
        vec!["suppress", "check", email],
        vec!["suppress", "import", &list],
        vec!["suppress", "token", token],
        vec!["forget", email, "--audience", &csv],
        vec!["export", email, "--audience", &csv],
        vec!["audit"],
        vec!["audit", "--verify"],
        vec!["audit", "winter-sale", "--json"],
        vec!["purge", "--older-than", "30"],
        vec![
            "unsubscribe-server",
            "--listen",
            "127.0.0.1:0",
            "--key",
            &key,
        ],
        vec!["send", &campaign, "--dry-run"],
        vec!["run-due", &folder],
    ]
    .iter()
    .map(|a| a.iter().map(|s| s.to_string()).collect())
    .collect()
}

fn assert_refused(r: &Run, typo: &Path, what: &str) {
    assert_eq!(
        r.code,
        2,
        "{what}: exit {} (wanted 2)\n{}",
        r.code,
        r.all_output()
    );
    let want = format!(
        "no state at {}: run `tact init` or point TACT_HOME at your existing state",
        typo.display()
    );
    assert!(
        r.stderr.contains(&want),
        "{what}: no `{want}` in\n{}",
        r.stderr
    );
    assert!(
        !typo.exists(),
        "{what}: a state directory was made at {}",
        typo.display()
    );
}

#[test]
fn a_mistyped_state_is_refused_by_every_command_that_needs_one_and_nothing_is_created() {
    let t = Tree::new();
    let email = someone(&t);
    let csv_before = t.read("sample-data/customers.csv");
    for args in state_commands(&t, &email) {
        let what = args.join(" ");
        let typo = t.path("typo-flag");
        let r = run(bare(t.root()).arg("--state").arg(&typo).args(&args));
        assert_refused(&r, &typo, &format!("--state … {what}"));

        let typo = t.path("typo-env");
        let r = run(bare(t.root()).env("TACT_HOME", &typo).args(&args));
        assert_refused(&r, &typo, &format!("TACT_HOME=… {what}"));
        // `forget` reads the audience first: a refusal must still leave it untouched.
        assert_eq!(t.read("sample-data/customers.csv"), csv_before, "{what}");
        assert!(
            !r.all_output().contains(&email),
            "{what} echoed the address:\n{}",
            r.all_output()
        );
    }
}

#[test]
fn a_database_url_with_a_mistyped_key_directory_is_refused_before_connecting() {
    // Nothing listens on port 1: a command that got as far as the database would fail
    // with exit 1 and a connection error, not the refusal.
    let t = Tree::new();
    let typo = t.path("typo-home");
    for args in [
        &["suppress", "add", "ann@example.com"][..],
        &["suppress", "check", "ann@example.com"],
        &["purge", "--older-than", "30"],
        &["audit", "--verify"],
    ] {
        let r = run(bare(t.root())
            .env("TACT_HOME", &typo)
            .args(["--state", "postgres://tact@127.0.0.1:1/tact"])
            .args(args));
        assert_refused(&r, &typo, &args.join(" "));
    }
}

#[test]
fn only_init_check_and_preview_make_state_and_then_suppress_reaches_it() {
    let t = Tree::new();
    let state = t.state();
    run_expect(t.tact().args(["suppress", "add", "ann@example.com"]), 2);
    assert!(!state.exists());
    run_expect(t.tact().arg("init"), 0);
    run_expect(t.tact().args(["suppress", "add", "ann@example.com"]), 0);
    let r = run_expect(t.tact().args(["suppress", "check", "ANN@example.com "]), 0);
    assert!(r.stdout.contains("suppressed: manual"), "{}", r.stdout);
    for (cmd, name) in [("check", "fresh-check"), ("preview", "fresh-preview")] {
        let dir = t.path(name);
        let mut c = bare(t.root());
        c.arg("--state")
            .arg(&dir)
            .arg(cmd)
            .arg(t.campaign("winter-sale"));
        if cmd == "preview" {
            c.arg("--out").arg(t.path("out"));
        }
        run_expect(&mut c, 0);
        assert!(dir.join("master.key").exists(), "{cmd} made no state");
    }
}

// ---------------------------------------------------------------------------------------
// Bad input exits 2
// ---------------------------------------------------------------------------------------

#[test]
fn an_argument_that_is_not_an_address_exits_2_without_echoing_it() {
    let t = Tree::new();
    run_expect(t.tact().arg("init"), 0);
    for args in [
        &["suppress", "add", "notanemail-canary"][..],
        &["suppress", "add", "ann@example.com", "notanemail-canary"],
        &["suppress", "check", "notanemail-canary"],
    ] {
        let r = run_expect(t.tact().args(args), 2);
        assert!(
            r.stderr.contains("is not an email address"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(!r.all_output().contains("canary"), "{}", r.all_output());
    }
    // send --test takes addresses too; nothing is built or sent for a bad one (nothing
    // listens on port 1, so getting that far would fail differently).
    let r = run_expect(
        t.tact()
            .arg("send")
            .arg(t.campaign("winter-sale"))
            .args(["--smtp", "smtp://127.0.0.1:1", "--test", "me@example.com"])
            .arg("notanemail-canary"),
        2,
    );
    assert!(
        r.stderr
            .contains("argument 2 of --test is not an email address"),
        "{}",
        r.stderr
    );
    assert!(!r.all_output().contains("canary"), "{}", r.all_output());
    // Nothing was suppressed by the mixed call: one bad argument changes nothing.
    let r = run_expect(t.tact().args(["suppress", "check", "ann@example.com"]), 6);
    assert!(r.stdout.contains("not suppressed"), "{}", r.stdout);
}

#[test]
fn forget_and_export_of_something_that_is_not_an_address_exit_2_and_change_nothing() {
    let t = Tree::new();
    run_expect(t.tact().arg("init"), 0);
    let csv = t.path("sample-data/customers.csv");
    let before = t.read("sample-data/customers.csv");
    for cmd in ["forget", "export"] {
        let r = run_expect(
            t.tact()
                .args([cmd, "notanemail-canary", "--audience"])
                .arg(&csv),
            2,
        );
        assert!(
            r.stderr.contains(&format!(
                "the address given to `{cmd}` is not an email address"
            )),
            "{}",
            r.stderr
        );
        assert!(!r.all_output().contains("canary"), "{}", r.all_output());
        assert!(r.stdout.is_empty(), "{}", r.stdout);
    }
    assert_eq!(t.read("sample-data/customers.csv"), before);
    // Nothing was erased, so nothing went into the audit log either.
    let r = run_expect(t.tact().arg("audit"), 0);
    assert!(!r.stdout.contains("forget"), "{}", r.stdout);
}

#[test]
fn preview_recipient_not_in_the_file_exits_2_without_echoing_the_address() {
    let t = Tree::new();
    let r = run_expect(
        t.tact()
            .arg("preview")
            .arg(t.campaign("winter-sale"))
            .args(["--recipient", "nobody-canary@nowhere.example"]),
        2,
    );
    assert!(
        r.stderr.contains(&format!(
            "the address given to --recipient is not in {}",
            t.path("sample-data/customers.csv").display()
        )),
        "{}",
        r.stderr
    );
    assert!(!r.all_output().contains("canary"), "{}", r.all_output());
    assert!(r.stdout.is_empty(), "{}", r.stdout);
}

#[test]
fn run_due_on_a_missing_folder_exits_2() {
    let t = Tree::new();
    run_expect(t.tact().arg("init"), 0);
    let r = run_expect(t.tact().arg("run-due").arg(t.path("no-such-folder")), 2);
    assert!(r.stderr.contains("no-such-folder"), "{}", r.stderr);
}

#[test]
fn run_due_reports_a_campaign_that_could_not_start_as_failed_not_sent() {
    let t = Tree::new();
    run_expect(t.tact().arg("init"), 0);
    // Due, but with no relay anywhere: send refuses to start (exit 2).
    let text = t.read("sample-data/campaigns/winter-sale.toml").replacen(
        "# send_at = \"2026-12-01T09:00:00+00:00\"",
        "send_at = \"2026-11-23T09:00:00+00:00\"",
        1,
    );
    t.write(
        "due/winter-sale.toml",
        &text.replace("\"../", "\"../sample-data/"),
    );
    t.edit("due/winter-sale.toml", |s| {
        s.replace("\"../sample-data/../templates\"", "\"../templates\"")
    });
    // And a file that is not a campaign at all.
    t.write("due/broken.toml", "name = \"broken\"\nthis is not toml\n");
    let r = run_expect(t.tact().arg("run-due").arg(t.path("due")), 2);
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("winter-sale:"))
        .unwrap_or_else(|| panic!("no line for winter-sale in\n{}", r.stdout));
    assert!(
        line == "winter-sale: FAILED: did not start (exit 2)",
        "{line}\n{}",
        r.all_output()
    );
    let broken = r
        .stdout
        .lines()
        .find(|l| l.starts_with("broken:"))
        .unwrap_or_else(|| panic!("no line for broken in\n{}", r.stdout));
    assert!(broken.contains("FAILED"), "{broken}");
}

// ---------------------------------------------------------------------------------------
// A campaign named by a bare file name
// ---------------------------------------------------------------------------------------

#[test]
fn a_campaign_given_by_a_bare_file_name_loads_like_dot_slash_name() {
    let t = Tree::new();
    run_expect(t.tact().arg("init"), 0);
    // Beside the audience, no `templates` key: the templates folder is found upward.
    let text = t
        .read("sample-data/campaigns/winter-sale.toml")
        .replace("\"../customers.csv\"", "\"customers.csv\"")
        .replace("\"../customers.schema.toml\"", "\"customers.schema.toml\"")
        .replace("templates = \"../../templates\"\n", "");
    assert!(!text.contains("templates ="), "{text}");
    t.write("sample-data/set.toml", &text);
    let cwd = t.path("sample-data");
    let state = t.state();
    let json = |name: &str| {
        let mut c = bare(&cwd);
        c.arg("--state")
            .arg(&state)
            .args(["check", "--json"])
            .arg(name);
        let (r, v) = check_json(&mut c);
        assert_eq!(r.code, 0, "check {name}:\n{}", r.all_output());
        v
    };
    let bare_name = json("set.toml");
    let dotted = json("./set.toml");
    assert_eq!(bare_name["audience"], dotted["audience"]);
    assert!(bare_name["audience"]["rows"].as_u64().unwrap() > 200);
    // The other commands take the same path.
    let mut c = bare(&cwd);
    c.arg("--state")
        .arg(&state)
        .args(["preview", "set.toml", "--limit", "3"]);
    let r = run_expect(&mut c, 0);
    assert!(r.stdout.contains("wrote 3 message(s)"), "{}", r.stdout);
    let mut c = bare(&cwd);
    c.arg("--state")
        .arg(&state)
        .args(["send", "set.toml", "--dry-run"]);
    run_expect(&mut c, 0);

    // Explicit relative paths against a bare name: `templates = "../templates"` from
    // inside sample-data, and the same campaign run from its own folder.
    t.write(
        "sample-data/set2.toml",
        &text.replacen("[policy]", "templates = \"../templates\"\n[policy]", 1),
    );
    json("set2.toml");
}

// ---------------------------------------------------------------------------------------
// No terminal
// ---------------------------------------------------------------------------------------

#[test]
fn the_composer_without_a_terminal_says_so_and_exits_2() {
    let t = Tree::new();
    for args in [
        vec![],
        vec![t.campaign("winter-sale").display().to_string()],
    ] {
        // assert_cmd gives the child a null stdin and piped stdout and stderr.
        let r = run(t.tact().args(&args));
        assert_eq!(r.code, 2, "{args:?}: exit {}\n{}", r.code, r.all_output());
        assert!(
            r.stderr
                .contains("the composer needs a terminal; use check, preview or send"),
            "{}",
            r.stderr
        );
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        assert!(!t.state().exists(), "the refusal made a state directory");
    }
}

// ---------------------------------------------------------------------------------------
// check says what send would refuse about its set-up
// ---------------------------------------------------------------------------------------

/// `winter-sale` with `extra` appended (tables: `[dkim]`, `[[send.relay]]`), as `name`.
fn with_setup(t: &Tree, name: &str, extra: &str) -> std::path::PathBuf {
    let text = t.read("sample-data/campaigns/winter-sale.toml").replacen(
        "name = \"winter-sale\"",
        &format!("name = \"{name}\""),
        1,
    );
    t.write(
        &format!("sample-data/campaigns/{name}.toml"),
        &format!("{text}\n{extra}\n"),
    );
    t.campaign(name)
}

/// A real RSA key (PKCS#1, which send has always taken) with this mode.
fn dkim_key(t: &Tree, file: &str, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = t.path(file);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&path)
        .arg("1024")
        .output()
        .expect("openssl is needed for this test (apt-get install openssl)");
    assert!(out.status.success(), "{out:?}");
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn dkim_table(key: &Path) -> String {
    format!(
        "[dkim]\ndomain = \"northwind.example\"\nselector = \"s1\"\nprivate_key = \"{}\"\n",
        key.display()
    )
}

fn relay_table(name: &str, url: &str, extra: &str) -> String {
    format!("[[send.relay]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}")
}

/// `check --json` of `campaign` with `envs` set: the exit code, the JSON and the
/// `send-setup` messages.
fn setup_check(t: &Tree, campaign: &Path, envs: &[(&str, &str)]) -> (Run, Vec<String>) {
    let mut c = t.tact();
    c.arg("check").arg(campaign).arg("--json");
    for (k, v) in envs {
        c.env(k, v);
    }
    let (r, v) = check_json(&mut c);
    let setup: Vec<String> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "send-setup")
        .map(|f| {
            assert_eq!(f["level"], "block", "{f}");
            f["message"].as_str().unwrap().to_string()
        })
        .collect();
    if !setup.is_empty() {
        assert_eq!(v["verdict"], "block", "{v}");
        assert_eq!(r.code, 4, "{}", r.all_output());
    }
    (r, setup)
}

#[test]
fn check_blocks_on_a_dkim_key_or_relay_that_send_would_refuse() {
    let t = Tree::new();
    run_expect(t.tact().arg("init"), 0);
    let open = dkim_key(&t, "keys/open.pem", 0o644);
    let good = dkim_key(&t, "keys/good.pem", 0o600);
    let junk = t.path("keys/junk.pem");
    fs::write(
        &junk,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    fs::set_permissions(&junk, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let missing = t.path("keys/missing.pem");
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "dkim-open",
            dkim_table(&open),
            vec!["[dkim] private_key", "open.pem", "readable by others"],
        ),
        (
            "dkim-missing",
            dkim_table(&missing),
            vec!["[dkim] private_key", "missing.pem"],
        ),
        (
            "dkim-junk",
            dkim_table(&junk),
            vec!["[dkim] private_key", "junk.pem"],
        ),
        (
            "relay-scheme",
            relay_table("first", "ftp://relay.example", ""),
            vec!["[[send.relay]]", "scheme"],
        ),
        (
            "relay-unknown-host",
            relay_table("nowhere", "smtp://no-such-host.invalid:587", ""),
            vec!["relay `nowhere`", "resolve"],
        ),
        (
            "relay-password-in-url",
            relay_table("leaky", "smtp://mailer:hunter2-canary@127.0.0.1:2525", ""),
            vec!["[[send.relay]]", "TACT_SMTP_PASSWORD"],
        ),
    ];
    for (name, extra, want) in &cases {
        let campaign = with_setup(&t, name, extra);
        let (r, setup) = setup_check(&t, &campaign, &[]);
        assert_eq!(setup.len(), 1, "{name}: {setup:?}\n{}", r.all_output());
        for w in want {
            assert!(setup[0].contains(w), "{name}: no `{w}` in {:?}", setup[0]);
        }
        assert!(!r.all_output().contains("canary"), "{}", r.all_output());
        // The human report says it too, and says what to do.
        let h = run_expect(t.tact().arg("check").arg(&campaign), 4);
        assert!(h.stdout.contains("send-setup"), "{name}:\n{}", h.stdout);
        assert!(h.stdout.contains("BLOCK"), "{name}:\n{}", h.stdout);
    }
    // Both problems at once are both named.
    let both = with_setup(
        &t,
        "two-problems",
        &format!(
            "{}{}",
            dkim_table(&open),
            relay_table("nowhere", "smtp://no-such-host.invalid", "")
        ),
    );
    let (_, setup) = setup_check(&t, &both, &[]);
    assert_eq!(setup.len(), 2, "{setup:?}");

    // What send uses is what check looks at: TACT_SMTP_URL replaces [[send.relay]], as it
    // does for send, and a good set-up has no finding.
    let bad_relays = with_setup(
        &t,
        "env-url-wins",
        &format!(
            "{}{}",
            dkim_table(&good),
            relay_table("first", "ftp://relay.example", "")
        ),
    );
    let (r, setup) = setup_check(
        &t,
        &bad_relays,
        &[("TACT_SMTP_URL", "smtp://127.0.0.1:2525")],
    );
    assert!(setup.is_empty(), "{setup:?}");
    assert_eq!(r.code, 0, "{}", r.all_output());
    let (_, setup) = setup_check(
        &t,
        &bad_relays,
        &[("TACT_SMTP_URL", "smtp://no-such-host.invalid:2525")],
    );
    assert_eq!(setup.len(), 1, "{setup:?}");
    assert!(
        setup[0].starts_with("relay `TACT_SMTP_URL`") || setup[0].contains("TACT_SMTP_URL"),
        "{setup:?}"
    );
    let clean = with_setup(
        &t,
        "clean-setup",
        &format!(
            "{}{}",
            dkim_table(&good),
            relay_table("local", "smtp://127.0.0.1:2525", "")
        ),
    );
    let (r, setup) = setup_check(&t, &clean, &[]);
    assert!(setup.is_empty(), "{setup:?}");
    assert_eq!(r.code, 0, "{}", r.all_output());

    // And send refuses what check blocked: the same function said it.
    let r = run(t
        .tact()
        .args(["send", "--dry-run"])
        .arg(t.campaign("dkim-open")));
    assert_eq!(r.code, 2, "{}", r.all_output());
    assert!(r.stderr.contains("readable by others"), "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------
// A database URL that names the wrong database
// ---------------------------------------------------------------------------------------

/// A host whose store is the database at `url` (password in PGPASSWORD).
fn pg_host(state: &Path, url: &str) -> Command {
    let mut cmd = bare(&repo());
    // A server that should have been refused would otherwise listen until killed.
    cmd.env("PGPASSWORD", crate::store::server::PASSWORD)
        .env("TACT_DATABASE_URL", url)
        .timeout(std::time::Duration::from_secs(60))
        .arg("--state")
        .arg(state);
    cmd
}

#[test]
fn a_database_that_tact_init_never_set_up_is_refused_and_gets_nothing() {
    let Some(server) = crate::store::server::PgServer::start() else {
        return;
    };
    let real = server.new_database();
    // Exists (say, a typo naming another database), but was never set up by `tact init`.
    let typo = server.new_database();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let key = tmp.path().join("unsubscribe.key");
    run_expect(
        pg_host(&state, &real)
            .args(["init", "--unsubscribe-key"])
            .arg(&key),
        0,
    );
    run_expect(
        pg_host(&state, &real).args(["suppress", "add", "ann@example.com"]),
        0,
    );
    let campaign = sample_campaign("winter-sale").display().to_string();
    let csv = sample_csv().display().to_string();
    let key = key.display().to_string();
    for args in [
        vec![
            "unsubscribe-server",
            "--listen",
            "127.0.0.1:0",
            "--key",
            &key,
        ],
        vec!["suppress", "add", "bob@example.com"],
        vec!["suppress", "check", "ann@example.com"],
        vec!["forget", "bob@example.com", "--audience", &csv],
        vec!["export", "ann@example.com", "--audience", &csv],
        vec!["audit"],
        vec!["purge", "--older-than", "30"],
        vec!["check", &campaign],
        vec!["send", &campaign, "--dry-run"],
    ] {
        let r = run(pg_host(&state, &typo).args(&args));
        assert_eq!(r.code, 2, "{args:?}: {}", r.all_output());
        assert!(
            r.stderr.contains("no tact store in postgres://")
                && r.stderr.contains("run `tact init` with it"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(
            !r.all_output().contains(crate::store::server::PASSWORD),
            "{}",
            r.all_output()
        );
    }
    // The refused `suppress add` landed nowhere: neither in the real store nor, once it is
    // set up, in the other one; the real store still has its opt-out.
    let r = run_expect(
        pg_host(&state, &real).args(["suppress", "check", "ann@example.com"]),
        0,
    );
    assert!(r.stdout.contains("suppressed: manual"), "{}", r.stdout);
    run_expect(
        pg_host(&state, &real).args(["suppress", "check", "bob@example.com"]),
        6,
    );
    run_expect(pg_host(&state, &typo).arg("init"), 0);
    run_expect(
        pg_host(&state, &typo).args(["suppress", "check", "bob@example.com"]),
        6,
    );
}
#[test]
fn check_names_a_relay_user_whose_password_is_not_set() {
    let t = Tree::new();
    run_expect(t.tact().arg("init"), 0);
    let named = with_setup(
        &t,
        "relay-no-password",
        &relay_table(
            "ses",
            "smtp://mailer@127.0.0.1:2525",
            "password_env = \"TACT_TEST_SES_PASSWORD\"\n",
        ),
    );
    let (r, setup) = setup_check(&t, &named, &[]);
    assert_eq!(setup.len(), 1, "{setup:?}\n{}", r.all_output());
    assert!(setup[0].contains("TACT_TEST_SES_PASSWORD"), "{setup:?}");
    // Set, it is fine; its value is never shown.
    let (r, setup) = setup_check(&t, &named, &[("TACT_TEST_SES_PASSWORD", "pw-canary")]);
    assert!(setup.is_empty(), "{setup:?}");
    assert!(!r.all_output().contains("pw-canary"));

    // The URL send would take from the environment, with a user and no password.
    let plain = t.campaign("winter-sale");
    let (_, setup) = setup_check(
        &t,
        &plain,
        &[("TACT_SMTP_URL", "smtp://mailer@127.0.0.1:2525")],
    );
    assert_eq!(setup.len(), 1, "{setup:?}");
    assert!(setup[0].contains("TACT_SMTP_PASSWORD"), "{setup:?}");
}

/// `tact completions bash`, loaded into a real bash and asked what `tact ch<TAB>` and
/// `tact send --dr<TAB>` complete to, as a person's shell would.
#[test]
fn bash_completion_completes_commands_and_flags_in_a_real_bash() {
    let script = Command::cargo_bin("tact")
        .unwrap()
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(script.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tact.bash");
    fs::write(&path, &script.stdout).unwrap();
    let complete = |line: &str| -> Vec<String> {
        let words: Vec<&str> = line.split(' ').collect();
        let probe = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT={}; _tact tact '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            path.display(),
            words
                .iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" "),
            words.len() - 1,
            line.len(),
            words[words.len() - 1],
            words[words.len().saturating_sub(2)],
        );
        // As bash calls a completion function: the command, the word, the word before.
        let out = std::process::Command::new("bash")
            .args(["--norc", "-c", &probe])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(complete("tact ch"), ["check"]);
    assert_eq!(complete("tact send --dr"), ["--dry-run"]);
    let commands = complete("tact ");
    for c in [
        "init",
        "check",
        "preview",
        "send",
        "run-due",
        "suppress",
        "completions",
        "man",
    ] {
        assert!(
            commands.iter().any(|x| x == c),
            "{c} missing from {commands:?}"
        );
    }
}

/// The other shells' scripts: each names every command, and zsh/fish ones parse where the
/// shell is installed.
#[test]
fn completions_for_every_shell_name_every_command() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = Command::cargo_bin("tact")
            .unwrap()
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        for c in ["run-due", "unsubscribe-server", "suppress", "completions"] {
            assert!(text.contains(c), "{shell}: {c} missing");
        }
    }
    Command::cargo_bin("tact")
        .unwrap()
        .args(["completions", "tcsh"])
        .assert()
        .code(2);
}

/// `tact man`: one roff page naming every command; `--dir` writes a page per command
/// (`tact-send.1` documents `--dry-run`), and a closed pipe is not an error.
#[test]
fn man_pages_cover_every_command_and_its_flags() {
    let out = Command::cargo_bin("tact")
        .unwrap()
        .arg("man")
        .output()
        .unwrap();
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH tact 1"), "{page}");
    for c in [
        "check",
        "preview",
        "send",
        "run\\-due",
        "suppress",
        "forget",
        "export",
        "audit",
    ] {
        assert!(page.contains(c), "{c} missing from tact.1");
    }
    let dir = tempfile::tempdir().unwrap();
    Command::cargo_bin("tact")
        .unwrap()
        .args(["man", "--dir"])
        .arg(dir.path())
        .assert()
        .success();
    let send = fs::read_to_string(dir.path().join("tact-send.1")).unwrap();
    assert!(send.contains("\\-\\-dry\\-run"), "{send}");
    assert!(dir.path().join("tact-suppress-check.1").exists());
    assert!(!dir.path().join("tact-help.1").exists());
}

/// `tact --version` names the commit the binary was built from.
#[test]
fn version_names_the_commit_it_was_built_from() {
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let out = Command::cargo_bin("tact")
        .unwrap()
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.starts_with(concat!("tact ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    if head.status.success() {
        let head = String::from_utf8_lossy(&head.stdout);
        assert!(
            version.contains(&format!("({}", head.trim())),
            "{version} does not name HEAD {head}"
        );
    }
}
