//! The drivers against the made-up device of [`super::fake`]: a good
//! device works through both transports, and each bad value a device can
//! give is refused with a message naming it, or tolerated.

use super::blk::{BlockDevice, VirtioBlock};
use super::fake::{Behaviour, Completion, FakeBus, FakeDevice, FakeFunction, PciLayout, Place};
use super::mmio::Mmio;
use super::net::{NetDevice, VirtioNetif};
use super::pci::Pci;
use super::transport::{device_type, status, SetupError, Transport, F_VERSION_1, STALL_NS};
use super::{rng, Device, Interrupt};
use crate::cmdline::MmioDevice;
use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;
use core::future::Future;
use core::task::{Context, Poll};
use lamina_core::device::{Block, BlockError, NetError, Netif};

extern crate std;

/// VIRTIO_NET_F_MAC.
const F_MAC: u64 = 1 << 5;

fn mmio(behaviour: Behaviour) -> (Rc<FakeDevice>, Result<Transport<FakeBus>, SetupError>) {
    let expected = behaviour.device_type;
    let device = FakeDevice::mmio(behaviour);
    let bus = FakeBus {
        device: device.clone(),
    };
    let window = MmioDevice {
        base: 0xd000_0000,
        size: 0x200,
        irq: 5,
    };
    let transport = Mmio::probe(bus, &window).map(|(t, kind)| {
        assert_eq!(kind, expected);
        Transport::Mmio(t)
    });
    (device, transport)
}

fn pci(
    behaviour: Behaviour,
    layout: PciLayout,
) -> (Rc<FakeDevice>, Result<Transport<FakeBus>, SetupError>) {
    let device = FakeDevice::pci(behaviour, layout);
    let bus = FakeBus {
        device: device.clone(),
    };
    let function = FakeFunction {
        device: device.clone(),
    };
    let transport = Pci::probe(bus, function, u64::MAX).map(Transport::Pci);
    (device, transport)
}

/// Runs `future` to completion, the device working between polls; `None`
/// if it is still pending after 100 polls.
fn run<F: Future>(device: &FakeDevice, future: F) -> Option<F::Output> {
    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: std::sync::Arc<Self>) {}
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut future = Box::pin(future);
    for _ in 0..100 {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return Some(out);
        }
        device.work();
    }
    None
}

fn net_behaviour() -> Behaviour {
    let mut b = Behaviour::new(device_type::NET, F_MAC);
    b.config[..6].copy_from_slice(&[2, 0, 0, 0, 0, 7]);
    b
}

fn frame(len: usize) -> Vec<u8> {
    let mut frame = vec![0u8; len];
    frame[..6].copy_from_slice(&[0xff; 6]);
    frame[12..14].copy_from_slice(&0x0806u16.to_be_bytes()); // ARP
    for (i, byte) in frame[14..].iter_mut().enumerate() {
        *byte = i as u8;
    }
    frame
}

#[test]
fn a_network_device_sends_and_receives_over_mmio_and_pci() {
    for (device, transport) in [
        mmio(net_behaviour()),
        pci(net_behaviour(), PciLayout::qemu(3)),
    ] {
        let net = Rc::new(NetDevice::new(transport.unwrap(), 0).unwrap());
        let netif = VirtioNetif::new(net.clone());
        assert_eq!(netif.mac(), [2, 0, 0, 0, 0, 7]);
        assert_eq!(device.driver_features(), F_VERSION_1 | F_MAC);
        assert_eq!(device.status() & status::DRIVER_OK, status::DRIVER_OK);

        device.script(1, Completion::default());
        netif.transmit(&frame(60)).unwrap();
        Netif::flush(&netif);
        let mut expected = vec![0u8; 12];
        expected.extend(frame(60));
        assert_eq!(device.take_sent(), [(1, expected)]);

        let mut received = vec![0u8; 12];
        received.extend(frame(100));
        device.script(
            0,
            Completion {
                data: received,
                ..Completion::default()
            },
        );
        device.work();
        let mut buf = [0u8; 1514];
        assert_eq!(netif.try_receive(&mut buf), Ok(Some(100)));
        assert_eq!(&buf[..100], &frame(100)[..]);
        assert_eq!(netif.try_receive(&mut buf), Ok(None));
    }
}

#[test]
fn a_received_length_past_the_buffer_drops_that_frame_only() {
    let (device, transport) = mmio(net_behaviour());
    let netif = VirtioNetif::new(Rc::new(NetDevice::new(transport.unwrap(), 0).unwrap()));
    for len in [Some(4096), Some(u32::MAX), Some(3), None] {
        let mut data = vec![0u8; 12];
        data.extend(frame(80));
        device.script(
            0,
            Completion {
                data,
                len,
                ..Completion::default()
            },
        );
    }
    device.work();
    let mut buf = [0u8; 1514];
    assert_eq!(netif.try_receive(&mut buf), Ok(Some(80)));
    // A buffer too small for a frame: that frame is dropped as TooLarge.
    let mut data = vec![0u8; 12];
    data.extend(frame(80));
    device.script(
        0,
        Completion {
            data,
            ..Completion::default()
        },
    );
    device.work();
    assert_eq!(
        netif.try_receive(&mut buf[..40]),
        Err(lamina_core::device::NetError::TooLarge)
    );
}

#[test]
fn a_made_up_used_id_breaks_the_receive_queue() {
    let (device, transport) = mmio(net_behaviour());
    let netif = VirtioNetif::new(Rc::new(NetDevice::new(transport.unwrap(), 0).unwrap()));
    device.script(
        0,
        Completion {
            id: Some(256),
            ..Completion::default()
        },
    );
    device.work();
    let mut buf = [0u8; 1514];
    assert_eq!(
        netif.try_receive(&mut buf),
        Err(lamina_core::device::NetError::Io)
    );
}

/// A transmit completion naming a descriptor that heads no frame the
/// device has freed it (and what followed it) for the next frame while the
/// real chain stayed in flight for ever; the device is failed instead.
#[test]
fn a_transmit_completion_of_no_frame_fails_the_device() {
    let (device, transport) = mmio(net_behaviour());
    let netif = VirtioNetif::new(Rc::new(NetDevice::new(transport.unwrap(), 0).unwrap()));
    device.script(
        1,
        Completion {
            id: Some(5),
            ..Completion::default()
        },
    );
    netif.transmit(&frame(60)).unwrap();
    Netif::flush(&netif);
    assert_eq!(device.take_sent().len(), 1, "the device took the frame");
    assert_eq!(
        netif.transmit(&frame(60)),
        Err(lamina_core::device::NetError::Io)
    );
    // The same for a frame returned twice.
    let (device, transport) = mmio(net_behaviour());
    let netif = VirtioNetif::new(Rc::new(NetDevice::new(transport.unwrap(), 0).unwrap()));
    netif.transmit(&frame(60)).unwrap();
    netif.transmit(&frame(60)).unwrap();
    for _ in 0..2 {
        device.script(
            1,
            Completion {
                id: Some(0),
                ..Completion::default()
            },
        );
    }
    Netif::flush(&netif);
    assert_eq!(device.take_sent().len(), 2);
    assert_eq!(
        netif.transmit(&frame(60)),
        Err(lamina_core::device::NetError::Io)
    );
}

fn block_behaviour(sectors: u64) -> Behaviour {
    let mut b = Behaviour::new(device_type::BLOCK, 0);
    b.config[..8].copy_from_slice(&sectors.to_le_bytes());
    b
}

#[test]
fn a_block_device_reads_and_writes_over_pci() {
    let (device, transport) = pci(block_behaviour(1024), PciLayout::qemu(2));
    let shared = Rc::new(BlockDevice::new(transport.unwrap()).unwrap());
    assert_eq!(shared.transport().interrupt(), Interrupt::MsiX);
    let block = VirtioBlock::new(shared);
    assert_eq!(block.info().sectors, 1024);

    device.script(
        0,
        Completion {
            data: vec![7; 512],
            last: Some(0),
            ..Completion::default()
        },
    );
    let mut buf = [0u8; 512];
    assert_eq!(run(&device, block.read(3, &mut buf)), Some(Ok(())));
    assert_eq!(buf, [7; 512]);
    let sent = device.take_sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(&sent[0].1[..4], &0u32.to_le_bytes(), "a read request");
    assert_eq!(&sent[0].1[8..16], &3u64.to_le_bytes(), "of sector 3");

    device.script(
        0,
        Completion {
            last: Some(0),
            ..Completion::default()
        },
    );
    assert_eq!(run(&device, block.write(5, &[9; 512])), Some(Ok(())));
    let sent = device.take_sent();
    assert_eq!(&sent[0].1[16..], &[9; 512][..]);

    // A status other than OK fails the request.
    device.script(
        0,
        Completion {
            last: Some(1),
            ..Completion::default()
        },
    );
    assert_eq!(
        run(&device, block.write(5, &[9; 512])),
        Some(Err(BlockError::Io))
    );
    // Past the capacity the device gave: refused before any request.
    assert_eq!(
        run(&device, block.read(1024, &mut buf)),
        Some(Err(BlockError::OutOfRange))
    );
}

/// A completion naming a descriptor that heads no request in flight
/// (here the data buffer of slot 0, or slot 0 again for the request of
/// slot 1) used to count as one of the requests: the read succeeded with
/// bytes the device never wrote. The device is failed instead.
#[test]
fn a_completion_of_no_request_fails_the_block_device() {
    let made_up = |id| Completion {
        id: Some(id),
        last: Some(0),
        ..Completion::default()
    };
    for (completions, len) in [
        (vec![made_up(1)], 512),
        (vec![made_up(0), made_up(0)], 128 << 10),
    ] {
        let (device, transport) = mmio(block_behaviour(1024));
        let block = VirtioBlock::new(Rc::new(BlockDevice::new(transport.unwrap()).unwrap()));
        for completion in completions {
            device.script(0, completion);
        }
        let mut buf = vec![0u8; len];
        assert_eq!(
            run(&device, block.read(0, &mut buf)),
            Some(Err(BlockError::Io))
        );
        device.script(
            0,
            Completion {
                last: Some(0),
                ..Completion::default()
            },
        );
        assert_eq!(
            run(&device, block.read(0, &mut buf[..512])),
            Some(Err(BlockError::Io)),
            "a failed device stays failed"
        );
    }
}

/// A capacity of more than 2^55 sectors made `BlockInfo::capacity`
/// (sectors times 512) overflow in whoever asked for it.
#[test]
fn a_capacity_past_2_to_the_64_bytes_is_refused() {
    for (sectors, ok) in [(u64::MAX, false), (1 << 55, false), ((1 << 55) - 1, true)] {
        let (_, transport) = mmio(block_behaviour(sectors));
        match BlockDevice::new(transport.unwrap()) {
            Ok(device) => {
                assert!(ok);
                let info = VirtioBlock::new(Rc::new(device)).info();
                assert_eq!(info.capacity(), sectors * 512);
            }
            Err(e) => {
                assert!(!ok);
                assert_eq!(e, SetupError::Capacity { sectors });
                assert!(e
                    .to_string()
                    .contains(&format!("capacity of {sectors} sectors")));
            }
        }
    }
}

fn refused(result: Result<Transport<FakeBus>, SetupError>, expected: SetupError, text: &str) {
    let transport = result.unwrap();
    let error = NetDevice::new(transport, 0).err().expect("refused");
    assert_eq!(error, expected);
    let message = error.to_string();
    assert!(message.contains(text), "{message:?} lacks {text:?}");
}

#[test]
fn bad_queue_sizes_are_refused_or_rounded() {
    let mut b = net_behaviour();
    b.queue_max = [0, 256, 256, 256];
    let (device, transport) = mmio(b);
    refused(
        transport,
        SetupError::QueueSize {
            queue: 0,
            device_max: 0,
            min_size: 2,
        },
        "queue 0 has at most 0 entries",
    );
    assert_eq!(device.status(), status::FAILED);

    let mut b = net_behaviour();
    b.queue_max = [256, 1, 256, 256];
    let (_, transport) = pci(b, PciLayout::qemu(1));
    refused(
        transport,
        SetupError::QueueSize {
            queue: 1,
            device_max: 1,
            min_size: 2,
        },
        "queue 1 has at most 1 entries",
    );

    // Not a power of two, or larger than any ring: the largest power of
    // two the driver takes.
    for max in [300, 3, u32::MAX] {
        let mut b = net_behaviour();
        b.queue_max = [max, max, 0, 0];
        let (_, transport) = mmio(b);
        assert!(NetDevice::new(transport.unwrap(), 0).is_ok());
    }
}

#[test]
fn a_device_that_does_not_reset_or_refuses_features_is_refused() {
    let mut b = net_behaviour();
    b.stuck_status = 0x40;
    let (_, transport) = mmio(b);
    refused(
        transport,
        SetupError::Reset { status: 0x40 },
        "does not finish its reset (status 0x40",
    );

    let mut b = net_behaviour();
    b.refuses_features = true;
    let (device, transport) = pci(b, PciLayout::qemu(1));
    refused(
        transport,
        SetupError::FeaturesRefused {
            accepted: F_VERSION_1 | F_MAC,
            status: status::ACKNOWLEDGE | status::DRIVER,
        },
        "refuses features 0x100000020",
    );
    assert_eq!(device.status(), status::FAILED);

    let mut b = net_behaviour();
    b.features = F_MAC;
    let (_, transport) = mmio(b);
    refused(
        transport,
        SetupError::NoVersion1 { offered: F_MAC },
        "does not offer VIRTIO_F_VERSION_1 (features 0x20)",
    );

    let mut b = net_behaviour();
    b.queues_enabled = true;
    let (_, transport) = mmio(b);
    refused(
        transport,
        SetupError::QueueEnabled { queue: 0 },
        "queue 0 is enabled",
    );
}

#[test]
fn mmio_windows_that_are_not_devices_are_refused() {
    let mut b = net_behaviour();
    b.magic = 0x1234;
    assert_eq!(
        mmio(b).1.err(),
        Some(SetupError::NotVirtio { magic: 0x1234 })
    );
    let mut b = net_behaviour();
    b.version = 1;
    assert_eq!(mmio(b).1.err(), Some(SetupError::Legacy));
    let mut b = net_behaviour();
    b.version = 3;
    assert_eq!(mmio(b).1.err(), Some(SetupError::Version { version: 3 }));
    let device = FakeDevice::mmio(net_behaviour());
    let bus = FakeBus { device };
    for (base, size) in [
        (0xd000_0002, 0x200),
        (0xd000_0000, 0x100),
        (u64::MAX - 0xff, 0x200),
    ] {
        let window = MmioDevice { base, size, irq: 5 };
        assert_eq!(
            Mmio::probe(bus.clone(), &window).err(),
            Some(SetupError::Unmapped {
                address: base,
                len: size
            })
        );
    }
}

/// A notification address that is odd (an odd `notify_off_multiplier`,
/// which the specification forbids) was written with a 16-bit store at
/// that address: a misaligned access, which panics in a build with debug
/// assertions. It is refused, as is one past the structure.
#[test]
fn notification_addresses_outside_the_structure_or_misaligned_are_refused() {
    for (multiplier, notify_off) in [(1, 1), (3, 1), (4, 0x400), (u32::MAX, 0xffff)] {
        let mut layout = PciLayout::qemu(1);
        layout.notify = layout.notify.map(|(p, _)| (p, multiplier));
        let mut b = net_behaviour();
        b.notify_off = [notify_off; 4];
        let (device, transport) = pci(b, layout);
        refused(
            transport,
            SetupError::NotifyOffset {
                queue: 0,
                offset: notify_off,
                multiplier,
                length: 0x1000,
            },
            &format!("queue_notify_off {notify_off} times notify_off_multiplier {multiplier}"),
        );
        assert_eq!(device.status(), status::FAILED);
    }
}

#[test]
fn misplaced_pci_structures_are_refused() {
    // The common configuration at an odd offset.
    let mut layout = PciLayout::qemu(1);
    layout.common = Some(Place {
        bar: 4,
        offset: 2,
        length: 0x100,
    });
    assert_eq!(
        pci(net_behaviour(), layout).1.err(),
        Some(SetupError::Misaligned {
            what: "common configuration",
            address: 0xfe00_0002
        })
    );
    // Past its BAR, or in a BAR that does not exist.
    for place in [
        Place {
            bar: 4,
            offset: 0x3f00,
            length: 0x1000,
        },
        Place {
            bar: 2,
            offset: 0,
            length: 0x1000,
        },
    ] {
        let mut layout = PciLayout::qemu(1);
        layout.common = Some(place);
        let error = pci(net_behaviour(), layout).1.err().unwrap();
        assert!(matches!(error, SetupError::Pci(_)), "{error:?}");
    }
    // A device-specific structure at an odd address is read a byte at a
    // time; its length bounds what is read.
    let mut layout = PciLayout::qemu(1);
    layout.device = Some(Place {
        bar: 4,
        offset: 0x2001,
        length: 3,
    });
    let (_, transport) = pci(net_behaviour(), layout);
    let net = NetDevice::new(transport.unwrap(), 0).unwrap();
    assert_eq!(VirtioNetif::new(Rc::new(net)).mac(), [2, 0, 0, 0, 0, 0]);
}

#[test]
fn msix_is_routed_unless_a_queue_refuses_the_vector() {
    let (device, transport) = pci(net_behaviour(), PciLayout::qemu(3));
    let net = NetDevice::new(transport.unwrap(), 0).unwrap();
    assert_eq!(net.transport().interrupt(), Interrupt::MsiX);
    assert!(net.transport().route_msix(0xfee0_0000, 0x41));
    assert_eq!(device.msix_entry(), [0xfee0_0000, 0, 0x41, 0]);

    let mut b = net_behaviour();
    b.refuses_vector = true;
    let (_, transport) = pci(b, PciLayout::qemu(3));
    let net = NetDevice::new(transport.unwrap(), 0).unwrap();
    assert_eq!(net.transport().interrupt(), Interrupt::Polled);
    assert!(!net.transport().route_msix(0xfee0_0000, 0x41));

    // No MSI-X capability: polled, the ISR read to acknowledge.
    let mut b = net_behaviour();
    b.interrupt_status = 1;
    let (_, transport) = pci(b, PciLayout::qemu(0));
    let net = NetDevice::new(transport.unwrap(), 0).unwrap();
    assert_eq!(net.transport().interrupt(), Interrupt::Polled);
    assert!(!net.poll());
}

#[test]
fn the_entropy_device_fills_the_seed_or_times_out() {
    let (device, transport) = mmio(Behaviour::new(device_type::ENTROPY, 0));
    let transport = transport.unwrap();
    for half in [1u8, 2] {
        device.script(
            0,
            Completion {
                data: vec![half; 16],
                ..Completion::default()
            },
        );
    }
    let mut expected = [1u8; 32];
    expected[16..].fill(2);
    assert_eq!(rng::seed(&transport), Ok(expected));

    // A device that never answers, or claims more bytes than asked.
    let (_, transport) = pci(Behaviour::new(device_type::ENTROPY, 0), PciLayout::qemu(1));
    assert_eq!(rng::seed(&transport.unwrap()), Err(SetupError::Timeout));
    let (device, transport) = mmio(Behaviour::new(device_type::ENTROPY, 0));
    device.script(
        0,
        Completion {
            data: vec![5; 32],
            len: Some(u32::MAX),
            ..Completion::default()
        },
    );
    assert_eq!(rng::seed(&transport.unwrap()), Ok([5; 32]));
}

#[test]
fn a_configuration_that_never_settles_is_read_a_bounded_number_of_times() {
    let mut b = net_behaviour();
    b.generation_churn = u32::MAX;
    for (_, transport) in [mmio(b.clone()), pci(b, PciLayout::qemu(1))] {
        let net = NetDevice::new(transport.unwrap(), 0).unwrap();
        assert_eq!(VirtioNetif::new(Rc::new(net)).mac(), [2, 0, 0, 0, 0, 7]);
    }
}

/// A device that stops on its own after DRIVER_OK (its status reads 0, or
/// has DEVICE_NEEDS_RESET) completes nothing ever again: a request waited
/// for ever. Once it has waited STALL_NS the driver looks at the status
/// and fails it; a device that is only slow is waited for.
#[test]
fn a_block_device_that_stops_fails_the_request_waiting_on_it() {
    let stops = [Some(false), Some(true), None];
    for (stop, at_driver_ok) in stops.into_iter().flat_map(|s| [(s, false), (s, true)]) {
        let mut behaviour = block_behaviour(1024);
        behaviour.resets_at_driver_ok = at_driver_ok;
        for (device, transport) in [
            mmio(behaviour.clone()),
            pci(behaviour.clone(), PciLayout::qemu(2)),
        ] {
            let shared = Rc::new(BlockDevice::new(transport.unwrap()).unwrap());
            let block = VirtioBlock::new(shared.clone());
            if let Some(needs_reset) = stop {
                device.stop(needs_reset);
            }
            let stopped = stop.is_some() || at_driver_ok;
            let waker = std::task::Waker::noop();
            let mut cx = Context::from_waker(waker);
            let mut buf = [0u8; 512];
            let mut read = Box::pin(block.read(0, &mut buf));
            assert!(read.as_mut().poll(&mut cx).is_pending());
            shared.poll();
            assert!(read.as_mut().poll(&mut cx).is_pending(), "not yet");
            device.advance(STALL_NS);
            assert_eq!(shared.poll(), stopped, "the waiting task is woken");
            let polled = read.as_mut().poll(&mut cx);
            if stopped {
                assert_eq!(polled, Poll::Ready(Err(BlockError::Io)));
                continue;
            }
            // A slow device: its completion is taken when it comes.
            assert!(polled.is_pending(), "a running device is waited for");
            device.script(
                0,
                Completion {
                    data: vec![3; 512],
                    last: Some(0),
                    ..Completion::default()
                },
            );
            device.work();
            assert_eq!(read.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
            drop(read);
            assert_eq!(buf, [3; 512]);
        }
    }
}

/// A network device that stops on its own: once the receive ring has
/// been quiet for STALL_NS the driver looks at the status; the next
/// receive fails (once: later ones find nothing, so that the stack does
/// not retry at once for ever), and so does every transmit.
#[test]
fn a_network_device_that_stops_fails() {
    for needs_reset in [false, true] {
        let (device, transport) = mmio(net_behaviour());
        let net = Rc::new(NetDevice::new(transport.unwrap(), 0).unwrap());
        let netif = VirtioNetif::new(net.clone());
        let mut buf = [0u8; 1514];
        device.advance(STALL_NS);
        net.poll();
        assert_eq!(netif.try_receive(&mut buf), Ok(None), "a quiet device");
        device.stop(needs_reset);
        net.poll();
        assert_eq!(netif.try_receive(&mut buf), Ok(None), "not looked at yet");
        device.advance(STALL_NS);
        net.poll();
        assert_eq!(netif.try_receive(&mut buf), Err(NetError::Io));
        assert_eq!(netif.try_receive(&mut buf), Ok(None));
        assert_eq!(netif.transmit(&frame(60)), Err(NetError::Io));
    }
}

/// A device that breaks a ring (a used entry naming no descriptor, or a
/// used index run ahead of the ring) fails: the receive that finds it
/// says so once, later ones find nothing and wake no one (the stack takes
/// an error as a dropped frame and asks again at once: a queue that
/// answered every receive with an error kept it asking for ever), and
/// every transmit fails. Either queue: a broken transmit ring fails the
/// receive side too.
#[test]
fn a_network_device_that_breaks_a_ring_fails_once() {
    for (queue, id) in [(0, 256), (0, u32::MAX), (1, 256)] {
        let (device, transport) = mmio(net_behaviour());
        let net = Rc::new(NetDevice::new(transport.unwrap(), 0).unwrap());
        let netif = VirtioNetif::new(net.clone());
        let mut buf = [0u8; 1514];
        if queue == 1 {
            assert_eq!(netif.transmit(&frame(60)), Ok(()));
            netif.flush();
        }
        device.script(
            queue,
            Completion {
                id: Some(id),
                ..Completion::default()
            },
        );
        device.work();
        if queue == 1 {
            assert_eq!(netif.transmit(&frame(60)), Err(NetError::Io));
        }
        let told = run(&device, netif.receive(&mut buf));
        assert_eq!(told, Some(Err(NetError::Io)), "queue {queue} id {id}");
        // Still waiting when `run` gives up, its waker registered.
        assert_eq!(run(&device, netif.receive(&mut buf)), None, "a dead link");
        assert!(!net.poll(), "a dead link wakes no one");
        for _ in 0..3 {
            assert_eq!(netif.try_receive(&mut buf), Ok(None));
        }
        assert_eq!(netif.transmit(&frame(60)), Err(NetError::Io));
    }
}

/// A receive buffer the device returns a second time, before the driver
/// offered it again, may be one the driver is copying a frame out of: the
/// device is failed.
#[test]
fn a_receive_buffer_returned_twice_fails_the_network_device() {
    let (device, transport) = mmio(net_behaviour());
    let netif = VirtioNetif::new(Rc::new(NetDevice::new(transport.unwrap(), 0).unwrap()));
    let mut data = vec![0u8; 12];
    data.extend(frame(80));
    for id in [None, Some(0)] {
        device.script(
            0,
            Completion {
                data: data.clone(),
                id,
                ..Completion::default()
            },
        );
    }
    device.work();
    let mut buf = [0u8; 1514];
    assert_eq!(netif.try_receive(&mut buf), Ok(Some(80)));
    assert_eq!(netif.try_receive(&mut buf), Err(NetError::Io));
    assert_eq!(netif.try_receive(&mut buf), Ok(None));
    assert_eq!(netif.transmit(&frame(60)), Err(NetError::Io));
    // Returned again after the driver offered it again: a frame.
    let (device, transport) = mmio(net_behaviour());
    let netif = VirtioNetif::new(Rc::new(NetDevice::new(transport.unwrap(), 0).unwrap()));
    device.script(
        0,
        Completion {
            data: data.clone(),
            ..Completion::default()
        },
    );
    device.work();
    assert_eq!(netif.try_receive(&mut buf), Ok(Some(80)));
    assert_eq!(netif.try_receive(&mut buf), Ok(None), "published again");
    device.script(
        0,
        Completion {
            data,
            id: Some(0),
            ..Completion::default()
        },
    );
    device.work();
    assert_eq!(netif.try_receive(&mut buf), Ok(Some(80)));
}
