//! `tact suppress add EMAIL...` and `tact suppress check EMAIL`: the suppression list,
//! which always beats the CSV. Stored as keyed hashes only.

use clap::Subcommand;

use tact::state::ledger::Ledger;

use super::Globals;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Never email these addresses again.
    Add {
        #[arg(required = true, value_name = "EMAIL")]
        emails: Vec<String>,
    },
    /// Exit 0 and say why if the address is suppressed, exit 6 if it is not.
    Check {
        #[arg(value_name = "EMAIL")]
        email: String,
    },
}

pub fn run(g: &Globals, cmd: &Command) -> anyhow::Result<u8> {
    let state = g.state_or_init()?;
    let ledger = Ledger::open(&state.dir, false)?;
    match cmd {
        Command::Add { emails } => {
            let mut new = 0;
            for e in emails {
                if e.parse::<lettre::Address>().is_err() {
                    anyhow::bail!(
                        "argument {} of `suppress add` is not an email address",
                        emails.iter().position(|x| x == e).unwrap_or(0) + 1
                    );
                }
                new +=
                    usize::from(ledger.suppress(&state.keys.recipient_hash(e), "manual", g.now)?);
            }
            println!(
                "suppressed {new} new address(es), {} already on the list (state: {})",
                emails.len() - new,
                state.dir.display()
            );
            Ok(0)
        }
        Command::Check { email } => match ledger.suppression(&state.keys.recipient_hash(email))? {
            Some((reason, at)) => {
                println!(
                    "suppressed: {reason} since {}",
                    at.format("%Y-%m-%d %H:%M UTC")
                );
                Ok(0)
            }
            None => {
                println!("not suppressed");
                Ok(6)
            }
        },
    }
}
