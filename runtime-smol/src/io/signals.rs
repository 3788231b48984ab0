//! Ctrl-C and SIGTERM: the command in progress stops politely (goodbyes sent, resume
//! records saved) and the process exits 130 or 143, as shells expect.

use std::process::ExitCode;

use async_signal::{Signal, Signals};
use smol::stream::StreamExt;

/// Which signal asked us to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Interrupt,
    Terminate,
}

impl Stop {
    /// 128 + the signal number, the shell's convention.
    pub fn exit_code(self) -> ExitCode {
        match self {
            Stop::Interrupt => ExitCode::from(130),
            Stop::Terminate => ExitCode::from(143),
        }
    }
}

/// Catches SIGINT and SIGTERM from now on.
pub struct StopSignals(Signals);

impl StopSignals {
    pub fn install() -> anyhow::Result<StopSignals> {
        Ok(StopSignals(Signals::new([Signal::Int, Signal::Term])?))
    }

    /// Waits for the next SIGINT or SIGTERM.
    pub async fn next(&mut self) -> Stop {
        loop {
            match self.0.next().await {
                Some(Ok(Signal::Int)) => return Stop::Interrupt,
                Some(Ok(Signal::Term)) => return Stop::Terminate,
                Some(_) => {}
                // The stream never ends while it is alive; if it somehow does, nothing will
                // ever stop us by signal, so wait forever as a plain program would.
                None => std::future::pending::<()>().await,
            }
        }
    }
}
