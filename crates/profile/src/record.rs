//! Recording a profile of a running Python process with py-spy — the well-kept sampler — with
//! idle samples (without them a blocked event loop is invisible: the blocked thread is "idle"),
//! thread ids and full file names, without pausing the process (`--nonblocking`).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A finished recording.
#[derive(Debug)]
pub struct Recording {
    /// The raw (collapsed) file py-spy wrote.
    pub path: PathBuf,
    /// The py-spy used.
    pub py_spy: PathBuf,
}

/// Why a recording failed, with what to do.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// py-spy is not installed.
    #[error(
        "py-spy is not installed (looked on PATH, beside chokepoint and in ./.venv/bin): install it with \
         `pip install py-spy` (or `pipx install py-spy`; with chokepoint's wheel, `pipx install 'chokepoint-cli[profile]'`), \
         or point --py-spy at it"
    )]
    Missing,
    /// Not allowed to read the process's memory.
    #[error(
        "py-spy may not read process {pid}: {detail}. Run chokepoint as root (sudo), give py-spy the \
         capability (`sudo setcap cap_sys_ptrace+ep $(which py-spy)`), or allow tracing of non-child processes \
         (`sudo sysctl kernel.yama.ptrace_scope=0`); in a container, start it with `--cap-add SYS_PTRACE`"
    )]
    Permission {
        /// The process.
        pid: u32,
        /// py-spy's words.
        detail: String,
    },
    /// The process is not there, or not Python.
    #[error("py-spy cannot profile process {pid}: {detail} (is it a running Python process?)")]
    Process {
        /// The process.
        pid: u32,
        /// py-spy's words.
        detail: String,
    },
    /// py-spy could not be run, or failed otherwise.
    #[error("py-spy failed: {0}")]
    Failed(String),
}

/// The py-spy to run: `explicit`, else on `PATH`, else beside the running executable (where
/// `pipx install 'chokepoint-cli[profile]'` puts it, in the same environment), else in
/// `./.venv/bin`.
pub fn find_py_spy(explicit: Option<&Path>) -> Result<PathBuf, RecordError> {
    if let Some(path) = explicit {
        return path
            .is_file()
            .then(|| path.to_path_buf())
            .ok_or(RecordError::Missing);
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("py-spy"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("py-spy")));
    on_path
        .into_iter()
        .chain(beside)
        .chain([PathBuf::from(".venv/bin/py-spy")])
        .find(|p| p.is_file())
        .ok_or(RecordError::Missing)
}

/// The py-spy command line that records `pid` for `duration` at `rate_hz` into `out`.
pub fn py_spy_command(py_spy: &Path, pid: u32, duration: Duration, rate_hz: u32, out: &Path) -> Command {
    let mut command = Command::new(py_spy);
    command
        .arg("record")
        .args(["--pid", &pid.to_string()])
        .args(["--duration", &duration.as_secs().max(1).to_string()])
        .args(["--rate", &rate_hz.to_string()])
        .args([
            "--format",
            "raw",
            "--idle",
            "--threads",
            "--full-filenames",
            "--nonblocking",
        ])
        .arg("--output")
        .arg(out);
    command
}

/// What py-spy's words say went wrong: its `Error:` line, sorted into what the user can do.
fn classify(words: &str, pid: u32) -> RecordError {
    let detail = words
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("Error: "))
        .or_else(|| words.lines().map(str::trim).rfind(|l| !l.is_empty()))
        .unwrap_or("no output")
        .to_owned();
    let lower = words.to_lowercase();
    if lower.contains("permission denied") || lower.contains("operation not permitted") {
        RecordError::Permission { pid, detail }
    } else if lower.contains("no such process")
        || lower.contains("check that the process is running")
        || lower.contains("failed to find python")
        || lower.contains("python version")
    {
        RecordError::Process { pid, detail }
    } else {
        RecordError::Failed(detail)
    }
}

/// A py-spy recording under way.
#[derive(Debug)]
pub struct Recorder {
    child: std::process::Child,
    pid: u32,
    out: PathBuf,
    py_spy: PathBuf,
}

/// Starts recording `pid` with py-spy for at most `duration`, into `out`.
pub fn start(
    py_spy: Option<&Path>,
    pid: u32,
    duration: Duration,
    rate_hz: u32,
    out: &Path,
) -> Result<Recorder, RecordError> {
    let py_spy = find_py_spy(py_spy)?;
    // Its own process group: a Ctrl-C at the terminal reaches chokepoint alone, which stops
    // py-spy with one interrupt (a second would abort it before it writes).
    let child = py_spy_command(&py_spy, pid, duration, rate_hz, out)
        .process_group(0)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RecordError::Failed(format!("cannot run {}: {e}", py_spy.display())))?;
    Ok(Recorder {
        child,
        pid,
        out: out.to_path_buf(),
        py_spy,
    })
}

impl Recorder {
    /// Waits for the recording to end by itself (its duration).
    pub fn wait(self) -> Result<Recording, RecordError> {
        self.finish()
    }

    /// Whether py-spy is still recording.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the recording now (py-spy writes what it has on an interrupt) and waits for it.
    pub fn stop(self) -> Result<Recording, RecordError> {
        let child_pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        // Already gone is fine: it finished by itself.
        let _ = nix::sys::signal::kill(child_pid, nix::sys::signal::Signal::SIGINT);
        self.finish()
    }

    fn finish(self) -> Result<Recording, RecordError> {
        let Recorder {
            child,
            pid,
            out,
            py_spy,
        } = self;
        let output = child
            .wait_with_output()
            .map_err(|e| RecordError::Failed(format!("py-spy: {e}")))?;
        let words = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
        if !out.is_file() {
            return Err(classify(&words, pid));
        }
        Ok(Recording { path: out, py_spy })
    }
}

/// Records `pid` with py-spy for `duration`, into `out`; blocks until py-spy is done.
pub fn record(
    py_spy: Option<&Path>,
    pid: u32,
    duration: Duration,
    rate_hz: u32,
    out: &Path,
) -> Result<Recording, RecordError> {
    start(py_spy, pid, duration, rate_hz, out)?.wait()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn py_spy_errors_say_what_to_do() {
        // py-spy 0.4's own words.
        let denied = classify(
            "Error: Permission Denied: Try running again with elevated permissions by going 'sudo env \"PATH=$PATH\" !!'\n",
            7,
        );
        assert!(matches!(denied, RecordError::Permission { pid: 7, .. }));
        let text = denied.to_string();
        assert!(
            text.contains("CAP_SYS_PTRACE") || text.contains("cap_sys_ptrace"),
            "{text}"
        );
        assert!(text.contains("ptrace_scope"), "{text}");
        let gone = classify(
            "Error: Failed to get process executable name. Check that the process is running.\n\nCaused by:\n    0: No such file",
            8,
        );
        assert!(
            matches!(&gone, RecordError::Process { detail, .. } if detail.starts_with("Failed to get process")),
            "{gone:?}"
        );
        assert!(matches!(
            classify("Error: Failed to find python version from target process\n", 9),
            RecordError::Process { .. }
        ));
    }
}
