//! Bakes `site/` into the image: the files become read-only data, with their
//! media types and ETags computed here, at build time.
fn main() {
    if let Err(e) = lamina_crunch::bake("site", "SITE") {
        panic!("cannot bake the site: {e}");
    }
}
