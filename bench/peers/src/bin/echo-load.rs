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

/// Sends a distinct pattern on one connection and checks the echo.
fn one_connection(o: &Options, seed: u64) -> Result<(), String> {
    let mut stream =
        TcpStream::connect_timeout(&o.addr, o.timeout).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(o.timeout)).ok();
    stream.set_write_timeout(Some(o.timeout)).ok();
    let data = pattern(o.bytes, seed);
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let sent = data.clone();
    let sender = std::thread::spawn(move || {
        writer
            .write_all(&sent)
            .and_then(|()| writer.shutdown(Shutdown::Write))
    });
    let mut back = Vec::with_capacity(o.bytes);
    stream
        .read_to_end(&mut back)
        .map_err(|e| format!("read: {e}"))?;
    sender
        .join()
        .map_err(|_| "sender panicked")?
        .map_err(|e| format!("write: {e}"))?;
    if back != data {
        return Err(format!(
            "echo differs: sent {} bytes, got {}",
            data.len(),
            back.len()
        ));
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
