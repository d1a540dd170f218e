//! `chokepoint db`: one read-only snapshot of a PostgreSQL database's statistics, analysed.

use chokepoint_collect::database::Database;

use crate::args::DbConfig;
use crate::output;

pub(crate) fn run(config: DbConfig) -> anyhow::Result<u8> {
    // A snapshot alone is quick: Ctrl-C ends it as usual; a watch reports what it sampled.
    let stop = match config.watch {
        Some(_) => crate::signals::watch()?,
        None => Default::default(),
    };
    let database = Database {
        url: config.url,
        show_literals: config.show_literals,
        watch: config.watch,
        stop,
        beside: false,
    };
    let part = output::collect(vec![Box::new(database)], config.report.progress)?;
    let (report, _) = crate::runs::report("db", part.evidence, part.inputs, part.notes, &config.report, &[]);
    Ok(output::finish(&report, &config.report))
}
