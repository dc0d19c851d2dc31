//! `check --report` given a path a careless hand types: a folder that is not there, a
//! file where a folder should be, a folder where the file should be. Each is bad usage
//! (exit 2) naming the path that was given, and nothing is left behind.

use std::fs;

use crate::util::*;

#[test]
fn a_report_path_that_cannot_be_a_file_is_bad_usage_named_as_given() {
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    fs::write(out.path().join("plain.txt"), "x").unwrap();
    fs::create_dir(out.path().join("folder.html")).unwrap();
    for rel in ["missing/r.md", "plain.txt/r.html", "folder.html"] {
        let path = out.path().join(rel);
        let r = run(tact(state.path())
            .arg("check")
            .arg(sample_campaign("winter-sale"))
            .arg("--report")
            .arg(&path));
        assert_eq!(r.code, 2, "{rel}: {}", r.stderr);
        assert!(r.stderr.contains(rel), "{rel}: {}", r.stderr);
        assert!(!r.stderr.contains(".tact-"), "{rel}: {}", r.stderr);
    }
    let mut left: Vec<String> = fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["folder.html", "plain.txt"]);
    assert_eq!(
        fs::read_dir(out.path().join("folder.html"))
            .unwrap()
            .count(),
        0
    );
}
