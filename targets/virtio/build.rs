//! The devices the application declares, from `LAMINA_DEVICES` (set by
//! `lamina build`: a comma-separated list of `net:NAME` and `block:NAME`):
//! their names are the defaults for the virtio devices found at boot, in
//! order.

fn main() {
    println!("cargo:rerun-if-env-changed=LAMINA_DEVICES");
    let declared = std::env::var("LAMINA_DEVICES").unwrap_or_default();
    let (mut net, mut block) = (Vec::new(), Vec::new());
    for spec in declared.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match spec.split_once(':') {
            Some(("net", name)) => net.push(name.to_string()),
            Some(("block", name)) => block.push(name.to_string()),
            _ => panic!("LAMINA_DEVICES: '{spec}' is not net:NAME or block:NAME"),
        }
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("declared.rs");
    let source = format!(
        "/// Network devices the image declares, in order.\n\
         pub const DECLARED_NET: &[&str] = &{net:?};\n\
         /// Block devices the image declares, in order.\n\
         pub const DECLARED_BLOCK: &[&str] = &{block:?};\n"
    );
    std::fs::write(out, source).expect("cannot write the declared devices");
}
