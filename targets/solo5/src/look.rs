//! How long a guest waiting for the tender's I/O thread looks for the
//! answer before it gives up its CPU through an exit (the hvt block ring,
//! `guest::sys::block_ring`): a rent-or-buy wait whose length learns from
//! what each exit found. Plain arithmetic, so that it is unit-tested on
//! the host.
//!
//! An exit after a look serves the ring on the vCPU's own thread. If that
//! thread found nothing left to serve, the I/O thread was in the middle
//! of the request (a write the host's writeback throttles, a flush on a
//! slow disk: a slow request, not a descheduled thread), and the exit
//! bought nothing: the next look is twice as long, up to a bound. If it
//! served requests itself, the I/O thread had not picked them up
//! (descheduled on a busy host): the look goes back to its shortest, so
//! that the guest does not spin on a CPU that thread needs.

/// A look's bounds, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookBounds {
    /// The shortest look, and the first: about what an exit costs.
    pub shortest: u64,
    /// The longest: past it a request that slow lets the vCPU sleep
    /// rather than hold a CPU.
    pub longest: u64,
}

impl LookBounds {
    /// The next look after one of `look` ns ran out and the exit that
    /// followed served `served` requests on the vCPU's thread.
    ///
    /// ```
    /// use lamina_solo5::look::LookBounds;
    /// let bounds = LookBounds { shortest: 60, longest: 800 };
    /// assert_eq!(bounds.after_exit(60, 0), 120); // the I/O thread had it
    /// assert_eq!(bounds.after_exit(480, 0), 800);
    /// assert_eq!(bounds.after_exit(480, 1), 60); // it had not picked it up
    /// ```
    pub fn after_exit(self, look: u64, served: u64) -> u64 {
        if served == 0 {
            look.saturating_mul(2).clamp(self.shortest, self.longest)
        } else {
            self.shortest
        }
    }

    /// The next look after an answer came `waited` ns into one of `look`
    /// ns, without an exit: well inside it (under half), the look shrinks
    /// by an eighth towards the shortest, so that once requests are quick
    /// again it comes back down, and while they are slow it stays about
    /// twice what they take.
    pub fn after_answer(self, look: u64, waited: u64) -> u64 {
        if waited < look / 2 {
            (look - look / 8).clamp(self.shortest, self.longest)
        } else {
            look.clamp(self.shortest, self.longest)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LookBounds;

    const BOUNDS: LookBounds = LookBounds {
        shortest: 60_000,
        longest: 800_000,
    };

    /// Requests that each take `service` ns, from a look of `look`: the
    /// exits spent and the look after `n` of them.
    fn steady(mut look: u64, service: u64, n: usize) -> (usize, u64) {
        let mut exits = 0;
        for _ in 0..n {
            if service > look {
                exits += 1;
                look = BOUNDS.after_exit(look, 0);
            } else {
                look = BOUNDS.after_answer(look, service);
            }
        }
        (exits, look)
    }

    #[test]
    fn slow_requests_cost_a_few_exits_then_none() {
        // 75 µs writes (writeback throttling), the case that cost an exit
        // per write with a fixed 60 µs look.
        let (exits, look) = steady(BOUNDS.shortest, 75_000, 10_000);
        assert_eq!(exits, 1);
        assert!((75_000..=300_000).contains(&look), "{look}");
        // A 135 µs flush likewise, from the flush's shortest.
        let (exits, _) = steady(100_000, 135_000, 10_000);
        assert_eq!(exits, 1);
    }

    #[test]
    fn the_look_comes_back_down_when_requests_are_quick_again() {
        let (_, look) = steady(BOUNDS.longest, 2_000, 100);
        assert_eq!(look, BOUNDS.shortest);
    }

    #[test]
    fn requests_slower_than_the_longest_look_exit_every_time() {
        let (exits, look) = steady(BOUNDS.shortest, 2_000_000, 100);
        assert_eq!(exits, 100);
        assert_eq!(look, BOUNDS.longest);
    }

    #[test]
    fn an_exit_that_served_requests_itself_resets_the_look() {
        assert_eq!(BOUNDS.after_exit(BOUNDS.longest, 3), BOUNDS.shortest);
        // Nothing overflows or leaves the bounds, whatever comes in.
        assert_eq!(BOUNDS.after_exit(u64::MAX, 0), BOUNDS.longest);
        assert_eq!(BOUNDS.after_answer(u64::MAX, 0), BOUNDS.longest);
        assert_eq!(BOUNDS.after_answer(0, 0), BOUNDS.shortest);
    }
}
