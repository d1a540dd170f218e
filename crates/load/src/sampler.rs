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
/// The host's established connections are read at most on every this-many samples (every
/// 500 ms), and only when the host opened connections since the last read: the read walks every
/// bucket of the kernel's established table (262,144 on a 24 GiB host, about 4 ms of CPU).
const PEERS_EVERY_NTH_SAMPLE: u64 = 5;

/// The longest command line kept, in characters.
const MAX_COMMAND_CHARS: usize = 300;

/// A process's command line, arguments joined by spaces and clipped: which server runs the
/// service (`gunicorn -w 4 app:app`, `uvicorn main:app`, `python serve.py`).
pub fn command_line(pid: u32) -> Option<String> {
    let args = Process::new(i32::try_from(pid).ok()?).ok()?.cmdline().ok()?;
    let line: String = args.join(" ").chars().take(MAX_COMMAND_CHARS).collect();
    (!line.is_empty()).then_some(line)
}

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
            if let FDTarget::Socket(inode) = fd.target
                && inodes.contains(&inode)
            {
                return u32::try_from(process.pid).ok();
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

/// One socket of the host's TCP tables.
struct TcpSocket {
    listening: bool,
    local_port: u16,
    remote: SocketAddr,
    /// For a listening socket, its accept queue: connections the kernel accepted that the
    /// application has not taken yet.
    queue: u32,
    inode: u64,
}

/// The host's TCP sockets, IPv4 and IPv6: the listening ones only, or the established ones too.
/// Asked of the kernel's socket diagnostics (netlink `sock_diag`), where a dump of listening
/// sockets reads only the listening table; `/proc/net/tcp`, which walks the established table
/// whatever is asked, when netlink is not allowed.
fn tcp_sockets(established: bool) -> Vec<TcpSocket> {
    match diag::tcp_sockets(established) {
        Ok(sockets) => sockets,
        Err(_) => [procfs::net::tcp(), procfs::net::tcp6()]
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let listening = e.state == procfs::net::TcpState::Listen;
                (listening || (established && e.state == procfs::net::TcpState::Established)).then_some(
                    TcpSocket {
                        listening,
                        local_port: e.local_address.port(),
                        remote: e.remote_address,
                        queue: e.rx_queue,
                        inode: e.inode,
                    },
                )
            })
            .collect(),
    }
}

/// The accept queue of the socket listening on `port`.
fn accept_queue(sockets: &[TcpSocket], port: u16) -> f64 {
    sockets
        .iter()
        .filter(|s| s.listening && s.local_port == port)
        .map(|s| f64::from(s.queue))
        .sum()
}

/// The established connections the target `pids` opened, by socket inode, with their remote
/// ends: sockets they own whose local port is none they listen on (`port` included). `sockets`
/// must have been read after the target's sockets, so a short connection has to outlive only
/// the table's read.
fn outbound_peers(sockets: &[TcpSocket], owned: &HashSet<u64>, port: u16) -> Vec<(u64, SocketAddr)> {
    let listening: HashSet<u16> = sockets
        .iter()
        .filter(|s| s.listening && owned.contains(&s.inode))
        .map(|s| s.local_port)
        .chain([port])
        .collect();
    sockets
        .iter()
        .filter(|s| !s.listening && !listening.contains(&s.local_port) && owned.contains(&s.inode))
        .map(|s| (s.inode, s.remote))
        .collect()
}

/// The socket inodes the processes `pids` hold open.
fn owned_sockets(pids: &[i32]) -> HashSet<u64> {
    pids.iter()
        .filter_map(|&pid| Process::new(pid).ok()?.fd().ok())
        .flat_map(|fds| fds.flatten())
        .filter_map(|fd| match fd.target {
            FDTarget::Socket(inode) => Some(inode),
            _ => None,
        })
        .collect()
}

/// The kernel's socket diagnostics over netlink (what `ss` uses).
mod diag {
    use std::net::SocketAddr;

    use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_sock_diag::SockDiagMessage;
    use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
    use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
    use netlink_sys::protocols::NETLINK_SOCK_DIAG;
    use netlink_sys::{Socket, SocketAddr as NetlinkAddr};

    use super::TcpSocket;

    /// TCP_LISTEN in the kernel's numbering of socket states.
    const LISTEN: u8 = 10;

    pub(super) fn tcp_sockets(established: bool) -> std::io::Result<Vec<TcpSocket>> {
        let socket = {
            let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
            socket.bind_auto()?;
            socket.connect(&NetlinkAddr::new(0, 0))?;
            socket
        };
        let states = if established {
            StateFlags::LISTEN | StateFlags::ESTABLISHED
        } else {
            StateFlags::LISTEN
        };
        let mut sockets = Vec::new();
        for (family, id) in [(AF_INET, SocketId::new_v4()), (AF_INET6, SocketId::new_v6())] {
            dump(&socket, family, id, states.clone(), &mut sockets)?;
        }
        Ok(sockets)
    }

    fn dump(
        socket: &Socket,
        family: u8,
        socket_id: SocketId,
        states: StateFlags,
        out: &mut Vec<TcpSocket>,
    ) -> std::io::Result<()> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let request = SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states,
            socket_id,
        });
        let mut packet = NetlinkMessage::new(header, request.into());
        packet.finalize();
        let mut buffer = vec![0; packet.buffer_len()];
        packet.serialize(&mut buffer);
        socket.send(&buffer, 0)?;
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let mut received = vec![0; 64 * 1024];
        loop {
            let size = socket.recv(&mut &mut received[..], 0)?;
            let mut offset = 0;
            while offset < size {
                let message = NetlinkMessage::<SockDiagMessage>::deserialize(&received[offset..size])
                    .map_err(|e| invalid(e.to_string()))?;
                match message.payload {
                    NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                        let header = &response.header;
                        let id = &header.socket_id;
                        out.push(TcpSocket {
                            listening: header.state == LISTEN,
                            local_port: id.source_port,
                            remote: SocketAddr::new(id.destination_address, id.destination_port),
                            queue: header.recv_queue,
                            inode: u64::from(header.inode),
                        });
                    }
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(error) => return Err(invalid(error.to_string())),
                    _ => {}
                }
                let length = message.header.length as usize;
                if length == 0 {
                    break;
                }
                offset += length;
            }
        }
    }
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
                    let (mut tick, mut opens, mut last_walk) = (0u64, active_opens(), None);
                    // Connections already open when sampling began — a pool's — are not churn:
                    // a peer counts once per connection that appeared since.
                    let mut seen: HashSet<u64> = match port {
                        Some(port) => outbound_peers(&tcp_sockets(true), &owned_sockets(&pids), port)
                            .into_iter()
                            .map(|(inode, _)| inode)
                            .collect(),
                        None => HashSet::new(),
                    };
                    // Without netlink, every read walks the established table: the accept queue
                    // is then read only as often as the peers may be.
                    let cheap = port.is_some() && diag::tcp_sockets(false).is_ok();
                    while !stop.load(Ordering::Relaxed) {
                        let counters = read_counters(&pids);
                        // The target's outbound connections matter when it opens them: the
                        // established table is read only when the host opened some since the
                        // last read.
                        let opened = active_opens();
                        let due = last_walk.is_none_or(|at| tick >= at + PEERS_EVERY_NTH_SAMPLE);
                        let walk = port.is_some() && opened > opens && due;
                        let owned = if walk {
                            owned_sockets(&pids)
                        } else {
                            HashSet::new()
                        };
                        let read = port.filter(|_| walk || cheap || tick % PEERS_EVERY_NTH_SAMPLE == 0);
                        let sockets = read.map(|_| tcp_sockets(walk)).unwrap_or_default();
                        let queue = read.map(|port| accept_queue(&sockets, port));
                        let peers = match port {
                            Some(port) if walk => {
                                (last_walk, opens) = (Some(tick), opened);
                                outbound_peers(&sockets, &owned, port)
                            }
                            _ => Vec::new(),
                        };
                        tick += 1;
                        if let Ok(mut w) = window.lock() {
                            w.samples += 1;
                            w.running += counters.running as f64;
                            w.blocked_io += counters.blocked_io as f64;
                            w.threads = counters.threads as f64;
                            if let Some(queue) = queue {
                                w.queue_samples += 1;
                                w.queue += queue;
                                w.queue_max = w.queue_max.max(queue);
                            }
                            for (inode, peer) in peers {
                                if seen.insert(inode) {
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
            outbound_peers: window
                .peers
                .iter()
                .map(|(peer, seen)| (peer.to_string(), *seen))
                .collect(),
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

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn reads_a_listen_sockets_accept_queue_from_the_kernel() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let listening = diag::tcp_sockets(false).expect("sock_diag answers");
        assert_eq!(accept_queue(&listening, port), 0.0);
        assert!(listening.iter().all(|s| s.listening));
        // Connected, never accepted: they wait in the accept queue.
        let _clients: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
            .collect();
        assert_eq!(
            accept_queue(&diag::tcp_sockets(false).expect("sock_diag"), port),
            3.0
        );
    }

    #[test]
    fn names_the_peer_of_an_outbound_connection_not_an_inbound_one() {
        let downstream = TcpListener::bind("127.0.0.1:0").expect("bind");
        let downstream_addr = downstream.local_addr().expect("address");
        let own = TcpListener::bind("127.0.0.1:0").expect("bind");
        let own_port = own.local_addr().expect("address").port();
        let _outbound = TcpStream::connect(downstream_addr).expect("connect");
        let inbound_client = TcpStream::connect(("127.0.0.1", own_port)).expect("connect");
        let _inbound = own.accept().expect("accept");
        let owned = owned_sockets(&[std::process::id() as i32]);
        let sockets = tcp_sockets(true);
        let peers: Vec<SocketAddr> = outbound_peers(&sockets, &owned, own_port)
            .into_iter()
            .map(|(_, peer)| peer)
            .collect();
        // The connection to the downstream is outbound; the accepted one (local port: the one
        // we listen on) is inbound, its client's address no peer. (This process also holds the
        // client's end, an outbound connection to itself.)
        assert!(peers.contains(&downstream_addr), "{peers:?}");
        let client = inbound_client.local_addr().expect("address");
        assert!(!peers.contains(&client), "{peers:?}");
    }
}
