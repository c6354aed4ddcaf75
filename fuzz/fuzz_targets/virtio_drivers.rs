//! The virtio drivers and transports (`lamina_virtio::drivers`) against a
//! hostile device: a virtio-mmio window or a virtio-pci function
//! (`drivers::fake`) whose registers answer what the input says, brought
//! up by the virtio-net, virtio-blk or virtio-rng driver, then traffic
//! (frames sent and received, sectors read and written, a seed) with the
//! device completing chains with the data, used ids and lengths the input
//! says; the device may stop on its own mid-run (reset itself, or set
//! DEVICE_NEEDS_RESET) and time may pass while the guest idles.
//!
//! Input: a flag byte (bit 0: PCI, else MMIO; bits 1-2: net, blk, rng, or
//! a device type from the next byte), then the device's answers, each
//! XORed into a good device's (an input of zeros is QEMU's device): magic,
//! version, features, status after a reset, quirks (FEATURES_OK refused,
//! a reset at DRIVER_OK, queues enabled early, the MSI-X vector refused),
//! queue sizes, num_queues, notify offsets, configuration generation churn,
//! interrupt status, 32 bytes of configuration; then for PCI the BARs, the
//! capabilities (present or not, BAR, offset, length), the multiplier, the
//! MSI-X table and a few patched bytes of configuration space, for MMIO
//! the window; then operations until the input ends.
//!
//! Checked besides no panic, overflow or access outside a buffer
//! (AddressSanitizer): every register access lies inside the window the
//! driver asked for and is aligned (the fake device asserts it); a device
//! refused gets a message; a received frame fits the caller's buffer; a
//! block request on a device that stopped ends (with an error) once it
//! has waited `STALL_NS` and the driver looked at the device again.
#![no_main]

use lamina_core::device::{Block, Netif};
use lamina_virtio::cmdline::MmioDevice;
use lamina_virtio::drivers::blk::{BlockDevice, VirtioBlock};
use lamina_virtio::drivers::fake::{
    Behaviour, Completion, FakeBus, FakeDevice, FakeFunction, PciLayout, Place,
};
use lamina_virtio::drivers::mmio::Mmio;
use lamina_virtio::drivers::net::{NetDevice, VirtioNetif};
use lamina_virtio::drivers::pci::Pci;
use lamina_virtio::drivers::transport::{device_type, SetupError, Transport, STALL_NS};
use lamina_virtio::drivers::{rng, Device};
use libfuzzer_sys::fuzz_target;
use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::rc::Rc;
use std::sync::Mutex;
use std::task::{Context, Poll, Wake, Waker};

// AddressSanitizer's manual poisoning (cargo fuzz builds with it): a DMA
// area kept for reuse reads as freed memory until it is handed out again.
extern "C" {
    fn __asan_poison_memory_region(addr: *const u8, size: usize);
    fn __asan_unpoison_memory_region(addr: *const u8, size: usize);
}

/// The allocator, which keeps the drivers' large DMA areas (a virtio-net
/// device's 512 KiB of buffers each way, page-aligned and zeroed: see
/// `lamina_virtio::virtqueue::Dma`) from one execution to the next. Fresh
/// ones are mapped, zeroed page by page and unmapped again each time:
/// 40% of an execution. A kept area is poisoned while kept, so that an
/// access after the driver freed it is still reported, and zeroed again
/// when handed out.
struct KeepDma;

/// Areas at least this large and page-aligned are kept.
const KEPT_MIN: usize = 128 << 10;
/// At most this many are kept (two network devices' four).
const KEPT_MAX: usize = 4;

/// The kept areas: address and size (a fixed array: the allocator must
/// not allocate to keep one).
static KEPT: Mutex<[(usize, usize); KEPT_MAX]> = Mutex::new([(0, 0); KEPT_MAX]);

fn kept(layout: Layout) -> bool {
    layout.align() == 4096 && layout.size() >= KEPT_MIN
}

// SAFETY: every block comes from `System` with the layout it is later
// freed with (a kept one is only handed out again for a layout of the
// same size and alignment), and is handed out to one owner at a time.
unsafe impl GlobalAlloc for KeepDma {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller's contract for `layout`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if kept(layout) {
            let mut areas = KEPT.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(area) = areas.iter_mut().find(|a| a.1 == layout.size()) {
                let at = std::mem::replace(area, (0, 0)).0 as *mut u8;
                drop(areas);
                // SAFETY: a block of `layout.size()` bytes from `System`
                // that no one owns since it was kept.
                unsafe {
                    __asan_unpoison_memory_region(at, layout.size());
                    std::ptr::write_bytes(at, 0, layout.size());
                }
                return at;
            }
        }
        // SAFETY: as the caller's contract for `layout`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if kept(layout) {
            let mut areas = KEPT.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(area) = areas.iter_mut().find(|a| a.1 == 0) {
                *area = (ptr as usize, layout.size());
                // SAFETY: the caller's block, which it gives up.
                unsafe { __asan_poison_memory_region(ptr, layout.size()) };
                return;
            }
        }
        // SAFETY: as the caller's contract for `ptr` and `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: KeepDma = KeepDma;

/// The input, read front to back; zeros once it ends.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.bytes())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// `n` bytes: the input's, then a pattern.
    fn data(&mut self, n: usize) -> Vec<u8> {
        let take = n.min(self.0.len());
        let mut out = self.0[..take].to_vec();
        self.0 = &self.0[take..];
        out.extend((take..n).map(|i| i as u8));
        out
    }
}

/// VIRTIO_NET_F_MAC | CSUM | GUEST_CSUM | HOST_TSO4 | HOST_TSO6, as QEMU
/// over a tap offers them.
const NET_FEATURES: u64 = 1 << 5 | 1 | 1 << 1 | 1 << 11 | 1 << 12;
/// VIRTIO_BLK_F_FLUSH.
const BLK_FEATURES: u64 = 1 << 9;

fn behaviour(r: &mut Reader, kind: u32) -> Behaviour {
    let features = match kind {
        device_type::NET => NET_FEATURES,
        device_type::BLOCK => BLK_FEATURES,
        _ => 0,
    };
    let mut b = Behaviour::new(kind, features);
    b.magic ^= r.u32();
    b.version ^= r.u32();
    b.features ^= r.u64();
    b.stuck_status = r.u8();
    let quirks = r.u8();
    b.refuses_features = quirks & 1 != 0;
    b.resets_at_driver_ok = quirks & 2 != 0;
    b.queues_enabled = quirks & 4 != 0;
    b.refuses_vector = quirks & 8 != 0;
    for max in &mut b.queue_max {
        *max ^= r.u32();
    }
    b.num_queues ^= r.u16();
    for off in &mut b.notify_off {
        *off ^= r.u16();
    }
    b.generation_churn = u32::from(r.u8());
    b.interrupt_status = r.u32();
    // A MAC address, or a capacity of 2048 sectors.
    b.config[..6].copy_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    if kind == device_type::BLOCK {
        b.config[..8].copy_from_slice(&2048u64.to_le_bytes());
    }
    for (byte, x) in b.config.iter_mut().zip(r.bytes::<32>()) {
        *byte ^= x;
    }
    b
}

fn place(r: &mut Reader, good: Option<Place>) -> Option<Place> {
    let flags = r.u8();
    let good = good.unwrap_or(Place {
        bar: 4,
        offset: 0,
        length: 0,
    });
    let p = Place {
        bar: good.bar ^ r.u8(),
        offset: good.offset ^ r.u32(),
        length: good.length ^ r.u32(),
    };
    (flags & 1 == 0).then_some(p)
}

fn layout(r: &mut Reader) -> PciLayout {
    let mut l = PciLayout::qemu(3);
    l.bar1 = (l.bar1.0 ^ r.u32(), l.bar1.1 ^ r.u32());
    l.bar4 = (l.bar4.0 ^ r.u64(), l.bar4.1 ^ r.u64());
    l.common = place(r, l.common);
    let multiplier = l.notify.map_or(0, |(_, m)| m) ^ r.u32();
    l.notify = place(r, l.notify.map(|(p, _)| p)).map(|p| (p, multiplier));
    l.isr = place(r, l.isr);
    l.device = place(r, l.device);
    let msix = r.u8();
    let (bar, offset, entries) = l.msix.unwrap_or((1, 0, 3));
    l.msix = (msix & 1 == 0).then_some((bar ^ r.u8(), offset ^ r.u32(), entries ^ r.u16()));
    for _ in 0..r.u8() % 8 {
        l.patches.push((r.u8(), r.u8()));
    }
    l
}

fn transport(
    r: &mut Reader,
    pci: bool,
    kind: u32,
) -> (Rc<FakeDevice>, Result<Transport<FakeBus>, SetupError>) {
    let b = behaviour(r, kind);
    if pci {
        let layout = layout(r);
        let mapped = u64::MAX ^ r.u64();
        let device = FakeDevice::pci(b, layout);
        let bus = FakeBus {
            device: device.clone(),
        };
        let function = FakeFunction {
            device: device.clone(),
        };
        let result = Pci::probe(bus, function, mapped).map(Transport::Pci);
        (device, result)
    } else {
        let window = MmioDevice {
            base: 0xd000_0000 ^ r.u64(),
            size: 0x200 ^ r.u64(),
            irq: 5,
        };
        let device = FakeDevice::mmio(b);
        let bus = FakeBus {
            device: device.clone(),
        };
        let result = Mmio::probe(bus, &window).map(|(t, _)| Transport::Mmio(t));
        (device, result)
    }
}

/// A completion from the input: on `queue`, with its data, and perhaps a
/// made-up id, length and last byte.
fn completion(r: &mut Reader) -> (u16, Completion) {
    let flags = r.u8();
    let queue = u16::from(flags & 3);
    let len = usize::from(r.u16() % 2100);
    let mut c = Completion {
        data: r.data(len),
        ..Completion::default()
    };
    if flags & 4 != 0 {
        c.id = Some(r.u32() % 512);
    }
    if flags & 8 != 0 {
        c.len = Some(r.u32());
    }
    if flags & 16 == 0 {
        c.last = Some(if flags & 32 == 0 { 0 } else { r.u8() });
    }
    (queue, c)
}

/// With VIRTIO_FUZZ_TRACE set, what the drivers answered is printed.
fn trace(what: std::fmt::Arguments) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("VIRTIO_FUZZ_TRACE").is_some()) {
        eprintln!("virtio_drivers: {what}");
    }
}

/// A device refused while being set up: the message says why.
fn refused(e: SetupError) {
    let message = e.to_string();
    trace(format_args!("refused: {message}"));
    assert!(!message.is_empty());
}

struct Noop;

impl Wake for Noop {
    fn wake(self: std::sync::Arc<Self>) {}
}

/// How the device and the clock behave while a block request waits.
#[derive(Default)]
struct Idle {
    /// Nanoseconds the clock jumps between polls (the guest idling).
    step_ns: u64,
    /// The device stopped on its own (its status says so).
    stopped: bool,
}

/// Polls `future` up to `polls` times, the device working, the clock
/// moving `idle.step_ns` and the driver looking at the device between
/// polls; drops it (the caller stops waiting) if it is still pending. On
/// a stopped device the future must have ended once it waited `STALL_NS`
/// and was polled twice more (the driver's look, then its answer).
fn run<F: Future<Output: std::fmt::Debug>>(
    device: &FakeDevice,
    driver: &dyn Device<FakeBus>,
    polls: u8,
    idle: &Idle,
    future: F,
) {
    let waker = Waker::from(std::sync::Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    let mut stalled_at = None;
    for poll in 0..polls {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            trace(format_args!("{out:?}"));
            return;
        }
        if poll == 0 {
            stalled_at = Some(device.now());
        }
        if let Some(start) = stalled_at.filter(|_| idle.stopped) {
            // Past STALL_NS two polls ago (the clock only moves forward).
            assert!(
                device.now().saturating_sub(start) < STALL_NS + 2 * (idle.step_ns + 50_000_000),
                "a request still waits on a stopped device {} ms later",
                (device.now() - start) / 1_000_000
            );
        }
        device.work();
        device.advance(idle.step_ns);
        driver.poll();
    }
}

fn interrupts(transport: &Transport<FakeBus>, r: &mut Reader) {
    let _ = transport.interrupt();
    let _ = transport.route_msix(0xfee0_0000, u32::from(r.u8()));
    transport.ack_interrupt();
}

fn net(device: Rc<FakeDevice>, transport: Transport<FakeBus>, r: &mut Reader) {
    let net = match NetDevice::new(transport, 0) {
        Ok(net) => net,
        Err(e) => return refused(e),
    };
    let net = Rc::new(net);
    let netif = VirtioNetif::new(net.clone());
    let _ = (netif.mac(), netif.offloads());
    while !r.is_empty() {
        match r.u8() % 10 {
            0 => {
                let len = usize::from(r.u16() % 1600);
                let frame = r.data(len);
                let sent = netif.transmit(&frame);
                trace(format_args!("transmit {len}: {sent:?}"));
            }
            1 => {
                let mut buf = vec![0u8; usize::from(r.u16() % 2048)];
                let received = netif.try_receive(&mut buf);
                trace(format_args!("receive: {received:?}"));
                if let Ok(Some(n)) = received {
                    assert!(n <= buf.len());
                }
            }
            2 => Netif::flush(&netif),
            8 => device.stop(r.u8() & 1 != 0),
            9 => device.advance(u64::from(r.u16()) * 1_000_000),
            3 => Device::flush(&*net),
            4 => {
                net.poll();
            }
            5 => {
                let (queue, c) = completion(r);
                device.script(queue, c);
            }
            6 => device.work(),
            _ => interrupts(net.transport(), r),
        }
    }
}

/// The longest transfer: 640 sectors and a byte.
const TRANSFER_MAX: usize = 640 * 512 + 1;

thread_local! {
    /// The callers' buffer for reads and writes, kept from one execution
    /// to the next: a new one of up to 320 KiB for each transfer, faulted
    /// in afresh (AddressSanitizer's quarantine keeps freed memory from
    /// being reused), took half of the target's time. The drivers reach
    /// it only through slices of the transfer's length (bounds-checked).
    static TRANSFER_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

fn blk(device: Rc<FakeDevice>, transport: Transport<FakeBus>, r: &mut Reader) {
    let blk = match BlockDevice::new(transport) {
        Ok(blk) => blk,
        Err(e) => return refused(e),
    };
    let blk = Rc::new(blk);
    let block = VirtioBlock::new(blk.clone());
    trace(format_args!("{:?}", block.info()));
    let mut transfer_buffer = TRANSFER_BUFFER.take();
    transfer_buffer.resize(TRANSFER_MAX, 0x5a);
    // A device that resets at DRIVER_OK reads 0 from then on.
    let mut idle = Idle {
        stopped: device.status() == 0,
        ..Idle::default()
    };
    while !r.is_empty() {
        let op = r.u8();
        let polls = (op >> 4) + 1;
        match op % 8 {
            0 | 1 => {
                // Near the start (zeros: sector 0), or anywhere with the
                // top byte set; 1 to 640 sectors (up to three batches of
                // four chunks), or a byte more.
                let sector = u64::from(r.u16()) ^ u64::from(r.u8()) << 56;
                let len = (usize::from(r.u16() % 640) + 1) * 512 + usize::from(r.u8() == 1);
                let buf = &mut transfer_buffer[..len];
                if op % 8 == 0 {
                    run(&device, &*blk, polls, &idle, block.read(sector, buf));
                } else {
                    run(&device, &*blk, polls, &idle, block.write(sector, buf));
                }
            }
            2 => run(&device, &*blk, polls, &idle, block.flush()),
            3 => {
                let (queue, c) = completion(r);
                device.script(queue, c);
            }
            4 => {
                blk.poll();
            }
            5 => interrupts(blk.transport(), r),
            6 => {
                device.stop(r.u8() & 1 != 0);
                idle.stopped = true;
            }
            _ => idle.step_ns = u64::from(r.u8()) * 10_000_000,
        }
    }
    TRANSFER_BUFFER.set(transfer_buffer);
}

fuzz_target!(|bytes: &[u8]| {
    let mut r = Reader(bytes);
    let flags = r.u8();
    let kind = match (flags >> 1) & 3 {
        0 => device_type::NET,
        1 => device_type::BLOCK,
        2 => device_type::ENTROPY,
        _ => u32::from(r.u8()),
    };
    let (device, result) = transport(&mut r, flags & 1 != 0, kind);
    let transport = match result {
        Ok(transport) => transport,
        Err(e) => return refused(e),
    };
    match kind {
        device_type::NET => net(device, transport, &mut r),
        device_type::BLOCK => blk(device, transport, &mut r),
        _ => {
            for _ in 0..r.u8() % 4 {
                let (queue, c) = completion(&mut r);
                device.script(queue, c);
            }
            let seed = rng::seed(&transport);
            trace(format_args!("seed: {seed:?}"));
            // The driver freed its queue: the made-up device forgets it, as
            // a device on the host stops when its driver does (`Dma`; in a
            // unikernel the memory is never freed). Left serving it, the
            // device read the freed available ring when the next register
            // write made it look for work.
            device.stop(false);
            interrupts(&transport, &mut r);
        }
    }
});
