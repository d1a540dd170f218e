//! Collecting evidence. Every source of evidence — trace files, a trace store (Jaeger), the OTLP
//! receiver, the load ramp with what watches it, a PostgreSQL database, profiles, the service's
//! source — is a
//! [`Source`]: it collects a [`Partial`], a part of one run's evidence with the inputs it read,
//! what it had to say, and the files worth keeping. A command is a list of sources folded into
//! one partial ([`collect`]) by [`Evidence::merge`]; the binary builds the list from its flags,
//! analyses what it gets and prints. Nothing here prints: progress and lines for the user go to
//! an [`Observer`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chokepoint_evidence::{Evidence, MergeConflict, Note};
use chokepoint_report::Input;

pub mod database;
pub mod profile;
pub mod ramp;
pub mod receiver;
pub mod source;
pub mod traces;

/// A part of a run's evidence, as one source collected it.
#[derive(Debug, Default)]
pub struct Partial {
    /// What was collected.
    pub evidence: Evidence,
    /// What was read: files, addresses, the URL loaded, the database.
    pub inputs: Vec<Input>,
    /// What collecting had to say: problems with their positions, what is missing and why.
    pub notes: Vec<Note>,
    /// Files worth keeping in a saved run (recordings made, files read).
    pub recordings: Vec<PathBuf>,
    /// Among `recordings`, those made in a temporary folder for this run alone: removed once a
    /// saved run holds a copy.
    pub scratch: Vec<PathBuf>,
}

impl Partial {
    /// Both parts as one: the evidence merged ([`Evidence::merge`]: traces added, every other
    /// kind taken once), the rest side by side.
    pub fn join(self, other: Partial) -> Result<Partial, MergeConflict> {
        let Partial {
            evidence,
            mut inputs,
            mut notes,
            mut recordings,
            mut scratch,
        } = self;
        inputs.extend(other.inputs);
        notes.extend(other.notes);
        recordings.extend(other.recordings);
        scratch.extend(other.scratch);
        Ok(Partial {
            evidence: evidence.merge(other.evidence)?,
            inputs,
            notes,
            recordings,
            scratch,
        })
    }
}

/// A source of evidence.
pub trait Source {
    /// Collects its part. `before` is what the sources before it collected: the database explains
    /// the statements the traces show. An error means nothing could be collected at all (a port
    /// in use, no file to read); a source that read some of its input says what it could not in
    /// its notes instead.
    fn collect(self: Box<Self>, before: &Evidence, observer: &dyn Observer) -> anyhow::Result<Partial>;
}

/// The sources, in order, folded into one part.
pub fn collect(sources: Vec<Box<dyn Source>>, observer: &dyn Observer) -> anyhow::Result<Partial> {
    let mut whole = Partial::default();
    for source in sources {
        let part = source.collect(&whole.evidence, observer)?;
        whole = whole.join(part)?;
    }
    Ok(whole)
}

/// Who hears how collecting goes: the binary shows it on a terminal, tests stay silent.
pub trait Observer: Sync {
    /// A line for the user, said once: a banner, a warning, where spans are received.
    fn say(&self, _line: &str) {}
    /// Long work under way: what it is, how far it got (`done` of `of`, in `unit`s).
    fn progress(&self, _what: &str, _done: u64, _of: Option<u64>, _unit: &str) {}
    /// A ramp's step, measured.
    fn step(&self, _step: &chokepoint_evidence::LoadStep) {}
    /// The long work ended: what progress showed is cleared.
    fn done(&self) {}
}

/// An observer that hears nothing.
pub struct Silent;

impl Observer for Silent {}

/// A request to stop collecting early (Ctrl-C, SIGTERM): sources end where they are and return
/// what they gathered, saying so.
#[derive(Clone, Debug, Default)]
pub struct Stop {
    flag: Arc<AtomicBool>,
    notify: Arc<tokio::sync::Notify>,
}

impl Stop {
    /// Asks every source holding this to stop.
    pub fn request(&self) {
        self.flag.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Whether stopping was asked.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// The flag itself, for the readers that poll one.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.flag)
    }

    /// Resolves once stopping is asked.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.requested() {
                return;
            }
            notified.await;
        }
    }
}

/// The files among `paths` a saved run keeps, when it keeps them (folders are read, not copied).
fn files_kept(paths: &[PathBuf], keep: bool) -> Vec<PathBuf> {
    match keep {
        true => paths.iter().filter(|p| p.is_file()).cloned().collect(),
        false => Vec::new(),
    }
}

/// Now, in seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
