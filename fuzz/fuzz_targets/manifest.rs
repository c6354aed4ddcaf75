//! The Solo5 manifest (MFT1 note payload): parsed as an image carries it
//! and as a tender hands it over with devices attached, then every entry
//! read back and re-encoded.
#![no_main]

use lamina_abi::mft::{self, DeviceType, Manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(manifest) = Manifest::parse_attached(bytes) {
        for entry in manifest.entries() {
            let _ = (entry.block_capacity(), entry.block_size(), entry.net_mac());
            let _ = (entry.net_mtu(), entry.net_features(), entry.host_fd());
        }
    }
    let Ok(manifest) = Manifest::parse(bytes) else {
        return;
    };
    assert!(!manifest.is_empty());
    let mut devices = Vec::new();
    for (index, entry) in manifest.entries().enumerate().skip(1) {
        assert!(!entry.is_attached());
        let name = std::str::from_utf8(entry.name()).expect("a parsed name is text");
        assert!(mft::valid_name(name), "{name:?}");
        let kind = entry
            .device_type()
            .expect("a parsed entry has a known type");
        let (found, _) = manifest.find(name, kind).expect("every entry can be found");
        assert_eq!(found, index, "names are unique");
        devices.push((name.to_owned(), kind));
    }
    // What the image builder would write for the same devices parses too.
    let named: Vec<(&str, DeviceType)> = devices.iter().map(|(n, k)| (n.as_str(), *k)).collect();
    let mut encoded = vec![0u8; mft::manifest_size(named.len())];
    if mft::encode(&named, &mut encoded).is_ok() {
        assert_eq!(
            Manifest::parse(&encoded).expect("re-encoded").len(),
            manifest.len()
        );
    }
});
