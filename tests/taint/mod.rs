//! Hostile templates against `tact check`: every route a customer value can take to the HTML
//! part unescaped must block, named by field; the self-check must not fire on functions whose
//! value changes between renders; an unsubscribe link written with `| safe` still counts.

use serde_json::Value;

use crate::util::*;

const GREETING: &str = "Hi {{ first_name }},";

fn greeting(replacement: &'static str) -> impl FnOnce(&Tree) {
    move |t: &Tree| {
        t.edit("templates/winter-sale.html.tera", |s| {
            s.replace(GREETING, replacement)
        })
    }
}

fn assert_blocks_first_name(what: &str, (r, v): (Run, Value)) {
    assert_eq!(
        r.code, 4,
        "{what}: exit {} (wanted 4)\n{}\n{}",
        r.code, r.stdout, r.stderr
    );
    let fields = rule_fields(&v, "unescaped-field");
    assert!(
        fields.iter().any(|f| f == "first_name"),
        "{what}: unescaped-field does not name first_name: {}",
        v["findings"]
    );
}

#[test]
fn unescaped_through_set() {
    assert_blocks_first_name(
        "set",
        check_after(greeting("{% set x = first_name %}Hi {{ x | safe }},")),
    );
}

#[test]
fn unescaped_through_a_loop_variable() {
    assert_blocks_first_name(
        "for",
        check_after(greeting(
            "Hi {% for c in [first_name] %}{{ c | safe }}{% endfor %},",
        )),
    );
}

#[test]
fn unescaped_through_a_macro_argument() {
    assert_blocks_first_name(
        "macro",
        check_after(|t| {
            t.edit("templates/macros.html.tera", |s| {
                format!("{s}\n{{% macro raw(v) %}}{{{{ v | safe }}}}{{% endmacro raw %}}\n")
            });
            greeting("Hi {{ ui::raw(v=first_name) }},")(t);
        }),
    );
}

#[test]
fn unescaped_through_a_filter_argument() {
    assert_blocks_first_name(
        "filter argument",
        check_after(greeting(
            r#"Hi {{ "X" | replace(from="X", to=first_name) | safe }},"#,
        )),
    );
}

#[test]
fn unescaped_through_the_preheader() {
    assert_blocks_first_name(
        "preheader",
        check_after(|t| {
            t.edit("sample-data/campaigns/winter-sale.toml", |s| {
                s.replace(
                    "preheader = \"Warm coats",
                    "preheader = \"{% if personalised %}{{ first_name }}: {% endif %}Warm coats",
                )
            });
            t.edit("templates/base.html.tera", |s| {
                s.replace("{{ preheader }}", "{{ preheader | safe }}")
            });
        }),
    );
}

/// Routes the walker has no rule for must still be caught by the rendered output: a filter
/// section that turns the escaped text back into markup, a concatenation (Tera does not
/// escape `~`), and a list built by `set` (Tera prints a list's strings raw).
#[test]
fn unescaped_through_routes_only_the_output_shows() {
    for (what, html) in [
        (
            "filter section",
            r#"Hi {% filter replace(from="&lt;", to="<") %}{{ first_name }}{% endfilter %},"#,
        ),
        ("concatenation", r#"Hi {{ "" ~ first_name }},"#),
        ("list", "{% set names = [first_name] %}Hi {{ names }},"),
    ] {
        assert_blocks_first_name(what, check_after(greeting(html)));
    }
}

/// Only the customer's data is at stake: `| safe` on tact's own variables and on constant
/// markup is fine, and escaping that holds must not be reported.
#[test]
fn escaped_routes_do_not_block() {
    for (what, html) in [
        ("set then print", "{% set x = first_name %}Hi {{ x }},"),
        ("upper", "Hi {{ first_name | upper }},"),
        (
            "markup constant",
            r#"Hi {{ "<b>" | safe }}{{ first_name }},"#,
        ),
        (
            "tool variable",
            "Hi {{ campaign | safe }} {{ first_name }},",
        ),
    ] {
        let (r, v) = check_after(greeting(html));
        assert!(
            rule_fields(&v, "unescaped-field").is_empty(),
            "{what}: {}\n{}",
            v["findings"],
            r.stderr
        );
        assert_eq!(r.code, 0, "{what}: {}\n{}", r.stdout, r.stderr);
    }
}

#[test]
fn now_and_get_random_do_not_trip_the_self_check() {
    let (r, v) = check_after(|t| {
        greeting(
            r#"Hi {{ first_name }}, it is {{ now() | date(format="%A") }} ({{ now(timestamp=true) }}), lucky number {{ get_random(end=1000) }},"#,
        )(t);
        t.edit("templates/winter-sale.txt.tera", |s| {
            format!("{s}\nSent {{{{ now() }}}}, draw {{{{ get_random(start=1, end=1000000) }}}}\n")
        });
    });
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(v["self_check"], serde_json::json!([]), "{v}");
}

#[test]
fn an_unsubscribe_link_written_with_safe_counts() {
    let (r, v) = check_after(|t| {
        t.edit("templates/base.html.tera", |s| {
            s.replace("{{ unsubscribe_url }}", "{{ unsubscribe_url | safe }}")
        })
    });
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        !v["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .any(|f| f["rule"] == "missing-unsubscribe"),
        "{}",
        v["findings"]
    );
}

/// Canary values for `first_name` and `last_name` on every row, so any trace of them in the
/// output is a leak. Returns the canaries' stems.
fn canary_names(t: &Tree) -> [&'static str; 2] {
    // A multi-byte character: Tera panics on some of those (see `render_errors_…`).
    const STEMS: [&str; 2] = ["Qx7Zelda", "Wv3Økafor"];
    let path = "sample-data/customers.csv";
    let text = t.read(path);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |n: &str| header.iter().position(|h| *h == n).expect("column");
    let (first, last) = (col("first_name"), col("last_name"));
    let mut out = header.join(",") + "\n";
    for (i, line) in lines.enumerate() {
        let mut cells: Vec<String> = line.split(',').map(str::to_string).collect();
        // Rows with quoted commas keep their values: the canaries only need most rows.
        if cells.len() == header.len() {
            cells[first] = format!("{}{i}", STEMS[0]);
            cells[last] = format!("{}{i}", STEMS[1]);
        }
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    t.write(path, &out);
    STEMS
}

/// Every 5-character window of each stem, forwards and backwards, in lower case: a value
/// upper-cased, truncated, quoted or reversed by a filter still shows one.
fn traces(stems: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for s in stems {
        let lower = s.to_lowercase();
        let rev: String = lower.chars().rev().collect();
        for w in [lower, rev] {
            let chars: Vec<char> = w.chars().collect();
            for win in chars.windows(5) {
                out.push(win.iter().collect());
            }
        }
    }
    out
}

fn assert_no_trace(what: &str, text: &str, traces: &[String]) {
    let lower = text.to_lowercase();
    for t in traces {
        assert!(
            !lower.contains(t.as_str()),
            "{what}: a customer value leaked (`{t}`):\n{text}"
        );
    }
}

/// Every way a render can fail on a customer's value: a filter given the wrong type, an
/// unparseable date, math on text, a modulo by zero, `throw` with the value, a bad argument,
/// a subscript that evaluates the value, a loop over a non-map, a test on text. Whatever Tera
/// says, `check`, `preview` and `send --dry-run` (text and JSON, stdout and stderr) describe
/// the failure by part, filter and field, never by the value.
#[test]
fn render_errors_never_carry_a_customer_value() {
    let constructs = [
        r#"{{ first_name | upper | date(format="%Y") }}"#,
        r#"{{ first_name | date(format="%Y") }}"#,
        "{{ first_name | round }}",
        "{{ first_name * 2 }}",
        "{% set n = first_name | length %}{{ 10 % (n - n) }}",
        "{{ throw(message=first_name ~ last_name) }}",
        "{{ last_name | truncate(length=first_name) }}",
        "{{ first_name[last_name] }}",
        "{% for k, v in first_name %}{{ k }}{% endfor %}",
        "{% if first_name is divisibleby(2) %}x{% endif %}",
        r#"{{ first_name | split(pat="a") | nth(n=last_name) }}"#,
        r#"{{ first_name | replace(from=last_name, to=1) }}"#,
    ];
    for construct in constructs {
        let t = Tree::new();
        let stems = canary_names(&t);
        let traces = traces(&stems);
        t.edit("templates/winter-sale.txt.tera", |s| {
            s.replace(
                "Hi {{ first_name }},",
                &format!("Hi {{{{ first_name }}}},{construct}"),
            )
        });
        let c = t.campaign("winter-sale");
        let check = run(t.tact().arg("check").arg(&c));
        assert!(
            check.stdout.contains("render_error") || check.stderr.contains("render_error"),
            "{construct}: no render_error reported\n{}\n{}",
            check.stdout,
            check.stderr
        );
        assert_no_trace(&format!("check: {construct}"), &check.all_output(), &traces);
        let json = run(t.tact().arg("check").arg(&c).arg("--json"));
        assert_no_trace(
            &format!("check --json: {construct}"),
            &json.all_output(),
            &traces,
        );
        let out = t.path("previews");
        let preview = run(t.tact().arg("preview").arg(&c).arg("--out").arg(&out));
        assert_no_trace(
            &format!("preview: {construct}"),
            &preview.all_output(),
            &traces,
        );
        for dry in [vec!["--dry-run"], vec!["--dry-run", "--json"]] {
            let r = run(t.tact().arg("send").arg(&c).args(&dry));
            assert_no_trace(
                &format!("send {dry:?}: {construct}"),
                &r.all_output(),
                &traces,
            );
        }
    }
}

/// Bad templates are bad input: an oversized file, nesting that would overflow Tera's
/// recursion, a recursive macro. Each is exit 2 with the file named, never a crash.
#[test]
fn oversized_deep_and_recursive_templates_exit_2() {
    type Edit = Box<dyn Fn(&Tree)>;
    let cases: [(&str, Edit, &str); 4] = [
        (
            "oversized",
            Box::new(|t: &Tree| {
                t.edit("templates/winter-sale.txt.tera", |s| {
                    format!("{s}{{# {} #}}", "x".repeat(1 << 20))
                })
            }),
            "winter-sale.txt.tera",
        ),
        (
            "nested ifs",
            Box::new(|t: &Tree| {
                t.edit("templates/winter-sale.txt.tera", |s| {
                    s.replace(
                        "Hi {{ first_name }},",
                        &format!(
                            "{}Hi{}",
                            "{% if true %}".repeat(2000),
                            "{% endif %}".repeat(2000)
                        ),
                    )
                })
            }),
            "winter-sale.txt.tera:",
        ),
        (
            "nested brackets",
            Box::new(|t: &Tree| {
                t.edit("templates/winter-sale.html.tera", |s| {
                    s.replace(
                        "Hi {{ first_name }},",
                        &format!("{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000)),
                    )
                })
            }),
            "winter-sale.html.tera:",
        ),
        (
            "recursive macro",
            Box::new(|t: &Tree| {
                t.edit("templates/macros.html.tera", |s| {
                    format!("{s}\n{{% macro again(n) %}}{{{{ self::again(n=n) }}}}{{% endmacro again %}}\n")
                });
                t.edit("templates/winter-sale.html.tera", |s| {
                    s.replace("Hi {{ first_name }},", "{{ ui::again(n=1) }}")
                });
            }),
            "again",
        ),
    ];
    for (what, edit, named) in cases {
        let t = Tree::new();
        edit(&t);
        for cmd in ["check", "preview"] {
            let r = run(t.tact().arg(cmd).arg(t.campaign("winter-sale")));
            assert_eq!(r.code, 2, "{what} ({cmd}): exit {}\n{}", r.code, r.stderr);
            assert!(
                r.stderr.contains(named),
                "{what} ({cmd}): {named} not named\n{}",
                r.stderr
            );
        }
    }
}
