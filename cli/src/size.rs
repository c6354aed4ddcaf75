//! The size report (`lamina build --size`, `lamina inspect --size`): how
//! much of an image each crate contributes, as the CACM article's Table 1
//! gives the libraries of a web server.
//!
//! Release images are stripped; `lamina build` keeps the unstripped image
//! beside it as `IMAGE.debug` (guest.rs), with LTO and dead-code
//! elimination as in the shipped image: the same bytes plus a symbol table.
//! Each function and object symbol is attributed to the crate its
//! demangled path starts with (`<smoltcp::iface::Interface as ...>::poll`
//! is smoltcp's, `<u32 as core::fmt::Display>::fmt` core's), by the
//! section it lies in: text, rodata (with the notes), data and bss.
//! LTO inlines across crates, and inlined code counts where it was
//! inlined: the application's entry (`__lamina_guest_main`, which
//! `lamina::main!` expands in the application) holds its async main with
//! the executor and much of what it calls, so the application's row is an
//! upper bound and the libraries' rows lower bounds. Baked files have no symbols (their bytes are
//! anonymous constants), so their row comes from the image's baked-directory
//! notes (`bytes=`), taken out of the unattributed read-only data.
//! What no symbol covers (string constants, panic locations, jump tables)
//! is a row of its own, and so is the alignment padding between sections:
//! the rows add up to the loaded size exactly, and the unattributed row
//! says how much the crate rows leave unexplained.

use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};
use serde::Serialize;
use std::collections::BTreeMap;

/// Bytes of each kind.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Bytes {
    /// Code.
    pub text: u64,
    /// Read-only data (with the notes).
    pub rodata: u64,
    /// Initialised and zeroed writable data.
    pub data: u64,
}

impl Bytes {
    /// All three.
    pub fn total(&self) -> u64 {
        self.text + self.rodata + self.data
    }

    fn add(&mut self, other: Bytes) {
        self.text += other.text;
        self.rodata += other.rodata;
        self.data += other.data;
    }
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The crate, or what the row is.
    pub name: String,
    /// `application`, `lamina`, `rust` (core, alloc, compiler_builtins),
    /// `crate` (a dependency), `baked`, `unattributed`, `padding`.
    pub kind: &'static str,
    /// Its bytes.
    pub bytes: Bytes,
}

/// The table, and the image's loaded size it adds up to.
#[derive(Debug, Clone, Serialize)]
pub struct SizeReport {
    /// Largest first; baked, unattributed and padding last.
    pub rows: Vec<Row>,
    /// Sum of the loadable segments' sizes in memory.
    pub loaded: u64,
}

/// Which kind of bytes a section holds, if it is loaded.
fn kind_of(section: &object::Section<'_, '_>) -> Option<fn(&mut Bytes) -> &mut u64> {
    match section.kind() {
        SectionKind::Text => Some(|b| &mut b.text),
        SectionKind::Data | SectionKind::UninitializedData | SectionKind::Tls => {
            Some(|b| &mut b.data)
        }
        SectionKind::ReadOnlyData
        | SectionKind::ReadOnlyString
        | SectionKind::ReadOnlyDataWithRel
        | SectionKind::Note => Some(|b| &mut b.rodata),
        _ if section.address() != 0 => Some(|b| &mut b.rodata),
        _ => None,
    }
}

/// Types that are no crate's: `<u32 as core::fmt::Display>::fmt` is
/// counted as the trait's crate's.
const NOT_CRATES: [&str; 20] = [
    "bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64",
    "i128", "isize", "f32", "f64", "T", "F", "_",
];

/// The first path name at the start of `text`, after `<`, `&`, `[`,
/// `mut`, `dyn` and the like.
fn first_name(text: &str) -> String {
    let mut rest = text;
    loop {
        let before = rest;
        rest = rest.trim_start_matches(['<', '&', '*', '[', '(', ' ']);
        for prefix in ["mut ", "const ", "dyn ", "impl "] {
            rest = rest.strip_prefix(prefix).unwrap_or(rest);
        }
        if rest == before {
            break;
        }
    }
    rest.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The crate a symbol's demangled path starts with (for `<X as Y>::f`,
/// X's crate, or Y's if X is a primitive or generic type), or None for a
/// symbol that is not Rust's (`memcpy`, `_start`: `#[no_mangle]` or
/// assembly).
pub fn crate_of(symbol: &str) -> Option<String> {
    let demangled = rustc_demangle::try_demangle(symbol).ok()?;
    let path = format!("{demangled:#}");
    let mut name = first_name(&path);
    if NOT_CRATES.contains(&name.as_str()) || name.is_empty() {
        name = match path.split_once(" as ") {
            Some((_, trait_path)) => first_name(trait_path),
            // An inherent method of a primitive type (`<char>::escape_debug_ext`).
            None => "core".into(),
        };
    }
    if name == "__rustc" {
        // The panic handler's symbol, named by the standard library.
        name = "core".into();
    }
    Some(if name.is_empty() {
        "(other)".into()
    } else {
        name
    })
}

/// The owner of a symbol that is not mangled: the application's entry
/// (with everything LTO inlined into it), the C library functions Lamina's
/// runtime provides, the entry points in assembly, compiler_builtins.
fn owner_of_unmangled(symbol: &str, app: &str) -> String {
    match symbol {
        "__lamina_guest_main" | "main" => app.into(),
        "memcpy" | "memmove" | "memset" | "memcmp" | "bcmp" | "syscall" | "_Unwind_Resume" => {
            "lamina_metal".into()
        }
        "_start" | "lamina_pvh_start" => "(runtime entry, assembly)".into(),
        s if s.starts_with("__") && (s.ends_with("ti3") || s.ends_with("di3")) => {
            "compiler_builtins".into()
        }
        // ring names its C and assembly symbols with its crate and version.
        s if s.starts_with("ring_core_") => "ring".into(),
        // Other unmangled code and data: C and assembly, which in a Lamina
        // image is ring's (its static functions and tables are not
        // prefixed), in an image with TLS.
        _ => "(C and assembly: no Rust path)".into(),
    }
}

fn kind_of_crate(name: &str, app: &str) -> &'static str {
    if name == app {
        "application"
    } else if name.starts_with("lamina") {
        "lamina"
    } else if matches!(name, "core" | "alloc" | "std" | "compiler_builtins") {
        "rust"
    } else {
        "crate"
    }
}

/// The report for the unstripped image `bytes` of the application `app`
/// (its crate name), with `baked` bytes of baked files in it.
pub fn report(bytes: &[u8], app: &str, baked: u64) -> Result<SizeReport, String> {
    let file = object::File::parse(bytes).map_err(|e| format!("not an ELF image: {e}"))?;
    let app = app.replace('-', "_");
    let mut crates: BTreeMap<String, Bytes> = BTreeMap::new();
    let mut sections = Bytes::default();
    let mut attributed = Bytes::default();
    let mut seen = std::collections::HashSet::new();
    let mut symbols = 0usize;
    for symbol in file.symbols() {
        if symbol.size() == 0 || !matches!(symbol.kind(), SymbolKind::Text | SymbolKind::Data) {
            continue;
        }
        let Some(index) = symbol.section_index() else {
            continue;
        };
        let Some(field) = file.section_by_index(index).ok().as_ref().and_then(kind_of) else {
            continue;
        };
        // Aliases (two names, one address) count once.
        if !seen.insert((symbol.address(), symbol.size())) {
            continue;
        }
        symbols += 1;
        let name = symbol.name().unwrap_or("");
        let owner = crate_of(name).unwrap_or_else(|| owner_of_unmangled(name, &app));
        *field(crates.entry(owner).or_default()) += symbol.size();
        *field(&mut attributed) += symbol.size();
    }
    if symbols == 0 {
        return Err("it has no symbols: a stripped image (use IMAGE.debug, which lamina build keeps beside a --release image)".into());
    }
    for section in file.sections() {
        if let Some(field) = kind_of(&section) {
            if section.address() != 0 {
                *field(&mut sections) += section.size();
            }
        }
    }
    let loaded: u64 = file
        .segments()
        .map(|s| object::ObjectSegment::size(&s))
        .sum();
    let mut rows: Vec<Row> = crates
        .into_iter()
        .map(|(name, bytes)| Row {
            kind: if name.starts_with('(') {
                "crate"
            } else {
                kind_of_crate(&name, &app)
            },
            name,
            bytes,
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.bytes.total()));
    let mut unattributed = Bytes {
        text: sections.text.saturating_sub(attributed.text),
        rodata: sections.rodata.saturating_sub(attributed.rodata),
        data: sections.data.saturating_sub(attributed.data),
    };
    if baked > 0 {
        let taken = baked.min(unattributed.rodata);
        unattributed.rodata -= taken;
        rows.push(Row {
            name: "baked files".into(),
            kind: "baked",
            bytes: Bytes {
                rodata: taken,
                ..Bytes::default()
            },
        });
    }
    rows.push(Row {
        name: "unattributed (no symbol)".into(),
        kind: "unattributed",
        bytes: unattributed,
    });
    let mut sum = Bytes::default();
    for row in &rows {
        sum.add(row.bytes);
    }
    rows.push(Row {
        name: "section alignment padding".into(),
        kind: "padding",
        bytes: Bytes {
            data: loaded.saturating_sub(sum.total()),
            ..Bytes::default()
        },
    });
    Ok(SizeReport { rows, loaded })
}

/// The table as text, in KiB with one decimal.
pub fn to_text(report: &SizeReport) -> String {
    let kib = |b: u64| format!("{:.1}", b as f64 / 1024.0);
    let mut out = format!(
        "{:<34} {:>9} {:>9} {:>9} {:>9} {:>6}\n",
        "crate (KiB)", "text", "rodata", "data+bss", "total", "share"
    );
    let mut sum = 0;
    for row in &report.rows {
        let label = match row.kind {
            "application" => format!("{} (application)", row.name),
            "lamina" => format!("{} (Lamina)", row.name),
            _ => row.name.clone(),
        };
        sum += row.bytes.total();
        out.push_str(&format!(
            "{:<34} {:>9} {:>9} {:>9} {:>9} {:>5.1}%\n",
            label,
            kib(row.bytes.text),
            kib(row.bytes.rodata),
            kib(row.bytes.data),
            kib(row.bytes.total()),
            100.0 * row.bytes.total() as f64 / report.loaded.max(1) as f64
        ));
    }
    out.push_str(&format!(
        "{:<34} {:>9} {:>9} {:>9} {:>9} (loaded size {} bytes; rows sum to {} bytes)\n",
        "total",
        "",
        "",
        "",
        kib(sum),
        report.loaded,
        sum
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_belong_to_the_crate_their_path_starts_with() {
        // v0 and legacy manglings, an impl of a foreign trait, a reference.
        assert_eq!(
            crate_of("_ZN7smoltcp5iface9interface9Interface4poll17h0123456789abcdefE").as_deref(),
            Some("smoltcp")
        );
        assert_eq!(
            crate_of("_RNvMNtCs1234_11lamina_core7runtimeNtB2_8Executor3run").as_deref(),
            Some("lamina_core")
        );
        assert_eq!(
            crate_of("_ZN60_$LT$alloc..string..String$u20$as$u20$core..fmt..Display$GT$3fmt17h0123456789abcdefE").as_deref(),
            Some("alloc")
        );
        assert_eq!(crate_of("memcpy"), None);
        assert_eq!(owner_of_unmangled("memcpy", "hello"), "lamina_metal");
        assert_eq!(owner_of_unmangled("__lamina_guest_main", "hello"), "hello");
        assert_eq!(
            owner_of_unmangled("ring_core_0_17_14__x25519_sc_muladd", "w"),
            "ring"
        );
        assert_eq!(
            crate_of("_RNvMNtNtCsgEmfK2I1SDS_4core4char7methodsc16escape_debug_ext").as_deref(),
            Some("core")
        );
        assert_eq!(
            crate_of("_ZN43_$LT$char$u20$as$u20$core..fmt..Display$GT$3fmt17h0123456789abcdefE")
                .as_deref(),
            Some("core")
        );
        assert_eq!(kind_of_crate("lamina_net", "hello"), "lamina");
        assert_eq!(kind_of_crate("hello", "hello"), "application");
        assert_eq!(kind_of_crate("core", "hello"), "rust");
    }

    #[test]
    fn a_stripped_or_bad_file_is_an_error() {
        assert!(report(b"not elf", "x", 0).is_err());
    }
}
