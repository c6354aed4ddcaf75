//! The device-trait implementations every bare-metal runtime has in the
//! same shape: the console and the clock over a [`Machine`], and the cache
//! that makes two requests for one network device's stack share it.

use crate::random::ChaCha20Random;
use crate::Machine;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::marker::PhantomData;
use lamina_core::device::{Clock, Console, Netif, Random};
use lamina_core::platform::DeviceError;
use lamina_core::runtime::{Handle, Instant};
use lamina_net::{NetArgs, NetStack};

/// The console of machine `M`: one [`Machine::console_write`] per write.
pub struct MetalConsole<M>(PhantomData<fn() -> M>);

impl<M> MetalConsole<M> {
    /// The console (there is one per machine).
    pub const fn new() -> Self {
        MetalConsole(PhantomData)
    }
}

impl<M> Clone for MetalConsole<M> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<M> Default for MetalConsole<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Machine> Console for MetalConsole<M> {
    fn write(&self, bytes: &[u8]) {
        M::console_write(bytes);
    }
}

/// Offset from monotonic to wall-clock time, read once: a wall-clock read
/// costs a VM exit or a slow device, and HTTP servers ask per request. One
/// per image, as there is one [`Machine`].
static WALL_OFFSET: spin::Once<u64> = spin::Once::new();

/// The clock of machine `M`: monotonic time from [`Machine::monotonic_ns`];
/// wall time from [`Machine::wall_clock_ns`] at the first call, advanced by
/// the monotonic clock.
pub struct MetalClock<M>(PhantomData<fn() -> M>);

impl<M> MetalClock<M> {
    /// The clock (there is one per machine).
    pub const fn new() -> Self {
        MetalClock(PhantomData)
    }
}

impl<M> Clone for MetalClock<M> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<M> Default for MetalClock<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Machine> Clock for MetalClock<M> {
    fn now(&self) -> Instant {
        Instant::from_nanos(M::monotonic_ns())
    }

    fn wall(&self) -> u64 {
        let offset = WALL_OFFSET.call_once(|| M::wall_clock_ns().saturating_sub(M::monotonic_ns()));
        offset.saturating_add(M::monotonic_ns())
    }
}

/// Lamina's TCP/IP stacks already brought up, by network device name:
/// asking twice for one device's stack shares it.
pub struct Stacks {
    runtime: Handle,
    net_args: NetArgs,
    started: RefCell<Vec<(String, NetStack)>>,
}

impl Stacks {
    /// No stacks yet; those started later run on `runtime`, configured by
    /// `net_args` (`--ipv4`, ... or DHCP).
    pub fn new(runtime: Handle, net_args: NetArgs) -> Self {
        Stacks {
            runtime,
            net_args,
            started: RefCell::new(Vec::new()),
        }
    }

    /// The stack over network device `name`: the one already started, or a
    /// new one over the interface `netif` acquires, timed by `clock`.
    pub fn get_or_start<N, C>(
        &self,
        name: &str,
        netif: impl FnOnce() -> Result<N, DeviceError>,
        clock: C,
    ) -> Result<NetStack, DeviceError>
    where
        N: Netif + 'static,
        C: Clock + 'static,
    {
        if let Some((_, stack)) = self.started.borrow().iter().find(|(n, _)| n == name) {
            return Ok(stack.clone());
        }
        let netif = netif()?;
        // smoltcp's `Interface::new` panics on an address that is not a
        // station's ("Hardware address ... is not unicast"); a tender
        // other than ours (Solo5's, QEMU's mac=) may hand one over.
        let mac = netif.mac();
        if mac[0] & 1 != 0 || mac == [0; 6] {
            return Err(DeviceError::Failed(alloc::format!(
                "network device '{name}' has the MAC address {}, which is not unicast \
                 (the first byte even, not all zeros)",
                mac.map(|b| alloc::format!("{b:02x}")).join(":")
            )));
        }
        let seed = ChaCha20Random.next_u64();
        let stack = NetStack::start(netif, clock, seed, &self.runtime, self.net_args.clone());
        self.started
            .borrow_mut()
            .push((String::from(name), stack.clone()));
        Ok(stack)
    }
}

/// The error for a device family `M`'s runtime does not offer.
pub fn unsupported<M: Machine>(kind: &'static str) -> DeviceError {
    DeviceError::Unsupported {
        kind,
        target: M::TARGET,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::sync::atomic::{AtomicU64, Ordering};

    /// A machine whose monotonic clock the test moves by hand.
    struct FakeMachine;
    static NOW: AtomicU64 = AtomicU64::new(5_000);
    static WALL_READS: AtomicU64 = AtomicU64::new(0);

    impl Machine for FakeMachine {
        const TARGET: &'static str = "test";
        const PANIC_STATUS: i32 = 9;
        fn console_write(_: &[u8]) {}
        fn monotonic_ns() -> u64 {
            NOW.load(Ordering::SeqCst)
        }
        fn wall_clock_ns() -> u64 {
            WALL_READS.fetch_add(1, Ordering::SeqCst);
            1_700_000_000_000_000_000 + NOW.load(Ordering::SeqCst)
        }
        fn exit(status: i32) -> ! {
            panic!("exit {status}")
        }
    }

    /// A network device of address `.0` that never receives.
    struct Silent([u8; 6]);

    impl Netif for Silent {
        fn mac(&self) -> [u8; 6] {
            self.0
        }
        fn mtu(&self) -> usize {
            1500
        }
        async fn receive(&self, _: &mut [u8]) -> Result<usize, lamina_core::device::NetError> {
            core::future::pending().await
        }
        fn try_receive(
            &self,
            _: &mut [u8],
        ) -> Result<Option<usize>, lamina_core::device::NetError> {
            Ok(None)
        }
        fn transmit(&self, _: &[u8]) -> Result<(), lamina_core::device::NetError> {
            Ok(())
        }
    }

    struct NoDevices;

    impl lamina_core::runtime::Park for NoDevices {
        fn now(&self) -> Instant {
            Instant::from_nanos(0)
        }
        fn park(&self, _: Option<Instant>) {}
    }

    /// A device whose address is a group's (or none) is refused with its
    /// name and address, where smoltcp's `Interface::new` panicked.
    #[test]
    fn a_network_device_without_a_unicast_mac_is_refused() {
        let executor = lamina_core::runtime::Executor::new(alloc::rc::Rc::new(NoDevices));
        use alloc::string::ToString;
        use lamina_core::args::BootArgs;
        let stacks = Stacks::new(executor.handle(), NetArgs::defaults());
        let clock = MetalClock::<FakeMachine>::new();
        for mac in [[1, 0, 0x5e, 0, 0, 1], [0xff; 6], [0; 6]] {
            let Err(refused) = stacks.get_or_start("service", || Ok(Silent(mac)), clock.clone())
            else {
                panic!("{mac:?}: started");
            };
            let refused = refused.to_string();
            assert!(
                refused.contains("network device 'service' has the MAC address")
                    && refused.contains("not unicast"),
                "{mac:?}: {refused}"
            );
        }
        let station = [2, 0, 0, 0, 0, 1];
        assert!(stacks
            .get_or_start("service", || Ok(Silent(station)), clock)
            .is_ok());
    }

    #[test]
    fn wall_clock_is_read_once_then_follows_the_monotonic_clock() {
        let clock = MetalClock::<FakeMachine>::new();
        assert_eq!(clock.now().as_nanos(), 5_000);
        assert_eq!(clock.wall(), 1_700_000_000_000_005_000);
        NOW.store(9_000, Ordering::SeqCst);
        assert_eq!(clock.wall(), 1_700_000_000_000_009_000);
        assert_eq!(WALL_READS.load(Ordering::SeqCst), 1);
        match unsupported::<FakeMachine>("key-value") {
            DeviceError::Unsupported { kind, target } => {
                assert_eq!((kind, target), ("key-value", "test"))
            }
            other => panic!("{other:?}"),
        }
    }
}
