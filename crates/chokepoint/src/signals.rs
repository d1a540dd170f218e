//! Stopping on request: Ctrl-C (SIGINT) or SIGTERM (a supervisor, `timeout`, a container
//! stopping) both end a long command the same way — the sources stop where they are and what
//! was gathered is reported, with the usual exit code. A second signal ends the process at once
//! (exit code 130), for a read blocked on a pipe that never ends.

use chokepoint_collect::Stop;
use tokio::signal::unix::{SignalKind, signal};

/// A [`Stop`] that the first SIGINT or SIGTERM requests. Registered before it returns, so a
/// signal after it is never lost.
pub(crate) fn watch() -> anyhow::Result<Stop> {
    use anyhow::Context as _;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("cannot watch for Ctrl-C")?;
    let (mut interrupt, mut terminate) = {
        let _entered = runtime.enter();
        (
            signal(SignalKind::interrupt()).context("cannot watch for Ctrl-C")?,
            signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?,
        )
    };
    let stop = Stop::default();
    let request = stop.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async {
                for _ in 0..2 {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                    if request.requested() {
                        return;
                    }
                    request.request();
                }
            });
            std::process::exit(130);
        })
        .context("cannot watch for Ctrl-C")?;
    Ok(stop)
}
