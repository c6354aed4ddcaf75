//! Declaring the devices an application uses, once.
//!
//! An application names its devices in one place, the [`devices!`](crate::devices)
//! macro:
//!
//! ```ignore
//! lamina::devices! {
//!     /// What the website needs.
//!     pub struct Devices {
//!         console: Console,
//!         clock: Clock,
//!         service: Stack,
//!     }
//! }
//!
//! async fn main<P: Platform>(env: Env<P>, devices: Devices<P>, args: Args) { ... }
//! ```
//!
//! Everything else comes from that declaration:
//! - the typed struct `main` receives, each field acquired at start-up (a
//!   device that is not attached stops the start with a message naming it,
//!   before `main` runs);
//! - the image's Solo5 manifest (the MFT1 note of spt and hvt images), built
//!   at compile time from the same list;
//! - a Lamina note listing every device and what it sits on, which
//!   `lamina describe` and `lamina run` read from the built program.
//!
//! A misspelt device kind is a compile error (there is no such [`Family`]),
//! a field name the manifest cannot hold is a compile error (a failed
//! constant), and a field the program never declared cannot be used.
//!
//! ## Families
//!
//! A *family* is a kind of device: what the declaration names after the
//! colon. The [`family`] module holds the platform's primitives (console,
//! clock, random, network interface, block device), the TCP/IP stack and the
//! host key-value store; a library adds a family by implementing [`Family`]
//! over the ones it sits on, without touching any target. For example a
//! key-value store on a block device:
//!
//! ```ignore
//! pub struct KvOnBlock;
//! impl Family for KvOnBlock {
//!     type Device<P: Platform> = Store<P::Block>;
//!     const INFO: FamilyInfo = FamilyInfo::over("Store", &family::BLOCK);
//!     fn acquire<P: Platform>(platform: &P, name: &str) -> Result<Store<P::Block>, DeviceError> {
//!         Store::open(platform.block(name)?)
//!     }
//! }
//! // declared as `storage: my_store::KvOnBlock`
//! ```

use crate::platform::{DeviceError, Platform};
use lamina_abi::mft;
use lamina_abi::note::{MFT1_PAYLOAD_OFFSET, TYPE_MFT1};

/// What a family needs the host to attach, which decides its manifest entry
/// and its device argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attachment {
    /// One per platform (console, clock, random): nothing to attach, the
    /// name is only the field's.
    Unique,
    /// A network interface (`--net:NAME=...`, a `NET_BASIC` manifest entry).
    Net,
    /// A block device (`--block:NAME=FILE`, a `BLOCK_BASIC` manifest entry).
    Block,
    /// A host directory as key-value store (`--kv:NAME=DIR`, unix only).
    Kv,
}

/// What `lamina describe` and the manifest know about a family.
#[derive(Debug, Clone, Copy)]
pub struct FamilyInfo {
    /// The family's name as declared and shown (`Stack`, `Block`).
    pub name: &'static str,
    /// The family this one is composed over, if any (a store over `Block`).
    pub over: Option<&'static FamilyInfo>,
    /// What the host attaches for it.
    pub attachment: Attachment,
    /// Whether the application runs without it (declared `Option<...>`).
    pub optional: bool,
}

impl FamilyInfo {
    /// A platform primitive.
    pub const fn primitive(name: &'static str, attachment: Attachment) -> Self {
        FamilyInfo {
            name,
            over: None,
            attachment,
            optional: false,
        }
    }

    /// A family composed over `inner`: it is attached as `inner` is.
    pub const fn over(name: &'static str, inner: &'static FamilyInfo) -> Self {
        FamilyInfo {
            name,
            over: Some(inner),
            attachment: inner.attachment,
            optional: false,
        }
    }
}

/// A kind of device an application can declare.
///
/// The family decides the type the application receives on each platform
/// ([`Family::Device`]) and how it is acquired. Composed families (a store
/// over a block device, TLS over a stack) acquire what they sit on through
/// the [`Platform`] and wrap it; targets know nothing of them.
pub trait Family {
    /// The device the application receives on platform `P`.
    type Device<P: Platform>;
    /// Its name and what it sits on.
    const INFO: FamilyInfo;
    /// Acquires the device `name` on `platform` (the name is ignored by
    /// [`Attachment::Unique`] families).
    fn acquire<P: Platform>(
        platform: &P,
        name: &'static str,
    ) -> Result<Self::Device<P>, DeviceError>;
}

/// The families every platform provides, named as the traits they give.
pub mod family {
    use super::{Attachment, Family, FamilyInfo};
    use crate::platform::{DeviceError, Platform};

    /// [`Console`](super::family::Console)'s description.
    pub const CONSOLE: FamilyInfo = FamilyInfo::primitive("Console", Attachment::Unique);
    /// [`Clock`]'s description.
    pub const CLOCK: FamilyInfo = FamilyInfo::primitive("Clock", Attachment::Unique);
    /// [`Random`]'s description.
    pub const RANDOM: FamilyInfo = FamilyInfo::primitive("Random", Attachment::Unique);
    /// [`Netif`]'s description.
    pub const NETIF: FamilyInfo = FamilyInfo::primitive("Netif", Attachment::Net);
    /// [`Stack`]'s description: a primitive of the platform (the host's
    /// sockets on unix, Lamina's stack over the interface on unikernels).
    pub const STACK: FamilyInfo = FamilyInfo::primitive("Stack", Attachment::Net);
    /// [`Block`]'s description.
    pub const BLOCK: FamilyInfo = FamilyInfo::primitive("Block", Attachment::Block);
    /// [`Kv`]'s description.
    pub const KV: FamilyInfo = FamilyInfo::primitive("Kv", Attachment::Kv);

    macro_rules! primitive {
        ($(#[$doc:meta])* $family:ident, $info:ident, $device:ident, |$p:ident, $name:ident| $acquire:expr) => {
            $(#[$doc])*
            #[derive(Debug, Clone, Copy)]
            pub struct $family;

            impl Family for $family {
                type Device<P: Platform> = P::$device;
                const INFO: FamilyInfo = $info;
                fn acquire<P: Platform>($p: &P, $name: &'static str) -> Result<P::$device, DeviceError> {
                    $acquire
                }
            }
        };
    }

    primitive!(
        /// The console ([`crate::device::Console`]).
        Console, CONSOLE, Console, |platform, _name| Ok(platform.console())
    );
    primitive!(
        /// The clock ([`crate::device::Clock`]).
        Clock, CLOCK, Clock, |platform, _name| Ok(platform.clock())
    );
    primitive!(
        /// The random source ([`crate::device::Random`]).
        Random, RANDOM, Random, |platform, _name| Ok(platform.random())
    );
    primitive!(
        /// A raw Ethernet interface ([`crate::device::Netif`]).
        Netif, NETIF, Netif, |platform, name| platform.netif(name)
    );
    primitive!(
        /// A TCP/UDP stack on the network interface of the same name
        /// ([`crate::device::Stack`]).
        Stack, STACK, Stack, |platform, name| platform.stack(name)
    );
    primitive!(
        /// A block device ([`crate::device::Block`]).
        Block, BLOCK, Block, |platform, name| platform.block(name)
    );
    /// A device the application can run without, declared `Option<F>`: it
    /// receives `None` when the device is not attached. (The Solo5 tenders
    /// attach every device in the manifest, so on spt and hvt it is there.)
    #[derive(Debug, Clone, Copy)]
    pub struct Optional<F>(core::marker::PhantomData<F>);

    impl<F: Family> Family for Optional<F> {
        type Device<P: Platform> = Option<F::Device<P>>;
        const INFO: FamilyInfo = FamilyInfo {
            optional: true,
            ..F::INFO
        };
        fn acquire<P: Platform>(
            platform: &P,
            name: &'static str,
        ) -> Result<Self::Device<P>, DeviceError> {
            match F::acquire(platform, name) {
                Ok(device) => Ok(Some(device)),
                Err(DeviceError::NotAttached { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        }
    }

    /// A device brought up when the application asks, not at start-up:
    /// declared `Later<F>`, the application receives a [`Deferred`] and
    /// calls [`Env::acquire`](crate::platform::Env::acquire) with it. For a
    /// device that must not start before something else is done with the
    /// interface (a stack after a raw test of its link).
    #[derive(Debug, Clone, Copy)]
    pub struct Later<F>(core::marker::PhantomData<F>);

    impl<F: Family> Family for Later<F> {
        type Device<P: Platform> = Deferred<F>;
        const INFO: FamilyInfo = F::INFO;
        fn acquire<P: Platform>(_: &P, name: &'static str) -> Result<Deferred<F>, DeviceError> {
            Ok(Deferred {
                name,
                family: core::marker::PhantomData,
            })
        }
    }

    /// A declared device not acquired yet (see [`Later`]).
    #[derive(Debug)]
    pub struct Deferred<F> {
        pub(crate) name: &'static str,
        pub(crate) family: core::marker::PhantomData<F>,
    }

    primitive!(
        /// A read-write key-value store on a host directory
        /// ([`crate::device::KvWrite`]; unix only).
        Kv, KV, Kv, |platform, name| platform.kv(name)
    );
}

/// One declared device: its name (the field's) and family.
#[derive(Debug, Clone, Copy)]
pub struct Declared {
    /// The field's name, which is the device's name in the manifest and in
    /// device arguments (`--net:service=...`).
    pub name: &'static str,
    /// Its family.
    pub family: &'static FamilyInfo,
}

/// The struct [`devices!`](crate::devices) generates: every declared device,
/// acquired on platform `P`.
pub trait DeviceSet<P: Platform>: Sized {
    /// The declaration, in order.
    const DECLARED: &'static [Declared];
    /// Whether a network device is declared (the runtime then parses the
    /// stack's arguments; images without one leave that code out).
    const NEEDS_NET: bool = needs(Self::DECLARED, Attachment::Net);
    /// Acquires every device; the first that fails stops the start.
    fn acquire(platform: &P) -> Result<Self, AcquireError>;
}

/// Whether `declared` has a device attached as `attachment`.
pub const fn needs(declared: &[Declared], attachment: Attachment) -> bool {
    let mut i = 0;
    while i < declared.len() {
        if same_attachment(declared[i].family.attachment, attachment) {
            return true;
        }
        i += 1;
    }
    false
}

const fn same_attachment(a: Attachment, b: Attachment) -> bool {
    a as u8 == b as u8
}

/// A declared device that could not be acquired at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquireError {
    /// The device's name.
    pub name: &'static str,
    /// Its family.
    pub family: &'static str,
    /// Why.
    pub error: DeviceError,
}

impl core::fmt::Display for AcquireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "device '{}' ({}) declared in devices! is not available: {}",
            self.name, self.family, self.error
        )
    }
}

/// Acquires one declared device (called by the code
/// [`devices!`](crate::devices) generates).
pub fn acquire<P: Platform, F: Family>(
    platform: &P,
    name: &'static str,
) -> Result<F::Device<P>, AcquireError> {
    F::acquire(platform, name).map_err(|error| AcquireError {
        name,
        family: F::INFO.name,
        error,
    })
}

/// Checks a declaration at compile time; a failure is a build error whose
/// message says what to change.
pub const fn check(declared: &[Declared]) {
    let mut i = 0;
    while i < declared.len() {
        let device = declared[i];
        if !same_attachment(device.family.attachment, Attachment::Unique)
            && !valid_name(device.name)
        {
            panic!(
                "a device's name (its field's) goes in the image's manifest: 1-67 ASCII letters and digits, no '_'"
            );
        }
        i += 1;
    }
    let mut i = 0;
    while i < declared.len() {
        if first_with_name(declared, i) != i
            && !same_attachment(
                declared[first_with_name(declared, i)].family.attachment,
                declared[i].family.attachment,
            )
        {
            panic!(
                "two devices of different kinds share a name: the manifest holds each name once"
            );
        }
        i += 1;
    }
    if manifest_entries(declared) + 1 > mft::MAX_ENTRIES as usize {
        panic!("an image's manifest holds at most 63 network and block devices");
    }
}

const fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= mft::NAME_SIZE {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_alphanumeric() {
            return false;
        }
        i += 1;
    }
    true
}

const fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The index of the first device named as `declared[index]` is.
const fn first_with_name(declared: &[Declared], index: usize) -> usize {
    let mut i = 0;
    while !same_name(declared[i].name, declared[index].name) {
        i += 1;
    }
    i
}

/// The manifest type of `declared[index]`, if the manifest lists it: a
/// network or block device, the first of its name.
const fn manifest_entry(declared: &[Declared], index: usize) -> Option<mft::DeviceType> {
    if first_with_name(declared, index) != index {
        return None;
    }
    manifest_type(&declared[index])
}

/// The manifest type of a device's kind, if the manifest lists that kind.
const fn manifest_type(device: &Declared) -> Option<mft::DeviceType> {
    match device.family.attachment {
        Attachment::Net => Some(mft::DeviceType::NetBasic),
        Attachment::Block => Some(mft::DeviceType::BlockBasic),
        Attachment::Unique | Attachment::Kv => None,
    }
}

const fn manifest_entries(declared: &[Declared]) -> usize {
    let mut count = 0;
    let mut i = 0;
    while i < declared.len() {
        if manifest_entry(declared, i).is_some() {
            count += 1;
        }
        i += 1;
    }
    count
}

/// The Solo5 manifest note's bytes, 8-aligned as the manifest in it is.
#[derive(Debug)]
#[repr(C, align(8))]
pub struct Note<const N: usize>(pub [u8; N]);

/// An ordinary ELF note's bytes (4-aligned, as GNU tools expect).
#[derive(Debug)]
#[repr(C, align(4))]
pub struct Note4<const N: usize>(pub [u8; N]);

const fn put(bytes: &mut [u8], at: usize, data: &[u8]) {
    let mut i = 0;
    while i < data.len() {
        bytes[at + i] = data[i];
        i += 1;
    }
}

const fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    put(bytes, at, &value.to_le_bytes());
}

/// Size of the Solo5 manifest note (MFT1) for `declared`.
pub const fn mft1_note_len(declared: &[Declared]) -> usize {
    MFT1_PAYLOAD_OFFSET + mft::HEADER_SIZE + (1 + manifest_entries(declared)) * mft::ENTRY_SIZE
}

/// The Solo5 manifest note (MFT1) for `declared`: a reserved entry 0, then
/// one unattached entry per network and block device, in declaration order.
/// `N` must be [`mft1_note_len`]`(declared)`.
pub const fn mft1_note<const N: usize>(declared: &[Declared]) -> Note<N> {
    assert!(N == mft1_note_len(declared), "MFT1 note length");
    let mut bytes = [0u8; N];
    // Header: owner "Solo5" (namesz 6, padded to 8), type MFT1; the
    // descriptor counts the padding up to the manifest's 8-byte alignment.
    put_u32(&mut bytes, 0, 6);
    put_u32(&mut bytes, 4, (N - 20) as u32);
    put_u32(&mut bytes, 8, TYPE_MFT1);
    put(&mut bytes, 12, b"Solo5");
    let manifest = MFT1_PAYLOAD_OFFSET;
    put_u32(&mut bytes, manifest, mft::VERSION);
    put_u32(
        &mut bytes,
        manifest + 4,
        (1 + manifest_entries(declared)) as u32,
    );
    // Entry 0: reserved, nameless.
    let type_offset = mft::NAME_SIZE;
    let first = manifest + mft::HEADER_SIZE;
    put_u32(
        &mut bytes,
        first + type_offset,
        mft::DeviceType::ReservedFirst as u32,
    );
    let mut entry = first + mft::ENTRY_SIZE;
    let mut i = 0;
    while i < declared.len() {
        if let Some(device_type) = manifest_entry(declared, i) {
            put(&mut bytes, entry, declared[i].name.as_bytes());
            put_u32(&mut bytes, entry + type_offset, device_type as u32);
            entry += mft::ENTRY_SIZE;
        }
        i += 1;
    }
    Note(bytes)
}

/// `n_type` of Lamina's device declaration note ("LDV1").
pub const TYPE_LDV1: u32 = 0x3156_444c;
/// Section of the declaration note, in every Lamina program and image.
pub const SECTION_LDV1: &str = ".note.lamina.devices";
/// Owner of the declaration note, with its NUL.
const LAMINA_OWNER: &[u8] = b"Lamina\0";

/// The declaration as text: a line per device, `NAME FAMILY[?][/OVER...]`
/// (`service Stack`, `storage Store/Block`, `disk Block?` for an optional
/// one), before padding.
const fn text_len(declared: &[Declared]) -> usize {
    let mut len = 0;
    let mut i = 0;
    while i < declared.len() {
        len += declared[i].name.len() + 1 + declared[i].family.optional as usize;
        let mut family = declared[i].family;
        loop {
            len += family.name.len() + 1;
            match family.over {
                Some(inner) => family = inner,
                None => break,
            }
        }
        i += 1;
    }
    len
}

/// Size of the declaration note for `declared`.
pub const fn devices_note_len(declared: &[Declared]) -> usize {
    20 + padded_text_len(declared)
}

/// The text padded with newlines to the note's 4-byte alignment.
const fn padded_text_len(declared: &[Declared]) -> usize {
    text_len(declared).div_ceil(4) * 4
}

/// The declaration note (owner "Lamina", type LDV1): the declaration as
/// text, for `lamina describe` and `lamina run` to read from a built program.
/// `N` must be [`devices_note_len`]`(declared)`.
pub const fn devices_note<const N: usize>(declared: &[Declared]) -> Note4<N> {
    assert!(N == devices_note_len(declared), "LDV1 note length");
    let mut bytes = [b'\n'; N];
    put_u32(&mut bytes, 0, LAMINA_OWNER.len() as u32);
    put_u32(&mut bytes, 4, padded_text_len(declared) as u32);
    put_u32(&mut bytes, 8, TYPE_LDV1);
    put(&mut bytes, 12, LAMINA_OWNER);
    bytes[19] = 0;
    let mut at = 20;
    let mut i = 0;
    while i < declared.len() {
        put(&mut bytes, at, declared[i].name.as_bytes());
        at += declared[i].name.len();
        bytes[at] = b' ';
        at += 1;
        let mut family = declared[i].family;
        let mut outermost = true;
        loop {
            put(&mut bytes, at, family.name.as_bytes());
            at += family.name.len();
            if outermost && family.optional {
                bytes[at] = b'?';
                at += 1;
            }
            outermost = false;
            match family.over {
                Some(inner) => {
                    bytes[at] = b'/';
                    family = inner;
                }
                None => {
                    bytes[at] = b'\n';
                    at += 1;
                    break;
                }
            }
            at += 1;
        }
        i += 1;
    }
    Note4(bytes)
}

/// The name of a declared device: its field's, or the one given after `=`.
#[doc(hidden)]
#[macro_export]
macro_rules! __lamina_name {
    ($field:ident = $name:literal) => {
        $name
    };
    ($field:ident) => {
        ::core::stringify!($field)
    };
}

/// Resolves a family as written in [`devices!`](crate::devices): one name is
/// one of Lamina's ([`family`]), a path is a library's.
#[doc(hidden)]
#[macro_export]
macro_rules! __lamina_family {
    (Option < $($inner:ident)::+ >) => {
        $crate::declare::family::Optional<$crate::__lamina_family!($($inner)::+)>
    };
    (Later < $($inner:ident)::+ >) => {
        $crate::declare::family::Later<$crate::__lamina_family!($($inner)::+)>
    };
    ($name:ident) => { $crate::declare::family::$name };
    ($($path:ident)::+) => { $($path)::+ };
}

/// No note of a target's own (what [`devices!`] adds unless a caller names
/// a macro that makes one, as the `lamina` crate's `devices!` does for the
/// Solo5 manifest of spt and hvt images).
#[doc(hidden)]
#[macro_export]
macro_rules! __lamina_no_note {
    ($declared:ident) => {};
}

/// Declares the devices an application uses, once (see [the module
/// documentation](crate::declare)).
///
/// ```ignore
/// lamina::devices! {
///     /// What echo needs.
///     pub struct Devices {
///         /// Where to listen.
///         service: Stack,
///         storage: Block,
///         store: my_kv::KvOnBlock,   // a library's family, by path
///         spare: Option<Block>,      // None when not attached
///         link: Netif = "service",   // named other than its field
///         net: Later<Stack> = "service", // env.acquire(devices.net) brings it up
///     }
/// }
/// ```
///
/// generates `pub struct Devices<P: Platform>` whose fields are the
/// platform's devices (`service: P::Stack`), acquired before `main` runs;
/// the image's manifest; and the note `lamina describe` reads. Each field
/// is named after the device unless `= "NAME"` follows (network and block
/// names are what the tender's `--net:NAME`/`--block:NAME` and the manifest
/// use: letters and digits). Two fields may name one device only if it is
/// attached the same way (a raw interface and a stack on it), and it is in
/// the manifest once. One `devices!` per application.
#[macro_export]
macro_rules! devices {
    (
        @note ($($note:tt)*)
        $(#[doc = $doc:literal])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $field_doc:literal])*
                $field:ident : $($family:ident)::+ $(< $($inner:ident)::+ >)? $(= $device:literal)?
            ),* $(,)?
        }
    ) => {
        $(#[doc = $doc])*
        #[allow(missing_docs)]
        $vis struct $name<P: $crate::platform::Platform> {
            $(
                $(#[doc = $field_doc])*
                pub $field: <$crate::__lamina_family!($($family)::+ $(< $($inner)::+ >)?) as $crate::declare::Family>::Device<P>,
            )*
            _platform: ::core::marker::PhantomData<fn() -> P>,
        }

        impl<P: $crate::platform::Platform> $crate::declare::DeviceSet<P> for $name<P> {
            const DECLARED: &'static [$crate::declare::Declared] = &[$(
                $crate::declare::Declared {
                    name: $crate::__lamina_name!($field $(= $device)?),
                    family: &<$crate::__lamina_family!($($family)::+ $(< $($inner)::+ >)?) as $crate::declare::Family>::INFO,
                },
            )*];

            fn acquire(platform: &P) -> ::core::result::Result<Self, $crate::declare::AcquireError> {
                ::core::result::Result::Ok($name {
                    $(
                        $field: $crate::declare::acquire::<P, $crate::__lamina_family!($($family)::+ $(< $($inner)::+ >)?)>(
                            platform,
                            $crate::__lamina_name!($field $(= $device)?),
                        )?,
                    )*
                    _platform: ::core::marker::PhantomData,
                })
            }
        }

        const _: () = {
            const DECLARED: &[$crate::declare::Declared] = &[$(
                $crate::declare::Declared {
                    name: $crate::__lamina_name!($field $(= $device)?),
                    family: &<$crate::__lamina_family!($($family)::+ $(< $($inner)::+ >)?) as $crate::declare::Family>::INFO,
                },
            )*];
            $crate::declare::check(DECLARED);

            /// The declaration, for `lamina describe` and `lamina run`.
            #[used]
            #[allow(unsafe_code)] // a section name, where `lamina describe` finds it
            #[unsafe(link_section = ".note.lamina.devices")]
            static DEVICES_NOTE: $crate::declare::Note4<{ $crate::declare::devices_note_len(DECLARED) }> =
                $crate::declare::devices_note(DECLARED);

            $($note)*!(DECLARED);
        };
    };
    ($($declaration:tt)*) => {
        $crate::devices!(@note ($crate::__lamina_no_note) $($declaration)*);
    };
}
