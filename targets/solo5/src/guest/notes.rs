//! The ELF notes that tell a tender what this image is (see `link.ld`).

use lamina_abi::note::{features, Abi1Note, AbiTarget, LaminaNote};

#[cfg(feature = "hvt")]
const ABI: Abi1Note = Abi1Note::new(AbiTarget::Hvt, lamina_abi::hvt::ABI_VERSION);
#[cfg(feature = "spt")]
const ABI: Abi1Note = Abi1Note::new(AbiTarget::Spt, lamina_abi::spt::ABI_VERSION);

/// Which tender and ABI version the image is for.
#[used]
#[unsafe(link_section = ".note.solo5.abi")]
static ABI_NOTE: Abi1Note = ABI;

/// What Lamina's tenders may rely on: no privileged instructions but the
/// hypercall `out` and reads of CR0/CR4 at boot, no segment reloads, no
/// interrupts, no execution outside the text segment; and it handles
/// virtio-net headers when the tender turns them on (spt taps), and
/// multi-sector transfers and flushes on block devices that have them.
#[used]
#[unsafe(link_section = ".note.lamina.features")]
static LAMINA_NOTE: LaminaNote = LaminaNote::new(
    features::ANY_CPL | features::NX_DATA | features::NET_OFFLOAD | features::BLOCK_IO,
);

// The manifest note (MFT1) is the application's: `lamina::devices!` builds
// it from the declaration, in `.note.solo5.manifest`.
