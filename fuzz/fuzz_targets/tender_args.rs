//! The tenders' command line: NUL-separated words, any bytes (a shell
//! passes whatever it is given), through `lamina_tender::args::parse`.
#![no_main]

use lamina_tender::args::{parse, parse_mac, Command};
use libfuzzer_sys::fuzz_target;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

fuzz_target!(|bytes: &[u8]| {
    let words: Vec<OsString> = bytes
        .split(|&b| b == 0)
        .map(|word| OsString::from_vec(word.to_vec()))
        .collect();
    if let Ok(Command::Run(args)) = parse(words, &["--x-timing", "--x-no-ring"]) {
        assert!(args.mem_mib > 0);
        assert!(!args.cmdline.contains(&0));
        for (i, net) in args.nets.iter().enumerate() {
            assert!(args.nets[..i].iter().all(|other| other.name != net.name));
        }
        for (i, block) in args.blocks.iter().enumerate() {
            assert!(args.blocks[..i]
                .iter()
                .all(|other| other.name != block.name));
        }
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        if let Some(mac) = parse_mac(text) {
            let written = mac.map(|b| format!("{b:02x}")).join(":");
            assert_eq!(written, text.to_ascii_lowercase(), "{text:?}");
        }
    }
});
