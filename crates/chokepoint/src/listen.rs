//! `chokepoint listen`: receive OTLP live, record it, analyse traces as they complete, and report
//! when stopped (Ctrl-C, SIGTERM or `--duration`); with `--save --checkpoint`, the run saved as
//! it stands every so often.

use chokepoint_collect::Partial;
use chokepoint_collect::receiver::{Checkpoint, Listen};

use crate::args::ListenConfig;
use crate::output;

pub(crate) fn run(config: ListenConfig) -> anyhow::Result<u8> {
    // Registered before the banner: a signal that comes as soon as the addresses are known is
    // not lost.
    let stop = crate::signals::watch()?;
    let progress = config.report.progress;
    let checkpoint = config
        .checkpoint
        .zip(config.report.save.clone())
        .map(|(every, save)| {
            let save: Checkpoint = Box::new(move |part: &Partial| {
                match crate::runs::save_evidence(
                    "listen",
                    &part.evidence,
                    &part.inputs,
                    &part.notes,
                    &save,
                    &[],
                ) {
                    Ok(dir) if progress => eprintln!(
                        "chokepoint: checkpoint of {} spans saved in {}",
                        part.inputs.iter().map(|i| i.spans).sum::<u64>(),
                        dir.display()
                    ),
                    Ok(_) => {}
                    Err(error) => eprintln!("chokepoint: cannot save the checkpoint: {error:#}"),
                }
            });
            (every, save)
        });
    let listen = Listen {
        http: config.http,
        grpc: config.grpc,
        out: config.out,
        duration: config.duration,
        max_body_bytes: config.max_body_bytes,
        max_connections: config.max_connections,
        tls: config.tls,
        token: config.token,
        checkpoint,
        stop,
    };
    let part = output::collect(vec![Box::new(listen)], progress)?;
    let (report, _) = crate::runs::report(
        "listen",
        part.evidence,
        part.inputs,
        part.notes,
        &config.report,
        &[],
    );
    Ok(output::finish(&report, &config.report))
}
