//! The Internet checksum (RFC 1071): the one's-complement sum of big-endian
//! 16-bit words, folded to 16 bits and inverted. Sums are kept unfolded in a
//! `u64` so that the pieces of one checksum (pseudo-header, header, payload)
//! can be added before one fold.

/// The one's-complement sum of `data` as big-endian 16-bit words (an odd
/// last byte is the high byte of a word), unfolded.
///
/// A `u64` cannot overflow for any packet: 2^16 words of at most 2^32 each.
pub fn sum(data: &[u8]) -> u64 {
    let mut total = 0u64;
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        // Big-endian words, four at a time.
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_be_bytes(word);
        total += (word >> 32) + (word & 0xffff_ffff);
    }
    let mut pairs = chunks.remainder().chunks_exact(2);
    for pair in &mut pairs {
        total += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = pairs.remainder() {
        total += u64::from(*last) << 8;
    }
    total
}

/// Folds an unfolded sum to 16 bits (not inverted).
pub fn fold(mut total: u64) -> u16 {
    while total > 0xffff {
        total = (total & 0xffff) + (total >> 16);
    }
    total as u16
}

/// The checksum field's value for data whose unfolded sum (with the field
/// zero) is `total`: the folded sum, inverted.
pub fn finish(total: u64) -> u16 {
    !fold(total)
}

/// Whether data whose unfolded sum (checksum field included) is `total`
/// checks out.
pub fn verifies(total: u64) -> bool {
    fold(total) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_matches_a_plain_word_sum() {
        for len in 0..40usize {
            let data: alloc::vec::Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let mut plain = 0u64;
            for pair in data.chunks(2) {
                plain += u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
            }
            assert_eq!(fold(sum(&data)), fold(plain), "length {len}");
        }
    }

    #[test]
    fn rfc_1071_example() {
        // RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(finish(sum(&data)), !0xddf2);
        let mut with_checksum = data.to_vec();
        with_checksum.extend_from_slice(&finish(sum(&data)).to_be_bytes());
        assert!(verifies(sum(&with_checksum)));
    }
}
