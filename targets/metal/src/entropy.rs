//! Entropy from the CPU: a 32-byte seed for the runtimes' CSPRNG, from
//! RDSEED (the conditioned entropy source) or else RDRAND. Every
//! bare-metal target uses it; the guest never trusts a seed it
//! could not get, it stops instead (see [`crate::random`]).

/// Whether the CPU has RDRAND (CPUID leaf 1, ECX bit 30).
pub fn has_rdrand() -> bool {
    core::arch::x86_64::__cpuid(1).ecx & (1 << 30) != 0
}

/// Whether the CPU has RDSEED (CPUID leaf 7, EBX bit 18).
pub fn has_rdseed() -> bool {
    core::arch::x86_64::__cpuid_count(7, 0).ebx & (1 << 18) != 0
}

/// A seed from RDSEED, else RDRAND; `None` when the CPU has neither or
/// they keep failing (each word is retried up to 128 times, as the
/// instructions may fail transiently under load).
///
/// ```
/// if let Some(seed) = lamina_metal::entropy::hardware_seed() {
///     assert_ne!(seed, [0; 32]);
/// }
/// ```
pub fn hardware_seed() -> Option<[u8; 32]> {
    let (rdseed, rdrand) = (has_rdseed(), has_rdrand());
    if !rdseed && !rdrand {
        return None;
    }
    let mut seed = [0u8; 32];
    for chunk in seed.chunks_mut(8) {
        let word = (0..128).find_map(|_| {
            let mut word = 0u64;
            let ok = if rdseed {
                // SAFETY: CPUID says RDSEED exists; it only writes `word`.
                unsafe { core::arch::x86_64::_rdseed64_step(&mut word) }
            } else {
                // SAFETY: CPUID says RDRAND exists; it only writes `word`.
                unsafe { core::arch::x86_64::_rdrand64_step(&mut word) }
            };
            (ok == 1).then_some(word)
        })?;
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    Some(seed)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::eprintln;

    #[test]
    fn two_seeds_differ() {
        let (Some(a), Some(b)) = (super::hardware_seed(), super::hardware_seed()) else {
            eprintln!("skipped: this CPU has neither RDSEED nor RDRAND");
            return;
        };
        assert_ne!(a, b);
    }
}
