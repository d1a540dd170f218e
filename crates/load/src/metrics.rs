//! Scraping the target's Prometheus endpoint while the ramp runs: its own view of its CPU
//! (`process_cpu_seconds_total`) — the only one for a target on another host — and the gauges
//! that show a pool or a queue filling up.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How often the endpoint is scraped.
pub const SCRAPE_EVERY: Duration = Duration::from_millis(500);
/// Gauges kept per step, at most.
pub(crate) const MAX_GAUGES: usize = 24;
/// Words in a gauge's name that make it worth keeping.
const INTERESTING: &[&str] = &[
    "queue",
    "pool",
    "inflight",
    "in_flight",
    "active",
    "waiting",
    "busy",
    "connections",
    "threads",
    "workers",
];

/// One scrape: the CPU counter and the interesting gauges.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scrape {
    at: Option<Instant>,
    cpu_seconds: Option<f64>,
    pub(crate) gauges: BTreeMap<String, f64>,
}

/// What the scrapes of one step say.
#[derive(Clone, Debug, Default)]
pub struct MetricsStep {
    /// CPU used by the target process, in cores, from `process_cpu_seconds_total`.
    pub cpu_cores: Option<f64>,
    /// Interesting gauges, averaged.
    pub gauges: BTreeMap<String, f64>,
    /// Connections the scraper opened (one per scrape).
    pub connections: u64,
}

/// Scrapes in the background; [`Scraper::step`] summarizes the scrapes since the last call.
pub struct Scraper {
    scrapes: Arc<Mutex<Vec<Scrape>>>,
    attempts: Arc<std::sync::atomic::AtomicU64>,
    last: Option<Scrape>,
    task: tokio::task::JoinHandle<()>,
}

impl Scraper {
    /// Starts scraping `url` (an http:// URL).
    pub fn start(url: hyper::Uri) -> Scraper {
        let scrapes = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sink = Arc::clone(&scrapes);
        let tried = Arc::clone(&attempts);
        let task = tokio::spawn(async move {
            loop {
                tried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Ok(scrape) = scrape(&url).await
                    && let Ok(mut all) = sink.lock()
                {
                    all.push(scrape);
                }
                tokio::time::sleep(SCRAPE_EVERY).await;
            }
        });
        Scraper {
            scrapes,
            attempts,
            last: None,
            task,
        }
    }

    /// The step since the last call.
    pub fn step(&mut self) -> MetricsStep {
        let scrapes: Vec<Scrape> = self
            .scrapes
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        let first = self.last.as_ref().or(scrapes.first());
        let last = scrapes.last();
        let cpu_cores = match (first, last) {
            (Some(a), Some(b)) => match (a.at, b.at, a.cpu_seconds, b.cpu_seconds) {
                (Some(t0), Some(t1), Some(c0), Some(c1)) if t1 > t0 => {
                    Some((c1 - c0).max(0.0) / (t1 - t0).as_secs_f64())
                }
                _ => None,
            },
            _ => None,
        };
        let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for scrape in &scrapes {
            for (name, value) in &scrape.gauges {
                let entry = sums.entry(name.clone()).or_default();
                entry.0 += value;
                entry.1 += 1.0;
            }
        }
        if let Some(last) = scrapes.last() {
            self.last = Some(last.clone());
        }
        MetricsStep {
            cpu_cores,
            gauges: sums.into_iter().map(|(name, (sum, n))| (name, sum / n)).collect(),
            connections: self.attempts.swap(0, std::sync::atomic::Ordering::Relaxed),
        }
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Fetches and parses one scrape.
async fn scrape(url: &hyper::Uri) -> Result<Scrape, String> {
    let host = url.host().ok_or("no host")?;
    let port = url.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let path = url.path_and_query().map_or("/metrics", |p| p.as_str());
    let request = hyper::Request::builder()
        .uri(path)
        .header(hyper::header::HOST, host)
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let at = Some(Instant::now());
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let mut result = read_text(&body)?;
    result.at = at;
    Ok(result)
}

/// What a Prometheus text exposition says of the target: its CPU seconds and the gauges worth
/// showing.
pub(crate) fn read_text(body: &[u8]) -> Result<Scrape, String> {
    let text = String::from_utf8_lossy(body);
    let parsed =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).map_err(|e| e.to_string())?;
    let mut result = Scrape::default();
    for sample in parsed.samples {
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        if sample.metric == "process_cpu_seconds_total" {
            result.cpu_seconds = Some(result.cpu_seconds.unwrap_or(0.0) + value);
            continue;
        }
        let counter =
            matches!(sample.value, prometheus_parse::Value::Counter(_)) || sample.metric.ends_with("_total");
        let lower = sample.metric.to_ascii_lowercase();
        if !counter && result.gauges.len() < MAX_GAUGES && INTERESTING.iter().any(|w| lower.contains(w)) {
            let labels = sample.labels.to_string();
            let name = if labels.is_empty() {
                sample.metric
            } else {
                format!("{}{{{labels}}}", sample.metric)
            };
            result.gauges.insert(name, value);
        }
    }
    Ok(result)
}
