//! The read-only Kv suite on baked data (`Baked`, the same on every target).

use lamina_conformance::kv;
use lamina_core::device::{Baked, BakedFile};
use lamina_core::runtime::{Executor, Instant, Park};
use std::rc::Rc;

/// Time that never moves: baked data never waits.
struct Still;

impl Park for Still {
    fn now(&self) -> Instant {
        Instant::from_nanos(0)
    }
    fn park(&self, _: Option<Instant>) {
        panic!("baked data made a task wait");
    }
}

const fn file(key: &'static str, data: &'static [u8]) -> BakedFile {
    BakedFile {
        key,
        data,
        content_type: "application/octet-stream",
        etag: "\"x\"",
    }
}

static FILES: [BakedFile; 3] = [
    file("css/site.css", b"body {}"),
    file("index.html", b"<h1>hi</h1>"),
    file("z", b""),
];

#[test]
fn kv_read_conformance_on_baked_data() {
    let baked = Baked::new(&FILES);
    let executor = Executor::new(Rc::new(Still));
    let report = executor.block_on(kv::run_read(
        &baked,
        &[
            ("css/site.css", b"body {}"),
            ("index.html", b"<h1>hi</h1>"),
            ("z", b""),
        ],
    ));
    eprintln!("{report}");
    assert!(report.passed(), "{report}");
}
