//! The user-mode network as a Jitsu daemon drives it (issue 13): the test,
//! as the daemon, owns the listening socket; a client connects and sends
//! its request before the unikernel exists; lamina-usernet starts with the
//! socket (`--listen-fd`), and the tender (the website example, on spt and
//! hvt) 0, 50 or 300 ms later. The first byte of the page must come
//! within the boot time plus a few milliseconds, never a retransmission or
//! ARP timeout (about a second) later.
//!
//! The figures are printed (`cargo test -p lamina-cli --test usernet_boot
//! -- --nocapture`): the boot time (tender started to the application
//! listening, from `lamina-usernet --probe`'s `up`) and, for each delay,
//! the time from the tender's start to the first byte.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The MAC the tender gives the guest when the daemon chooses it.
const GUEST_MAC: &str = "02:00:00:4a:00:01";

/// A running lamina-usernet and the tender's end of its link.
struct Network {
    child: Child,
    tender_end: Option<OwnedFd>,
    /// Its event lines, each with the time it was read.
    events: mpsc::Receiver<(String, Instant)>,
}

impl Network {
    /// Starts lamina-usernet on `listener` (to the guest's port 80) with
    /// `extra` options; returns once it printed `ready`.
    fn start(listener: &TcpListener, extra: &[&str]) -> Network {
        let (tender_end, usernet_end) = lamina_usernet::socketpair().unwrap();
        let mut command = Command::new(usernet_binary());
        command
            .arg(format!("--link-fd={}", usernet_end.as_raw_fd()))
            .arg(format!("--listen-fd={}:80", listener.as_raw_fd()))
            .arg("--events")
            .args(extra)
            .stdout(Stdio::piped());
        lamina_usernet::pass_fds(
            &mut command,
            vec![usernet_end.as_raw_fd(), listener.as_raw_fd()],
        );
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        let (send, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if send.send((line, Instant::now())).is_err() {
                    return;
                }
            }
        });
        Network {
            child,
            tender_end: Some(tender_end),
            events,
        }
    }

    /// Boots `image` in `target`'s tender on the link, the guest's MAC
    /// given when `mac` is; the tender's console goes to `console`.
    fn boot(&mut self, target: &str, image: &Path, mac: bool, console: &Path) -> Tender {
        let tender_end = self.tender_end.take().unwrap();
        let mut command = Command::new(tender(target));
        command
            .arg("--mem=16")
            .arg(format!("--net:service=fd:{}", tender_end.as_raw_fd()));
        if mac {
            command.arg(format!("--net-mac:service={GUEST_MAC}"));
        }
        command
            .arg(image)
            .args(lamina_usernet::guest_args())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(console).unwrap())
            .stderr(Stdio::inherit());
        lamina_usernet::pass_fds(&mut command, vec![tender_end.as_raw_fd()]);
        // The tender has its end now: the link hangs up when it ends.
        Tender(command.spawn().unwrap())
    }

    /// The next event line within `limit`, and when it came.
    fn event(&self, limit: Duration) -> (String, Instant) {
        self.events
            .recv_timeout(limit)
            .expect("no event from lamina-usernet")
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tender, killed and reaped on drop (a failed assertion included).
struct Tender(Child);

impl Drop for Tender {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kills and reaps a tender.
fn stop(tender: Tender) {
    drop(tender);
}

/// Tender start to `up` (the application listens), with `--probe` and no
/// client: the boot time.
fn boot_time(target: &str, image: &Path, console: &Path) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut network = Network::start(&listener, &["--probe", &format!("--guest-mac={GUEST_MAC}")]);
    let started = Instant::now();
    let tender = network.boot(target, image, true, console);
    let (line, at) = network.event(Duration::from_secs(10));
    stop(tender);
    assert_eq!(line, "up", "{target}");
    at - started
}

/// A client that connects and sends its request `delay` before the
/// tender starts: from the tender's start to the page's first byte.
fn first_byte(target: &str, image: &Path, mac: bool, delay: Duration, console: &Path) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mac_option = format!("--guest-mac={GUEST_MAC}");
    let options = [mac_option.as_str()];
    let mut network = Network::start(&listener, if mac { &options[..] } else { &[] });
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: www.lamina.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::thread::sleep(delay);
    let started = Instant::now();
    let tender = network.boot(target, image, mac, console);
    let mut first = [0u8; 1];
    client.read_exact(&mut first).unwrap();
    let elapsed = started.elapsed();
    let mut page = first.to_vec();
    client.read_to_end(&mut page).unwrap();
    drop(client);
    let page = String::from_utf8_lossy(&page);
    assert!(page.starts_with("HTTP/1.1 200"), "{target}: {page}");
    assert!(
        page.contains("Write it once. Boot it anywhere."),
        "{target}"
    );
    let events: Vec<String> = (0..3)
        .map(|_| network.event(Duration::from_secs(2)).0)
        .collect();
    assert_eq!(events, ["active 1", "up", "active 0"], "{target}");
    stop(tender);
    elapsed
}

#[test]
fn a_client_that_connects_before_the_unikernel_boots_waits_only_for_the_boot() {
    let targets = unikernel_targets("usernet boot tolerance");
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console");
    for target in targets {
        let image = image(target, "website");
        // The first boot loads the image into the page cache.
        boot_time(target, &image, &console);
        let mut boots: Vec<Duration> = (0..5)
            .map(|_| boot_time(target, &image, &console))
            .collect();
        boots.sort();
        let boot = boots[boots.len() / 2];
        eprintln!("{target}: boot to listening {boot:?} (median of {boots:?})");
        for mac in [true, false] {
            for delay in [0, 50, 300] {
                let delay = Duration::from_millis(delay);
                let mut times: Vec<Duration> = (0..3)
                    .map(|_| first_byte(target, &image, mac, delay, &console))
                    .collect();
                times.sort();
                eprintln!(
                    "{target}: client {delay:?} before the tender, guest MAC {}: first byte {:?} after the tender started (runs {times:?})",
                    if mac { "given" } else { "learned" },
                    times[1]
                );
                // A lost SYN or ARP request would cost 700 ms or a second
                // every time; a loaded machine delays a run now and then,
                // so the median is what must stay near the boot time.
                assert!(
                    times[1] < boots[boots.len() - 1] + Duration::from_millis(300),
                    "{target}, delay {delay:?}, MAC given {mac}: first byte after {times:?} (boots {boots:?})"
                );
            }
        }
    }
}
