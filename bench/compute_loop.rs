// The integer loop that the guest-versus-host compute benchmark runs, shared
// by the selftest unikernel and the std peer (`include!`d by both) so that
// both run the same code. A xorshift step plus an add: no memory traffic, no
// system calls, nothing a hypervisor should slow down.

/// Runs `iterations` rounds from `seed`; the result depends on every round.
#[inline(never)]
pub fn compute_loop(iterations: u64, seed: u64) -> u64 {
    let mut x = seed;
    for i in 0..iterations {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x.wrapping_add(i);
    }
    x
}
