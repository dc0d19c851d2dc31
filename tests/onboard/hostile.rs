//! `tact new` on exports a careless or hostile hand made: a file without its header row,
//! headers `check` would refuse, headers full of TOML and Tera syntax, control characters.
//! What `new` writes must load and check; what it refuses it refuses before writing
//! anything; and no customer value reaches what it prints or writes.

use std::fs;
use std::path::Path;

use crate::util::*;

/// Everything `new` could have written for campaign `name` from `csv` in `dir`.
fn written(dir: &Path, name: &str, csv: &str) -> Vec<String> {
    let stem = csv.trim_end_matches(".csv");
    [
        format!("{stem}.schema.toml"),
        format!("campaigns/{name}.toml"),
        format!("campaigns/templates/{name}.txt.tera"),
        format!("campaigns/templates/{name}.html.tera"),
    ]
    .into_iter()
    .filter(|f| dir.join(f).exists())
    .collect()
}

fn new_in(dir: &Path, name: &str, csv: &str) -> Run {
    let mut c = tact(&dir.join("state"));
    c.current_dir(dir).args(["new", name, "--audience", csv]);
    run(&mut c)
}

/// Rows of canaries: every cell unique, the address column first.
fn canary_rows(n: usize) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut canaries = Vec::new();
    for i in 0..n {
        let cells = [
            format!("qzmail{i:03}@qzdomain{i:03}.example"),
            "yes".to_string(),
            "2026-01-05".to_string(),
            format!("Qzfirst{i:03}"),
            format!("QZ{i:03} 7QZ"),
            format!("Qzproduct{i:03} pregnancy test"),
        ];
        canaries.extend([cells[0].clone(), cells[3].clone(), cells[4].clone()]);
        canaries.push(format!("Qzproduct{i:03}"));
        lines.push(cells.join(","));
    }
    (lines, canaries)
}

fn assert_no_canary(what: &str, text: &str, canaries: &[String]) {
    let low = text.to_lowercase();
    for c in canaries {
        assert!(
            !low.contains(&c.to_lowercase()),
            "{what} holds the customer value `{c}`:\n{text}"
        );
    }
}

/// An export saved without its header row: line 1 is a customer. Its cells are not column
/// names, so neither `new` nor `check` may print them (nor write them into a schema as
/// names): both say the first line is a row, by line and column, and `new` writes nothing.
/// Before, `new` listed the first customer's address, name and product as "columns to
/// review" and wrote them into the schema, and `check` printed them as "columns are: …".
#[test]
fn a_file_without_its_header_row_is_named_as_such_and_its_first_row_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, canaries) = canary_rows(30);
    fs::write(dir.path().join("export.csv"), rows.join("\n") + "\n").unwrap();
    let r = new_in(dir.path(), "spring", "export.csv");
    assert_eq!(r.code, 2, "{}", r.all_output());
    assert!(
        r.stderr.contains("export.csv:1:1") && r.stderr.contains("header"),
        "{}",
        r.stderr
    );
    assert_no_canary("tact new", &r.all_output(), &canaries);
    assert!(
        written(dir.path(), "spring", "export.csv").is_empty(),
        "{:?}",
        written(dir.path(), "spring", "export.csv")
    );

    // `check` on a campaign pointed at the same file by hand.
    fs::write(
        dir.path().join("c.toml"),
        "name = \"c\"\naudience = \"export.csv\"\ntemplates = \"t\"\ntemplate = \"c\"\nsubject = \"Hi\"\nfrom = \"A <a@shop.example>\"\nunsubscribe_url = \"https://shop.example/u\"\npostal_address = \"1 Street, Town\"\n",
    )
    .unwrap();
    fs::create_dir_all(dir.path().join("t")).unwrap();
    for part in ["txt", "html"] {
        fs::write(
            dir.path().join(format!("t/c.{part}.tera")),
            "Hello\n{{ unsubscribe_url }} {{ postal_address }}\n",
        )
        .unwrap();
    }
    for json in [false, true] {
        let mut c = tact(&dir.path().join("state"));
        c.current_dir(dir.path()).args(["check", "c.toml"]);
        if json {
            c.arg("--json");
        }
        let r = run(&mut c);
        assert_eq!(r.code, 2, "{}", r.all_output());
        assert!(r.stderr.contains("export.csv:1:1"), "{}", r.stderr);
        assert_no_canary("tact check", &r.all_output(), &canaries);
    }

    // A header that merely mentions an address is a header.
    let with_header = format!(
        "email,consent_marketing,consent_at,Contact (help@shop.example),product\n{}\n",
        "a@b.example,yes,2026-01-05,x,y"
    );
    fs::write(dir.path().join("ok.csv"), with_header).unwrap();
    let r = new_in(dir.path(), "fine", "ok.csv");
    assert_eq!(r.code, 0, "{}", r.all_output());
}

/// Headers `check` refuses (no letters or digits, two that become one variable, more
/// columns than tact reads) are refused by `new` too, with the same file:line:col and
/// before anything is written: before, `new` wrote a schema `check` could not load.
#[test]
fn headers_check_would_refuse_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let wide: Vec<String> = (0..2_001).map(|i| format!("c{i}")).collect();
    let cases: [(&str, String, &str); 4] = [
        (
            "nameless.csv",
            "email,consent_marketing,}},x\na@b.example,yes,1,2\n".to_string(),
            "nameless.csv:1:3",
        ),
        (
            "twice.csv",
            "email,consent_marketing,First Name,first_name\na@b.example,yes,A,B\n".to_string(),
            "twice.csv:1:4",
        ),
        (
            "wide.csv",
            format!("email,{}\na@b.example\n", wide.join(",")),
            "wide.csv:1:2001",
        ),
        (
            "blank.csv",
            "email,,consent_marketing\na@b.example,x,yes\n".to_string(),
            "blank.csv:1:2",
        ),
    ];
    for (file, text, at) in cases {
        fs::write(dir.path().join(file), text).unwrap();
        let r = new_in(dir.path(), "x", file);
        assert_eq!(r.code, 2, "{file}: {}", r.all_output());
        assert!(r.stderr.contains(at), "{file}: wanted {at}: {}", r.stderr);
        assert!(
            written(dir.path(), "x", file).is_empty(),
            "{file}: {:?}",
            written(dir.path(), "x", file)
        );
    }
}

/// Headers made of TOML and Tera syntax, a spreadsheet formula, a line break, a tab and
/// control characters: the schema `new` writes loads with each header as a key, the
/// campaign checks (its templates run nothing from the header), and what `new` prints
/// holds no control character a terminal would act on.
#[test]
fn metacharacter_headers_make_files_that_load_and_run_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = [
        "=HYPERLINK(\"http://evil.example\",\"x\")",
        "a\"b",
        "{{ x }}",
        "{% raw %}",
        "[fields]",
        "line\nbreak",
        "cr\rhere",
        "tab\there",
        "back\\slash",
        "'''q",
        "\"\"\"dq",
        "esc\u{1b}[31mred",
        "bidi\u{202e}txt.exe",
        "# not a comment",
        "First Name",
    ];
    let mut w = csv::Writer::from_path(dir.path().join("meta.csv")).unwrap();
    let mut header = vec!["email", "consent_marketing", "consent_at"];
    header.extend(hostile);
    w.write_record(&header).unwrap();
    for i in 0..40 {
        let mut row = vec![
            format!("p{i}@shop.example"),
            "yes".into(),
            "2026-11-01".into(),
        ];
        row.extend((0..hostile.len()).map(|j| format!("v{j}")));
        w.write_record(&row).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let r = new_in(dir.path(), "meta", "meta.csv");
    assert_eq!(r.code, 0, "{}", r.all_output());
    for c in r.stdout.chars() {
        assert!(
            c == '\n' || !(c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)),
            "`new` printed {c:?}:\n{}",
            r.stdout
        );
    }
    let schema = fs::read_to_string(dir.path().join("meta.schema.toml")).unwrap();
    let parsed: toml::Table = toml::from_str(&schema).unwrap_or_else(|e| panic!("{e}\n{schema}"));
    let fields = parsed["fields"].as_table().unwrap();
    for h in hostile {
        assert!(fields.contains_key(h), "{h:?} not a key:\n{schema}");
    }
    let text = fs::read_to_string(dir.path().join("campaigns/templates/meta.txt.tera")).unwrap();
    assert!(!text.contains("evil") && !text.contains("raw"), "{text}");
    let mut c = tact(&dir.path().join("state"));
    c.current_dir(dir.path())
        .args(["check", "campaigns/meta.toml", "--json"]);
    let (r, v) = check_json(&mut c);
    assert!(r.code == 0 || r.code == 3, "{}", r.all_output());
    assert_eq!(v["audience"]["rows"], 40);
}

/// A value longer than `check` reads (an unclosed quote swallowing the rows after it, or
/// a pasted blob): `new` refuses the file with check's own file:line:col, before writing.
/// Before, it wrote a campaign that `check` then refused.
#[test]
fn a_value_check_would_refuse_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("email,consent_marketing,consent_at,notes\n");
    for i in 0..20 {
        text.push_str(&format!("a{i}@shop.example,yes,2026-11-01,hello\n"));
    }
    text.push_str(&format!(
        "z@shop.example,yes,2026-11-01,\"{}\"\n",
        "x".repeat(70 * 1024)
    ));
    fs::write(dir.path().join("long.csv"), text).unwrap();
    let r = new_in(dir.path(), "x", "long.csv");
    assert_eq!(r.code, 2, "{}", r.all_output());
    assert!(r.stderr.contains("long.csv:22:4"), "{}", r.stderr);
    assert!(!r.all_output().contains("xxxx"), "{}", r.all_output());
    assert!(written(dir.path(), "x", "long.csv").is_empty());
}

/// `--dir` naming a file, or `--audience` naming a folder: bad usage (exit 2) that names
/// the path, and nothing written (before, `--dir FILE` failed half-way with exit 1).
#[test]
fn a_file_for_a_folder_or_a_folder_for_a_file_is_bad_usage() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("ok.csv"),
        "email,consent_marketing,consent_at\na@shop.example,yes,2026-11-01\n",
    )
    .unwrap();
    fs::write(dir.path().join("afile"), "x").unwrap();
    fs::create_dir(dir.path().join("folder.csv")).unwrap();
    for (args, named) in [
        (
            ["new", "x", "--audience", "ok.csv", "--dir", "afile"],
            "afile",
        ),
        (
            ["new", "x", "--audience", "folder.csv", "--dir", "c"],
            "folder.csv",
        ),
    ] {
        let mut c = tact(&dir.path().join("state"));
        c.current_dir(dir.path()).args(args);
        let r = run(&mut c);
        assert_eq!(r.code, 2, "{args:?}: {}", r.all_output());
        assert!(r.stderr.contains(named), "{args:?}: {}", r.stderr);
    }
    assert!(!dir.path().join("ok.schema.toml").exists());
    assert!(!dir.path().join("c").exists());
}

/// A row past the 1 MiB `check` reads, made of values each under the value limit: `new`
/// refuses it as `check` does, by line, before writing.
#[test]
fn a_row_check_would_refuse_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let cols: Vec<String> = (0..30).map(|i| format!("c{i}")).collect();
    let mut text = format!("email,consent_marketing,consent_at,{}\n", cols.join(","));
    for i in 0..5 {
        text.push_str(&format!(
            "a{i}@shop.example,yes,2026-11-01,{}\n",
            vec!["v"; 30].join(",")
        ));
    }
    let big = "y".repeat(40 * 1024);
    text.push_str(&format!(
        "z@shop.example,yes,2026-11-01,{}\n",
        vec![big.as_str(); 30].join(",")
    ));
    fs::write(dir.path().join("wide.csv"), text).unwrap();
    let r = new_in(dir.path(), "x", "wide.csv");
    assert_eq!(r.code, 2, "{}", r.all_output());
    assert!(
        r.stderr.contains("wide.csv:7:") && r.stderr.contains("1 MiB"),
        "{}",
        r.stderr
    );
    assert!(written(dir.path(), "x", "wide.csv").is_empty());
}
