//! Images without a network device do not parse the stack's arguments
//! (`cfg(lamina_net)`), so that its code stays out of them. `lamina build`
//! passes the application's devices in `LAMINA_DEVICES`, a comma-separated
//! list of `net:NAME` and `block:NAME` (each target's build script reads the
//! rest).

fn main() {
    println!("cargo:rerun-if-env-changed=LAMINA_DEVICES");
    println!("cargo::rustc-check-cfg=cfg(lamina_net)");
    let declared = std::env::var("LAMINA_DEVICES").unwrap_or_default();
    if declared
        .split(',')
        .any(|spec| spec.trim().starts_with("net:"))
    {
        println!("cargo::rustc-cfg=lamina_net");
    }
}
