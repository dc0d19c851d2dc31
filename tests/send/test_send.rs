//! `tact send --test` (issue 12, item 1): a test renders the synthetic sample person, never
//! a customer; its unsubscribe token is inert at the real endpoint; it goes only to the
//! configured test addresses unless another is confirmed; `--test-as` renders one real
//! recipient of the plan and audits the pick by hash, never by address.
//!
//! The audience is made of canaries: every customer value is unique and greppable, so
//! "no customer data left" is checked on the delivered bytes, not on our own analysis.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use super::sink::{DumpDir, Sink};
use crate::ops::Server;
use crate::util::*;

const ME: &str = "me@shop.example";
const ROWS: usize = 14;

/// A campaign over `ROWS` customers whose every value is a canary (`Cnry…`); rows 0..=2
/// have no personalisation consent, row 3 no marketing consent, the rest both.
struct Canary {
    dir: tempfile::TempDir,
}

impl Canary {
    fn new(send_table: &str) -> Canary {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("templates")).unwrap();
        let mut csv = String::from(
            "email,first_name,last_name,favourite_category,loyalty_tier,last_order_at,\
             total_spent,consent_marketing,consent_personalisation,consent_at\n",
        );
        for i in 0..ROWS {
            csv.push_str(&format!(
                "{},CnryFirst{i},CnryLast{i},CnryCat{i},CnryTier{i},2026-0{}-1{},{}31.{i:02},{},{},2026-10-01\n",
                Canary::email(i),
                i % 9 + 1,
                i % 10,
                900 + i,
                if i == 3 { "no" } else { "yes" },
                if i < 3 { "no" } else { "yes" },
            ));
        }
        fs::write(root.join("people.csv"), csv).unwrap();
        fs::write(
            root.join("people.schema.toml"),
            "[fields]\nfavourite_category = { class = \"declared\" }\n\
             loyalty_tier = { class = \"declared\" }\n",
        )
        .unwrap();
        fs::write(
            root.join("templates/t.txt.tera"),
            "{% if personalised %}Hi {{ first_name }} {{ last_name }}, more {{ favourite_category }} \
             for {{ loyalty_tier }} members (last order {{ last_order_at }}).{% else %}Hello,{% endif %}\n\
             {{ why_you_got_this }}\nUnsubscribe: {{ unsubscribe_url }}\n{{ postal_address }}\n",
        )
        .unwrap();
        fs::write(
            root.join("templates/t.html.tera"),
            "<p>{% if personalised %}Hi {{ first_name }}, {{ favourite_category }}{% else %}Hello{% endif %}</p>\
             <p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a> {{ postal_address }}</p>\n",
        )
        .unwrap();
        fs::write(
            root.join("test.toml"),
            format!(
                "name = \"canary-test\"\naudience = \"people.csv\"\ntemplate = \"t\"\n\
                 subject = \"{{% if personalised %}}{{{{ first_name }}}}, {{% endif %}}news\"\n\
                 from = \"Shop <news@shop.example>\"\n\
                 unsubscribe_url = \"https://shop.example/unsubscribe\"\n\
                 postal_address = \"1 Quay St, Bristol\"\n\
                 [policy]\nmin_segment_size = 1\n{send_table}"
            ),
        )
        .unwrap();
        let c = Canary { dir };
        run_expect(tact(&c.state()).arg("init"), 0);
        c
    }

    fn email(i: usize) -> String {
        format!("cnry.person{i}@customers.example")
    }

    fn campaign(&self) -> PathBuf {
        self.dir.path().join("test.toml")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn send(&self, sink: &Sink) -> assert_cmd::Command {
        let mut c = tact(&self.state());
        c.arg("send")
            .arg(self.campaign())
            .arg("--smtp")
            .arg(sink.url());
        c
    }
}

/// Every byte under `dir`, for "the address is nowhere in the state".
fn all_bytes_under(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for f in files_under(dir) {
        out.extend(fs::read(&f).unwrap_or_default());
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

pub(crate) fn unsubscribe_server(state: &Path) -> (tempfile::TempDir, Server) {
    let keydir = tempfile::tempdir().unwrap();
    let key = keydir.path().join("unsubscribe.key");
    run_expect(
        tact(state).arg("init").arg("--unsubscribe-key").arg(&key),
        0,
    );
    let mut cmd = StdCommand::new(env!("CARGO_BIN_EXE_tact"));
    cmd.env_remove("TACT_HOME")
        .env_remove("TACT_DATABASE_URL")
        .arg("--state")
        .arg(state)
        .arg("--now")
        .arg(NOW)
        .args(["unsubscribe-server", "--listen", "127.0.0.1:0", "--key"])
        .arg(&key);
    (keydir, Server::spawn(cmd))
}

/// The one-click POST a mail client makes (RFC 8058), to the running server.
pub(crate) fn one_click(base: &str, token: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .post(&format!("{base}/unsubscribe?t={token}"))
        .content_type("application/x-www-form-urlencoded")
        .send("List-Unsubscribe=One-Click")
        .unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap())
}

#[test]
fn a_test_send_renders_alex_not_a_customer_and_its_token_unsubscribes_nobody() {
    let c = Canary::new(&format!("[send]\ntest_to = [\"{ME}\"]\n"));
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);

    let r = run_expect(c.send(&sink).arg("--test").arg(ME), 0);
    assert!(r.stdout.contains("sample person"), "{}", r.stdout);
    let got = dump.deliveries();
    assert_eq!(got.len(), 2, "one personalised and one generic");
    for d in &got {
        assert_eq!(d.rcpt(), ME);
        assert!(d.msg.subject.starts_with("[TEST] "), "{}", d.msg.subject);
        // Nothing of any customer: no name, category, tier, date or amount, in any part
        // or header.
        let raw = String::from_utf8_lossy(&d.raw);
        assert!(
            !raw.contains("Cnry"),
            "{}: a canary went out:\n{raw}",
            d.file
        );
        assert!(
            !raw.contains("cnry"),
            "{}: a customer address went out",
            d.file
        );
        for i in 0..ROWS {
            assert!(!raw.contains(&format!("{}31.{i:02}", 900 + i)));
        }
    }
    let personal = got
        .iter()
        .find(|d| d.msg.text.starts_with("Hi "))
        .expect("a personalised test");
    assert!(
        personal
            .msg
            .text
            .starts_with("Hi Alex Taylor, more sample favourite category"),
        "{}",
        personal.msg.text
    );
    assert_eq!(personal.msg.subject, "[TEST] Alex, news");
    assert!(got.iter().any(|d| d.msg.text.starts_with("Hello,")));

    // The test mail's link, clicked, at the real endpoint: a test page, nobody suppressed.
    let (_keydir, server) = unsubscribe_server(&c.state());
    for d in &got {
        let (status, body) = one_click(&server.base, &d.msg.token());
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("This was a test message"), "{body}");
        assert!(body.contains("nobody was unsubscribed"), "{body}");
    }
    let (_, log) = server.interrupt();
    assert!(log.contains("nobody was unsubscribed"), "{log}");
    assert!(!log.contains("unsubscribed one recipient"), "{log}");
    for i in 0..ROWS {
        let r = run_expect(
            tact(&c.state())
                .args(["suppress", "check"])
                .arg(Canary::email(i)),
            6,
        );
        assert!(r.stdout.contains("not suppressed"), "{}", r.stdout);
    }
    // `suppress token` says the same and suppresses nobody.
    let r = run_expect(
        tact(&c.state())
            .args(["suppress", "token"])
            .arg(got[0].msg.token()),
        0,
    );
    assert!(r.stdout.contains("nobody was unsubscribed"), "{}", r.stdout);
    for i in 0..ROWS {
        run_expect(
            tact(&c.state())
                .args(["suppress", "check"])
                .arg(Canary::email(i)),
            6,
        );
    }

    // The real send afterwards still reaches every recipient: the test marked nobody.
    let r = run_expect(&mut c.send(&sink), 0);
    assert!(r.stdout.contains("sent 13"), "{}", r.stdout);
}

#[test]
fn a_test_goes_only_to_configured_addresses_unless_another_is_confirmed() {
    let c = Canary::new("");
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    let other = "colleague@elsewhere.example";

    // Nothing configured, no address: refused.
    let r = run_expect(c.send(&sink).arg("--test"), 2);
    assert!(r.stderr.contains("test_to"), "{}", r.stderr);
    // An address that is not configured: refused, and it is not echoed.
    let r = run_expect(c.send(&sink).arg("--test").arg(other), 2);
    assert!(
        r.stderr.contains("TACT_TEST_TO") && r.stderr.contains("--allow-other-test-address"),
        "{}",
        r.stderr
    );
    assert!(!r.all_output().contains(other), "{}", r.all_output());
    assert_eq!(dump.count(), 0, "a refused test sent mail");

    // TACT_TEST_TO configures it ...
    run_expect(
        c.send(&sink)
            .env("TACT_TEST_TO", format!(" {ME} , other@shop.example"))
            .arg("--test")
            .arg(ME.to_uppercase()),
        0,
    );
    assert_eq!(dump.count(), 2);
    // ... and the flag allows another, explicitly.
    run_expect(
        c.send(&sink)
            .arg("--test")
            .arg(other)
            .arg("--allow-other-test-address"),
        0,
    );
    assert_eq!(dump.count(), 4);
    // No address: the configured ones.
    run_expect(
        c.send(&sink)
            .env("TACT_TEST_TO", format!("{ME},other@shop.example"))
            .arg("--test"),
        0,
    );
    let to: Vec<String> = dump
        .deliveries()
        .iter()
        .map(|d| d.rcpt().to_string())
        .collect();
    let n = |a: &str| to.iter().filter(|x| *x == a).count();
    assert_eq!(
        (n(ME), n("other@shop.example"), to.len()),
        (4, 2, 8),
        "{to:?}"
    );
    assert!(
        dump.deliveries()
            .iter()
            .all(|d| !d.raw.windows(4).any(|w| w == b"Cnry"))
    );
}

#[test]
fn test_as_renders_one_recipient_of_the_plan_and_audits_only_a_hash() {
    let c = Canary::new(&format!("[send]\ntest_to = [\"{ME}\"]\n"));
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    let picked = Canary::email(5);

    let r = run_expect(c.send(&sink).arg("--test").arg("--test-as").arg(&picked), 0);
    assert!(!r.all_output().contains(&picked), "{}", r.all_output());
    let got = dump.deliveries();
    assert_eq!(got.len(), 2);
    assert!(
        got.iter()
            .any(|d| d.msg.text.starts_with("Hi CnryFirst5 CnryLast5")),
        "the picked recipient's render"
    );
    // Their letter, consent date included; only the unsubscribe link is swapped.
    assert!(
        got.iter().all(|d| d.msg.text.contains("on 1 October 2026")),
        "{:?}",
        got.iter().map(|d| &d.msg.text).collect::<Vec<_>>()
    );
    for d in &got {
        assert_eq!(d.rcpt(), ME);
        // Even a picked recipient's test carries the inert token, not theirs.
        let r = run_expect(
            tact(&c.state())
                .args(["suppress", "token"])
                .arg(d.msg.token()),
            0,
        );
        assert!(r.stdout.contains("test message"), "{}", r.stdout);
    }
    run_expect(tact(&c.state()).args(["suppress", "check"]).arg(&picked), 6);

    // The pick is audited: by hash, never by address.
    let audit = run_expect(tact(&c.state()).args(["audit", "--json"]), 0);
    assert!(
        audit.stdout.contains("test-as-recipient"),
        "no audit event for the pick:\n{}",
        audit.stdout
    );
    assert!(!audit.stdout.contains(&picked), "{}", audit.stdout);
    let state = all_bytes_under(&c.state());
    assert!(
        !contains(&state, &picked) && !contains(&state, "cnry.person5"),
        "the picked address is in the state directory"
    );

    // A recipient of the generic variant: their message is the generic one, alone.
    let r = run_expect(
        c.send(&sink)
            .arg("--test")
            .arg("--test-as")
            .arg(Canary::email(0)),
        0,
    );
    assert!(r.stdout.contains("1 message(s) (generic"), "{}", r.stdout);
    assert_eq!(dump.count(), 3);

    // Someone the campaign would not mail cannot be picked: no marketing consent (row 3),
    // suppressed, or not in the audience at all.
    let before = dump.count();
    let r = run_expect(
        c.send(&sink)
            .arg("--test")
            .arg("--test-as")
            .arg(Canary::email(3)),
        2,
    );
    assert!(r.stderr.contains("no_marketing_consent"), "{}", r.stderr);
    assert!(!r.all_output().contains(&Canary::email(3)));
    run_expect(
        tact(&c.state())
            .args(["suppress", "add"])
            .arg(Canary::email(6)),
        0,
    );
    let r = run_expect(
        c.send(&sink)
            .arg("--test")
            .arg("--test-as")
            .arg(Canary::email(6)),
        2,
    );
    assert!(r.stderr.contains("suppressed"), "{}", r.stderr);
    run_expect(
        c.send(&sink)
            .arg("--test")
            .arg("--test-as")
            .arg("nobody@customers.example"),
        2,
    );
    assert_eq!(dump.count(), before, "a refused pick sent mail");
}
