//! `chokepoint scan`, and the scan of `--source` beside every other kind of evidence.

use chokepoint_evidence::Evidence;

use crate::args::ScanConfig;
use crate::output;

pub(crate) fn run(config: ScanConfig) -> anyhow::Result<u8> {
    let mut inputs = Vec::new();
    let mut notes = Vec::new();
    let source = crate::runs::scan_sources(&config.paths, &config.options, &mut inputs, &mut notes);
    let evidence = Evidence {
        source: Some(source),
        ..Evidence::default()
    };
    let (mut report, _) = crate::runs::report("scan", evidence, inputs, notes, &config.report, &[]);
    // Detectors that read other kinds are not the scan's to mention.
    report.skipped.clear();
    Ok(output::finish(&report, &config.report))
}
