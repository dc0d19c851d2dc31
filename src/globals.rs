//! What every command and the composer get from the global flags (`--state`, `--now`):
//! kept apart from `cli` so the composer needs nothing of the command line but this.

use std::path::PathBuf;

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use tact::state::postgres::PgTarget;
use tact::state::{self, State};

/// What every command gets from the global flags.
pub struct Globals {
    /// The local state directory (`--state DIR`); never a URL.
    pub state_flag: Option<PathBuf>,
    /// The shared store, from `--state postgres://…` or `TACT_DATABASE_URL`.
    pub store: Option<PgTarget>,
    pub now: DateTime<Utc>,
}

impl Globals {
    /// `send`, `run-due`, `suppress`, `forget`, `export`, `audit`, `purge` and
    /// `unsubscribe-server` refuse to start over on an empty state: a cron job with the
    /// wrong HOME, or a typo in `--state`, must not run without its suppression list (nor
    /// put an opt-out where the real state never sees it). `None` after saying so (exit 2);
    /// nothing is created.
    pub fn existing_state(&self) -> anyhow::Result<Option<State>> {
        let s = self.open_state()?;
        if s.is_none() {
            let path = self.state_dir()?;
            eprintln!("tact: error: {}", tact::Error::NoState { path });
            if self.store.is_some() {
                eprintln!(
                    "tact: hosts that share a database share one key: copy master.key from the first host (mode 0600) and run `tact init --import-key FILE`"
                );
            }
        }
        Ok(s)
    }

    /// The existing state, `None` when there is none; never creates anything.
    pub fn open_state(&self) -> anyhow::Result<Option<State>> {
        let dir = self.state_dir()?;
        match State::open_existing(&dir) {
            Ok(s) => Ok(Some(s.with_store(self.store.clone()))),
            Err(tact::Error::NoState { .. }) => Ok(None),
            Err(e) => Err(anyhow::Error::from(e)
                .context(format!("cannot open the state directory {}", dir.display()))),
        }
    }

    /// `--state`, else `$TACT_HOME`, else the XDG default.
    pub fn state_dir(&self) -> anyhow::Result<PathBuf> {
        Ok(state::resolve_dir(self.state_flag.as_deref())?)
    }

    /// `check` and `preview` create the state directory when missing.
    pub fn state_or_init(&self) -> anyhow::Result<State> {
        let dir = self.state_dir()?;
        let s = State::open_or_init(&dir)
            .with_context(|| format!("cannot open the state directory {}", dir.display()))?;
        Ok(s.with_store(self.store.clone()))
    }
}
