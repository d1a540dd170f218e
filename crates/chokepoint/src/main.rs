//! The `chokepoint` command: parses arguments, wires collectors to the analysis and the
//! renderers, prints, and chooses the exit code. Everything else lives in the library crates.

mod args;
mod db;
mod diagnose;
mod listen;
mod load;
mod output;
mod profile;
mod runs;
mod scan;
mod signals;
mod traces;

use std::process::ExitCode;

use clap::Parser as _;

use crate::args::{Cli, Command};

/// Spans are allocated on the reading thread and freed on the analysis thread; glibc's
/// allocator serializes that on a lock, mimalloc does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code: the analysis ran; no finding matched `--fail-on`.
const EXIT_OK: u8 = 0;
/// Exit code: a finding matched `--fail-on`.
const EXIT_FINDINGS: u8 = 1;
/// Exit code: bad input or usage — unreadable or empty input, bad arguments, a port in use.
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Traces(args) => args.validate().and_then(traces::run),
        Command::Listen(args) => args.validate().and_then(listen::run),
        Command::Load(args) => args.validate().and_then(load::run),
        Command::Diagnose(args) => args.validate().and_then(diagnose::run),
        Command::Db(args) => args.validate().and_then(db::run),
        Command::Profile(args) => args.validate().and_then(profile::run),
        Command::Scan(args) => args.validate().and_then(scan::run),
        Command::Report { run, report } => report.validate().and_then(|config| runs::show(&run, &config)),
        Command::Merge { runs, report } => report.validate().and_then(|config| runs::merge(&runs, &config)),
        Command::Compare {
            before,
            after,
            format,
            fail_on_regression,
        } => fail_on_regression
            .as_deref()
            .map(args::parse_percent)
            .transpose()
            .and_then(|limit| runs::compare(&before, &after, format, limit)),
        Command::Detectors => {
            output::print_detectors();
            Ok(EXIT_OK)
        }
        Command::Explain { id } => output::explain(&id),
        Command::Schema => {
            print!("{}", chokepoint_report::schema());
            Ok(EXIT_OK)
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "chokepoint", &mut std::io::stdout());
            Ok(EXIT_OK)
        }
        Command::Man { command } => output::man(command.as_deref()),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}
