//! `chokepoint scan`, and the scan of `--source` beside every other kind of evidence.

use chokepoint_collect::source::SourceTree;

use crate::args::ScanConfig;
use crate::output;

pub(crate) fn run(config: ScanConfig) -> anyhow::Result<u8> {
    let tree = SourceTree {
        paths: config.paths,
        options: config.options,
    };
    let part = output::collect(vec![Box::new(tree)], config.report.progress)?;
    let (mut report, _) = crate::runs::report(
        "scan",
        part.evidence,
        part.inputs,
        part.notes,
        &config.report,
        &[],
    );
    // Detectors that read other kinds are not the scan's to mention.
    report.skipped.clear();
    Ok(output::finish(&report, &config.report))
}
