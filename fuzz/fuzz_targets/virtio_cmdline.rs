//! The virtio target's command line as QEMU or Firecracker passes it: the
//! `virtio_mmio.device=SIZE@BASE:IRQ` words a VMM adds, and the `--net:NAME`
//! and `--block:NAME` words naming the devices.
#![no_main]

use lamina_core::args::split_command_line;
use lamina_virtio::cmdline::{device_name, take_device_words, Kind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(line) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(mut words) = split_command_line(line) else {
        return;
    };
    let before = words.len();
    let Ok(found) = take_device_words(&mut words) else {
        return;
    };
    assert_eq!(
        before,
        words.len() + found.mmio.len() + found.net_names.len() + found.block_names.len()
    );
    for device in &found.mmio {
        assert!(device.size != 0 && device.base.checked_add(device.size).is_some());
    }
    let declared = ["service", "storage", "backup"];
    for index in 0..4 {
        for (kind, given) in [
            (Kind::Net, &found.net_names),
            (Kind::Block, &found.block_names),
        ] {
            if let Some(name) = device_name(given, &declared, kind, index) {
                assert!(!name.is_empty() && !name.contains('='));
            }
        }
    }
});
