//! The zone index: nodes in canonical order, found by hash, and
//! the lookups of RFC 1034 4.3.2 and RFC 4592 over them.

use alloc::borrow::Cow;
use alloc::vec::Vec;

use super::name::{self, NameTable};
use super::ZoneError;
use crate::{Class, Rtype};

/// Up to this many zones, [`Zones::find`] compares the name with each
/// origin rather than hashing each of its ancestors.
const FEW_ZONES: usize = 4;

/// No zone cut above a node.
pub(super) const NO_CUT: u32 = u32::MAX;

/// All the zones a server answers for, ordered by origin.
#[derive(Debug, Clone)]
pub struct Zones {
    pub(super) zones: Vec<Zone>,
    /// The origins, by hash.
    table: NameTable,
}

/// One zone: its origin (the apex), its class and its nodes.
///
/// Every name that exists in the zone has a node: the owners of records
/// and the empty non-terminals between them and the apex. Nodes below a
/// zone cut (glue, occluded data) are kept: [`Zone::glue`] finds them and
/// [`Zone::axfr`] transfers them, while [`Zone::lookup`] answers with the
/// referral.
#[derive(Debug, Clone)]
pub struct Zone {
    pub(super) class: Class,
    /// Canonical order (RFC 4034 6.1), so the apex is first.
    pub(super) nodes: Vec<Node>,
    /// Index of the SOA in the apex's rrsets.
    pub(super) soa: usize,
    /// The nodes, by hash of their names.
    pub(super) table: NameTable,
}

/// A name that exists in a zone, with its record sets (none for an empty
/// non-terminal).
#[derive(Debug, Clone)]
pub struct Node {
    /// Lowercase wire form.
    pub(super) name: Cow<'static, [u8]>,
    /// Ordered by type.
    pub(super) rrsets: Vec<Rrset>,
    /// The index of the highest zone cut at or above this node, or NO_CUT.
    pub(super) cut: u32,
}

/// The records of one owner and type.
#[derive(Debug, Clone)]
pub struct Rrset {
    pub(super) rtype: Rtype,
    pub(super) ttl: u32,
    pub(super) count: u16,
    /// Each record's data preceded by its length (16 bits, big-endian):
    /// the RDLENGTH and RDATA fields of a record as they go on the wire.
    pub(super) data: Cow<'static, [u8]>,
}

/// What a name is in a zone (RFC 1034 4.3.2 step 3, RFC 4592 for
/// wildcards).
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'z> {
    /// The name exists: answer from its record sets, or NODATA when it has
    /// none of the type asked (an empty non-terminal has none at all).
    Found(&'z Node),
    /// The name does not exist, but its closest encloser has a `*` child:
    /// synthesise the answer from `source`'s record sets, with the
    /// question's name as owner. `source` may be an empty non-terminal
    /// (NODATA then).
    Wildcard {
        /// The wildcard node `*.<closest encloser>`.
        source: &'z Node,
    },
    /// The name is at or below a delegation: answer with `cut`'s NS set in
    /// the authority section and [`Zone::glue`] for its targets. Only the
    /// highest cut counts; the cut's own DS set (if any) is in `cut` for
    /// a caller that answers DS queries at the cut from the parent.
    Referral {
        /// The delegation point: a node below the apex holding NS records.
        cut: &'z Node,
    },
    /// Neither the name nor a wildcard for it exists (or the name is not
    /// in this zone at all).
    NxDomain,
}

impl Zones {
    /// The zones, checked: no two with the same origin.
    pub fn new(mut zones: Vec<Zone>) -> Result<Zones, ZoneError> {
        zones.sort_by(|a, b| name::canonical_cmp(a.origin(), b.origin()));
        for pair in zones.windows(2) {
            if pair[0].origin() == pair[1].origin() {
                return Err(ZoneError::at(
                    pair[1].origin(),
                    None,
                    "a second zone with this origin",
                ));
            }
        }
        let table = NameTable::new(zones.iter().map(Zone::origin));
        Ok(Zones { zones, table })
    }

    /// The zone with the longest origin at or above `qname`, if any
    /// (matched ASCII case-insensitively).
    pub fn find(&self, qname: &[u8]) -> Option<&Zone> {
        if !name::is_name(qname) {
            return None;
        }
        if self.zones.len() <= FEW_ZONES {
            return self
                .zones
                .iter()
                .filter(|z| name::is_at_or_below(qname, z.origin()))
                .max_by_key(|z| z.origin().len());
        }
        let mut at = qname;
        loop {
            let found = self
                .table
                .find(name::hash(at), |i| name::eq(self.zones[i].origin(), at));
            if let Some(i) = found {
                return Some(&self.zones[i]);
            }
            at = name::parent(at)?;
        }
    }

    /// Every zone, in canonical order of origins.
    pub fn iter(&self) -> impl Iterator<Item = &Zone> {
        self.zones.iter()
    }

    /// The number of zones.
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// Whether there is no zone.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }
}

impl Zone {
    /// The apex, in lowercase wire form.
    pub fn origin(&self) -> &[u8] {
        &self.nodes[0].name
    }

    /// The zone's class (all its records have it).
    pub fn class(&self) -> Class {
        self.class
    }

    /// The apex node.
    pub fn apex(&self) -> &Node {
        &self.nodes[0]
    }

    /// The apex SOA set (one record).
    pub fn soa(&self) -> &Rrset {
        &self.nodes[0].rrsets[self.soa]
    }

    /// The TTL of negative answers (RFC 2308 5): the smaller of the SOA's
    /// own TTL and its MINIMUM field.
    pub fn negative_ttl(&self) -> u32 {
        let soa = self.soa();
        let minimum = soa
            .rdatas()
            .next()
            .and_then(|rdata| rdata.get(rdata.len().checked_sub(4)?..))
            .map_or(0, |m| u32::from_be_bytes([m[0], m[1], m[2], m[3]]));
        soa.ttl().min(minimum)
    }

    /// Every node, in canonical order (the apex first).
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node of exactly this name (ASCII case-insensitive), wherever it
    /// is, below a zone cut too: a hash probe.
    pub fn node(&self, name_: &[u8]) -> Option<&Node> {
        self.find(name::hash(name_), name_)
    }

    /// What `qname` is in this zone: [`Lookup`]. Case-insensitive; a name
    /// outside the zone (or not a valid name) is [`Lookup::NxDomain`].
    /// A hash probe for a name that exists, one more for each ancestor
    /// tried otherwise; no allocation.
    pub fn lookup(&self, qname: &[u8]) -> Lookup<'_> {
        if !name::is_name(qname) || !name::is_at_or_below(qname, self.origin()) {
            return Lookup::NxDomain;
        }
        if let Some(node) = self.find(name::hash(qname), qname) {
            return match self.cut_of(node) {
                Some(cut) => Lookup::Referral { cut },
                None => Lookup::Found(node),
            };
        }
        // The closest encloser: the longest existing ancestor. The apex
        // exists, so the walk ends there at the latest.
        let mut encloser = qname;
        let (closest, hash) = loop {
            match name::parent(encloser) {
                Some(up) if up.len() >= self.origin().len() => encloser = up,
                _ => return Lookup::NxDomain,
            }
            let hash = name::hash(encloser);
            if let Some(node) = self.find(hash, encloser) {
                break (node, hash);
            }
        };
        if let Some(cut) = self.cut_of(closest) {
            return Lookup::Referral { cut };
        }
        // `*.<closest encloser>`, found without writing the name out.
        let wildcard = self.table.find(name::wildcard_hash(hash), |i| {
            let name = &self.nodes[i].name;
            name.starts_with(b"\x01*") && name::eq(&name[2..], &closest.name)
        });
        match wildcard {
            Some(i) => Lookup::Wildcard {
                source: &self.nodes[i],
            },
            None => Lookup::NxDomain,
        }
    }

    /// The node named `name_` whose name hashes to `hash`.
    fn find(&self, hash: u64, name_: &[u8]) -> Option<&Node> {
        let i = self
            .table
            .find(hash, |i| name::eq(&self.nodes[i].name, name_))?;
        Some(&self.nodes[i])
    }

    /// The node of `name` if it holds address records (A or AAAA), even
    /// below a zone cut: the additional section of a referral or of an
    /// NS, MX or SRV answer.
    pub fn glue(&self, name_: &[u8]) -> Option<&Node> {
        self.node(name_)
            .filter(|n| n.rrset(Rtype::A).is_some() || n.rrset(Rtype::AAAA).is_some())
    }

    /// Every record set for a zone transfer (RFC 5936): the SOA first, then
    /// every other set node by node in canonical order, glue and occluded
    /// data included. The caller sends the SOA again at the end.
    pub fn axfr(&self) -> impl Iterator<Item = (&[u8], &Rrset)> + '_ {
        let apex = &self.nodes[0];
        core::iter::once((&apex.name[..], self.soa())).chain(self.nodes.iter().flat_map(
            move |node| {
                node.rrsets
                    .iter()
                    .filter(move |r| !(core::ptr::eq(node, apex) && r.rtype == Rtype::SOA))
                    .map(move |r| (&node.name[..], r))
            },
        ))
    }

    fn cut_of(&self, node: &Node) -> Option<&Node> {
        (node.cut != NO_CUT).then(|| &self.nodes[node.cut as usize])
    }
}

impl Node {
    /// The name, in lowercase wire form.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// The set of this type, if the node has one.
    pub fn rrset(&self, rtype: Rtype) -> Option<&Rrset> {
        self.rrsets.iter().find(|r| r.rtype == rtype)
    }

    /// Every set of this node, ordered by type.
    pub fn rrsets(&self) -> &[Rrset] {
        &self.rrsets
    }

    /// Whether the node has no records (an empty non-terminal).
    pub fn is_empty_non_terminal(&self) -> bool {
        self.rrsets.is_empty()
    }
}

impl Rrset {
    /// The type.
    pub fn rtype(&self) -> Rtype {
        self.rtype
    }

    /// The TTL (the same for every record of the set, RFC 2181 5.2).
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// The number of records (at least 1).
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Always false: a set has at least one record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Each record's data, in uncompressed wire form, in canonical order
    /// (as octet strings).
    pub fn rdatas(&self) -> Rdatas<'_> {
        Rdatas { rest: &self.data }
    }

    /// Each record's RDLENGTH and RDATA back to back, as they go on the
    /// wire (names uncompressed): the bytes to copy after an owner, type,
    /// class and TTL.
    pub fn wire(&self) -> &[u8] {
        &self.data
    }
}

/// The record data of a set, one record at a time.
#[derive(Clone, Debug)]
pub struct Rdatas<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Rdatas<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let [hi, lo, rest @ ..] = self.rest else {
            return None;
        };
        let len = u16::from_be_bytes([*hi, *lo]) as usize;
        let (rdata, rest) = rest.split_at(len.min(rest.len()));
        self.rest = rest;
        Some(rdata)
    }
}
