//! The authoritative answer logic: query bytes in, response bytes out.
//!
//! [`Authority`] answers from [`Zones`] (RFC 1034 4.3.2):
//!
//! | query | answer |
//! |-------|--------|
//! | a name and type in a zone | NOERROR, AA, the RRset |
//! | a name that exists without the type (NODATA), or does not exist (NXDOMAIN) | AA, the zone's SOA in the authority section with TTL min(SOA TTL, MINIMUM) (RFC 2308) |
//! | a CNAME | the CNAME, then the chain followed inside the zone, at most [`MAX_CNAME_CHAIN`] links; the rcode is the last name's (RFC 6604) |
//! | a name under a wildcard (RFC 4592) | the wildcard's RRsets with the query name as owner |
//! | a name at or below a delegation | a referral: no AA, the NS set in authority, their addresses (glue) in additional |
//! | type ANY | one RRset of the name (RFC 8482) |
//! | a name outside the zones, a class other than IN, AXFR not allowed | REFUSED |
//! | an opcode other than QUERY | NOTIMP |
//! | no single well-formed question, two OPT records, a malformed OPT | FORMERR |
//! | EDNS version other than 0 | BADVERS (RFC 6891 6.1.3) |
//! | fewer than 12 bytes, or QR set | nothing |
//!
//! NS, MX and SRV answers get the addresses of their targets in the zone
//! in the additional section. A response carries an OPT record when the
//! query did (the DO bit echoed) and fits the requester's UDP payload size
//! (512 bytes without EDNS, at least 512 with it). When it does not:
//! additional records are left out first, without TC (RFC 2181 9: a
//! resolver asks again for what it misses), except the glue of a referral's
//! name servers inside the delegated zone, which it could not ask for (RFC
//! 9471: TC); an answer or authority RRset that does not fit is left out
//! whole and TC is set, so the requester retries over TCP. Names in the question keep the
//! requester's case (owners equal to it point at it).
//!
//! Fast by design: [`Authority::new`] computes, once, the response to
//! every type of every name that exists in the zones (and to ANY, and A
//! and AAAA through an alias); such a query is answered by copying it and
//! writing the identifier, flags, question case and OPT record over the
//! copy. The rest (NXDOMAIN, wildcards, referrals, answers that must be
//! truncated) is computed when asked, with the same result byte for byte.
//!
//! Over UDP nothing here allocates: names live in fixed buffers on the
//! stack and the response is written straight into the caller's buffer
//! (`dns/tests/no_alloc.rs` counts). A zone transfer ([`Authority::transfer`],
//! TCP only, peers from the AXFR allow list) does allocate, once.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::net::IpAddr;
use core::str::FromStr;

use super::{Responder, Transfer, Transport};
use crate::wire::{
    flags, BuildError, Message, MessageBuilder, OptRepr, Question, Section, HEADER_LEN,
    MAX_NAME_LEN, OPT_RECORD_LEN,
};
use crate::zone::name::is_at_or_below;
use crate::zone::{Lookup, Node, Rrset, Zone, Zones};
use crate::{Class, Opcode, Rcode, Rtype};

/// The most CNAME links followed inside a zone for one answer.
pub const MAX_CNAME_CHAIN: usize = 8;

/// The UDP payload size this server announces in its OPT records (DNS Flag
/// Day 2020: fits any path without fragments).
pub const DEFAULT_EDNS_PAYLOAD: u16 = 1232;

/// The size every requester can take over UDP (RFC 1035 4.2.1), and the
/// least a requester's EDNS payload size counts as (RFC 6891 6.2.5).
const MIN_UDP_PAYLOAD: usize = 512;

/// IXFR (RFC 1995): not served (NOTIMP).
const IXFR: Rtype = Rtype(251);
/// MAILB and MAILA (RFC 1035 3.2.3), obsolete query types (NOTIMP).
const MAILB: Rtype = Rtype(253);
const MAILA: Rtype = Rtype(254);
/// Delegation signer: answered from the parent side of a zone cut.
const DS: Rtype = Rtype(43);

/// An address prefix allowed to transfer zones (`192.0.2.7`,
/// `192.0.2.0/24`, `2001:db8::/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerPrefix {
    address: IpAddr,
    len: u8,
}

/// Why a [`PeerPrefix`] did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerPrefixError {
    /// The part before `/` is not an IP address.
    BadAddress,
    /// The prefix length is not a number within the address's bits.
    BadLength,
}

impl fmt::Display for PeerPrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerPrefixError::BadAddress => "not an IP address",
            PeerPrefixError::BadLength => "prefix length out of range",
        })
    }
}

impl PeerPrefix {
    /// The addresses whose first `len` bits are `address`'s; `None` if
    /// `len` is longer than the address.
    pub fn new(address: IpAddr, len: u8) -> Option<PeerPrefix> {
        let bits = if address.is_ipv4() { 32 } else { 128 };
        (len <= bits).then_some(PeerPrefix { address, len })
    }

    /// Whether `peer` is in the prefix (an IPv4-mapped IPv6 peer counts as
    /// its IPv4 address).
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        let (ours, theirs, bits) = match (self.address, peer) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                (u128::from(a.to_bits()), u128::from(b.to_bits()), 32)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => (a.to_bits(), b.to_bits(), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.len);
        shift >= bits || ours >> shift == theirs >> shift
    }
}

impl FromStr for PeerPrefix {
    type Err = PeerPrefixError;

    fn from_str(text: &str) -> Result<PeerPrefix, PeerPrefixError> {
        let (address, len) = match text.split_once('/') {
            Some((address, len)) => (address, Some(len)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| PeerPrefixError::BadAddress)?;
        let len = match len {
            Some(len) => len.parse().map_err(|_| PeerPrefixError::BadLength)?,
            None if address.is_ipv4() => 32,
            None => 128,
        };
        PeerPrefix::new(address, len).ok_or(PeerPrefixError::BadLength)
    }
}

/// An authoritative server's answers: the zones, and who may transfer them.
#[derive(Debug)]
pub struct Authority {
    zones: Zones,
    axfr_peers: Vec<PeerPrefix>,
    edns_payload: u16,
    /// Responses computed at boot.
    memo: Memo,
}

/// A query's question, decompressed: the name as asked and lowercased.
struct Asked {
    name: [u8; MAX_NAME_LEN],
    lower: [u8; MAX_NAME_LEN],
    len: usize,
    qtype: Rtype,
    qclass: Class,
}

impl Asked {
    fn new(question: &Question<'_>) -> Asked {
        let mut asked = Asked {
            name: [0; MAX_NAME_LEN],
            lower: [0; MAX_NAME_LEN],
            len: 0,
            qtype: question.qtype,
            qclass: question.qclass,
        };
        asked.len = question.name.write_wire(&mut asked.name);
        asked.lower = asked.name;
        asked.lower[..asked.len].make_ascii_lowercase();
        asked
    }

    fn name(&self) -> &[u8] {
        &self.name[..self.len]
    }

    fn lower(&self) -> &[u8] {
        &self.lower[..self.len]
    }
}

/// The one question of a query, if it has exactly one that parses.
fn single_question<'a>(message: &'a Message<&'a [u8]>) -> Option<Question<'a>> {
    if message.count(Section::Question) != 1 {
        return None;
    }
    message.questions().next()?.ok()
}

impl Authority {
    /// Answers for `zones`; no zone transfers until
    /// [`Authority::allow_axfr`].
    /// Answers for `zones`, with the answers to every existing name's
    /// types computed now ([`Authority::memo_size`] says how many); no
    /// zone transfers until [`Authority::allow_axfr`].
    pub fn new(zones: Zones) -> Authority {
        let mut authority = Authority::without_memo(zones);
        authority.memoise();
        authority
    }

    /// Answers for `zones`, every answer computed when asked (less memory,
    /// more work per query).
    pub fn without_memo(zones: Zones) -> Authority {
        Authority {
            zones,
            axfr_peers: Vec::new(),
            edns_payload: DEFAULT_EDNS_PAYLOAD,
            memo: Memo::default(),
        }
    }

    /// Lets peers in these prefixes transfer zones (over TCP).
    pub fn allow_axfr(mut self, peers: impl IntoIterator<Item = PeerPrefix>) -> Authority {
        self.axfr_peers.extend(peers);
        self
    }

    /// Sets the UDP payload size announced in OPT records (at least 512).
    pub fn with_edns_payload(mut self, size: u16) -> Authority {
        self.edns_payload = size.max(MIN_UDP_PAYLOAD as u16);
        self
    }

    /// The zones answered for.
    pub fn zones(&self) -> &Zones {
        &self.zones
    }

    /// Whether `peer` may transfer zones.
    pub fn axfr_allowed(&self, peer: IpAddr) -> bool {
        self.axfr_peers.iter().any(|prefix| prefix.contains(peer))
    }

    /// Writes the response to `query` (from `peer`, over `transport`) into
    /// `out` and returns its length; `None` when the query deserves no
    /// answer (shorter than a header, QR set, `out` shorter than a header).
    /// Over UDP the response fits the requester's payload size; over TCP,
    /// `out` (at most 65535 bytes). Allocates nothing.
    pub fn respond(
        &self,
        query: &[u8],
        transport: Transport,
        peer: IpAddr,
        out: &mut [u8],
    ) -> Option<usize> {
        let _ = peer;
        let message = Message::new_checked(query).ok()?;
        if message.is_response() {
            return None;
        }
        // One walk: the question, then the records after it.
        let mut questions = message.questions();
        let first = questions.next().and_then(Result::ok);
        let question = first.filter(|_| message.count(Section::Question) == 1);
        let edns = questions.records().edns();
        let opt = edns.as_ref().ok().copied().flatten();
        let asked = question.as_ref().map(Asked::new);
        let copied = message.flags() & (flags::OPCODE_MASK | flags::RD | flags::CD);
        let limit = match transport {
            Transport::Udp => {
                let requested = opt.map_or(0, |opt| usize::from(opt.udp_payload_size));
                requested.max(MIN_UDP_PAYLOAD).min(out.len())
            }
            Transport::Tcp => out.len(),
        };
        let opt_repr = opt.map(|opt| OptRepr {
            udp_payload_size: self.edns_payload,
            version: 0,
            dnssec_ok: opt.dnssec_ok(),
        });
        if let Some(asked) = &asked {
            let standard = message.opcode() == Opcode::QUERY
                && edns.is_ok()
                && opt.is_none_or(|opt| opt.version == 0)
                && asked.qclass == Class::IN;
            if standard {
                let id = message.id();
                if let Some(len) = self.memoised(asked, id, copied, opt_repr, &mut out[..limit]) {
                    return Some(len);
                }
            }
        }

        let mut builder = MessageBuilder::new(out).ok()?;
        builder.header().set_id(message.id());
        builder.header().set_flags(flags::QR | copied);
        builder.set_limit(limit);
        if let Some(repr) = opt_repr {
            // Fails only for a buffer under 23 bytes: no OPT then.
            let _ = builder.set_edns(repr);
        }
        let asked = question.as_ref().map(Asked::new);
        if let Some(asked) = &asked {
            if builder
                .question(asked.name(), asked.qtype, asked.qclass)
                .is_err()
            {
                // A buffer too small for the question: the header alone.
                return Some(builder.finish());
            }
        }
        let rcode = if message.opcode() != Opcode::QUERY {
            Rcode::NOTIMP
        } else if edns.is_err() {
            Rcode::FORMERR
        } else if opt.is_some_and(|opt| opt.version != 0) {
            Rcode::BADVERS
        } else if let Some(asked) = &asked {
            self.answer(&mut builder, asked)
        } else {
            Rcode::FORMERR
        };
        builder.set_rcode(rcode);
        Some(builder.finish())
    }

    /// Answers from the memo: the response copied into `out` (no larger
    /// than the limit), with the query's identifier, flags, question case
    /// and OPT record. `None` when the memo has no answer or it does not
    /// fit (the answer logic then truncates it).
    fn memoised(
        &self,
        asked: &Asked,
        id: u16,
        copied: u16,
        opt: Option<OptRepr>,
        out: &mut [u8],
    ) -> Option<usize> {
        let response = self.memo.get(asked.lower(), asked.qtype)?;
        let len = response.len() + if opt.is_some() { OPT_RECORD_LEN } else { 0 };
        let out = out.get_mut(..len)?;
        out[..response.len()].copy_from_slice(response);
        // The question's name, as asked: the same length as the memo's.
        out.get_mut(HEADER_LEN..HEADER_LEN + asked.len)?
            .copy_from_slice(asked.name());
        let mut message = Message::new_unchecked(&mut *out);
        message.set_id(id);
        let kept = message.flags() & (flags::AA | flags::RCODE_MASK);
        message.set_flags(flags::QR | copied | kept);
        if let Some(opt) = opt {
            let additional = message.count(Section::Additional) + 1;
            message.set_count(Section::Additional, additional);
            opt.emit(Rcode(kept & flags::RCODE_MASK), &mut out[response.len()..])?;
        }
        Some(len)
    }

    /// Computes the memoised responses: for every name that exists in a
    /// zone (not below a cut), the response to each type it has and to
    /// ANY, and for an alias to A and AAAA, as [`Authority::respond`]
    /// writes it for a lowercase question over TCP without EDNS.
    fn memoise(&mut self) {
        let mut memo = Memo::default();
        let mut query = [0u8; HEADER_LEN + MAX_NAME_LEN + 4];
        let mut out = vec![0u8; super::MAX_MESSAGE];
        let peer = IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED);
        for zone in self.zones.iter().filter(|zone| zone.class() == Class::IN) {
            for node in zone.nodes() {
                if !matches!(zone.lookup(node.name()), Lookup::Found(found) if core::ptr::eq(found, node))
                {
                    continue;
                }
                let aliases = node.rrset(Rtype::CNAME).map(|_| [Rtype::A, Rtype::AAAA]);
                let types = node.rrsets().iter().map(Rrset::rtype).chain([Rtype::ANY]);
                for qtype in types.chain(aliases.into_iter().flatten()) {
                    let Ok(mut b) = MessageBuilder::new(&mut query) else {
                        continue;
                    };
                    if b.question(node.name(), qtype, Class::IN).is_err() {
                        continue;
                    }
                    let len = b.finish();
                    let Some(answer) = self.respond(&query[..len], Transport::Tcp, peer, &mut out)
                    else {
                        continue;
                    };
                    let response = &out[..answer];
                    if Message::new_checked(response)
                        .is_ok_and(|m| !m.truncated() && answer <= usize::from(u16::MAX))
                    {
                        memo.insert(node.name(), qtype, response);
                    }
                }
            }
        }
        self.memo = memo;
    }

    /// How many responses are memoised, and the bytes they take.
    pub fn memo_size(&self) -> (usize, usize) {
        (self.memo.len(), self.memo.bytes())
    }

    /// Answers a well-formed standard query; returns the rcode.
    fn answer(&self, b: &mut MessageBuilder<'_>, asked: &Asked) -> Rcode {
        match asked.qtype {
            // Allowed transfers never get here (the TCP loop asks
            // `transfer` first); over UDP there are none.
            Rtype::AXFR => return Rcode::REFUSED,
            IXFR | MAILA | MAILB => return Rcode::NOTIMP,
            Rtype::OPT => return Rcode::FORMERR,
            _ => {}
        }
        if asked.qclass != Class::IN {
            return Rcode::REFUSED;
        }
        let Some(zone) = self
            .zones
            .find(asked.lower())
            .filter(|z| z.class() == asked.qclass)
        else {
            return Rcode::REFUSED;
        };
        b.header().set_flag(flags::AA, true);
        match (Answer {
            b: &mut *b,
            zone,
            qtype: asked.qtype,
        })
        .run(asked)
        {
            Ok(rcode) => rcode,
            Err(BuildError::NoSpace) => {
                b.set_truncated();
                Rcode::NOERROR
            }
            // Zone data is checked when it is built; this is a bug.
            Err(_) => Rcode::SERVFAIL,
        }
    }

    /// The zone transfer `query` asks for, if it is an AXFR of a zone's
    /// apex that `peer` may have: its messages, SOA first and last, each
    /// at most 65535 bytes. `None` otherwise ([`Authority::respond`] then
    /// answers REFUSED).
    pub fn transfer(&self, query: &[u8], peer: IpAddr) -> Option<AxfrTransfer<'_>> {
        let message = Message::new_checked(query).ok()?;
        if message.is_response() || message.opcode() != Opcode::QUERY || !self.axfr_allowed(peer) {
            return None;
        }
        let question = single_question(&message)?;
        if question.qtype != Rtype::AXFR || question.qclass != Class::IN {
            return None;
        }
        let asked = Asked::new(&question);
        let zone = self.zones.find(asked.lower())?;
        if zone.origin() != asked.lower() || zone.class() != Class::IN {
            return None;
        }
        Some(AxfrTransfer::new(zone, message.id(), asked))
    }
}

impl Responder for Authority {
    type Transfer<'a> = AxfrTransfer<'a>;

    fn respond(
        &self,
        query: &[u8],
        transport: Transport,
        peer: IpAddr,
        out: &mut [u8],
    ) -> Option<usize> {
        Authority::respond(self, query, transport, peer, out)
    }

    fn transfer(&self, query: &[u8], peer: IpAddr) -> Option<AxfrTransfer<'_>> {
        Authority::transfer(self, query, peer)
    }
}

/// One answer being written: the builder, the zone and the type asked.
struct Answer<'b, 'o, 'z> {
    b: &'b mut MessageBuilder<'o>,
    zone: &'z Zone,
    qtype: Rtype,
}

impl Answer<'_, '_, '_> {
    /// Follows the query name (and CNAMEs) through the zone. An answer or
    /// authority RRset that does not fit ends it with `NoSpace` (TC).
    fn run(mut self, asked: &Asked) -> Result<Rcode, BuildError> {
        // The name being looked up (lowercase) and the owner to write (as
        // asked first, then as the CNAME data has it).
        let mut lower = [0u8; MAX_NAME_LEN];
        let mut owner = [0u8; MAX_NAME_LEN];
        let mut len = asked.len;
        lower[..len].copy_from_slice(asked.lower());
        owner[..len].copy_from_slice(asked.name());
        for link in 0..=MAX_CNAME_CHAIN {
            let node = match self.zone.lookup(&lower[..len]) {
                Lookup::Found(node) | Lookup::Wildcard { source: node } => node,
                Lookup::Referral { cut } if self.qtype == DS && cut.name() == &lower[..len] => cut,
                Lookup::Referral { cut } if link == 0 => return self.referral(cut),
                // A CNAME into a delegation: the chain so far.
                Lookup::Referral { .. } => return Ok(Rcode::NOERROR),
                Lookup::NxDomain => {
                    self.negative()?;
                    return Ok(Rcode::NXDOMAIN);
                }
            };
            let owner_now = &owner[..len];
            if self.qtype == Rtype::ANY {
                // RFC 8482: one RRset (the first by type), or NODATA.
                return match node.rrsets().first() {
                    Some(rrset) => self
                        .rrset(Section::Answer, owner_now, rrset, rrset.ttl())
                        .map(|()| Rcode::NOERROR),
                    None => self.negative().map(|()| Rcode::NOERROR),
                };
            }
            if let Some(rrset) = node.rrset(self.qtype) {
                self.rrset(Section::Answer, owner_now, rrset, rrset.ttl())?;
                self.additional_for(rrset);
                return Ok(Rcode::NOERROR);
            }
            let Some(cname) = node.rrset(Rtype::CNAME) else {
                self.negative()?;
                return Ok(Rcode::NOERROR);
            };
            self.rrset(Section::Answer, owner_now, cname, cname.ttl())?;
            let target = cname.rdatas().next().unwrap_or(&[0]);
            if target.len() > MAX_NAME_LEN || !is_at_or_below(target, self.zone.origin()) {
                // Outside the zone: the requester follows it.
                return Ok(Rcode::NOERROR);
            }
            len = target.len();
            let (lower, owner) = (&mut lower[..len], &mut owner[..len]);
            owner.copy_from_slice(target);
            lower.copy_from_slice(target);
            lower.make_ascii_lowercase();
        }
        // A chain longer than that: what is written so far.
        Ok(Rcode::NOERROR)
    }

    /// Writes an RRset whole or not at all.
    fn rrset(
        &mut self,
        section: Section,
        owner: &[u8],
        rrset: &Rrset,
        ttl: u32,
    ) -> Result<(), BuildError> {
        let checkpoint = self.b.checkpoint();
        for rdata in rrset.rdatas() {
            if let Err(error) =
                self.b
                    .record(section, owner, rrset.rtype(), self.zone.class(), ttl, rdata)
            {
                self.b.rollback(checkpoint);
                return Err(error);
            }
        }
        Ok(())
    }

    /// NXDOMAIN and NODATA: the zone's SOA in authority, with the negative
    /// TTL (RFC 2308 3).
    fn negative(&mut self) -> Result<(), BuildError> {
        let soa = self.zone.soa();
        self.rrset(
            Section::Authority,
            self.zone.origin(),
            soa,
            self.zone.negative_ttl(),
        )
    }

    /// A delegation: not authoritative, the cut's NS set in authority, the
    /// addresses of its servers that the zone holds in additional.
    fn referral(&mut self, cut: &Node) -> Result<Rcode, BuildError> {
        self.b.header().set_flag(flags::AA, false);
        let Some(ns) = cut.rrset(Rtype::NS) else {
            return Ok(Rcode::SERVFAIL);
        };
        self.rrset(Section::Authority, cut.name(), ns, ns.ttl())?;
        let mut full = false;
        for target in ns.rdatas() {
            let Some(node) = self.zone.glue(target) else {
                continue;
            };
            full = full || !self.addresses(node);
            // RFC 9471: a server whose name is inside the delegated zone
            // cannot be reached without its glue: missing, that is TC.
            if full && is_at_or_below(target, cut.name()) {
                self.b.set_truncated();
                break;
            }
        }
        Ok(Rcode::NOERROR)
    }

    /// The addresses of the targets of an NS, MX or SRV answer, for those
    /// the zone answers for itself (not below a cut), in additional.
    fn additional_for(&mut self, rrset: &Rrset) {
        let skip = match rrset.rtype() {
            Rtype::NS => 0,
            Rtype::MX => 2,
            Rtype::SRV => 6,
            _ => return,
        };
        for rdata in rrset.rdatas() {
            let Some(target) = rdata.get(skip..) else {
                continue;
            };
            if let Lookup::Found(node) = self.zone.lookup(target) {
                if !self.addresses(node) {
                    return;
                }
            }
        }
    }

    /// A node's A and AAAA sets in additional; false once one does not fit
    /// (left out, no TC).
    fn addresses(&mut self, node: &Node) -> bool {
        for rtype in [Rtype::A, Rtype::AAAA] {
            if let Some(rrset) = node.rrset(rtype) {
                if self
                    .rrset(Section::Additional, node.name(), rrset, rrset.ttl())
                    .is_err()
                {
                    return false;
                }
            }
        }
        true
    }
}

/// One record of a transfer: owner, type, TTL, data.
type TransferRecord<'z> = (&'z [u8], Rtype, u32, &'z [u8]);

/// The messages of one zone transfer (RFC 5936): the SOA, every other
/// record, the SOA again, as many records to a message as fit in 65535
/// bytes. The question is in the first message only.
pub struct AxfrTransfer<'z> {
    zone: &'z Zone,
    id: u16,
    asked: Asked,
    records: core::iter::Peekable<Box<dyn Iterator<Item = TransferRecord<'z>> + 'z>>,
    first: bool,
}

impl fmt::Debug for AxfrTransfer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AxfrTransfer")
            .field("id", &self.id)
            .field("first", &self.first)
            .finish_non_exhaustive()
    }
}

impl<'z> AxfrTransfer<'z> {
    fn new(zone: &'z Zone, id: u16, asked: Asked) -> AxfrTransfer<'z> {
        let soa = zone.soa();
        let last = soa
            .rdatas()
            .map(move |rdata| (zone.origin(), Rtype::SOA, soa.ttl(), rdata));
        let records = zone
            .axfr()
            .flat_map(|(owner, rrset)| {
                let (rtype, ttl) = (rrset.rtype(), rrset.ttl());
                rrset.rdatas().map(move |rdata| (owner, rtype, ttl, rdata))
            })
            .chain(last);
        let records: Box<dyn Iterator<Item = TransferRecord<'z>> + 'z> = Box::new(records);
        AxfrTransfer {
            zone,
            id,
            asked,
            records: records.peekable(),
            first: true,
        }
    }
}

impl Transfer for AxfrTransfer<'_> {
    fn next_message(&mut self, out: &mut [u8]) -> Option<usize> {
        if !self.first && self.records.peek().is_none() {
            return None;
        }
        let mut b = MessageBuilder::new(out).ok()?;
        b.header().set_id(self.id);
        b.header().set_flags(flags::QR | flags::AA);
        if self.first {
            self.first = false;
            b.question(self.asked.name(), self.asked.qtype, self.asked.qclass)
                .ok()?;
        }
        while let Some(&(owner, rtype, ttl, rdata)) = self.records.peek() {
            match b.record(Section::Answer, owner, rtype, self.zone.class(), ttl, rdata) {
                Ok(()) => {}
                // The next message takes it.
                Err(BuildError::NoSpace) if b.count(Section::Answer) > 0 => break,
                // Fits no message (or malformed): left out rather than
                // stalling the transfer.
                Err(_) => {}
            }
            self.records.next();
        }
        Some(b.finish())
    }
}

mod memo;
use memo::Memo;

#[cfg(test)]
mod tests;
