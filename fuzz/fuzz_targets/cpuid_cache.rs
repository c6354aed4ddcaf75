//! The hvt tender's CPUID cache file (`lamina_hvt::cpuid_cache`): whatever
//! is in `~/.cache/lamina/kvm-supported-cpuid` (another version's file, a
//! truncated write, anyone's bytes) is read with `decode` against the
//! host's key, and against the key the file names (so that the fuzzer gets
//! past the key). A file it accepts must be exactly what `encode` writes for
//! its entries: at least one, at most KVM's limit.
#![no_main]

use lamina_hvt::cpuid_cache::{decode, encode, MAX_ENTRIES};
use libfuzzer_sys::fuzz_target;

/// A key of the form `host_key` makes: kernel release, model name, flags.
const HOST_KEY: &str = "6.8.0-pvm\nmodel name\t: Fuzz CPU\nflags\t\t: fpu vme de pse";

fuzz_target!(|bytes: &[u8]| {
    let named_key = bytes
        .get(8..12)
        .map(|len| u32::from_le_bytes(len.try_into().unwrap()) as usize)
        .and_then(|len| bytes.get(12..12usize.checked_add(len)?))
        .and_then(|key| std::str::from_utf8(key).ok());
    for key in [Some(HOST_KEY), named_key].into_iter().flatten() {
        if let Some(entries) = decode(key, bytes) {
            assert!(!entries.is_empty());
            assert!(entries.len() <= MAX_ENTRIES);
            assert_eq!(
                encode(key, &entries),
                bytes,
                "a file encode would not write"
            );
        }
    }
});
