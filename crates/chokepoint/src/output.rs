//! Printing reports, choosing exit codes, and the `detectors` and `explain` commands.

use anyhow::bail;
use chokepoint_evidence::Severity;
use chokepoint_report::Report;

use crate::args::{FailOn, Format, ReportConfig};
use crate::{EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK};

/// Prints the report and returns the exit code: 2 when evidence was lost — a note of severity
/// error: input that could not be read, a source that failed (even though what could be read is
/// reported) — else 1 when a finding matches `--fail-on`, else 0.
pub(crate) fn finish(report: &Report, config: &ReportConfig) -> u8 {
    let rendered = config.format.rendering(config.color).render(report);
    // A reader that stops early (`| head`) is not an error of ours.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), rendered.as_bytes());
    if config.format != Format::Text {
        // Tools read stdout; people still need to see what went wrong.
        for note in report.notes.iter().filter(|n| n.severity != Severity::Info) {
            eprintln!("{}: {note}", note.severity.as_str());
        }
    }
    // A shape read in the source counts in `scan`, and elsewhere only when asked: a runtime
    // report fails on what was measured (or a line joined to a measurement).
    let counted = report
        .findings
        .iter()
        .filter(|f| config.fail_on_potential || !matches!(f.impact, chokepoint_detect::Impact::Potential(_)));
    let failing = match &config.fail_on {
        FailOn::Never => false,
        FailOn::Any => counted.count() > 0,
        FailOn::Ids(ids) => counted.into_iter().any(|f| ids.contains(&f.detector)),
    };
    if report.has_errors() {
        EXIT_BAD_INPUT
    } else if failing {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    }
}

/// `chokepoint detectors`.
pub(crate) fn print_detectors() {
    let width = chokepoint_detect::detectors()
        .map(|d| d.id.as_str().len())
        .max()
        .unwrap_or(0);
    for meta in chokepoint_detect::detectors() {
        println!("{:width$}  {}", meta.id.as_str(), meta.summary);
    }
    println!("\n`chokepoint explain <id>` prints what a detector looks for and how to fix what it finds.");
}

/// `chokepoint explain <id>`.
pub(crate) fn explain(id: &str) -> anyhow::Result<u8> {
    let Some(meta) = chokepoint_detect::find_detector(id) else {
        let known: Vec<_> = chokepoint_detect::detectors().map(|d| d.id.as_str()).collect();
        bail!("no detector {id:?}; the detectors are: {}", known.join(", "));
    };
    println!("# {} — {}\n", meta.id, meta.summary);
    print!("{}", meta.doc_markdown());
    let reads: Vec<String> = meta
        .reads()
        .into_iter()
        .map(|(kind, what)| format!("{} ({what})", kind.noun()))
        .collect();
    println!("\nReads: {}.", reads.join("; "));
    Ok(EXIT_OK)
}

/// `chokepoint man [COMMAND]`: the manual page, from the same definitions as `--help`.
pub(crate) fn man(command: Option<&str>) -> anyhow::Result<u8> {
    let mut page = <crate::args::Cli as clap::CommandFactory>::command();
    if let Some(name) = command {
        let names: Vec<String> = page.get_subcommands().map(|c| c.get_name().to_owned()).collect();
        page = match page.find_subcommand(name) {
            Some(sub) => sub
                .clone()
                .display_name(format!("chokepoint-{name}"))
                .bin_name(format!("chokepoint {name}")),
            None => bail!("no command {name:?}: one of {}", names.join(", ")),
        };
    }
    clap_mangen::Man::new(page).render(&mut std::io::stdout().lock())?;
    Ok(EXIT_OK)
}

/// How collecting goes, on standard error: lines said once, and a spinner with what is being
/// done on a terminal (`progress`).
pub(crate) struct Terminal {
    progress: bool,
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl Terminal {
    pub(crate) fn new(progress: bool) -> Terminal {
        Terminal {
            progress,
            bar: std::sync::Mutex::new(None),
        }
    }

    fn with_bar(&self, f: impl FnOnce(&mut Option<indicatif::ProgressBar>)) {
        if let Ok(mut bar) = self.bar.lock() {
            f(&mut bar);
        }
    }
}

impl chokepoint_collect::Observer for Terminal {
    fn say(&self, line: &str) {
        self.with_bar(|bar| match bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        });
    }

    fn progress(&self, what: &str, done: u64, of: Option<u64>, unit: &str) {
        if !self.progress {
            return;
        }
        let message = match of {
            Some(of) => format!("{what}: {done}/{of} {unit}"),
            None if done > 0 => format!("{what}: {} {unit}", indicatif::HumanCount(done)),
            None => what.to_owned(),
        };
        self.with_bar(|bar| {
            bar.get_or_insert_with(|| {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                bar
            })
            .set_message(message);
        });
    }

    fn done(&self) {
        self.with_bar(|bar| {
            if let Some(bar) = bar.take() {
                bar.finish_and_clear();
            }
        });
    }
}

/// Collects the sources' evidence, showing how it goes.
pub(crate) fn collect(
    sources: Vec<Box<dyn chokepoint_collect::Source>>,
    progress: bool,
) -> anyhow::Result<chokepoint_collect::Partial> {
    chokepoint_collect::collect(sources, &Terminal::new(progress))
}
