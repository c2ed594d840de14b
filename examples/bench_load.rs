//! A load generator for `bench/run.sh` (`LOAD=bench_load`): HTTP/1.1
//! keep-alive GETs from a fixed number of connections, each request with the
//! next cookie of a list, as `bench/measure.lua` does under wrk.
//!
//! Why it exists: wrk's cost per request depends on how long and how varied
//! its list of requests is (its Lua state holds them), so two targets
//! measured with lists of different lengths (1,000 and 1,000,000 sessions)
//! do not get the same share of a two-core machine. Here every request is
//! picked from one vector of prepared requests, and `BENCH_LINES` repeats a
//! short list to the length of a long one, so every target of a run costs
//! the generator the same.
//!
//! ```text
//! bench_load THREADS CONNECTIONS SECONDS http://HOST:PORT/PATH
//! ```
//!
//! The environment, as for `measure.lua`: `BENCH_COOKIE` (one `Cookie`
//! value for every request) or `BENCH_COOKIES` (a file of them, one per
//! line, rotated over; each thread starts at its own place), and
//! `BENCH_LINES` (repeat the file's lines to this many requests). It prints
//! the line `run.sh` parses:
//! `BENCH requests=N duration_us=N p99_us=N socket_errors=N status_errors=N`.

use std::io::BufRead as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Latency buckets: 1 µs wide below 10 ms, 100 µs wide above, up to 10 s.
const FINE: u64 = 10_000;
const BUCKETS: usize = FINE as usize + 100_000;

fn bucket(micros: u64) -> usize {
    let index = if micros < FINE {
        micros
    } else {
        FINE + (micros - FINE) / 100
    };
    usize::try_from(index).map_or(BUCKETS - 1, |i| i.min(BUCKETS - 1))
}

fn bucket_micros(index: usize) -> u64 {
    let index = index as u64;
    if index < FINE {
        index
    } else {
        FINE + (index - FINE) * 100
    }
}

/// What one connection counted.
struct Tally {
    requests: u64,
    socket_errors: u64,
    status_errors: u64,
    latency: Vec<u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            requests: 0,
            socket_errors: 0,
            status_errors: 0,
            latency: vec![0; BUCKETS],
        }
    }

    fn add(&mut self, other: &Self) {
        self.requests += other.requests;
        self.socket_errors += other.socket_errors;
        self.status_errors += other.status_errors;
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            *mine += theirs;
        }
    }

    fn p99_micros(&self) -> u64 {
        let total: u64 = self.latency.iter().sum();
        let wanted = total - total / 100;
        let mut seen = 0;
        for (index, count) in self.latency.iter().enumerate() {
            seen += count;
            if seen >= wanted && *count > 0 {
                return bucket_micros(index);
            }
        }
        0
    }
}

/// The requests to rotate over, and where the target is.
struct Plan {
    address: String,
    requests: Vec<Box<[u8]>>,
    deadline: Instant,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [threads, connections, seconds, url] = args.as_slice() else {
        bail!("usage: bench_load THREADS CONNECTIONS SECONDS http://HOST:PORT/PATH");
    };
    let threads: usize = threads.parse().context("THREADS")?;
    let connections: usize = connections.parse().context("CONNECTIONS")?;
    let seconds: f64 = seconds.trim_end_matches('s').parse().context("SECONDS")?;
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs are supported")?;
    let (address, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let cookies = cookies()?;
    let request = |cookie: Option<&str>| -> Box<[u8]> {
        let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
        format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n{cookie}\r\n")
            .into_bytes()
            .into_boxed_slice()
    };
    let requests: Vec<Box<[u8]>> = if cookies.is_empty() {
        vec![request(None)]
    } else {
        cookies.iter().map(|c| request(Some(c))).collect()
    };
    let start = Instant::now();
    let plan = Arc::new(Plan {
        address: address.to_owned(),
        requests,
        deadline: start + Duration::from_secs_f64(seconds),
    });
    let threads = threads.clamp(1, connections.max(1));
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let plan = Arc::clone(&plan);
            let mine = connections / threads + usize::from(thread < connections % threads);
            std::thread::spawn(move || run_thread(&plan, thread, mine))
        })
        .collect();
    let mut total = Tally::new();
    for handle in handles {
        let tally = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a thread panicked"))??;
        total.add(&tally);
    }
    let duration = plan.deadline.duration_since(start);
    println!(
        "BENCH requests={} duration_us={} p99_us={} socket_errors={} status_errors={}",
        total.requests,
        duration.as_micros(),
        total.p99_micros(),
        total.socket_errors,
        total.status_errors
    );
    Ok(())
}

/// `BENCH_COOKIE`, or `BENCH_COOKIES`'s lines repeated to `BENCH_LINES`.
fn cookies() -> anyhow::Result<Vec<String>> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(file) = env("BENCH_COOKIES") {
        let reader = std::io::BufReader::new(
            std::fs::File::open(&file).with_context(|| format!("opening {file}"))?,
        );
        let lines: Vec<String> = reader
            .lines()
            .collect::<Result<_, _>>()
            .with_context(|| format!("reading {file}"))?;
        if lines.is_empty() {
            bail!("no cookies in {file}");
        }
        let wanted = match env("BENCH_LINES") {
            Some(n) => n.parse().context("BENCH_LINES")?,
            None => lines.len(),
        };
        // Each repeat is a copy of its own, so a padded list takes the
        // memory (and the cache misses) of a long one.
        return Ok((0..wanted.max(lines.len()))
            .map(|i| lines[i % lines.len()].clone())
            .collect());
    }
    Ok(env("BENCH_COOKIE").into_iter().collect())
}

/// One thread: its connections on a runtime of its own, as wrk's threads
/// each run their own event loop.
fn run_thread(plan: &Arc<Plan>, thread: usize, connections: usize) -> anyhow::Result<Tally> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Threads start apart in the list, as in measure.lua.
    let next = Arc::new(AtomicUsize::new(
        (thread * plan.requests.len() / 7) % plan.requests.len(),
    ));
    runtime.block_on(async {
        let tasks: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(connection(Arc::clone(plan), Arc::clone(&next))))
            .collect();
        let mut tally = Tally::new();
        for task in tasks {
            tally.add(&task.await?);
        }
        Ok(tally)
    })
}

/// One keep-alive connection, reconnecting after an error, until the
/// deadline.
async fn connection(plan: Arc<Plan>, next: Arc<AtomicUsize>) -> Tally {
    let mut tally = Tally::new();
    let mut buffer = Vec::with_capacity(16 * 1024);
    while Instant::now() < plan.deadline {
        let Ok(mut stream) = TcpStream::connect(&plan.address).await else {
            tally.socket_errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed) % plan.requests.len();
            let sent = Instant::now();
            let exchange = exchange(&mut stream, &plan.requests[index], &mut buffer);
            let Ok(outcome) = tokio::time::timeout_at(plan.deadline.into(), exchange).await else {
                return tally;
            };
            match outcome {
                Ok(status) => {
                    tally.requests += 1;
                    if status >= 400 {
                        tally.status_errors += 1;
                    }
                    let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                    tally.latency[bucket(micros)] += 1;
                }
                Err(_) => {
                    tally.socket_errors += 1;
                    break;
                }
            }
        }
    }
    tally
}

/// Sends one request and reads its response (a `Content-Length` body);
/// the status code.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buffer: &mut Vec<u8>,
) -> std::io::Result<u16> {
    stream.write_all(request).await?;
    buffer.clear();
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let head_end = loop {
        if let Some(at) = find(buffer, b"\r\n\r\n") {
            break at + 4;
        }
        read_more(stream, buffer).await?;
    };
    let head = std::str::from_utf8(&buffer[..head_end]).map_err(|_| invalid("head"))?;
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("status line"))?;
    let length: usize = head
        .split("\r\n")
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| invalid("no Content-Length"))?;
    while buffer.len() < head_end + length {
        read_more(stream, buffer).await?;
    }
    Ok(status)
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 8192];
    let read = stream.read(&mut chunk).await?;
    if read == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    buffer.extend_from_slice(&chunk[..read]);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
