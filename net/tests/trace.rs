//! What the stack records when tracing is on: frames in and out, and per
//! TCP connection the bytes sent, acknowledged, in flight, the peer's
//! window, retransmissions and the bytes buffered, over a lossy simulated
//! link. One test in this file: tracing is global to the process.

use lamina_core::device::*;
use lamina_core::runtime::Executor;
use lamina_core::trace::{Kind, IN, OUT};
use lamina_net::sim::SimTime;
use lamina_trace::file::{Header, Records};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const BYTES: usize = 300_000;

/// A clock for the records: one nanosecond per record, enough to order them.
fn tick() -> u64 {
    static T: AtomicU64 = AtomicU64::new(0);
    T.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn a_transfer_over_a_lossy_link_is_traced_with_its_tcp_counters() {
    let words: &'static [AtomicU64] =
        Box::leak((0..(4 << 20)).map(|_| AtomicU64::new(0)).collect());
    assert!(lamina_core::trace::install(words, tick));

    let time = Rc::new(SimTime::default());
    let executor = Executor::new(time.clone());
    let rt = executor.handle();
    let (a, b) = lamina_net::sim::two_stacks(&time, &rt, 7, |_| {});
    let received = executor.block_on(async move {
        let listener = b
            .tcp_listen(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 80)))
            .await
            .unwrap();
        let sink = rt.spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let mut total = 0;
            loop {
                match conn.read(&mut buf).await.unwrap() {
                    0 => break total,
                    n => total += n,
                }
            }
        });
        let mut conn = a.tcp_connect(SocketAddr::from((B, 80))).await.unwrap();
        conn.write_all(&vec![7u8; BYTES]).await.unwrap();
        conn.shutdown().await.unwrap();
        let total = sink.await;
        // Let the last ACKs through.
        rt.sleep(lamina_core::Duration::from_millis(500)).await;
        total
    });
    assert_eq!(received, BYTES);

    let mut file = Header::new("test", 0).to_bytes().to_vec();
    let dropped = lamina_trace::ring::drain(words, words.len(), |w| {
        file.extend_from_slice(&w.to_le_bytes())
    })
    .unwrap();
    assert_eq!(dropped, 0);
    let (_, records) = Records::new(&file).unwrap();
    let mut frames = [0u64; 2];
    let mut last: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut max_buffered = 0;
    for event in records.map(|r| r.unwrap()) {
        match event.kind {
            Kind::Frame => frames[(event.flags == OUT) as usize] += 1,
            Kind::Counter => {
                for (i, field) in event.strings().skip(1).enumerate() {
                    let value = event.word(i) as i64;
                    if field == "buffered" && event.string(0).starts_with("tcp 10.0.0.1:") {
                        max_buffered = max_buffered.max(value);
                    }
                    last.insert((event.string(0).to_string(), field.to_string()), value);
                }
            }
            _ => {}
        }
    }
    assert!(
        frames[IN as usize] > 200 && frames[OUT as usize] > 200,
        "frames in/out: {frames:?}"
    );
    let sender = last
        .keys()
        .map(|(name, _)| name.clone())
        .find(|n| n.starts_with("tcp 10.0.0.1:"))
        .expect("A's connection");
    assert!(sender.ends_with(" 10.0.0.2:80"), "{sender}");
    let field = |f: &str| last[&(sender.clone(), f.to_string())];
    assert_eq!(field("sent"), BYTES as i64);
    assert_eq!(field("acked"), BYTES as i64);
    assert_eq!(field("in flight"), 0);
    assert!(field("peer window") > 0);
    assert!(
        field("retransmits") > 0,
        "one frame in 7 is lost, so some data is sent again"
    );
    assert!(max_buffered > 0, "the send buffer was sampled");
    let receiver = last
        .keys()
        .any(|(name, _)| name.starts_with("tcp 10.0.0.2:80 10.0.0.1:"));
    assert!(receiver, "B's side of the connection has its counters too");
}
