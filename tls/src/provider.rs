//! What rustls needs from the platform: cryptography (ring), randomness, the
//! time, and a session-ticket key.
//!
//! **Why ring.** It is the fastest provider that builds for a guest (`no_std`,
//! no libc; its assembly is BoringSSL's, the same as nginx's OpenSSL for
//! AES-GCM, ChaCha20-Poly1305, P-256 and X25519), and rustls's own. The
//! figures that decided it are in the commit that brought it in.
//!
//! **Randomness.** ring draws through the `getrandom` crate, which on a
//! `-linux-` target makes the `getrandom` system call. A unikernel has no
//! such call: the runtime answers it from the Random device (see
//! `lamina_metal::libc`), so every random byte TLS uses comes from the
//! image's ChaCha20 generator seeded by RDSEED/RDRAND or virtio-rng.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use ring::aead;
use rustls::crypto::CryptoProvider;
use rustls::server::ProducesTickets;
use rustls::time_provider::TimeProvider;
use rustls_pki_types::UnixTime;

/// The suites (TLS 1.3: AES-128/256-GCM, ChaCha20-Poly1305; TLS 1.2: ECDHE
/// with ECDSA or RSA and the same three AEADs) and groups (X25519, P-256,
/// P-384) Lamina offers: ring's defaults, which are exactly these. Nothing
/// without forward secrecy, nothing that is not an AEAD.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Before this instant (2024-01-01T00:00:00Z) a wall clock is taken as
/// never set: a unikernel booted without one must not judge certificates
/// (it would take expired ones for valid, or valid ones for not yet valid).
pub const EARLIEST_PLAUSIBLE_WALL_SECS: u64 = 1_704_067_200;

/// rustls's clock: the Clock device's wall time, sampled by the acceptor or
/// connector as each handshake starts (rustls wants a clock it can share
/// between threads; the Clock devices are single-threaded values).
///
/// A client judges certificates by it, so for a client ([`WallTime::for_client`])
/// a wall clock before [`EARLIEST_PLAUSIBLE_WALL_SECS`] is no time at all and
/// every verification fails. A server only dates its session tickets by it,
/// and serves whatever its clock says.
#[derive(Debug, Default)]
pub(crate) struct WallTime {
    secs: AtomicU64,
    plausible_only: bool,
}

impl WallTime {
    /// A clock for a client: none while the wall clock is implausible.
    pub(crate) fn for_client() -> Self {
        WallTime {
            secs: AtomicU64::new(0),
            plausible_only: true,
        }
    }

    /// Records the wall clock's time in nanoseconds since the epoch.
    pub(crate) fn set(&self, wall_ns: u64) {
        self.secs.store(wall_ns / 1_000_000_000, Ordering::Relaxed);
    }
}

impl TimeProvider for WallTime {
    fn current_time(&self) -> Option<UnixTime> {
        let secs = self.secs.load(Ordering::Relaxed);
        (secs >= EARLIEST_PLAUSIBLE_WALL_SECS || !self.plausible_only)
            .then(|| UnixTime::since_unix_epoch(core::time::Duration::from_secs(secs)))
    }
}

/// How long a session ticket is good for, and how often its key changes.
const TICKET_LIFETIME_SECS: u32 = 6 * 60 * 60;

/// Seals session tickets with ChaCha20-Poly1305 under a key drawn at boot
/// and replaced every [`TICKET_LIFETIME_SECS`] (the previous key still opens
/// tickets, so a ticket lives one to two periods). The state in a ticket
/// never leaves the image unencrypted; a reboot forgets every ticket.
pub(crate) struct Ticketer {
    keys: spin::Mutex<TicketKeys>,
    provider: Arc<CryptoProvider>,
    time: Arc<dyn TimeProvider>,
}

struct TicketKeys {
    current: TicketKey,
    previous: Option<TicketKey>,
}

struct TicketKey {
    name: [u8; 16],
    key: aead::LessSafeKey,
    /// When it was made (wall seconds; 0 when the clock is unset).
    made: u64,
}

impl fmt::Debug for Ticketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ticketer")
    }
}

impl Ticketer {
    /// A ticketer with a fresh key.
    pub(crate) fn new(
        provider: Arc<CryptoProvider>,
        time: Arc<dyn TimeProvider>,
    ) -> Result<Self, rustls::Error> {
        let now = wall_secs(&*time);
        let current = TicketKey::new(&provider, now)?;
        Ok(Ticketer {
            keys: spin::Mutex::new(TicketKeys {
                current,
                previous: None,
            }),
            provider,
            time,
        })
    }

    /// Replaces the key once it is a lifetime old.
    fn rotate_if_due(&self, keys: &mut TicketKeys) {
        let now = wall_secs(&*self.time);
        if now.saturating_sub(keys.current.made) < u64::from(TICKET_LIFETIME_SECS) {
            return;
        }
        if let Ok(fresh) = TicketKey::new(&self.provider, now) {
            keys.previous = Some(core::mem::replace(&mut keys.current, fresh));
        }
    }
}

fn wall_secs(time: &dyn TimeProvider) -> u64 {
    time.current_time().map_or(0, |t| t.as_secs())
}

impl TicketKey {
    fn new(provider: &CryptoProvider, made: u64) -> Result<Self, rustls::Error> {
        let mut secret = [0u8; 32];
        let mut name = [0u8; 16];
        provider.secure_random.fill(&mut secret)?;
        provider.secure_random.fill(&mut name)?;
        let key = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &secret)
            .map_err(|_| rustls::Error::General("ticket key".into()))?;
        Ok(TicketKey {
            name,
            key: aead::LessSafeKey::new(key),
            made,
        })
    }
}

/// A ticket: key name (16), nonce (12), sealed state, tag (16).
const TICKET_OVERHEAD: usize = 16 + 12 + 16;

impl ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        TICKET_LIFETIME_SECS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; 12];
        self.provider.secure_random.fill(&mut nonce).ok()?;
        let mut keys = self.keys.lock();
        self.rotate_if_due(&mut keys);
        let key = &keys.current;
        let mut ticket = Vec::with_capacity(plain.len() + TICKET_OVERHEAD);
        ticket.extend_from_slice(&key.name);
        ticket.extend_from_slice(&nonce);
        ticket.extend_from_slice(plain);
        let tag = key
            .key
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(key.name),
                &mut ticket[28..],
            )
            .ok()?;
        ticket.extend_from_slice(tag.as_ref());
        Some(ticket)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < TICKET_OVERHEAD || ticket.len() > 16 * 1024 {
            return None;
        }
        let (name, rest) = ticket.split_at(16);
        let (nonce, sealed) = rest.split_at(12);
        let keys = self.keys.lock();
        let key = [Some(&keys.current), keys.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.name == name)?;
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, aead::Aad::from(key.name), &mut buf)
            .ok()?;
        let len = plain.len();
        buf.truncate(len);
        Some(buf)
    }
}
