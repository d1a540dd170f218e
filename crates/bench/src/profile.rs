//! Profiles for `scripts/bench-profile.sh`: a FastAPI-like service sampled by py-spy — uvicorn
//! and Starlette frames, handlers that serialize, log, compile patterns, sort, query through
//! SQLAlchemy or compute, and idle threads — as collapsed stacks or speedscope JSON; and the
//! bare parse of such a file (chokepoint's reader, the profile dropped).

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::time::Instant;

use crate::Rng;

const SITE: &str = "/srv/shop/.venv/lib/python3.11/site-packages";
const LIB: &str = "/usr/lib/python3.11";

/// The frames above every handler: the worker thread running a sync endpoint.
fn base() -> Vec<String> {
    [
        format!("Thread._bootstrap ({LIB}/threading.py:1002)"),
        format!("Thread._bootstrap_inner ({LIB}/threading.py:1045)"),
        format!("WorkerThread.run ({SITE}/anyio/_backends/_asyncio.py:1124)"),
        format!("run_endpoint_function ({SITE}/fastapi/routing.py:214)"),
    ]
    .into()
}

/// What a handler does below itself, by kind.
fn tail(kind: u64, rng: &mut Rng) -> Vec<String> {
    let line = |rng: &mut Rng, base: u64| base + rng.below(40);
    match kind {
        0 => vec![
            format!("dumps ({LIB}/json/__init__.py:238)"),
            format!("JSONEncoder.encode ({LIB}/json/encoder.py:202)"),
            format!(
                "_make_iterencode.<locals>._iterencode_list ({LIB}/json/encoder.py:{})",
                line(rng, 300)
            ),
            format!(
                "_make_iterencode.<locals>._iterencode_dict ({LIB}/json/encoder.py:{})",
                line(rng, 350)
            ),
        ],
        1 => vec![
            format!("Logger.info ({LIB}/logging/__init__.py:1489)"),
            format!("Logger._log ({LIB}/logging/__init__.py:1634)"),
            format!("Logger.handle ({LIB}/logging/__init__.py:1644)"),
            format!(
                "StreamHandler.emit ({LIB}/logging/__init__.py:{})",
                line(rng, 1110)
            ),
        ],
        2 => vec![
            format!("compile ({LIB}/re/__init__.py:227)"),
            format!("_compile ({LIB}/re/__init__.py:294)"),
            format!("compile ({LIB}/re/_compiler.py:745)"),
            format!("parse ({LIB}/re/_parser.py:{})", line(rng, 970)),
        ],
        3 => vec![
            format!("Session.scalars ({SITE}/sqlalchemy/orm/session.py:2481)"),
            format!("Connection.execute ({SITE}/sqlalchemy/engine/base.py:1464)"),
            format!("Cursor.execute ({SITE}/psycopg/cursor.py:{})", line(rng, 100)),
        ],
        _ => Vec::new(),
    }
}

/// One sampled stack, root first, and its thread.
fn stack(rng: &mut Rng) -> (u64, Vec<String>) {
    let thread = rng.below(8);
    if rng.below(10) < 3 {
        // An idle worker.
        return (
            thread,
            vec![
                format!("Thread._bootstrap ({LIB}/threading.py:1002)"),
                format!("_worker ({LIB}/concurrent/futures/thread.py:81)"),
            ],
        );
    }
    let handler = rng.below(40);
    let mut frames = base();
    frames.push(format!(
        "handler_{handler} (/srv/shop/app/routes_{}.py:{})",
        handler % 6,
        10 + rng.below(200)
    ));
    frames.extend(tail(rng.below(6), rng));
    (thread, frames)
}

/// Writes collapsed stacks until the file holds `bytes`.
pub(crate) fn generate_collapsed(bytes: u64, path: &Path) -> Result<(), String> {
    let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = BufWriter::new(file);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut written, mut lines, mut samples) = (0u64, 0u64, 0u64);
    while written < bytes {
        let (thread, frames) = stack(&mut rng);
        let count = 1 + rng.below(20);
        let line = format!(
            "thread ({}): worker-{thread};{} {count}\n",
            1000 + thread,
            frames.join(";")
        );
        out.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
        written += line.len() as u64;
        lines += 1;
        samples += count;
    }
    out.flush().map_err(|e| e.to_string())?;
    println!("{lines} lines, {samples} samples, {written} bytes");
    Ok(())
}

/// Writes a py-spy-like sampled speedscope file of `samples` samples over 8 threads.
pub(crate) fn generate_speedscope(samples: u64, path: &Path) -> Result<(), String> {
    let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = BufWriter::new(file);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut frames: Vec<String> = Vec::new();
    let mut index = std::collections::HashMap::new();
    let mut threads: Vec<Vec<Vec<usize>>> = vec![Vec::new(); 8];
    for _ in 0..samples {
        let (thread, stack) = stack(&mut rng);
        let ids = stack
            .into_iter()
            .map(|frame| {
                *index.entry(frame.clone()).or_insert_with(|| {
                    frames.push(frame);
                    frames.len() - 1
                })
            })
            .collect();
        threads[thread as usize].push(ids);
    }
    let write =
        |out: &mut BufWriter<File>, text: &str| out.write_all(text.as_bytes()).map_err(|e| e.to_string());
    write(
        &mut out,
        "{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\",\"shared\":{\"frames\":[",
    )?;
    for (i, frame) in frames.iter().enumerate() {
        let (name, rest) = frame.split_once(" (").unwrap_or((frame, ")"));
        let (file, line) = rest.trim_end_matches(')').rsplit_once(':').unwrap_or(("", "0"));
        let comma = if i > 0 { "," } else { "" };
        write(
            &mut out,
            &format!("{comma}{{\"name\":\"{name}\",\"file\":\"{file}\",\"line\":{line}}}"),
        )?;
    }
    write(&mut out, "]},\"profiles\":[")?;
    for (t, stacks) in threads.iter().enumerate() {
        let comma = if t > 0 { "," } else { "" };
        write(
            &mut out,
            &format!(
                "{comma}{{\"type\":\"sampled\",\"name\":\"Thread {t}\",\"unit\":\"seconds\",\"startValue\":0,\"endValue\":{},\"samples\":[",
                stacks.len() as f64 / 100.0
            ),
        )?;
        for (i, stack) in stacks.iter().enumerate() {
            let ids: Vec<String> = stack.iter().map(ToString::to_string).collect();
            write(
                &mut out,
                &format!("{}[{}]", if i > 0 { "," } else { "" }, ids.join(",")),
            )?;
        }
        write(&mut out, "],\"weights\":[")?;
        let weights = vec!["0.01"; stacks.len()].join(",");
        write(&mut out, &weights)?;
        write(&mut out, "]}")?;
    }
    write(&mut out, "],\"exporter\":\"chokepoint-bench\"}")?;
    out.flush().map_err(|e| e.to_string())?;
    println!("{samples} samples, {} frames", frames.len());
    Ok(())
}

/// The bare parse: chokepoint's reader, the profile dropped.
pub(crate) fn parse(path: &Path) -> Result<(), String> {
    let started = Instant::now();
    let read = chokepoint_profile::read_path(path, &chokepoint_profile::ReadOptions::default());
    let seconds = started.elapsed().as_secs_f64();
    if let Some(problem) = read.problems.first() {
        return Err(problem.to_string());
    }
    let profile = read.profile.ok_or("no profile")?;
    println!(
        "parse: {} samples, {} stacks in {seconds:.3} s",
        profile.total(),
        profile.stacks.len()
    );
    Ok(())
}
