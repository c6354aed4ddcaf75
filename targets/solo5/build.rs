//! Generates the image's device manifest (the Solo5 MFT1 note) from the
//! devices the application declares. `lamina build` passes them in
//! `LAMINA_DEVICES` as a comma-separated list of `net:NAME` and
//! `block:NAME`; other devices (console, clock, random) need no manifest
//! entry.

use lamina_abi::mft::{encode, manifest_size, DeviceType};
use lamina_abi::note::{MFT1_PAYLOAD_OFFSET, TYPE_MFT1};

fn main() {
    println!("cargo:rerun-if-env-changed=LAMINA_DEVICES");
    let declared = std::env::var("LAMINA_DEVICES").unwrap_or_default();
    let mut devices = Vec::new();
    for spec in declared.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let device = match spec.split_once(':') {
            Some(("net", name)) => (name, DeviceType::NetBasic),
            Some(("block", name)) => (name, DeviceType::BlockBasic),
            _ => panic!("LAMINA_DEVICES: '{spec}' is not net:NAME or block:NAME"),
        };
        devices.push(device);
    }
    let mut manifest = vec![0u8; manifest_size(devices.len())];
    if let Err(e) = encode(&devices, &mut manifest) {
        panic!("LAMINA_DEVICES='{declared}': {e} (names are 1-67 letters and digits)");
    }
    // The note: header, owner "Solo5" padded to 8, then padding to the
    // manifest's 8-byte alignment; descsz counts that padding.
    let mut note = Vec::new();
    note.extend_from_slice(&6u32.to_le_bytes());
    note.extend_from_slice(&((MFT1_PAYLOAD_OFFSET - 20 + manifest.len()) as u32).to_le_bytes());
    note.extend_from_slice(&TYPE_MFT1.to_le_bytes());
    note.extend_from_slice(b"Solo5\0\0\0");
    note.resize(MFT1_PAYLOAD_OFFSET, 0);
    note.extend_from_slice(&manifest);
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("manifest.rs");
    let source = format!(
        "/// The MFT1 note: {declared:?}.\n\
         #[repr(C, align(8))]\n\
         struct ManifestNote([u8; {len}]);\n\
         #[used]\n\
         #[unsafe(link_section = \".note.solo5.manifest\")]\n\
         static MANIFEST_NOTE: ManifestNote = ManifestNote({note:?});\n",
        len = note.len(),
    );
    std::fs::write(out, source).expect("cannot write the manifest note");
}
