//! What a target provides ([`Platform`]) and what an application receives
//! ([`Env`]).

use crate::device::{Block, Clock, Console, KvWrite, Netif, Random, Stack};
use crate::runtime::{Duration, Handle, Instant, JoinHandle, Sleep, Timeout};
use alloc::string::String;
use core::future::Future;

/// Why a device could not be acquired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceError {
    /// No device of that kind and name was attached at boot.
    NotAttached {
        /// Device family: `net`, `block`, `kv`.
        kind: &'static str,
        /// The name asked for (`service`, `storage`).
        name: String,
    },
    /// The target has no device of this kind.
    Unsupported {
        /// Device family.
        kind: &'static str,
        /// The target's name.
        target: &'static str,
    },
    /// The device exists but could not be brought up; the text says why.
    Failed(String),
}

impl core::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DeviceError::NotAttached { kind, name } => write!(
                f,
                "no {kind} device named '{name}' is attached (attach one with --{kind}:{name}=...)"
            ),
            DeviceError::Unsupported { kind, target } => {
                write!(f, "the {target} target has no {kind} devices")
            }
            DeviceError::Failed(why) => f.write_str(why),
        }
    }
}

/// A target's set of device implementations.
///
/// Devices that are unique (console, clock, random) are returned directly;
/// named devices are acquired by the name in the image's manifest, as Solo5's
/// `solo5_net_acquire` does. The default names are `service` (network) and
/// `storage` (block), the conventions deployers of Solo5 images use.
pub trait Platform: 'static {
    /// Console implementation.
    type Console: Console + Clone + 'static;
    /// Clock implementation.
    type Clock: Clock + Clone + 'static;
    /// Random implementation.
    type Random: Random + Clone + 'static;
    /// Raw Ethernet interface.
    type Netif: Netif + 'static;
    /// TCP/UDP stack.
    type Stack: Stack + Clone + 'static;
    /// Block device.
    type Block: Block + 'static;
    /// Read-write key-value store.
    type Kv: KvWrite + 'static;
    /// The target's name: `unix`, `spt`, `hvt`, `virtio`.
    const TARGET: &'static str;

    /// The console.
    fn console(&self) -> Self::Console;
    /// The clock.
    fn clock(&self) -> Self::Clock;
    /// The random source.
    fn random(&self) -> Self::Random;
    /// The network interface `name`, as raw frames.
    fn netif(&self, name: &str) -> Result<Self::Netif, DeviceError>;
    /// A TCP/UDP stack over the network interface `name`.
    fn stack(&self, name: &str) -> Result<Self::Stack, DeviceError>;
    /// The block device `name`.
    fn block(&self, name: &str) -> Result<Self::Block, DeviceError>;
    /// The key-value store `name`.
    fn kv(&self, name: &str) -> Result<Self::Kv, DeviceError>;
}

/// Everything an application's `main` receives: the platform's devices and
/// the runtime.
///
/// ```ignore
/// async fn main<P: Platform>(env: Env<P>, args: Args) -> Result<(), NetError> {
///     let stack = env.stack("service")?;
///     env.sleep(Duration::from_secs(1)).await;
/// }
/// ```
pub struct Env<P: Platform> {
    platform: P,
    runtime: Handle,
}

impl<P: Platform> Env<P> {
    /// Built by the target's start-up code.
    pub fn new(platform: P, runtime: Handle) -> Self {
        Env { platform, runtime }
    }
    /// The target's devices.
    pub fn platform(&self) -> &P {
        &self.platform
    }
    /// The runtime, for libraries that spawn tasks or use timers.
    pub fn runtime(&self) -> &Handle {
        &self.runtime
    }
    /// See [`Platform::console`].
    pub fn console(&self) -> P::Console {
        self.platform.console()
    }
    /// See [`Platform::clock`].
    pub fn clock(&self) -> P::Clock {
        self.platform.clock()
    }
    /// See [`Platform::random`].
    pub fn random(&self) -> P::Random {
        self.platform.random()
    }
    /// See [`Platform::netif`].
    pub fn netif(&self, name: &str) -> Result<P::Netif, DeviceError> {
        self.platform.netif(name)
    }
    /// See [`Platform::stack`].
    pub fn stack(&self, name: &str) -> Result<P::Stack, DeviceError> {
        self.platform.stack(name)
    }
    /// See [`Platform::block`].
    pub fn block(&self, name: &str) -> Result<P::Block, DeviceError> {
        self.platform.block(name)
    }
    /// See [`Platform::kv`].
    pub fn kv(&self, name: &str) -> Result<P::Kv, DeviceError> {
        self.platform.kv(name)
    }
    /// Monotonic time now.
    pub fn now(&self) -> Instant {
        self.runtime.now()
    }
    /// See [`Handle::sleep`].
    pub fn sleep(&self, duration: Duration) -> Sleep {
        self.runtime.sleep(duration)
    }
    /// See [`Handle::timeout`].
    pub fn timeout<F: Future>(&self, duration: Duration, future: F) -> Timeout<F> {
        self.runtime.timeout(duration, future)
    }
    /// See [`Handle::spawn`].
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        self.runtime.spawn(future)
    }
}
