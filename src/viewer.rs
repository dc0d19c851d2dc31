//! Opening a built message in the desktop's viewer, for `preview --open` and the
//! composer's `o`: the core builds the message; which program shows it is the edge's call.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The viewer to use: `$BROWSER` (run through the shell, so it may carry arguments), else
/// `xdg-open` when it is on the PATH.
fn viewer() -> Option<(String, bool)> {
    if let Some(b) = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty())
    {
        return Some((b, true));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("xdg-open"))
        .find(|p| p.is_file())
        .map(|p| (p.to_string_lossy().into_owned(), false))
}

/// Writes `eml` to a new 0600 file in the temporary folder: a message holds a customer's
/// data, so nobody else on the machine may read it.
fn write_temp(eml: &[u8]) -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir();
    let mut last = None;
    for _ in 0..8 {
        let mut n = [0u8; 8];
        getrandom::fill(&mut n).map_err(|e| std::io::Error::other(e.to_string()))?;
        let name = format!("tact-preview-{}.eml", u64::from_le_bytes(n));
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(eml)?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free temporary name")))
}

fn run(viewer: &str, shell: bool, file: &Path) -> std::io::Result<std::process::ExitStatus> {
    let mut cmd = if shell {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("{viewer} \"$1\""))
            .arg("--")
            .arg(file);
        c
    } else {
        let mut c = Command::new(viewer);
        c.arg(file);
        c
    };
    // The viewer must not draw on (or read from) the composer's terminal.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}

/// Opens `eml` in the desktop's viewer; says which viewer and where the file is, or why
/// nothing was opened (no viewer: nothing is written either).
pub fn open_message(eml: &[u8]) -> Result<String, String> {
    let Some((viewer, shell)) = viewer() else {
        return Err("no desktop viewer: set $BROWSER or install xdg-open".into());
    };
    let file = write_temp(eml).map_err(|e| format!("cannot write the message: {e}"))?;
    match run(&viewer, shell, &file) {
        Ok(s) if s.success() => Ok(format!(
            "opened in {viewer}: {} (0600; delete it when done)",
            file.display()
        )),
        Ok(s) => {
            let _ = std::fs::remove_file(&file);
            Err(format!("{viewer} exited with {s}"))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&file);
            Err(format!("cannot run {viewer}: {e}"))
        }
    }
}
