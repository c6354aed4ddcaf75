//! Bakes the zones of `zones/` into the image: every `*.zone` file is read
//! and checked here, at build time, and a mistake fails the build with the
//! file, the line and why. `LAMINA_DNS_ZONES=DIR` bakes another directory
//! of zone files instead.
fn main() {
    println!("cargo:rerun-if-env-changed=LAMINA_DNS_ZONES");
    let dir = std::env::var("LAMINA_DNS_ZONES").unwrap_or_else(|_| "zones".to_owned());
    if let Err(e) = lamina_dns::zone::bake(&dir, "ZONES") {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
