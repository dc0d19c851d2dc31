//! Puts the commit `tact --version` reports into `TACT_VERSION`: "0.1.0 (3e69228)", with
//! "-dirty" when the work tree had changes, and the bare version outside a git checkout
//! (a source tarball, `cargo install` from the registry).

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let version = env!("CARGO_PKG_VERSION");
    let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        println!("cargo:rustc-env=TACT_VERSION={version}");
        return;
    };
    // Rerun when HEAD moves: HEAD itself (a checkout) and the branch it points at (a
    // commit), wherever this work tree keeps them. Not on every file edit: the dirty mark
    // is as of the last commit or checkout.
    for (what, file) in [("--git-dir", "HEAD"), ("--git-common-dir", "packed-refs")] {
        if let Some(dir) = git(&["rev-parse", what]) {
            println!(
                "cargo:rerun-if-changed={}",
                PathBuf::from(dir).join(file).display()
            );
        }
    }
    if let (Some(branch), Some(common)) = (
        git(&["symbolic-ref", "-q", "HEAD"]),
        git(&["rev-parse", "--git-common-dir"]),
    ) {
        let path = PathBuf::from(common).join(branch);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let mark = if dirty { "-dirty" } else { "" };
    println!("cargo:rustc-env=TACT_VERSION={version} ({commit}{mark})");
}
