//! Samplers that watch the target while the ramp runs: the process (and its children) from
//! `/proc` — CPU, thread states, scheduler run delay — the listen socket's accept queue, the
//! host's CPU, and the generator's own CPU, so a limit in the generator is not blamed on the
//! target.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chokepoint_evidence::TargetSample;
use procfs::CurrentSI as _;
use procfs::process::{FDTarget, Process};

/// How often the target is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// The accept queue is read on every this-many samples (every 500 ms).
const QUEUE_EVERY_NTH_SAMPLE: u64 = 5;

/// The process listening on `port` (IPv4 or IPv6), if this user can see it.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for entries in [procfs::net::tcp(), procfs::net::tcp6()].into_iter().flatten() {
        for entry in entries {
            if entry.local_address.port() == port && entry.state == procfs::net::TcpState::Listen {
                inodes.push(entry.inode);
            }
        }
    }
    for process in procfs::process::all_processes().ok()?.flatten() {
        let Ok(fds) = process.fd() else { continue };
        for fd in fds.flatten() {
            if let FDTarget::Socket(inode) = fd.target {
                if inodes.contains(&inode) {
                    return u32::try_from(process.pid).ok();
                }
            }
        }
    }
    None
}

/// A process and all its descendants (uvicorn and gunicorn fork their workers).
fn process_tree(root: i32) -> Vec<i32> {
    let mut tree = vec![root];
    let Ok(all) = procfs::process::all_processes() else {
        return tree;
    };
    let parents: Vec<(i32, i32)> = all
        .flatten()
        .filter_map(|p| p.stat().ok().map(|s| (s.pid, s.ppid)))
        .collect();
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    tree
}

/// Cumulative counters of a process tree at one instant.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    cpu_s: f64,
    run_delay_s: f64,
    running: u64,
    blocked_io: u64,
    threads: u64,
}

fn read_counters(pids: &[i32]) -> Counters {
    let ticks = procfs::ticks_per_second() as f64;
    let mut counters = Counters::default();
    for &pid in pids {
        let Ok(process) = Process::new(pid) else { continue };
        if let Ok(stat) = process.stat() {
            counters.cpu_s += (stat.utime + stat.stime) as f64 / ticks;
        }
        let Ok(tasks) = process.tasks() else { continue };
        for task in tasks.flatten() {
            counters.threads += 1;
            if let Ok(stat) = task.stat() {
                match stat.state {
                    'R' => counters.running += 1,
                    'D' => counters.blocked_io += 1,
                    _ => {}
                }
            }
            if let Ok(schedstat) = task.schedstat() {
                counters.run_delay_s += schedstat.run_delay as f64 / 1e9;
            }
        }
    }
    counters
}

/// One read of the host's TCP sockets (`/proc/net/tcp` and `tcp6`): the accept queue of the
/// socket listening on `port` — connections the kernel accepted that the application has not
/// taken yet — and the remote ends of the established connections the target `pids` opened
/// (sockets they own whose local port is none they listen on).
fn sockets(port: u16, pids: &[i32]) -> (f64, Vec<SocketAddr>) {
    // The target's sockets first: a short-lived connection must outlive only the table's read.
    let owned: HashSet<u64> = pids
        .iter()
        .filter_map(|&pid| Process::new(pid).ok()?.fd().ok())
        .flat_map(|fds| fds.flatten())
        .filter_map(|fd| match fd.target {
            FDTarget::Socket(inode) => Some(inode),
            _ => None,
        })
        .collect();
    let entries: Vec<procfs::net::TcpNetEntry> = [procfs::net::tcp(), procfs::net::tcp6()]
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    let queue = entries
        .iter()
        .filter(|e| e.local_address.port() == port && e.state == procfs::net::TcpState::Listen)
        .map(|e| f64::from(e.rx_queue))
        .sum();
    // Connections accepted on any port the target listens on are inbound, not its own.
    let listening: HashSet<u16> = entries
        .iter()
        .filter(|e| e.state == procfs::net::TcpState::Listen && owned.contains(&e.inode))
        .map(|e| e.local_address.port())
        .chain([port])
        .collect();
    let peers = entries
        .iter()
        .filter(|e| {
            e.state == procfs::net::TcpState::Established
                && !listening.contains(&e.local_address.port())
                && owned.contains(&e.inode)
        })
        .map(|e| e.remote_address)
        .collect();
    (queue, peers)
}

/// A host TCP counter: `file`'s `group` (two lines, names then values) and its `name`.
fn tcp_counter(file: &str, group: &str, name: &str) -> f64 {
    let Ok(text) = std::fs::read_to_string(file) else {
        return 0.0;
    };
    let mut lines = text.lines().filter(|l| l.starts_with(group));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0.0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0.0)
}

/// Connections dropped because an accept queue was full (host-wide).
fn listen_overflows() -> f64 {
    tcp_counter("/proc/net/netstat", "TcpExt:", "ListenOverflows")
}

/// Connections opened from this host (its network namespace): `connect` calls that sent a SYN.
fn active_opens() -> f64 {
    tcp_counter("/proc/net/snmp", "Tcp:", "ActiveOpens")
}

/// Busy and total jiffies of the host.
fn host_cpu() -> (f64, f64) {
    let Ok(stat) = procfs::KernelStats::current() else {
        return (0.0, 0.0);
    };
    let t = stat.total;
    let idle = t.idle + t.iowait.unwrap_or(0);
    let total = t.user
        + t.nice
        + t.system
        + idle
        + t.irq.unwrap_or(0)
        + t.softirq.unwrap_or(0)
        + t.steal.unwrap_or(0);
    ((total - idle) as f64, total as f64)
}

/// Running sums over the samples of the current step.
#[derive(Debug, Default)]
struct Window {
    samples: u64,
    running: f64,
    blocked_io: f64,
    threads: f64,
    queue_samples: u64,
    queue: f64,
    queue_max: f64,
    /// Remote ends of the target's outbound connections, and how often each was seen.
    peers: HashMap<SocketAddr, u64>,
}

/// Samples a target in the background; [`Sampler::step`] returns what one step looked like.
pub struct Sampler {
    pids: Vec<i32>,
    port: Option<u16>,
    window: Arc<Mutex<Window>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    started: Instant,
    start_counters: Counters,
    start_self_cpu: f64,
    start_host: (f64, f64),
    start_overflows: f64,
    start_active_opens: f64,
}

/// What one step looked like to the samplers.
#[derive(Debug, Default)]
pub struct Sampled {
    /// The target, when it is sampled; its `outbound_connections` still counts the generator's
    /// own (see [`Sampled::active_opens`]).
    pub target: Option<TargetSample>,
    /// The host's CPU busy, 0–1.
    pub host_busy: f64,
    /// The generator's CPU, in cores.
    pub generator_cores: f64,
    /// Connections opened from the host during the step (`ActiveOpens`), the generator's
    /// included.
    pub active_opens: f64,
}

impl Sampler {
    /// Starts sampling the process `pid` (and its children), and the accept queue of `port`.
    pub fn start(pid: Option<u32>, port: Option<u16>) -> Sampler {
        let pids = pid.map(|p| process_tree(p as i32)).unwrap_or_default();
        let window = Arc::new(Mutex::new(Window::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (pids, window, stop) = (pids.clone(), Arc::clone(&window), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("chokepoint-sampler".into())
                .spawn(move || {
                    let mut tick = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let counters = read_counters(&pids);
                        // /proc/net/tcp walks every socket of the host, established ones too:
                        // the accept queue is read less often than the process.
                        let read = (tick % QUEUE_EVERY_NTH_SAMPLE == 0)
                            .then(|| port.map_or((0.0, Vec::new()), |port| sockets(port, &pids)));
                        tick += 1;
                        if let Ok(mut w) = window.lock() {
                            w.samples += 1;
                            w.running += counters.running as f64;
                            w.blocked_io += counters.blocked_io as f64;
                            w.threads = counters.threads as f64;
                            if let Some((queue, peers)) = read {
                                w.queue_samples += 1;
                                w.queue += queue;
                                w.queue_max = w.queue_max.max(queue);
                                for peer in peers {
                                    *w.peers.entry(peer).or_default() += 1;
                                }
                            }
                        }
                        std::thread::sleep(SAMPLE_EVERY);
                    }
                })
                .ok()
        };
        Sampler {
            start_counters: read_counters(&pids),
            pids,
            port,
            window,
            stop,
            thread,
            started: Instant::now(),
            start_self_cpu: self_cpu_s(),
            start_host: host_cpu(),
            start_overflows: listen_overflows(),
            start_active_opens: active_opens(),
        }
    }

    /// Ends the current step: what the target, the host and the generator did since the last
    /// call (or the start).
    pub fn step(&mut self) -> Sampled {
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let counters = read_counters(&self.pids);
        let overflows = listen_overflows();
        let opens = active_opens();
        let window = self
            .window
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default();
        let n = window.samples.max(1) as f64;
        let target = (!self.pids.is_empty()).then(|| TargetSample {
            cpu_cores: (counters.cpu_s - self.start_counters.cpu_s).max(0.0) / elapsed,
            threads_running: window.running / n,
            threads_blocked_io: window.blocked_io / n,
            threads: window.threads,
            run_delay_ms_per_s: (counters.run_delay_s - self.start_counters.run_delay_s).max(0.0) * 1e3
                / elapsed,
            accept_queue: if self.port.is_some() {
                window.queue / window.queue_samples.max(1) as f64
            } else {
                0.0
            },
            accept_queue_max: window.queue_max,
            listen_overflows: (overflows - self.start_overflows).max(0.0),
            outbound_connections: 0.0,
            outbound_peer: window
                .peers
                .iter()
                .max_by_key(|(_, seen)| **seen)
                .map(|(peer, _)| peer.to_string()),
        });
        let host = host_cpu();
        let host_busy = {
            let (busy, total) = (host.0 - self.start_host.0, host.1 - self.start_host.1);
            if total > 0.0 { busy / total } else { 0.0 }
        };
        let self_cpu = self_cpu_s();
        let generator_cores = (self_cpu - self.start_self_cpu).max(0.0) / elapsed;
        self.started = Instant::now();
        self.start_counters = counters;
        self.start_self_cpu = self_cpu;
        self.start_host = host;
        self.start_overflows = overflows;
        let opened = (opens - self.start_active_opens).max(0.0);
        self.start_active_opens = opens;
        Sampled {
            target,
            host_busy,
            generator_cores,
            active_opens: opened,
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// This process's CPU time, in seconds.
fn self_cpu_s() -> f64 {
    let ticks = procfs::ticks_per_second() as f64;
    Process::myself()
        .and_then(|p| p.stat())
        .map(|s| (s.utime + s.stime) as f64 / ticks)
        .unwrap_or(0.0)
}
