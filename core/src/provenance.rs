//! Build provenance in the image: how and from what it was built.
//!
//! Every unikernel image built by `lamina build` carries, in the section
//! [`SECTION`] (its own `PT_NOTE`), ELF notes owned by "Lamina":
//!
//! - one [`TYPE_LPV1`] note, placed by the bare-metal runtime from the
//!   environment variable `LAMINA_PROVENANCE` that `lamina build` sets:
//!   UTF-8 text, one `key=value` line per fact, the first line
//!   `format=1` (the version of this layout). `lamina inspect` prints it
//!   and `lamina verify` rebuilds from it;
//! - one [`TYPE_LBK1`] note per directory baked in at build time
//!   (`lamina-crunch`, from the application's build script, through
//!   [`baked_note!`](crate::baked_note)): a line
//!   `NAME=SHA256 files=N bytes=B dir=DIR` (B the bytes put in the image),
//!   the digest being SHA-256 of the lines `SHA256(file)  PATH\n`, one per
//!   file below the directory sorted by path, exactly as
//!   `find . -type f -printf '%P\n' | LC_ALL=C sort | xargs sha256sum`
//!   prints them.
//!
//! A note's descriptor holds the text, `n_descsz` its exact length, padded
//! with zeros to 4 bytes as ELF notes are.

use crate::declare::Note4;

/// `n_type` of the provenance note ("LPV1").
pub const TYPE_LPV1: u32 = u32::from_le_bytes(*b"LPV1");
/// `n_type` of a baked directory's note ("LBK1").
pub const TYPE_LBK1: u32 = u32::from_le_bytes(*b"LBK1");
/// The section (and `PT_NOTE`) both kinds of note go in.
pub const SECTION: &str = ".note.lamina.provenance";
/// Owner of the notes, with its NUL.
const OWNER: &[u8; 7] = b"Lamina\0";

/// Size of a note holding `text`: header, owner padded to 8, text padded
/// to 4.
pub const fn text_note_len(text: &str) -> usize {
    12 + 8 + text.len().div_ceil(4) * 4
}

/// A note owned by "Lamina" of type `note_type` holding `text`. `N` must
/// be [`text_note_len`]`(text)`.
pub const fn text_note<const N: usize>(note_type: u32, text: &str) -> Note4<N> {
    assert!(N == text_note_len(text), "provenance note length");
    assert!(text.len() <= u32::MAX as usize, "provenance note too long");
    let mut bytes = [0u8; N];
    let words = [OWNER.len() as u32, text.len() as u32, note_type];
    let mut w = 0;
    while w < 3 {
        let le = words[w].to_le_bytes();
        let mut i = 0;
        while i < 4 {
            bytes[w * 4 + i] = le[i];
            i += 1;
        }
        w += 1;
    }
    let mut i = 0;
    while i < OWNER.len() {
        bytes[12 + i] = OWNER[i];
        i += 1;
    }
    let text = text.as_bytes();
    let mut i = 0;
    while i < text.len() {
        bytes[20 + i] = text[i];
        i += 1;
    }
    Note4(bytes)
}

/// Records a baked directory in the image (see [the module
/// documentation](crate::provenance)): `lamina-crunch` writes
/// `lamina::baked_note!("SITE=HEX files=5 bytes=9000 dir=site");` beside the baked
/// files.
#[macro_export]
macro_rules! baked_note {
    ($text:literal) => {
        const _: () = {
            /// What was baked, for `lamina inspect`.
            #[used]
            #[allow(unsafe_code)] // a section name: the linker script keeps it as a note
            #[unsafe(link_section = ".note.lamina.provenance")]
            static BAKED_NOTE: $crate::declare::Note4<
                { $crate::provenance::text_note_len($text) },
            > = $crate::provenance::text_note($crate::provenance::TYPE_LBK1, $text);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_is_header_owner_and_padded_text() {
        const TEXT: &str = "format=1\nx=y";
        let note: Note4<{ text_note_len(TEXT) }> = text_note(TYPE_LPV1, TEXT);
        let bytes = &note.0;
        assert_eq!(bytes.len(), 20 + 12);
        assert_eq!(&bytes[0..4], &7u32.to_le_bytes());
        assert_eq!(&bytes[4..8], &12u32.to_le_bytes());
        assert_eq!(&bytes[8..12], b"LPV1");
        assert_eq!(&bytes[12..20], b"Lamina\0\0");
        assert_eq!(&bytes[20..32], TEXT.as_bytes());
        let odd: Note4<{ text_note_len("abcde") }> = text_note(TYPE_LBK1, "abcde");
        assert_eq!(odd.0.len(), 28);
        assert_eq!(&odd.0[4..8], &5u32.to_le_bytes());
        assert_eq!(&odd.0[25..], &[0, 0, 0]);
    }
}
