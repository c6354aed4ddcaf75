//! What a target provides ([`Platform`]) and what an application receives
//! ([`Env`]).

use crate::declare::family::Deferred;
use crate::declare::{AcquireError, DeviceSet, Family};
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

/// A target's primitive devices.
///
/// These are what a target must provide, and all it provides: devices that
/// are unique (console, clock, random) are returned directly; named devices
/// are acquired by the name in the image's manifest, as Solo5's
/// `solo5_net_acquire` does. The default names are `service` (network) and
/// `storage` (block), the conventions deployers of Solo5 images use.
///
/// Applications do not call these: they declare their devices with
/// [`devices!`](crate::devices), and each declared [`Family`](crate::declare::Family)
/// acquires through this trait. A family composed over these (a store over
/// `Block`, TLS over `Stack`) lives in its library, and no target changes.
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
    /// Bytes of heap the application and its libraries share, where that
    /// is fixed at boot (a unikernel's guest memory, less the image and the
    /// stack); `None` where memory is the host's and grows (unix). Past it
    /// an allocation fails and the unikernel ends, so applications that
    /// hold state per client size their limits by it.
    fn heap_size(&self) -> Option<usize> {
        None
    }
}

/// What an application's `main` receives besides its devices and
/// arguments: the runtime (tasks, timers, time).
///
/// Devices are not looked up through `Env`: the application declares them
/// once with [`devices!`](crate::devices) and receives them typed.
///
/// ```ignore
/// lamina::devices! {
///     pub struct Devices { service: Stack }
/// }
///
/// async fn main<P: Platform>(env: Env<P>, devices: Devices<P>, args: Args) -> Result<(), NetError> {
///     let listener = devices.service.tcp_listen(address).await?;
///     env.sleep(Duration::from_secs(1)).await;
/// }
/// ```
pub struct Env<P: Platform> {
    /// Kept alive as long as `main` runs (devices may share its state),
    /// and acquires the devices declared `Later`.
    platform: P,
    runtime: Handle,
}

impl<P: Platform> Env<P> {
    /// Brings up a device declared `Later<F>`, now.
    pub fn acquire<F: Family>(&self, device: Deferred<F>) -> Result<F::Device<P>, AcquireError> {
        crate::declare::acquire::<P, F>(&self.platform, device.name)
    }
    /// Bytes of heap the unikernel has, where that is fixed; see
    /// [`Platform::heap_size`].
    pub fn heap_size(&self) -> Option<usize> {
        self.platform.heap_size()
    }
    /// The runtime, for libraries that spawn tasks or use timers.
    pub fn runtime(&self) -> &Handle {
        &self.runtime
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
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        self.runtime.spawn(future)
    }
}

/// The last step of every target's start-up: acquires the devices the
/// application declares (`D`, generated by [`devices!`](crate::devices)) on
/// `platform` and makes `main`'s future. A device that cannot be acquired
/// is an error naming it, and `main` never runs.
pub fn enter<P, D, A, F, Fut>(
    platform: P,
    runtime: Handle,
    args: A,
    main: F,
) -> Result<Fut, AcquireError>
where
    P: Platform,
    D: DeviceSet<P>,
    F: FnOnce(Env<P>, D, A) -> Fut,
{
    let devices = D::acquire(&platform)?;
    let env = Env { platform, runtime };
    Ok(main(env, devices, args))
}
