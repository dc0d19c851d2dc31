//! The core's typed errors.
//!
//! Every variant that comes from something a user wrote names the file and, where the
//! parser gives one, the line and column. None of them ever carries a customer's address
//! or field value: rows are named by line number and column name only.

use std::path::PathBuf;

/// Where in a user's file something went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl Location {
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Location {
            path: path.into(),
            line: None,
            column: None,
        }
    }

    pub fn at(path: impl Into<PathBuf>, line: usize, column: usize) -> Self {
        Location {
            path: path.into(),
            line: Some(line),
            column: Some(column),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something the user wrote is wrong: exit code 2.
    #[error("{location}: {message}")]
    Input { location: Location, message: String },

    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Tera keeps the useful part of its errors in `source()`, so we keep the chain.
    #[error("template {name}: {message}")]
    Template {
        name: String,
        message: String,
        #[source]
        source: Option<tera::Error>,
    },

    #[error("state directory {}: {message}", path.display())]
    State { path: PathBuf, message: String },

    /// Only `init` (and `check`, `preview`) make state: anything else on a mistyped
    /// directory would start over with an empty suppression list and a new key.
    #[error("no state at {}: run `tact init` or point TACT_HOME at your existing state", path.display())]
    NoState { path: PathBuf },

    /// The same for a shared database that `tact init` never set up (a typo in its URL).
    #[error(
        "no tact store in {store}: check the database URL, or run `tact init` with it to set it up"
    )]
    NoStore { store: String },

    /// `tact new`: the name given cannot name a campaign.
    #[error("`{name}` cannot name a campaign: {why}")]
    CampaignName { name: String, why: String },

    /// `tact new`: files it would write are there already; it never writes over them.
    #[error("{} already exist(s); nothing was written: pick another name or folder", paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Exists { paths: Vec<PathBuf> },

    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn input(location: Location, message: impl Into<String>) -> Self {
        Error::Input {
            location,
            message: message.into(),
        }
    }

    /// Bad usage or bad input: the contract's exit code 2.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            Error::Input { .. }
                | Error::Template { .. }
                | Error::Read { .. }
                | Error::NoState { .. }
                | Error::NoStore { .. }
                | Error::CampaignName { .. }
                | Error::Exists { .. }
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The whole error chain on one line (the composer's status line, a check finding).
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The closest candidate to a misspelt name, for "did you mean" hints.
pub fn suggest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(wrong, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

pub fn did_you_mean<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match suggest(wrong, candidates) {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}
