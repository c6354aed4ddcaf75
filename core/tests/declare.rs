//! The declaration on a platform of test devices: acquisition, the failure
//! before `main`, a family composed outside Lamina's list, and the notes
//! checked by the ABI crate's own manifest parser.

use lamina_abi::mft::{DeviceType, Manifest};
use lamina_abi::note::MFT1_PAYLOAD_OFFSET;
use lamina_core::declare::*;
use lamina_core::device::{Block, BlockError, Clock, Console, RamBlock, Random, Unavailable};
use lamina_core::platform::{enter, DeviceError, Platform};
use lamina_core::runtime::{Executor, Instant, Park};
use std::cell::RefCell;
use std::rc::Rc;

#[derive(Clone, Default)]
struct TextConsole(Rc<RefCell<String>>);
impl Console for TextConsole {
    fn write(&self, bytes: &[u8]) {
        self.0
            .borrow_mut()
            .push_str(core::str::from_utf8(bytes).unwrap());
    }
}

#[derive(Clone)]
struct FixedClock;
impl Clock for FixedClock {
    fn now(&self) -> Instant {
        Instant::from_nanos(0)
    }
    fn wall(&self) -> u64 {
        0
    }
}

#[derive(Clone)]
struct Zeros;
impl Random for Zeros {
    fn fill(&self, buf: &mut [u8]) {
        buf.fill(0);
    }
}

/// A platform with one block device, `storage`, and no network.
struct TestPlatform {
    console: TextConsole,
}

impl Platform for TestPlatform {
    type Console = TextConsole;
    type Clock = FixedClock;
    type Random = Zeros;
    type Netif = Unavailable;
    type Stack = Unavailable;
    type Block = RamBlock;
    type Kv = Unavailable;
    const TARGET: &'static str = "test";

    fn console(&self) -> TextConsole {
        self.console.clone()
    }
    fn clock(&self) -> FixedClock {
        FixedClock
    }
    fn random(&self) -> Zeros {
        Zeros
    }
    fn netif(&self, name: &str) -> Result<Unavailable, DeviceError> {
        Err(DeviceError::NotAttached {
            kind: "net",
            name: name.to_string(),
        })
    }
    fn stack(&self, name: &str) -> Result<Unavailable, DeviceError> {
        self.netif(name)
    }
    fn block(&self, name: &str) -> Result<RamBlock, DeviceError> {
        if name != "storage" && name != "disk" {
            return Err(DeviceError::NotAttached {
                kind: "block",
                name: name.to_string(),
            });
        }
        Ok(RamBlock::new(512, 8))
    }
    fn kv(&self, _: &str) -> Result<Unavailable, DeviceError> {
        Err(DeviceError::Unsupported {
            kind: "kv",
            target: "test",
        })
    }
}

/// A family defined outside Lamina's list, composed over `Block`: a block
/// device that counts its writes. No platform knows of it.
pub struct Counted;

/// The device [`Counted`] gives.
pub struct CountingBlock<B> {
    inner: B,
    writes: RefCell<u32>,
}

impl<B: Block> CountingBlock<B> {
    async fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        *self.writes.borrow_mut() += 1;
        self.inner.write(sector, buf).await
    }
}

impl Family for Counted {
    type Device<P: Platform> = CountingBlock<P::Block>;
    const INFO: FamilyInfo = FamilyInfo::over("Counted", &family::BLOCK);
    fn acquire<P: Platform>(platform: &P, name: &str) -> Result<Self::Device<P>, DeviceError> {
        Ok(CountingBlock {
            inner: platform.block(name)?,
            writes: RefCell::new(0),
        })
    }
}

lamina_core::devices! {
    /// What the test application declares.
    pub struct Devices {
        console: Console,
        clock: Clock,
        /// A block device through a library's family.
        storage: crate::Counted,
        /// Not attached on the test platform.
        spare: Option<Block>,
        /// Attached.
        disk: Option<Block>,
    }
}

lamina_core::devices! {
    /// One device under two fields: a raw interface and, later, the stack.
    struct Shared {
        storage: Option<Block>,
        later: Later<Block> = "storage",
        link: Option<Netif> = "service",
        net: Later<Stack> = "service",
    }
}

lamina_core::devices! {
    /// A declaration the test platform cannot satisfy.
    struct Networked {
        console: Console,
        service: Stack,
    }
}

struct NoPark;
impl Park for NoPark {
    fn now(&self) -> Instant {
        Instant::from_nanos(0)
    }
    fn park(&self, _: Option<Instant>) {}
}

#[test]
fn main_receives_the_declared_devices_typed() {
    let executor = Executor::new(Rc::new(NoPark));
    let console = TextConsole::default();
    let platform = TestPlatform {
        console: console.clone(),
    };
    let future = enter(
        platform,
        executor.handle(),
        (),
        |_env, devices: Devices<TestPlatform>, ()| async move {
            assert!(devices.spare.is_none());
            assert!(devices.disk.is_some());
            devices.console.write(b"up\n");
            devices.storage.write(1, &[7; 512]).await.unwrap();
            let mut back = [0; 512];
            devices.storage.inner.read(1, &mut back).await.unwrap();
            (back[0], *devices.storage.writes.borrow())
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(executor.block_on(future), (7, 1));
    assert_eq!(console.0.borrow().as_str(), "up\n");
}

#[test]
fn a_missing_device_stops_the_start_naming_it() {
    let executor = Executor::new(Rc::new(NoPark));
    let platform = TestPlatform {
        console: TextConsole::default(),
    };
    let ran = RefCell::new(false);
    let result = enter(
        platform,
        executor.handle(),
        (),
        |_env, _devices: Networked<TestPlatform>, ()| {
            *ran.borrow_mut() = true;
            async {}
        },
    );
    let error = result.err().expect("the stack is not attached");
    assert!(!*ran.borrow(), "main ran without its devices");
    assert_eq!(error.name, "service");
    assert_eq!(error.family, "Stack");
    assert_eq!(
        error.to_string(),
        "device 'service' (Stack) declared in devices! is not available: \
         no net device named 'service' is attached (attach one with --net:service=...)"
    );
}

#[test]
fn the_declaration_lists_names_and_families() {
    let declared = <Devices<TestPlatform> as DeviceSet<TestPlatform>>::DECLARED;
    let listed: Vec<(&str, &str)> = declared.iter().map(|d| (d.name, d.family.name)).collect();
    assert_eq!(
        listed,
        [
            ("console", "Console"),
            ("clock", "Clock"),
            ("storage", "Counted"),
            ("spare", "Block"),
            ("disk", "Block"),
        ]
    );
    assert!(declared[3].family.optional && !declared[2].family.optional);
    assert_eq!(declared[2].family.attachment, Attachment::Block);
    const { assert!(!<Devices<TestPlatform> as DeviceSet<TestPlatform>>::NEEDS_NET) };
    const { assert!(<Networked<TestPlatform> as DeviceSet<TestPlatform>>::NEEDS_NET) };
}

const DECLARED: &[Declared] = &[
    Declared {
        name: "console",
        family: &family::CONSOLE,
    },
    Declared {
        name: "service",
        family: &family::STACK,
    },
    Declared {
        name: "storage",
        family: &FamilyInfo::over("Store", &family::BLOCK),
    },
    Declared {
        name: "raw",
        family: &family::NETIF,
    },
    Declared {
        name: "files",
        family: &family::KV,
    },
    Declared {
        name: "spare",
        family: &<family::Optional<family::Block> as Family>::INFO,
    },
];

#[test]
fn the_manifest_note_is_a_solo5_manifest_of_the_network_and_block_devices() {
    static NOTE: Note<{ mft1_note_len(DECLARED) }> = mft1_note(DECLARED);
    let bytes = &NOTE.0;
    assert_eq!(u32::from_le_bytes(bytes[0..4].try_into().unwrap()), 6);
    let descsz = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    assert_eq!(20 + descsz, bytes.len());
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        lamina_abi::note::TYPE_MFT1
    );
    assert_eq!(&bytes[12..20], b"Solo5\0\0\0");
    let manifest = Manifest::parse(&bytes[MFT1_PAYLOAD_OFFSET..]).expect("a valid manifest");
    let entries: Vec<(Vec<u8>, Option<DeviceType>)> = manifest
        .entries()
        .skip(1)
        .map(|e| (e.name().to_vec(), e.device_type()))
        .collect();
    assert_eq!(
        entries,
        [
            (b"service".to_vec(), Some(DeviceType::NetBasic)),
            (b"storage".to_vec(), Some(DeviceType::BlockBasic)),
            (b"raw".to_vec(), Some(DeviceType::NetBasic)),
            (b"spare".to_vec(), Some(DeviceType::BlockBasic)),
        ]
    );
    assert!((core::ptr::addr_of!(NOTE).cast::<u8>() as usize).is_multiple_of(8));
}

#[test]
fn the_manifest_of_no_devices_has_only_the_reserved_entry() {
    const NONE: &[Declared] = &[Declared {
        name: "console",
        family: &family::CONSOLE,
    }];
    let note: Note<{ mft1_note_len(NONE) }> = mft1_note(NONE);
    let manifest = Manifest::parse(&note.0[MFT1_PAYLOAD_OFFSET..]).expect("valid");
    assert_eq!(manifest.len(), 1);
}

#[test]
fn the_declaration_note_is_one_line_per_device() {
    let note: Note4<{ devices_note_len(DECLARED) }> = devices_note(DECLARED);
    let bytes = &note.0;
    assert_eq!(&bytes[0..4], &7u32.to_le_bytes());
    let descsz = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    assert_eq!(descsz % 4, 0);
    assert_eq!(20 + descsz, bytes.len());
    assert_eq!(&bytes[8..12], &TYPE_LDV1.to_le_bytes());
    assert_eq!(&bytes[12..20], b"Lamina\0\0");
    let text = core::str::from_utf8(&bytes[20..]).unwrap();
    assert_eq!(
        text.trim_end_matches('\n'),
        "console Console\nservice Stack\nstorage Store/Block\nraw Netif\nfiles Kv\nspare Block?"
    );
}

#[test]
fn names_the_manifest_cannot_hold_are_refused() {
    for bad in ["my_disk", "", "a-b"] {
        let declared = [Declared {
            name: bad,
            family: &family::BLOCK,
        }];
        let refused = std::panic::catch_unwind(|| check(&declared)).is_err();
        assert!(refused, "{bad:?} accepted");
    }
    // A unique device's name is only its field's.
    check(&[Declared {
        name: "my_console",
        family: &family::CONSOLE,
    }]);
    let long = "a".repeat(67);
    let long: &'static str = Box::leak(long.into_boxed_str());
    check(&[Declared {
        name: long,
        family: &family::BLOCK,
    }]);
}

#[test]
fn one_device_under_two_fields_is_one_manifest_entry_and_later_acquires_when_asked() {
    let declared = <Shared<TestPlatform> as DeviceSet<TestPlatform>>::DECLARED;
    let names: Vec<&str> = declared.iter().map(|d| d.name).collect();
    assert_eq!(names, ["storage", "storage", "service", "service"]);
    check(declared);
    static NOTE: Note<
        { mft1_note_len(<Shared<TestPlatform> as DeviceSet<TestPlatform>>::DECLARED) },
    > = mft1_note(<Shared<TestPlatform> as DeviceSet<TestPlatform>>::DECLARED);
    let manifest = Manifest::parse(&NOTE.0[MFT1_PAYLOAD_OFFSET..]).expect("no duplicate names");
    assert_eq!(manifest.len(), 3);

    let executor = Executor::new(Rc::new(NoPark));
    let platform = TestPlatform {
        console: TextConsole::default(),
    };
    let future = enter(
        platform,
        executor.handle(),
        (),
        |env, devices: Shared<TestPlatform>, ()| async move {
            assert!(devices.storage.is_some() && devices.link.is_none());
            let disk = env.acquire(devices.later).expect("storage is attached");
            assert_eq!(disk.info().sectors, 8);
            env.acquire(devices.net).expect_err("no network here")
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let error = executor.block_on(future);
    assert_eq!((error.name, error.family), ("service", "Stack"));
}

#[test]
fn one_name_for_two_kinds_of_device_is_refused() {
    let declared = [
        Declared {
            name: "service",
            family: &family::STACK,
        },
        Declared {
            name: "service",
            family: &family::BLOCK,
        },
    ];
    assert!(std::panic::catch_unwind(|| check(&declared)).is_err());
}
