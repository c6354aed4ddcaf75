//! A load generator and checker for echo servers (Lamina's echo on any
//! target, or the std peer): concurrent connections each sending a distinct
//! pattern and checking that exactly it comes back; bulk throughput; and
//! request/response round trips.
//!
//! usage: echo-load ADDR:PORT [--connections N] [--bytes B] [--round-trips N] [--udp N] [--timeout SECS]
//!
//! Prints one line per measurement and exits 1 if any echo was wrong.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

struct Options {
    addr: SocketAddr,
    connections: usize,
    bytes: usize,
    round_trips: usize,
    udp: usize,
    timeout: Duration,
}

fn parse() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().ok_or("usage: echo-load ADDR:PORT [options]")?;
    let mut options = Options {
        addr: addr
            .parse()
            .map_err(|_| format!("'{addr}' is not ADDR:PORT"))?,
        connections: 1,
        bytes: 1 << 20,
        round_trips: 0,
        udp: 0,
        timeout: Duration::from_secs(30),
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let n: u64 = value
            .parse()
            .map_err(|_| format!("{flag}: '{value}' is not a number"))?;
        match flag.as_str() {
            "--connections" => options.connections = n as usize,
            "--bytes" => options.bytes = n as usize,
            "--round-trips" => options.round_trips = n as usize,
            "--udp" => options.udp = n as usize,
            "--timeout" => options.timeout = Duration::from_secs(n),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(options)
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Bytes in a lap of a connection's pattern: prime, so that no
/// power-of-two read or write lines up with a lap.
const LAP: usize = 65_521;

/// The bytes one connection sends, made and checked as they go rather than
/// held whole (a 100 MB transfer once cost the client three 100 MB buffers
/// and their page faults, inside the timed part): lap `k` (bytes from
/// `k * LAP`) is the connection's block of pseudo-random bytes, each plus
/// `k`, so that an echo that repeats, skips or mixes up bytes differs.
struct Pattern {
    block: Vec<u8>,
    lap: usize,
    bytes: Vec<u8>,
}

impl Pattern {
    fn new(seed: u64) -> Pattern {
        let block = pattern(LAP, seed);
        Pattern {
            bytes: block.clone(),
            block,
            lap: 0,
        }
    }

    /// The pattern from byte `offset` on, to the end of its lap and at most
    /// `max` bytes.
    fn at(&mut self, offset: usize, max: usize) -> &[u8] {
        let lap = offset / LAP;
        if lap != self.lap {
            self.lap = lap;
            for (byte, base) in self.bytes.iter_mut().zip(&self.block) {
                *byte = base.wrapping_add(lap as u8);
            }
        }
        let from = offset % LAP;
        &self.bytes[from..LAP.min(from + max)]
    }
}

/// Sends a distinct pattern on one connection and checks the echo.
fn one_connection(o: &Options, seed: u64) -> Result<(), String> {
    let mut stream =
        TcpStream::connect_timeout(&o.addr, o.timeout).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(o.timeout)).ok();
    stream.set_write_timeout(Some(o.timeout)).ok();
    let total = o.bytes;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let mut pattern = Pattern::new(seed);
        let mut sent = 0;
        while sent < total {
            let chunk = pattern.at(sent, total - sent);
            writer.write_all(chunk)?;
            sent += chunk.len();
        }
        writer.shutdown(Shutdown::Write)
    });
    let mut pattern = Pattern::new(seed);
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read: {e}")),
        };
        if received + n > total {
            return Err(format!(
                "echo differs: sent {total} bytes, got at least {}",
                received + n
            ));
        }
        let mut at = 0;
        while at < n {
            let expected = pattern.at(received + at, n - at);
            if buf[at..at + expected.len()] != *expected {
                return Err(format!(
                    "echo differs from byte {} on (of {total} sent)",
                    received + at
                ));
            }
            at += expected.len();
        }
        received += n;
    }
    sender
        .join()
        .map_err(|_| "sender panicked")?
        .map_err(|e| format!("write: {e}"))?;
    if received != total {
        return Err(format!("echo differs: sent {total} bytes, got {received}"));
    }
    Ok(())
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("echo-load: {e}");
            std::process::exit(2);
        }
    };
    let mut failed = false;
    if o.connections > 0 && o.bytes > 0 {
        let start = Instant::now();
        let results: Vec<Result<(), String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..o.connections)
                .map(|i| {
                    s.spawn({
                        let o = &o;
                        move || one_connection(o, i as u64 + 1)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Err("panicked".into())))
                .collect()
        });
        let elapsed = start.elapsed().as_secs_f64();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        for e in results.iter().filter_map(|r| r.as_ref().err()).take(5) {
            eprintln!("echo-load: {e}");
        }
        let mb = (o.bytes * ok) as f64 / 1e6;
        println!(
            "tcp: {ok}/{} connections echoed {} bytes each; {:.1} MB/s each way ({elapsed:.2} s)",
            o.connections,
            o.bytes,
            mb / elapsed
        );
        failed |= ok != o.connections;
    }
    if o.round_trips > 0 {
        match round_trips(&o) {
            Ok(rate) => println!("tcp: {rate:.0} round trips/s (64-byte requests, one connection)"),
            Err(e) => {
                eprintln!("echo-load: round trips: {e}");
                failed = true;
            }
        }
    }
    if o.udp > 0 {
        match udp(&o) {
            Ok(()) => println!("udp: {}/{} datagrams echoed", o.udp, o.udp),
            Err(e) => {
                eprintln!("echo-load: udp: {e}");
                failed = true;
            }
        }
    }
    std::process::exit(failed as i32);
}

fn round_trips(o: &Options) -> Result<f64, String> {
    let mut stream = TcpStream::connect_timeout(&o.addr, o.timeout).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).ok();
    stream.set_read_timeout(Some(o.timeout)).ok();
    let request = pattern(64, 99);
    let mut reply = [0u8; 64];
    let start = Instant::now();
    for _ in 0..o.round_trips {
        stream.write_all(&request).map_err(|e| e.to_string())?;
        stream.read_exact(&mut reply).map_err(|e| e.to_string())?;
        if reply[..] != request[..] {
            return Err("reply differs".into());
        }
    }
    Ok(o.round_trips as f64 / start.elapsed().as_secs_f64())
}

fn udp(o: &Options) -> Result<(), String> {
    let any = if o.addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(any).map_err(|e| e.to_string())?;
    socket.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let mut buf = [0u8; 2048];
    for i in 0..o.udp {
        let datagram = pattern(100 + i % 1000, i as u64);
        // Datagrams may be lost: a few tries each.
        let mut echoed = false;
        for _ in 0..3 {
            socket
                .send_to(&datagram, o.addr)
                .map_err(|e| e.to_string())?;
            if let Ok((n, _)) = socket.recv_from(&mut buf) {
                if buf[..n] == datagram[..] {
                    echoed = true;
                    break;
                }
            }
        }
        if !echoed {
            return Err(format!("datagram {i} was not echoed"));
        }
    }
    Ok(())
}
