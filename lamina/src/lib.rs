//! # Lamina
//!
//! A library operating system: an application is written once, in Rust,
//! against small device traits, and built either as an ordinary Linux
//! process (the `unix` target, for development) or as a sealed unikernel
//! image (`spt`, `hvt`, `virtio`). The application never names a target; the
//! `lamina` command chooses one at build time.
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! use lamina::prelude::*;
//!
//! lamina::devices! {
//!     /// Every device the application uses, declared once.
//!     pub struct Devices {
//!         console: Console,
//!     }
//! }
//!
//! lamina::boot_args! {
//!     /// Says hello.
//!     pub struct Args {
//!         /// Whom to greet.
//!         pub name: String = "world",
//!     }
//! }
//!
//! async fn main<P: Platform>(_env: Env<P>, devices: Devices<P>, args: Args) {
//!     devices.console.write_line(&format!("Hello, {}!", args.name));
//! }
//!
//! lamina::main!(main);
//! ```
//!
//! This crate re-exports [`lamina_core`] (device traits, runtime, boot
//! arguments, logging) and the implementation of the chosen target.
#![no_std]
#![forbid(unsafe_code)]

pub use lamina_core::*;
pub use lamina_core::{
    args, baked_note, boot_args, declare, device, exit, platform, provenance, runtime,
};

#[doc(hidden)]
pub use lamina_core::devices as __core_devices;

// A unikernel build (`--cfg lamina_guest`) names its target by a feature:
// one of them, and only there.
#[cfg(all(
    lamina_guest,
    not(any(feature = "spt", feature = "hvt", feature = "virtio"))
))]
compile_error!("a unikernel build names its target: lamina build --target spt|hvt|virtio");
#[cfg(all(
    not(lamina_guest),
    any(feature = "spt", feature = "hvt", feature = "virtio")
))]
compile_error!(
    "the spt, hvt and virtio features are for unikernel builds: use lamina build --target"
);

/// The target chosen at build time.
#[cfg(not(lamina_guest))]
#[doc(hidden)]
pub use lamina_unix as target;

/// The target chosen at build time.
#[cfg(all(lamina_guest, any(feature = "spt", feature = "hvt")))]
#[doc(hidden)]
pub use lamina_solo5 as target;

/// The target chosen at build time.
#[cfg(all(lamina_guest, feature = "virtio"))]
#[doc(hidden)]
pub use lamina_virtio as target;

/// What most applications need, in one import.
pub mod prelude {
    pub use crate::device::{
        Block, BlockError, BlockInfo, Clock, Console, KvRead, KvWrite, NetError, Netif, Random,
        Stack, TcpListener, TcpRead, TcpStream, TcpWrite, UdpSocket,
    };
    pub use crate::log::{debug, error, info, warn};
    pub use crate::platform::{DeviceError, Env, Platform};
    pub use crate::runtime::{Duration, Instant};
    pub use crate::Exit;
    pub use alloc::borrow::ToOwned;
    pub use alloc::boxed::Box;
    pub use alloc::format;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec;
    pub use alloc::vec::Vec;
}

#[doc(hidden)]
pub extern crate alloc;

/// Declares the application's entry point: an `async fn` taking the
/// [`Env`], the application's devices (declared with [`devices!`], acquired
/// before it runs) and its boot arguments (declared with [`boot_args!`]),
/// returning `()`, an [`Exit`] or a `Result`.
///
/// The crate root must be `#![no_std]` and `#![no_main]`: the target supplies
/// the real entry point, a C `main` on unix, the Solo5 start function on a
/// unikernel.
#[cfg(not(lamina_guest))]
#[macro_export]
macro_rules! main {
    ($main:path) => {
        extern crate std;

        /// The process entry point, called by the C runtime. Exported as
        /// `main` under another Rust name, so the application may call its
        /// own function `main`.
        #[unsafe(export_name = "main")]
        pub extern "C" fn __lamina_process_main(_argc: i32, _argv: *const *const u8) -> i32 {
            $crate::target::start(|env, devices, args| $main(env, devices, args))
        }
    };
}

/// Declares the application's entry point (unikernel targets: the runtime's
/// `_start` calls this after setting up memory, clock and devices).
#[cfg(lamina_guest)]
#[macro_export]
macro_rules! main {
    ($main:path) => {
        /// Called by the runtime's entry with what the tender handed over.
        #[unsafe(no_mangle)]
        pub fn __lamina_guest_main(boot: $crate::target::Boot) -> i32 {
            $crate::target::start(boot, |env, devices, args| $main(env, devices, args))
        }

        // The image's provenance note (`lamina_core::provenance`): the text
        // `lamina build` passed in `LAMINA_PROVENANCE`. Read here, in the
        // application's crate, which every build compiles anyway, rather
        // than in a runtime crate: `option_env!` makes cargo rebuild the
        // crate that reads it whenever the text changes, and it changes
        // with every application and target.
        const _: () = {
            const PROVENANCE: &str = match ::core::option_env!("LAMINA_PROVENANCE") {
                ::core::option::Option::Some(text) => text,
                ::core::option::Option::None => {
                    "format=1\nbuilt-by=cargo without lamina build: no provenance recorded\n"
                }
            };
            #[used]
            #[allow(unsafe_code)] // a section name: the linker scripts give it a PT_NOTE
            #[unsafe(link_section = ".note.lamina.provenance")]
            static PROVENANCE_NOTE: $crate::declare::Note4<
                { $crate::provenance::text_note_len(PROVENANCE) },
            > = $crate::provenance::text_note($crate::provenance::TYPE_LPV1, PROVENANCE);
        };
    };
}

/// Declares the devices an application uses, once: see
/// [`lamina_core::devices!`], which this is, with the Solo5 manifest note
/// (`.note.solo5.manifest`) made from the declaration in spt and hvt images.
#[macro_export]
macro_rules! devices {
    ($($declaration:tt)*) => {
        $crate::__core_devices!(@note ($crate::__solo5_manifest_note) $($declaration)*);
    };
}

/// The Solo5 manifest note, in spt and hvt images only.
#[cfg(all(lamina_guest, any(feature = "spt", feature = "hvt")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __solo5_manifest_note {
    ($declared:ident) => {
        /// The Solo5 manifest (MFT1 note), from the declaration.
        #[used]
        #[allow(unsafe_code)] // a section name: the linker script keeps it as a note
        #[unsafe(link_section = ".note.solo5.manifest")]
        static MANIFEST_NOTE: $crate::declare::Note<{ $crate::declare::mft1_note_len($declared) }> =
            $crate::declare::mft1_note($declared);
    };
}

/// The Solo5 manifest note, in spt and hvt images only.
#[cfg(not(all(lamina_guest, any(feature = "spt", feature = "hvt"))))]
#[doc(hidden)]
#[macro_export]
macro_rules! __solo5_manifest_note {
    ($declared:ident) => {};
}
