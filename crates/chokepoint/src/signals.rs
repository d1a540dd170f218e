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

/// For commands that read without a runtime of their own (`traces`): a flag that the first
/// SIGINT or SIGTERM sets — the command stops reading and reports what it read — while a second
/// one ends the process at once (exit code 130), for a read blocked on a pipe that never ends.
/// Registered before it returns, so a signal after it is never lost.
pub(crate) fn stop_flag() -> std::io::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let mut stop = {
        let _entered = runtime.enter();
        Stop::register()?
    };
    let flag = Arc::new(AtomicBool::new(false));
    let set = Arc::clone(&flag);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async {
                stop.requested().await;
                set.store(true, Ordering::Release);
                stop.requested().await;
            });
            std::process::exit(130);
        })?;
    Ok(flag)
}
