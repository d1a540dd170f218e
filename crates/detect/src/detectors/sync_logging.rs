//! `sync-logging`: log records written, flushed and synced on the request path.

use chokepoint_evidence::Resource;

use crate::detectors::percent;
use crate::finding::Basis;
use crate::profile::{Category, ProfileView};
use crate::registry::{Conclusion, Detector, Reads, detector};

detector! {
    /// # What it detects
    ///
    /// A profile in which logging — the `logging` package's handlers and formatters, any
    /// handler's `emit`, and the `write`, `flush` and `os.fsync` under them — takes at least
    /// 20 % of the busy time, on at least 20 samples. The finding names the handler and the code
    /// that logs.
    ///
    /// # Why it limits throughput
    ///
    /// A handler writes on the thread that logs: formatting, a lock per handler, a `write` and,
    /// with `flush`/`fsync` per record, a wait for the disk — all inside the request. Under
    /// load the handler's lock serializes every request that logs.
    ///
    /// # Evidence used
    ///
    /// A profile with idle samples (`chokepoint profile` records with py-spy `--idle`: a thread
    /// waiting in `fsync` is not on the CPU, and without idle samples it would be invisible).
    ///
    /// In the source (`chokepoint scan`, `--source DIR`), with low confidence: a logging handler
    /// whose `emit` calls `os.fsync` or `flush()` — what it costs depends on how many records run.
    /// A shape read there is potential — not measured — until a runtime finding meets it on its
    /// line, statement or route.
    ///
    /// # Known false positives
    ///
    /// Audit logs that must be on disk before the response — then keep the sync write, batch
    /// records per request, or move the audit trail to the database.
    ///
    /// # Typical fix
    ///
    /// A `logging.handlers.QueueHandler` on the logger and a `QueueListener` owning the real
    /// handler: the request thread enqueues, one thread writes. Drop per-record `flush`/`fsync`
    /// and log less at INFO on hot paths.
    pub(crate) struct SyncLogging {
        id: SyncLogging,
        summary: "logging writes synchronously on the request path",
        reads: [Reads::Profile("logging handler frames"), Reads::Source("a logging handler that flushes or syncs per record")],
        same_cause: [],
    }
}

/// Share of the busy time that is flagged.
const MIN_SHARE: f64 = 0.2;

impl Detector for SyncLogging {
    fn check_profile(&self, profile: &ProfileView<'_>) -> Option<Conclusion> {
        let hot = profile.hot(Category::Logging, MIN_SHARE)?;
        let handler = hot.frame;
        let title = if std::ptr::eq(handler, hot.place()) {
            format!(
                "Logging takes {} of the busy time ({:.2} s), at {}",
                percent(hot.share),
                hot.seconds,
                hot.place()
            )
        } else {
            format!(
                "Logging takes {} of the busy time ({:.2} s) in {}, called from {}",
                percent(hot.share),
                hot.seconds,
                handler.function,
                hot.place()
            )
        };
        let syncs = [hot.frame, hot.place()].iter().any(|f| {
            f.source
                .as_deref()
                .is_some_and(|s| s.contains("fsync") || s.contains("flush"))
        });
        let fix = format!(
            "Log through a queue: `handler = logging.handlers.QueueHandler(queue)` on the logger and \
             `logging.handlers.QueueListener(queue, <the real handler>).start()` at startup, so {} only enqueues{}.",
            hot.place(),
            if syncs {
                "; drop the per-record flush/fsync"
            } else {
                "; log less at INFO on this path"
            }
        );
        Some(
            hot.conclude(Resource::Workers, Basis::Measured, 1.0, title, fix)
                .assume_more("a queue handler moves the formatting and I/O off the request thread: all of this time leaves the request"),
        )
    }
}
