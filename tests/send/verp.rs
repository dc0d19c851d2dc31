//! VERP (issue 13, items 1 and 7): with `[bounces] address`, every message's envelope
//! sender and Return-Path are `local+TOKEN@domain`, the token opening, with the state's key
//! and ledger, to exactly that campaign and recipient; a test message's token names nobody;
//! preview shows what send sends; the sendmail transport passes it with `-f`; Feedback-ID
//! goes out on every message.

use std::collections::BTreeMap;
use std::path::Path;

use tact::state::Keys;
use tact::state::ledger::Ledger;
use tact::state::verp::{Attributed, MAX_LOCAL_PART, TOKEN_LEN};

use super::sink::{Delivery, DumpDir, Sink};
use super::*;

const BOUNCES: &str = "bounces@northwind.example";

fn keys(state: &Path) -> Keys {
    let hex = fs::read_to_string(state.join("master.key")).unwrap();
    let hex = hex.trim();
    let mut master = [0u8; 32];
    for (i, b) in master.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    Keys::from_master(&master)
}

/// `<bounces+TOKEN@northwind.example>` (and any SMTP parameters after it) → TOKEN, checking
/// the form and the RFC 5321 local-part limit.
fn verp_token(who: &str, angle: &str) -> String {
    let addr = angle
        .split_whitespace()
        .next()
        .unwrap()
        .trim_start_matches('<')
        .trim_end_matches('>');
    let (local, domain) = addr.rsplit_once('@').unwrap();
    assert_eq!(domain, "northwind.example", "{who}: {angle}");
    assert!(local.len() <= MAX_LOCAL_PART, "{who}: local part {local}");
    let token = local
        .strip_prefix("bounces+")
        .unwrap_or_else(|| panic!("{who}: not a VERP address: {angle}"));
    assert_eq!(token.len(), TOKEN_LEN, "{who}: {token}");
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)),
        "{who}: {token}"
    );
    token.to_string()
}

/// A clone of winter-sale named `name`, with a bounce address, narrowed to `people`.
fn verp_campaign(t: &Tree, name: &str, people: &[Customer]) {
    if name != WINTER {
        clone_campaign(t, WINTER, name);
    }
    narrow(t, name, people);
    t.edit(&campaign_rel(name), |s| {
        format!("{s}\n[bounces]\naddress = \"{BOUNCES}\"\n")
    });
    set_send(t, name, &[]);
}

/// Every delivery's MAIL FROM and Return-Path: the same VERP address, its token opening to
/// the campaign and the very recipient it was sent to, and nothing of the address in it.
/// (An MTA that relays the message drops the Return-Path header, as RFC 5321 4.4 has it:
/// only the final delivery adds one; `relayed` says so.)
fn assert_attributed(
    t: &Tree,
    campaign: &str,
    got: &[Delivery],
    relayed: bool,
) -> BTreeMap<String, String> {
    let keys = keys(&t.state());
    let ledger = Ledger::open(&t.state(), false).unwrap();
    let mut tokens = BTreeMap::new();
    for d in got {
        let token = verp_token(&d.file, &d.mail_from);
        let header = if relayed {
            String::new()
        } else {
            format!("<bounces+{token}@northwind.example>")
        };
        assert_eq!(
            d.msg.return_path, header,
            "{}: Return-Path differs from MAIL FROM",
            d.file
        );
        assert_eq!(
            keys.attribute_bounce(&*ledger, &token).unwrap(),
            Attributed::Recipient {
                campaign: campaign.to_string(),
                hash: keys.recipient_hash(d.rcpt()),
            },
            "{}",
            d.file
        );
        let local = d.rcpt().split('@').next().unwrap().to_ascii_lowercase();
        for piece in local.split(|c: char| !c.is_ascii_alphanumeric()) {
            assert!(
                piece.len() < 4 || !token.contains(piece),
                "{}: {piece} in {token}",
                d.file
            );
        }
        assert!(
            tokens.insert(d.rcpt().to_string(), token).is_none(),
            "{}: twice",
            d.file
        );
    }
    let distinct: BTreeSet<&String> = tokens.values().collect();
    assert_eq!(distinct.len(), tokens.len(), "one token per recipient");
    tokens
}

#[test]
fn each_message_goes_out_from_its_own_verp_address_which_names_campaign_and_recipient() {
    let t = tree();
    let people = pick(&t, 2, 2);
    // A name far longer than a local part: the token still fits and still attributes.
    let long = format!("winter-{}", "x".repeat(193));
    assert_eq!(long.len(), 200);
    verp_campaign(&t, &long, &people);
    verp_campaign(&t, WINTER, &people);
    let want = emails(&people);

    for name in [WINTER, long.as_str()] {
        let preview = preview_by_address(&t, name);
        let dump = DumpDir::new();
        let sink = Sink::start(&dump, &[]);
        let (r, v) = send_json(&t, name, &sink, 0);
        assert_eq!(n(&v, "summary.sent"), 4, "{}", r.stdout);
        let got = dump.deliveries();
        assert_eq!(delivered_once(&got), want);
        let tokens = assert_attributed(&t, name, &got, false);
        for d in &got {
            // Preview shows the same envelope sender (the token is deterministic).
            assert_eq!(
                preview[d.rcpt()].return_path,
                d.msg.return_path,
                "{name}: preview and send disagree"
            );
            let feedback: Vec<&str> = d
                .msg
                .header_block
                .lines()
                .filter(|l| l.starts_with("Feedback-ID:"))
                .collect();
            assert_eq!(
                feedback,
                [format!(
                    "Feedback-ID: {}:customers:tact:northwind",
                    &name[..name.len().min(64)]
                )
                .as_str()],
                "{}",
                d.file
            );
        }
        // The same people in another campaign get unrelated tokens.
        if name != WINTER {
            let first = t.path("first-tokens");
            let before: BTreeMap<String, String> =
                serde_json::from_str(&fs::read_to_string(&first).unwrap()).unwrap();
            for (who, token) in &tokens {
                assert_ne!(&before[who], token, "{who}");
            }
        } else {
            fs::write(
                t.path("first-tokens"),
                serde_json::to_string(&tokens).unwrap(),
            )
            .unwrap();
        }
    }
}

#[test]
fn without_a_bounce_address_the_envelope_is_the_from_address_and_there_is_no_return_path() {
    let t = tree();
    let people = pick(&t, 1, 1);
    narrow(&t, WINTER, &people);
    set_send(&t, WINTER, &[]);
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    send_json(&t, WINTER, &sink, 0);
    for d in dump.deliveries() {
        assert!(
            d.mail_from.starts_with("<news@northwind.example>"),
            "{}",
            d.mail_from
        );
        assert_eq!(d.msg.return_path, "", "{}", d.file);
        assert!(
            d.msg
                .header_block
                .contains("Feedback-ID: winter-sale:customers:tact:northwind"),
            "{}",
            d.msg.header_block
        );
    }
}

#[test]
fn return_path_alone_is_the_verp_base_too() {
    let t = tree();
    let people = pick(&t, 1, 1);
    narrow(&t, WINTER, &people);
    t.edit(&campaign_rel(WINTER), |s| {
        s.replacen(
            "postal_address",
            &format!("return_path = \"{BOUNCES}\"\npostal_address"),
            1,
        )
    });
    set_send(&t, WINTER, &[]);
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    let (r, _) = send_json(&t, WINTER, &sink, 0);
    let got = dump.deliveries();
    assert_eq!(got.len(), 2, "{}", r.stdout);
    assert_attributed(&t, WINTER, &got, false);
}

/// `send --test` and `--test-as`: the envelope carries an inert token, which attributes a
/// bounce to nobody, even when a real recipient's letter was rendered.
#[test]
fn a_test_messages_bounce_token_names_nobody() {
    let t = tree();
    let people = pick(&t, 1, 1);
    verp_campaign(&t, WINTER, &people);
    t.edit(&campaign_rel(WINTER), |s| {
        s.replacen(
            "[send]\n",
            "[send]\ntest_to = [\"me@northwind.example\"]\n",
            1,
        )
    });
    let dump = DumpDir::new();
    let sink = Sink::start(&dump, &[]);
    run_expect(
        send_cmd(&t, WINTER, &sink.url())
            .arg("--test")
            .arg("me@northwind.example"),
        0,
    );
    run_expect(
        send_cmd(&t, WINTER, &sink.url())
            .arg("--test")
            .arg("me@northwind.example")
            .arg("--test-as")
            .arg(people[0].email()),
        0,
    );
    let got = dump.deliveries();
    assert!(got.len() >= 3, "{} test messages", got.len());
    let keys = keys(&t.state());
    let ledger = Ledger::open(&t.state(), false).unwrap();
    for d in &got {
        let token = verp_token(&d.file, &d.mail_from);
        assert_eq!(
            d.msg.return_path,
            format!("<bounces+{token}@northwind.example>")
        );
        assert_eq!(
            keys.attribute_bounce(&*ledger, &token).unwrap(),
            Attributed::Test,
            "{}",
            d.file
        );
    }
    // And a real send afterwards gives the picked person their own, different token.
    let real = DumpDir::new();
    let sink = Sink::start(&real, &[]);
    send_json(&t, WINTER, &sink, 0);
    let tokens = assert_attributed(&t, WINTER, &real.deliveries(), false);
    for d in &got {
        let token = verp_token(&d.file, &d.mail_from);
        assert!(!tokens.values().any(|x| *x == token));
    }
}

/// The sendmail transport hands the VERP address to the MTA with `-f`: Postfix relays it
/// as MAIL FROM.
#[test]
fn the_sendmail_transport_passes_the_verp_address() {
    let Some(pf) = super::postfix::Postfix::start() else {
        return;
    };
    let t = tree();
    let people = pick(&t, 1, 2);
    verp_campaign(&t, WINTER, &people);
    let r = run_expect(
        t.tact()
            .arg("send")
            .arg(t.campaign(WINTER))
            .arg("--smtp")
            .arg(pf.target().to_string())
            .arg("--json"),
        0,
    );
    assert_eq!(n(&parse_json(&r), "summary.sent"), 3, "{}", r.stdout);
    let got = pf.drain();
    assert_eq!(delivered_once(&got), emails(&people));
    assert_attributed(&t, WINTER, &got, true);
}
