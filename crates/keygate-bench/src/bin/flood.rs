//! `flood`: a fixed-rate (open-loop) generator of wrong keys for scripts/load.sh, apart
//! from the wrk that measures valid traffic, so that the flood's size is a setting and
//! not whatever a closed-loop client reaches.
//!
//! ```text
//! flood ADDR KEYS_FILE RATE SECONDS [CONNECTIONS]
//! ```
//!
//! Sends `GET /v1/ping` with `Authorization: Bearer <key>`, cycling through the keys of
//! `KEYS_FILE` (one a line, as `load_server flood` writes them), at `RATE` requests a
//! second in all over `CONNECTIONS` keep-alive connections (default 4), for `SECONDS`.
//! Each connection sends on its own schedule (`RATE / CONNECTIONS` a second) and waits
//! for each answer before the next: when the server falls behind, sends are skipped, not
//! bunched. Prints the requests sent, answered by status, and the rate achieved. Traffic
//! goes to the address given only, bounded by the time given.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, keys, rate, secs, rest @ ..] = args.as_slice() else {
        return Err("usage: flood ADDR KEYS_FILE RATE SECONDS [CONNECTIONS]".into());
    };
    let rate: f64 = rate.parse()?;
    let secs: f64 = secs.parse()?;
    let connections: usize = rest.first().map_or(Ok(4), |c| c.parse())?;
    if !(rate > 0.0 && secs > 0.0 && secs <= 600.0 && connections > 0) {
        return Err("RATE > 0, 0 < SECONDS <= 600, CONNECTIONS > 0".into());
    }
    let keys: Vec<String> = std::fs::read_to_string(keys)?
        .lines()
        .map(str::to_owned)
        .collect();
    if keys.is_empty() {
        return Err("the keys file is empty".into());
    }
    let requests: Arc<[Vec<u8>]> = keys
        .iter()
        .map(|key| {
            format!("GET /v1/ping HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\r\n")
                .into_bytes()
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let period = Duration::from_secs_f64(connections as f64 / rate);
    let tally = runtime.block_on(async {
        let tasks: Vec<_> = (0..connections)
            .map(|c| {
                let (addr, requests) = (addr.clone(), requests.clone());
                tokio::spawn(connection(addr, requests, c, period, deadline))
            })
            .collect();
        let mut tally = Tally::default();
        for task in tasks {
            if let Ok(part) = task.await {
                tally.add(part);
            }
        }
        tally
    });
    let elapsed = started.elapsed().as_secs_f64();
    let answered: u64 = tally.statuses.values().sum();
    println!(
        "flood: sent={} answered={} skipped={} errors={} rate={:.0}/s (asked {rate:.0}/s) statuses={:?}",
        tally.sent,
        answered,
        tally.skipped,
        tally.errors,
        answered as f64 / elapsed,
        tally.statuses
    );
    Ok(())
}

#[derive(Default)]
struct Tally {
    sent: u64,
    skipped: u64,
    errors: u64,
    statuses: BTreeMap<u16, u64>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.sent += other.sent;
        self.skipped += other.skipped;
        self.errors += other.errors;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
    }
}

/// One keep-alive connection on its schedule; reconnects after an error.
async fn connection(
    addr: String,
    requests: Arc<[Vec<u8>]>,
    first: usize,
    period: Duration,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut next = tokio::time::Instant::now();
    let mut i = first;
    let mut stream: Option<BufReader<TcpStream>> = None;
    while Instant::now() < deadline {
        tokio::time::sleep_until(next).await;
        next += period;
        // Behind schedule: skip the sends that are due already, as an open loop would
        // have sent them while this connection waited.
        let now = tokio::time::Instant::now();
        while next < now {
            next += period;
            tally.skipped += 1;
        }
        if stream.is_none() {
            match TcpStream::connect(&addr).await {
                Ok(s) => stream = Some(BufReader::new(s)),
                Err(_) => {
                    tally.errors += 1;
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        i = (i + 1) % requests.len();
        tally.sent += 1;
        match exchange(s, &requests[i]).await {
            Ok(status) => *tally.statuses.entry(status).or_default() += 1,
            Err(_) => {
                tally.errors += 1;
                stream = None;
            }
        }
    }
    tally
}

/// Writes one request and reads its response (status line, headers, a body of
/// `Content-Length` bytes); the status.
async fn exchange(stream: &mut BufReader<TcpStream>, request: &[u8]) -> std::io::Result<u16> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad response");
    stream.get_mut().write_all(request).await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let mut length = 0usize;
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Err(bad());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().map_err(|_| bad())?;
            }
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await?;
    Ok(status)
}
