//! The tender's side of the receive queues ([`lamina_abi::ring::rx`]):
//! the ring I/O thread reads each tap as soon as it is readable into a
//! byte ring in the reserved area, so that the guest finds frames with
//! plain loads instead of a request it must wait for, and exits only to
//! sleep.
//!
//! What the guest controls is its `head` index and its `RX_ENABLE` and
//! `GUEST_WAITING` words; the tender keeps its own copy of each queue's
//! tail, size and place, so a guest that scribbles over the descriptors
//! changes nothing here, and a `head` that is not behind the tail stops
//! the guest.

use lamina_abi::mft::net_features;
use lamina_abi::ring::{offsets, rx, RESERVED_BYTES};
use lamina_tender::devices::net::NetDevice;
use lamina_tender::devices::offload::OffloadLink;
use lamina_tender::mem::{GuestFault, SharedView};
use lamina_wire::vnet;
use std::cell::Cell;
use std::sync::atomic::{fence, AtomicU32, Ordering};

/// The largest frame the tender may queue for `net`: what the guest's
/// link takes (a frame of the tender's offload link is split to the MTU
/// unless the guest negotiated the virtio-net header, which then comes
/// first in each record).
fn largest_frame(net: &NetDevice) -> u32 {
    if net.features & net_features::VIRTIO_NET_HDR != 0 {
        (vnet::HEADER_LEN + OffloadLink::MAX_FRAME) as u32
    } else {
        u32::from(net.mtu) + 14
    }
}

/// Lays out one receive queue per network device (up to
/// [`rx::MAX_QUEUES`]) in the zeroed ring area at `ring`; whether there
/// is at least one (else the guest is not told of them).
pub fn lay_out(view: &SharedView, ring: u64, nets: &[NetDevice]) -> Result<bool, GuestFault> {
    let Some((queues, size)) = sizes(nets) else {
        return Ok(false);
    };
    for (i, net) in nets.iter().take(queues).enumerate() {
        let descriptor = ring + (rx::TABLE + i * rx::DESCRIPTOR_BYTES) as u64;
        let offset = (rx::DATA + i * size as usize) as u32;
        let handle = u32::try_from(net.handle).unwrap_or(u32::MAX);
        view.reserved_write(descriptor + rx::field::HANDLE as u64, &handle)?;
        view.reserved_write(descriptor + rx::field::OFFSET as u64, &offset)?;
        view.reserved_write(descriptor + rx::field::SIZE as u64, &size)?;
    }
    Ok(true)
}

/// How many queues `nets` get, and the bytes of each: room for two of the
/// largest frames at least, so that one can be written while the guest
/// still holds the other. `None`: no queues.
fn sizes(nets: &[NetDevice]) -> Option<(usize, u32)> {
    let queues = nets.len().min(rx::MAX_QUEUES);
    let min = nets
        .iter()
        .take(queues)
        .map(|net| 2 * rx::record_bytes(largest_frame(net)) as usize)
        .max()?;
    let size = rx::queue_size(RESERVED_BYTES as usize - rx::DATA, queues, min)?;
    Some((queues, size))
}

/// A queue as the I/O thread fills it.
pub struct Queue<'a> {
    /// Index of its device in the thread's devices.
    pub net: usize,
    /// Guest address of its bytes.
    base: u64,
    size: u32,
    largest: u32,
    /// The tender's own tail (the guest's copy is only published), in
    /// the tender's memory, shared by the threads that fill the queue one
    /// at a time (under the ring's lock).
    tail: &'a AtomicU32,
    /// Whether the tap may have a frame (the thread's epoll is
    /// edge-triggered: set by an event, cleared when a read finds none).
    pub readable: Cell<bool>,
    tail_word: &'a AtomicU32,
    head_word: &'a AtomicU32,
    stalled_word: &'a AtomicU32,
}

/// What one [`Queue::fill`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Filled {
    /// Frames queued.
    pub frames: u64,
    /// Frames dropped: larger than the guest's link takes.
    pub dropped: u64,
}

impl<'a> Queue<'a> {
    /// The queues [`lay_out`] made for `nets` in the ring at `ring`.
    /// `tails` holds the tender's tail of each queue.
    pub fn all(
        view: &'a SharedView,
        ring: u64,
        nets: &[NetDevice],
        tails: &'a [AtomicU32; rx::MAX_QUEUES],
    ) -> Result<Vec<Self>, String> {
        let Some((queues, size)) = sizes(nets) else {
            return Ok(Vec::new());
        };
        let word = |at: usize| {
            view.atomic_u32(ring + at as u64)
                .map_err(|f| format!("the receive queues are not in guest memory: {f}"))
        };
        (0..queues)
            .map(|i| {
                let descriptor = rx::TABLE + i * rx::DESCRIPTOR_BYTES;
                Ok(Queue {
                    net: i,
                    base: ring + (rx::DATA + i * size as usize) as u64,
                    size,
                    largest: largest_frame(&nets[i]),
                    tail: &tails[i],
                    // Frames may have arrived before the guest enabled the
                    // queues: look once.
                    readable: Cell::new(true),
                    tail_word: word(descriptor + rx::field::TAIL)?,
                    head_word: word(descriptor + rx::field::HEAD)?,
                    stalled_word: word(descriptor + rx::field::STALLED)?,
                })
            })
            .collect()
    }

    /// Bytes the guest has not taken yet, or why its `head` is impossible.
    fn used(&self) -> Result<u32, String> {
        let head = self.head_word.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Relaxed);
        let used = tail.wrapping_sub(head);
        if used > self.size {
            return Err(format!(
                "guest receive queue {} is corrupt: head {head} is not within {} bytes behind tail {tail}",
                self.net, self.size,
            ));
        }
        Ok(used)
    }

    /// Whether the tap may have frames but the queue had no room, and now
    /// has (the guest took some since): a reason not to sleep.
    pub fn unstalled(&self) -> Result<bool, String> {
        if self.stalled_word.load(Ordering::SeqCst) == 0 {
            return Ok(false);
        }
        let (skip, record) = self.next_record();
        Ok(self.size - self.used()? >= skip + record)
    }

    /// Where the next record goes: the bytes a wrap marker skips first (0
    /// when the largest frame fits before the queue's end), and the bytes
    /// of the largest record. `fill` needs room for both.
    fn next_record(&self) -> (u32, u32) {
        let record = rx::record_bytes(self.largest);
        let at = self.tail.load(Ordering::Relaxed) & (self.size - 1);
        let contiguous = self.size - at;
        (if contiguous < record { contiguous } else { 0 }, record)
    }

    /// Reads frames from `net` into the queue while it is readable and has
    /// room, publishing each; marks the queue stalled when it is full.
    pub fn fill(&self, view: &SharedView, net: &NetDevice) -> Result<Filled, String> {
        let mut filled = Filled::default();
        while self.readable.get() {
            let used = self.used()?;
            let tail = self.tail.load(Ordering::Relaxed);
            let at = tail & (self.size - 1);
            let (skip, record) = self.next_record();
            if self.size - used < skip + record {
                // Full: the guest kicks when it has made room.
                self.stalled_word.store(1, Ordering::SeqCst);
                break;
            }
            self.stalled_word.store(0, Ordering::Relaxed);
            let at = if skip > 0 {
                self.header(view, at, rx::WRAP)?;
                0
            } else {
                at
            };
            let data = self.base + u64::from(at) + size_of::<rx::Record>() as u64;
            let buf = view
                .reserved_bytes_mut(data, u64::from(self.largest))
                .map_err(|f| format!("a receive queue is not in guest memory: {f}"))?;
            match net.read(buf) {
                Ok(Some(len)) => {
                    let len = len as u32;
                    self.header(view, at, len)?;
                    let tail = tail.wrapping_add(skip + rx::record_bytes(len));
                    self.tail.store(tail, Ordering::Relaxed);
                    self.tail_word.store(tail, Ordering::Release);
                    filled.frames += 1;
                }
                Ok(None) => self.readable.set(false),
                // Larger than the guest's link (the read took it off the
                // tap): dropped, as a NIC would. A wrap marker written is
                // written again for the next frame.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => filled.dropped += 1,
                // The tap failed: nothing to read until its next event.
                Err(_) => self.readable.set(false),
            }
        }
        Ok(filled)
    }

    /// Writes a record header at queue offset `at`.
    fn header(&self, view: &SharedView, at: u32, len: u32) -> Result<(), String> {
        let header = rx::Record { len, _reserved: 0 };
        view.reserved_write(self.base + u64::from(at), &header)
            .map_err(|f| format!("a receive queue is not in guest memory: {f}"))
    }
}

/// The guest's words that say whether it takes frames from the queues and
/// whether it waits for them.
pub struct GuestWords<'a> {
    enable: &'a AtomicU32,
    waiting: &'a AtomicU32,
}

impl<'a> GuestWords<'a> {
    /// The words of the ring at `ring`.
    pub fn new(view: &'a SharedView, ring: u64) -> Result<Self, String> {
        let word = |at: usize| {
            view.atomic_u32(ring + at as u64)
                .map_err(|f| format!("the network ring is not in guest memory: {f}"))
        };
        Ok(GuestWords {
            enable: word(offsets::RX_ENABLE)?,
            waiting: word(offsets::GUEST_WAITING)?,
        })
    }

    /// Whether the guest takes frames from the queues.
    pub fn enabled(&self) -> bool {
        self.enable.load(Ordering::Acquire) != 0
    }

    /// Whether the guest waits in POLL now.
    pub fn waiting(&self) -> bool {
        self.enabled() && self.waiting.load(Ordering::Relaxed) != 0
    }

    /// After publishing frames: whether the guest waits in POLL (and must
    /// be woken); clears the word so that one wake-up is sent per wait.
    pub fn take_waiting(&self) -> bool {
        // The guest stores GUEST_WAITING, fences, then looks at the tails;
        // the tender stored a tail, fences, then looks here.
        fence(Ordering::SeqCst);
        self.waiting.load(Ordering::Relaxed) != 0 && self.waiting.swap(0, Ordering::SeqCst) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use lamina_tender::mem::GuestMemory;

    /// The ring at the top of 4 MiB of guest memory, reserved as the
    /// tender reserves it.
    const RING: u64 = (4 << 20) - RESERVED_BYTES;

    fn memory() -> GuestMemory {
        let mut mem = GuestMemory::anywhere(4 << 20).unwrap();
        mem.reserve_top(RING).unwrap();
        mem
    }

    /// Guest memory with the queues of one device laid out, the device,
    /// and the tender's tails.
    struct Rig {
        mem: GuestMemory,
        nets: [NetDevice; 1],
        tails: [AtomicU32; rx::MAX_QUEUES],
    }

    impl Rig {
        /// The rig, and the host's end of its device's link.
        fn new() -> (Rig, std::os::fd::OwnedFd) {
            let (net, host) = fixtures::net(1, false);
            let rig = Rig {
                mem: memory(),
                nets: [net],
                tails: Default::default(),
            };
            assert!(lay_out(&rig.mem, RING, &rig.nets).unwrap());
            (rig, host)
        }

        fn queues(&self) -> Vec<Queue<'_>> {
            Queue::all(&self.mem, RING, &self.nets, &self.tails).unwrap()
        }
    }

    fn descriptor_word(view: &SharedView, field: usize) -> &AtomicU32 {
        view.atomic_u32(RING + (rx::TABLE + field) as u64).unwrap()
    }

    /// What the guest does (targets/solo5/src/guest/sys/rx.rs): the next
    /// frame of queue 0, if any, skipping wrap markers.
    fn guest_takes(view: &SharedView) -> Option<Vec<u8>> {
        let size = view
            .reserved_read::<u32>(RING + (rx::TABLE + rx::field::SIZE) as u64)
            .unwrap();
        let offset = view
            .reserved_read::<u32>(RING + (rx::TABLE + rx::field::OFFSET) as u64)
            .unwrap();
        let head_word = descriptor_word(view, rx::field::HEAD);
        let mut head = head_word.load(Ordering::Relaxed);
        loop {
            if head == descriptor_word(view, rx::field::TAIL).load(Ordering::Acquire) {
                return None;
            }
            let at = RING + u64::from(offset) + u64::from(head & (size - 1));
            let record: rx::Record = view.reserved_read(at).unwrap();
            if record.len == rx::WRAP {
                head = head.wrapping_add(size - (head & (size - 1)));
                continue;
            }
            let mut frame = vec![0u8; record.len as usize];
            for (i, byte) in frame.iter_mut().enumerate() {
                *byte = view.reserved_read(at + 8 + i as u64).unwrap();
            }
            head_word.store(
                head.wrapping_add(rx::record_bytes(record.len)),
                Ordering::Release,
            );
            return Some(frame);
        }
    }

    #[test]
    fn frames_cross_in_order_through_many_wraps() {
        let (rig, host) = Rig::new();
        let (mem, nets, queues) = (&rig.mem, &rig.nets, rig.queues());
        let queue = &queues[0];
        let mut sent = 0u32;
        let mut taken = 0u32;
        // 3 MiB through a 1 MiB queue, frames of every size from 60 bytes.
        while sent < 2400 {
            for _ in 0..40 {
                let len = 60 + (sent as usize * 7) % 1455;
                fixtures::host_sends(&host, &fixtures::frame(len, sent as u8), false);
                sent += 1;
            }
            queue.readable.set(true);
            let filled = queue.fill(mem, &nets[0]).unwrap();
            assert_eq!(
                filled,
                Filled {
                    frames: 40,
                    dropped: 0
                }
            );
            while let Some(frame) = guest_takes(mem) {
                let len = 60 + (taken as usize * 7) % 1455;
                assert_eq!(frame, fixtures::frame(len, taken as u8), "frame {taken}");
                taken += 1;
            }
        }
        assert_eq!(taken, sent);
        assert!(!queue.readable.get(), "the tap was read until empty");
    }

    #[test]
    fn a_full_queue_stalls_until_the_guest_makes_room() {
        let (rig, host) = Rig::new();
        let (mem, nets, queues) = (&rig.mem, &rig.nets, rig.queues());
        let queue = &queues[0];
        let stalled = || descriptor_word(mem, rx::field::STALLED).load(Ordering::Relaxed);
        // 1 MiB holds 682 records of 1536 bytes; send more, in rounds the
        // socketpair takes.
        let mut queued = 0;
        for round in 0..20 {
            for _ in 0..40 {
                fixtures::host_sends(&host, &fixtures::frame(1514, round), false);
            }
            queue.readable.set(true);
            queued += queue.fill(mem, &nets[0]).unwrap().frames;
        }
        assert_eq!(queued, (1 << 20) / 1536);
        assert_eq!(stalled(), 1);
        assert!(queue.readable.get(), "frames wait on the tap");
        assert!(!queue.unstalled().unwrap());
        assert!(guest_takes(mem).is_some());
        assert!(queue.unstalled().unwrap(), "the guest made room");
        assert_eq!(queue.fill(mem, &nets[0]).unwrap().frames, 1);
        assert_eq!(stalled(), 1);
    }

    /// Room for a record but not for the wrap before it is no room: the
    /// I/O thread must not see a stalled queue as ready again (it would
    /// spin instead of sleeping).
    #[test]
    fn room_before_the_end_needs_the_wrap_counted() {
        let (rig, host) = Rig::new();
        let (mem, nets, queues) = (&rig.mem, &rig.nets, rig.queues());
        let queue = &queues[0];
        // 1 MiB of 1536-byte records: 682 fit, 1024 bytes before the end.
        let mut queued = 0;
        while queued < 682 {
            for _ in 0..40.min(682 - queued) {
                fixtures::host_sends(&host, &fixtures::frame(1514, 1), false);
            }
            queue.readable.set(true);
            queued += queue.fill(mem, &nets[0]).unwrap().frames;
        }
        fixtures::host_sends(&host, &fixtures::frame(1514, 2), false);
        queue.readable.set(true);
        assert_eq!(queue.fill(mem, &nets[0]).unwrap().frames, 0);
        assert_eq!(
            descriptor_word(mem, rx::field::STALLED).load(Ordering::Relaxed),
            1
        );
        // The guest takes one record: 2,560 bytes free, but the next record
        // needs the 1,024 bytes up to the end skipped and 1,536 more.
        assert!(guest_takes(mem).is_some());
        assert!(queue.unstalled().unwrap(), "1024 + 1536 = 2560 bytes: room");
        // Had the guest's head advanced by less, there would be none.
        let head = descriptor_word(mem, rx::field::HEAD);
        head.store(head.load(Ordering::Relaxed) - 16, Ordering::Relaxed);
        assert!(
            !queue.unstalled().unwrap(),
            "2544 bytes: no room for wrap and record"
        );
    }

    #[test]
    fn a_frame_larger_than_the_link_is_dropped_and_the_next_queued() {
        let (rig, host) = Rig::new();
        let (mem, nets, queues) = (&rig.mem, &rig.nets, rig.queues());
        fixtures::host_sends(&host, &fixtures::frame(4000, 1), false);
        fixtures::host_sends(&host, &fixtures::frame(100, 2), false);
        let filled = queues[0].fill(mem, &nets[0]).unwrap();
        assert_eq!(
            filled,
            Filled {
                frames: 1,
                dropped: 1
            }
        );
        assert_eq!(guest_takes(mem), Some(fixtures::frame(100, 2)));
    }

    /// A guest `head` that is not within the queue behind the tail stops
    /// the guest; a guest that overwrites the descriptors' tender fields
    /// changes nothing.
    #[test]
    fn a_lying_guest_stops_itself_and_moves_nothing() {
        let (rig, host) = Rig::new();
        let (mem, nets, queues) = (&rig.mem, &rig.nets, rig.queues());
        for field in [rx::field::OFFSET, rx::field::SIZE, rx::field::TAIL] {
            descriptor_word(mem, field).store(0xffff_fff0, Ordering::Relaxed);
        }
        fixtures::host_sends(&host, &fixtures::frame(100, 3), false);
        assert_eq!(queues[0].fill(mem, &nets[0]).unwrap().frames, 1);
        let data = RING + rx::DATA as u64;
        let record: rx::Record = mem.reserved_read(data).unwrap();
        assert_eq!(
            record.len, 100,
            "written where the tender laid the queue out"
        );
        // Ahead of the tail (112: one record of 100 bytes).
        descriptor_word(mem, rx::field::HEAD).store(128, Ordering::Relaxed);
        fixtures::host_sends(&host, &fixtures::frame(100, 4), false);
        queues[0].readable.set(true);
        let error = queues[0].fill(mem, &nets[0]).unwrap_err();
        assert!(error.contains("corrupt"), "{error}");
    }

    #[test]
    fn no_queues_when_the_devices_do_not_fit() {
        let mem = memory();
        let nets: Vec<NetDevice> = (0..9).map(|h| fixtures::net(h, false).0).collect();
        let tails = Default::default();
        // Eight queues of 128 KiB each; a ninth device reads through entries.
        assert!(lay_out(&mem, RING, &nets).unwrap());
        assert_eq!(Queue::all(&mem, RING, &nets, &tails).unwrap().len(), 8);
        assert!(!lay_out(&mem, RING, &[]).unwrap());
    }
}
