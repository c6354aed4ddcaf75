//! The unix devices against the real host: files, directories, sockets, time.

use lamina_core::device::*;
use lamina_core::runtime::{Duration, Executor, Handle};
use lamina_unix::net::HostStack;
use lamina_unix::reactor::Reactor;
use lamina_unix::storage::{DirKv, FileBlock};
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;

fn block_on<T>(f: impl AsyncFnOnce(Handle, Rc<Reactor>) -> T) -> T {
    let reactor = Rc::new(Reactor::new().unwrap());
    let executor = Executor::new(reactor.clone());
    let handle = executor.handle();
    executor.block_on(f(handle, reactor))
}

#[test]
fn file_block_reads_back_what_it_wrote_and_checks_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    std::fs::write(&path, vec![0u8; 512 * 8]).unwrap();
    let block = FileBlock::open(&path, false).unwrap();
    assert_eq!(
        block.info(),
        BlockInfo {
            sector_size: 512,
            sectors: 8
        }
    );
    block_on(async |_, _| {
        let data: Vec<u8> = (0..1024).map(|i| i as u8).collect();
        block.write(6, &data).await.unwrap();
        let mut back = vec![0u8; 1024];
        block.read(6, &mut back).await.unwrap();
        assert_eq!(back, data);
        assert_eq!(block.read(7, &mut back).await, Err(BlockError::OutOfRange));
        assert_eq!(
            block.read(u64::MAX, &mut back[..512]).await,
            Err(BlockError::OutOfRange)
        );
        assert_eq!(
            block.write(0, &data[..100]).await,
            Err(BlockError::Unaligned)
        );
        assert_eq!(block.read(0, &mut []).await, Err(BlockError::Unaligned));
    });
    // While it is open, no other opening may write it (nor read it).
    for read_only in [false, true] {
        let refused = FileBlock::open(&path, read_only).err().unwrap();
        assert!(refused.contains("in use by another process"), "{refused}");
    }
    drop(block);
    // A file that is not whole sectors is refused with a message.
    std::fs::write(&path, vec![0u8; 1000]).unwrap();
    assert!(FileBlock::open(&path, false)
        .err()
        .unwrap()
        .contains("not a whole"));
    assert!(FileBlock::open(&dir.path().join("missing"), false).is_err());
}

#[test]
fn dir_kv_stores_lists_and_stays_inside_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"no").unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).unwrap();
    let kv = DirKv::open(dir.path()).unwrap();
    block_on(async |_, _| {
        kv.set("/a/b.txt", b"hello").await.unwrap();
        kv.set("c", b"x").await.unwrap();
        kv.set("c", b"replaced").await.unwrap();
        assert_eq!(kv.get("a/b.txt").await.unwrap(), b"hello");
        assert_eq!(kv.size("c").await.unwrap(), 8);
        assert_eq!(kv.get_range("a/b.txt", 1, 3).await.unwrap(), b"ell");
        assert_eq!(kv.get_range("a/b.txt", 4, 100).await.unwrap(), b"o");
        let keys: Vec<_> = kv
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, ["a/b.txt", "c"]);
        assert_eq!(kv.list("a/").await.unwrap().len(), 1);
        kv.remove("c").await.unwrap();
        assert_eq!(kv.get("c").await, Err(KvError::NotFound));
        assert_eq!(kv.remove("c").await, Err(KvError::NotFound));
        assert_eq!(kv.get("a").await, Err(KvError::NotFound));
        for bad in ["../x", "a/../../x", "escape/secret", ""] {
            assert_eq!(kv.get(bad).await, Err(KvError::InvalidKey), "{bad}");
        }
        assert_eq!(kv.set("escape/new", b"x").await, Err(KvError::InvalidKey));
    });
    assert!(!outside.path().join("new").exists());
}

#[test]
fn udp_and_tcp_over_loopback() {
    block_on(async |rt, reactor| {
        let stack = HostStack::new(reactor, Ipv4Addr::LOCALHOST.into());
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        // Unspecified binds loopback (the --bind default).
        let a = stack.udp_bind(any).await.unwrap();
        let b = stack.udp_bind(any).await.unwrap();
        assert!(a.local_addr().ip().is_loopback());
        a.send_to(b"ping", b.local_addr()).await.unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"ping"[..], a.local_addr()));

        let listener = stack.tcp_listen(any).await.unwrap();
        let addr = listener.local_addr();
        let server = rt.spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = conn.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            conn.write_all(&got).await.unwrap();
            got.len()
        });
        let mut client = stack.tcp_connect(addr).await.unwrap();
        let payload = vec![7u8; 1 << 20];
        client.write_all(&payload).await.unwrap();
        client.shutdown().await.unwrap();
        let mut back = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            let n = client.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            back.extend_from_slice(&buf[..n]);
        }
        assert_eq!(server.await, 1 << 20);
        assert_eq!(back, payload);

        // A closed port refuses; a port in use is reported as such.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert_eq!(
            stack.tcp_connect(closed).await.err(),
            Some(NetError::ConnectionRefused)
        );
        let taken = stack.tcp_listen(any).await.unwrap();
        assert_eq!(
            stack.tcp_listen(taken.local_addr()).await.err(),
            Some(NetError::AddressInUse)
        );
        assert_eq!(
            stack.tcp_connect(any).await.err(),
            Some(NetError::InvalidAddress)
        );
    });
}

#[test]
fn sleeping_blocks_in_the_kernel_for_the_right_time() {
    let cpu_before = cpu_time();
    let wall = std::time::Instant::now();
    block_on(async |rt, _| {
        for _ in 0..4 {
            rt.sleep(Duration::from_millis(100)).await;
        }
    });
    let elapsed = wall.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_millis(400),
        "{elapsed:?}"
    );
    assert!(
        elapsed < std::time::Duration::from_millis(1500),
        "{elapsed:?}"
    );
    // Sleeping 400 ms costs almost no CPU: the executor parks in epoll_wait.
    let cpu = cpu_time() - cpu_before;
    assert!(
        cpu < std::time::Duration::from_millis(40),
        "spent {cpu:?} of CPU sleeping"
    );
}

fn cpu_time() -> std::time::Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    std::time::Duration::from_millis(ticks * 10)
}

/// Full duplex against a real peer: a std echo server on a thread, which
/// writes each chunk back before it reads the next. One task writes 16 MiB
/// while another reads the echo; written first and read after, the data
/// would fill the kernel's buffers both ways and stall.
#[test]
fn split_stream_reads_and_writes_at_once_against_a_host_peer() {
    use std::io::{Read, Write};
    const LEN: usize = 16 << 20;
    let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = peer.local_addr().unwrap().port();
    let echo = std::thread::spawn(move || {
        let (mut conn, _) = peer.accept().unwrap();
        let mut buf = vec![0u8; 65536];
        let mut total = 0;
        loop {
            let n = conn.read(&mut buf).unwrap();
            if n == 0 {
                break; // the write half's FIN
            }
            conn.write_all(&buf[..n]).unwrap();
            total += n;
        }
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        total
    });
    let pattern: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let expected = pattern.clone();
    let back = block_on(async |rt, reactor| {
        let stack = HostStack::new(reactor, Ipv4Addr::LOCALHOST.into());
        let conn = stack
            .tcp_connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .await
            .unwrap();
        let (mut reader, mut writer) = conn.into_split();
        assert_eq!(reader.peer_addr().port(), port);
        let writing = rt.spawn(async move {
            writer.write_all(&pattern).await.unwrap();
            // Dropping the write half sends FIN.
        });
        let reading = rt.spawn(async move {
            let mut back = Vec::with_capacity(LEN);
            let mut buf = vec![0u8; 50_000];
            loop {
                match reader.read(&mut buf).await.unwrap() {
                    0 => break,
                    n => back.extend_from_slice(&buf[..n]),
                }
            }
            back
        });
        writing.await;
        reading.await
    });
    assert_eq!(echo.join().unwrap(), LEN);
    assert_eq!(back.len(), LEN);
    assert!(back == expected, "the echo differs");
}

/// An accepted stream split in two: the read half reads while the write
/// half's shutdown has already sent FIN to the peer (a half-closed
/// connection), and the peer's data still arrives.
#[test]
fn split_write_half_shutdown_sends_fin_while_reading_goes_on() {
    use std::io::{Read, Write};
    block_on(async |rt, reactor| {
        let stack = HostStack::new(reactor, Ipv4Addr::LOCALHOST.into());
        let listener = stack
            .tcp_listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .unwrap();
        let port = listener.local_addr().port();
        let peer = std::thread::spawn(move || {
            let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut got = Vec::new();
            conn.read_to_end(&mut got).unwrap(); // until the write half's FIN
            conn.write_all(b"after your FIN").unwrap();
            got
        });
        let (conn, _) = listener.accept().await.unwrap();
        let (mut reader, mut writer) = conn.into_split();
        writer.write_all(b"hello").await.unwrap();
        writer.shutdown().await.unwrap();
        assert_eq!(writer.write(b"more").await, Err(NetError::Closed));
        let mut buf = [0u8; 64];
        let mut back = Vec::new();
        loop {
            // The peer answers from a thread: let the reactor wait for it.
            let n = rt
                .timeout(Duration::from_secs(10), reader.read(&mut buf))
                .await
                .expect("the peer's data arrives")
                .unwrap();
            if n == 0 {
                break;
            }
            back.extend_from_slice(&buf[..n]);
        }
        assert_eq!(back, b"after your FIN");
        assert_eq!(peer.join().unwrap(), b"hello");
    });
}
