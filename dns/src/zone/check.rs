//! Building a zone from records, and the checks every zone passes, whether
//! built from records or read from baked bytes.

use alloc::borrow::Cow;
use alloc::vec::Vec;

use super::index::{Node, Rrset, Zone, NO_CUT};
use super::name;
use super::rdata;
use super::ZoneError;
use crate::{Class, Rtype};

/// One resource record, as a master-file reader or a test gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The owner, in wire form (any case).
    pub owner: Vec<u8>,
    /// The type.
    pub rtype: Rtype,
    /// The class.
    pub class: Class,
    /// The time to live, in seconds.
    pub ttl: u32,
    /// The record data, in uncompressed wire form.
    pub rdata: Vec<u8>,
}

impl Zone {
    /// Builds and checks a zone from its records.
    ///
    /// Owners are lowercased; record data keeps its case. The checks
    /// (errors name the owner and type):
    /// - every owner is a valid name at or below `origin`;
    /// - every record has the class of the zone's SOA (not ANY or NONE);
    /// - meta, query and DNAME types are refused; the data of A, AAAA, NS,
    ///   CNAME, SOA, PTR, MX, TXT, SRV, HINFO and CAA must be well formed;
    /// - exactly one SOA, at the apex; at least one NS at the apex;
    /// - a CNAME has no other data beside it, and is alone in its set;
    /// - a wildcard (`*.…`) has no NS.
    ///
    /// Duplicates (same owner, type and data) are dropped, as RFC 2181 5
    /// asks. Records of one set with different TTLs get the smallest of
    /// them (RFC 2181 5.2 calls differing TTLs deprecated; the smallest is
    /// never served past its time).
    pub fn from_records(origin: &[u8], records: Vec<Record>) -> Result<Zone, ZoneError> {
        if !name::is_name(origin) {
            return Err(ZoneError::at(
                origin,
                None,
                "the origin is not a valid name",
            ));
        }
        let origin = origin.to_ascii_lowercase();
        let class = records
            .iter()
            .find(|r| r.rtype == Rtype::SOA)
            .map(|r| r.class)
            .ok_or_else(|| ZoneError::at(&origin, Some(Rtype::SOA), "the zone has no SOA"))?;
        let mut records = records;
        for r in &mut records {
            let at = |why| ZoneError::at(&r.owner, Some(r.rtype), why);
            if !name::is_name(&r.owner) {
                return Err(at("the owner is not a valid name"));
            }
            r.owner.make_ascii_lowercase();
            if !name::is_at_or_below(&r.owner, &origin) {
                return Err(ZoneError::at(
                    &r.owner,
                    Some(r.rtype),
                    "the owner is outside the zone's origin",
                ));
            }
            if r.class != class {
                return Err(ZoneError::at(
                    &r.owner,
                    Some(r.rtype),
                    "the class differs from the SOA's",
                ));
            }
            rdata::type_allowed(r.rtype)
                .map_err(|why| ZoneError::at(&r.owner, Some(r.rtype), why))?;
            rdata::check(r.rtype, &r.rdata)
                .map_err(|why| ZoneError::at(&r.owner, Some(r.rtype), why))?;
        }
        records.sort_by(|a, b| {
            name::canonical_cmp(&a.owner, &b.owner)
                .then(a.rtype.cmp(&b.rtype))
                .then_with(|| a.rdata.cmp(&b.rdata))
        });
        records.dedup_by(|b, a| a.owner == b.owner && a.rtype == b.rtype && a.rdata == b.rdata);

        // Every name that exists: the owners and their ancestors down from
        // the apex (the empty non-terminals).
        let mut names: Vec<&[u8]> = Vec::with_capacity(records.len() + 1);
        names.push(&origin);
        for r in &records {
            let mut at: &[u8] = &r.owner;
            while at.len() > origin.len() {
                names.push(at);
                at = name::parent(at).unwrap_or(&origin);
            }
        }
        names.sort_by(|a, b| name::canonical_cmp(a, b));
        names.dedup();

        let mut nodes: Vec<Node> = names
            .iter()
            .map(|n| Node {
                name: Cow::Owned(n.to_vec()),
                rrsets: Vec::new(),
                cut: NO_CUT,
            })
            .collect();
        let mut node = 0;
        let mut records = records.iter().peekable();
        while let Some(first) = records.next() {
            while nodes[node].name[..] != first.owner[..] {
                node += 1;
            }
            let mut ttl = first.ttl;
            let mut count: u16 = 1;
            let mut data = Vec::new();
            push_rdata(&mut data, &first.rdata);
            while let Some(next) =
                records.next_if(|n| n.owner == first.owner && n.rtype == first.rtype)
            {
                ttl = ttl.min(next.ttl);
                count = count.checked_add(1).ok_or_else(|| {
                    ZoneError::at(
                        &first.owner,
                        Some(first.rtype),
                        "more than 65535 records in one set",
                    )
                })?;
                push_rdata(&mut data, &next.rdata);
            }
            nodes[node].rrsets.push(Rrset {
                rtype: first.rtype,
                ttl,
                count,
                data: Cow::Owned(data),
            });
        }
        Zone::checked(class, nodes)
    }

    /// Checks nodes (from records or from baked bytes) and indexes them.
    pub(super) fn checked(class: Class, mut nodes: Vec<Node>) -> Result<Zone, ZoneError> {
        if class == Class::ANY || class == Class(254) {
            return Err(ZoneError::at(
                b"\x00",
                None,
                "the class of zone data cannot be ANY or NONE",
            ));
        }
        let Some(apex) = nodes.first() else {
            return Err(ZoneError::at(b"\x00", None, "a zone without nodes"));
        };
        let origin = apex.name.to_vec();
        if !name::is_name(&origin) {
            return Err(ZoneError::at(
                &origin,
                None,
                "the origin is not a valid name",
            ));
        }
        if nodes.len() >= NO_CUT as usize {
            return Err(ZoneError::at(&origin, None, "too many names in one zone"));
        }
        let table = name::NameTable::new(nodes.iter().map(|n| &n.name[..]));
        for i in 0..nodes.len() {
            let node = &nodes[i];
            let at = |rtype, why| ZoneError::at(&node.name, rtype, why);
            if !name::is_name(&node.name) || node.name.iter().any(u8::is_ascii_uppercase) {
                return Err(at(None, "not a valid lowercase name"));
            }
            if !name::is_at_or_below(&node.name, &origin) {
                return Err(at(None, "the owner is outside the zone's origin"));
            }
            if i > 0 && name::canonical_cmp(&nodes[i - 1].name, &node.name).is_ge() {
                return Err(at(None, "names out of canonical order, or twice"));
            }
            for pair in node.rrsets.windows(2) {
                if pair[0].rtype >= pair[1].rtype {
                    return Err(at(Some(pair[1].rtype), "sets out of type order, or twice"));
                }
            }
            for set in &node.rrsets {
                check_rrset(set).map_err(|why| at(Some(set.rtype), why))?;
            }
            let has = |t| node.rrset(t).is_some();
            if has(Rtype::CNAME) && node.rrsets.len() > 1 {
                return Err(at(
                    Some(Rtype::CNAME),
                    "a CNAME cannot have other data beside it",
                ));
            }
            if node.rrset(Rtype::CNAME).is_some_and(|s| s.count > 1) {
                return Err(at(Some(Rtype::CNAME), "a name can have only one CNAME"));
            }
            if i == 0 {
                match node.rrset(Rtype::SOA) {
                    None => return Err(at(Some(Rtype::SOA), "the zone has no SOA at its apex")),
                    Some(s) if s.count != 1 => {
                        return Err(at(Some(Rtype::SOA), "the zone has more than one SOA"))
                    }
                    Some(_) => {}
                }
                if !has(Rtype::NS) {
                    return Err(at(Some(Rtype::NS), "the zone has no NS at its apex"));
                }
                continue;
            }
            if has(Rtype::SOA) {
                return Err(at(
                    Some(Rtype::SOA),
                    "a SOA below the apex (a zone has one SOA, at its apex)",
                ));
            }
            if node.name.starts_with(b"\x01*") && has(Rtype::NS) {
                return Err(at(Some(Rtype::NS), "a wildcard cannot be a delegation"));
            }
            let parent = name::parent(&node.name).unwrap_or(b"\x00");
            let up = table.find(name::hash(parent), |j| name::eq(&nodes[j].name, parent));
            let Some(up) = up.filter(|&up| up < i) else {
                return Err(at(
                    None,
                    "its parent name is missing (empty non-terminals need nodes)",
                ));
            };
            // The highest cut rules: data below it belongs to the child zone.
            let cut = match nodes[up].cut {
                NO_CUT if has(Rtype::NS) => i as u32,
                inherited => inherited,
            };
            nodes[i].cut = cut;
        }
        let soa = nodes[0]
            .rrsets
            .iter()
            .position(|r| r.rtype == Rtype::SOA)
            .unwrap_or(0);
        Ok(Zone {
            class,
            nodes,
            soa,
            table,
        })
    }
}

fn push_rdata(data: &mut Vec<u8>, rdata: &[u8]) {
    // rdata::check refused anything longer than 65535 bytes.
    data.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    data.extend_from_slice(rdata);
}

/// A set's stored form: `count` length-prefixed records filling the data,
/// each well formed, in strictly increasing order (so no duplicates).
fn check_rrset(set: &Rrset) -> Result<(), &'static str> {
    rdata::type_allowed(set.rtype)?;
    if set.count == 0 {
        return Err("an empty set");
    }
    let mut rest: &[u8] = &set.data;
    let mut previous: Option<&[u8]> = None;
    for _ in 0..set.count {
        let [hi, lo, tail @ ..] = rest else {
            return Err("record data cut short");
        };
        let len = u16::from_be_bytes([*hi, *lo]) as usize;
        let rdata = tail.get(..len).ok_or("record data cut short")?;
        rdata::check(set.rtype, rdata)?;
        if previous.is_some_and(|p| p >= rdata) {
            return Err("records out of order, or twice");
        }
        previous = Some(rdata);
        rest = &tail[len..];
    }
    if rest.is_empty() {
        Ok(())
    } else {
        Err("bytes after the last record of a set")
    }
}
