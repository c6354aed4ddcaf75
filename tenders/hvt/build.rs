//! Links GCC's unwinder into the tender statically (libgcc_eh, as
//! `+crt-static` builds do) instead of loading libgcc_s.so at start: the
//! dynamic loader then maps and relocates one library less, and
//! libgcc_s's constructor (`__cpu_indicator_init`, a run of CPUID
//! instructions, each a VM exit of ~15 us on a virtualised host) never
//! runs. `--whole-archive` makes the unwinder's definitions regular ones,
//! which win over the shared library's, so `--as-needed` leaves it out.
//! Only the binaries: tests and the fuzz targets link as usual.
//!
//! The tenders `lamina run` starts are linked wholly statically
//! (`cargo tenders`, see .cargo/config.toml): `+crt-static` brings
//! libgcc_eh itself, so nothing is added then.
fn main() {
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if features.split(',').any(|feature| feature == "crt-static") {
        return;
    }
    for arg in ["-Wl,--whole-archive", "-lgcc_eh", "-Wl,--no-whole-archive"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
