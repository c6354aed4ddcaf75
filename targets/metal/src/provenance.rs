//! The image's provenance note (`lamina_core::provenance`): the text
//! `lamina build` computed and passed in `LAMINA_PROVENANCE`. Reading it with
//! `option_env!` makes cargo rebuild this crate whenever it changes, so an
//! image never carries the provenance of an earlier build.

use lamina_core::declare::Note4;
use lamina_core::provenance::{text_note, text_note_len, TYPE_LPV1};

/// The provenance, or a line saying that the image was built some other
/// way (plain `cargo build` with the guest flags, as some tests do).
const PROVENANCE: &str = match option_env!("LAMINA_PROVENANCE") {
    Some(text) => text,
    None => "format=1\nbuilt-by=cargo without lamina build: no provenance recorded\n",
};

/// The note, in the section the linker scripts give a `PT_NOTE` of its own.
#[used]
#[unsafe(link_section = ".note.lamina.provenance")]
static PROVENANCE_NOTE: Note4<{ text_note_len(PROVENANCE) }> = text_note(TYPE_LPV1, PROVENANCE);
