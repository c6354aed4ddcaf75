//! The peer for echo benchmarks: a plain std Rust TCP echo server, a thread
//! per connection, as a Linux programmer would write it.
//!
//! usage: std-echo PORT [ADDRESS]   (address default 127.0.0.1)

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};

fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return stream.shutdown(Shutdown::Write);
        }
        stream.write_all(&buf[..n])?;
    }
}

fn main() {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        Some(Ok(port)) => port,
        _ => {
            eprintln!("usage: std-echo PORT");
            std::process::exit(2);
        }
    };
    let address = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "127.0.0.1".into());
    let listener = match TcpListener::bind((address.as_str(), port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("std-echo: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || serve(stream));
    }
}
