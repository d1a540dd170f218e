//! Stopping on request: Ctrl-C (SIGINT) or SIGTERM (a supervisor, `timeout`, a container
//! stopping) both end a long command the same way — what was gathered is reported, with the
//! usual exit code.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Both signals, registered once: a signal that arrives between two waits is kept for the next.
pub(crate) struct Stop {
    interrupt: Signal,
    terminate: Signal,
}

impl Stop {
    /// Registers for SIGINT and SIGTERM (inside a tokio runtime).
    pub(crate) fn register() -> std::io::Result<Stop> {
        Ok(Stop {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves when either signal arrives.
    pub(crate) async fn requested(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
