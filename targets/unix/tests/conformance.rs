//! The conformance suites of lamina-conformance on the unix target's
//! devices: the host's clock, random source, files, directories and
//! sockets. The Stack suite's peer runs on the same host stack over
//! loopback, so the Linux kernel's TCP is at both ends. (Console and Netif
//! need the host to watch the output or a tap: the cli test
//! `conformance` runs them on unix and on the unikernel targets.)

use lamina_conformance::{block, clock, kv, peer, random, stack, Report};
use lamina_core::runtime::{Executor, Handle};
use lamina_unix::devices::{HostClock, HostRandom};
use lamina_unix::net::HostStack;
use lamina_unix::reactor::Reactor;
use lamina_unix::storage::{DirKv, FileBlock};
use std::net::Ipv4Addr;
use std::rc::Rc;

fn block_on<T>(f: impl AsyncFnOnce(Handle, Rc<Reactor>) -> T) -> T {
    let reactor = Rc::new(Reactor::new().unwrap());
    let executor = Executor::new(reactor.clone());
    let handle = executor.handle();
    executor.block_on(f(handle, reactor))
}

fn assert_passed(report: Report) {
    eprintln!("{report}");
    assert!(report.passed(), "{report}");
}

#[test]
fn clock_conformance() {
    assert_passed(block_on(async |rt, reactor| {
        clock::run(&HostClock::new(reactor), &rt).await
    }));
}

#[test]
fn random_conformance() {
    assert_passed(random::run(&HostRandom));
}

#[test]
fn block_conformance_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    std::fs::write(&path, vec![0u8; 512 * 64]).unwrap();
    let disk = FileBlock::open(&path, false).unwrap();
    assert_passed(block_on(async |_, _| block::run(&disk).await));
}

#[test]
fn kv_conformance_on_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirKv::open(dir.path()).unwrap();
    assert_passed(block_on(async |_, _| kv::run_write(&store).await));
}

#[test]
fn stack_conformance_over_loopback() {
    assert_passed(block_on(async |rt, reactor| {
        let host = HostStack::new(reactor, Ipv4Addr::LOCALHOST.into());
        let peer = peer::Peer::bind(host.clone(), 0).await.unwrap();
        let at = std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, peer.port()));
        rt.spawn(peer.serve(rt.clone()));
        stack::run(&host, &rt, at).await
    }));
}
