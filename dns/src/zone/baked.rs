//! The baked form of [`Zones`]: compact bytes a build script writes and the
//! image carries as read-only data, parsed and checked at boot.
//!
//! Version 1, all numbers big-endian:
//!
//! ```text
//! "LDNSZONE" 1:u8 zones:u32
//!   zone:  class:u16 nodes:u32 node...          (canonical order, apex first)
//!   node:  name (uncompressed wire, lowercase) sets:u16 set...   (by type)
//!   set:   type:u16 ttl:u32 records:u16 bytes:u32 (rdlength:u16 rdata)...
//! ```
//!
//! The names and record data are borrowed from the bytes, not copied: a
//! node costs the heap its small index entry only. Every check of
//! [`Zone::from_records`] runs again on the parsed zone, so bytes that did
//! not come from [`Zones::to_baked`] are refused with an error, never a
//! panic.

use alloc::borrow::Cow;
use alloc::format;
use alloc::vec::Vec;

use super::index::{Node, Rrset, Zone, Zones, NO_CUT};
use super::name;
use super::ZoneError;
use crate::{Class, Rtype};

const MAGIC: &[u8; 8] = b"LDNSZONE";
const VERSION: u8 = 1;

impl Zones {
    /// Parses and checks baked zones, borrowing names and record data from
    /// `bytes` (the image's read-only data).
    pub fn from_baked(bytes: &'static [u8]) -> Result<Zones, ZoneError> {
        parse(bytes, Cow::Borrowed)
    }

    /// As [`Zones::from_baked`], for bytes that do not live forever: names
    /// and record data are copied.
    pub fn from_baked_copy(bytes: &[u8]) -> Result<Zones, ZoneError> {
        parse(bytes, |b| Cow::Owned(b.to_vec()))
    }

    /// The baked form of these zones (for a build script).
    pub fn to_baked(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(self.zones.len() as u32).to_be_bytes());
        for zone in &self.zones {
            out.extend_from_slice(&zone.class.0.to_be_bytes());
            out.extend_from_slice(&(zone.nodes.len() as u32).to_be_bytes());
            for node in &zone.nodes {
                out.extend_from_slice(&node.name);
                out.extend_from_slice(&(node.rrsets.len() as u16).to_be_bytes());
                for set in &node.rrsets {
                    out.extend_from_slice(&set.rtype.0.to_be_bytes());
                    out.extend_from_slice(&set.ttl.to_be_bytes());
                    out.extend_from_slice(&set.count.to_be_bytes());
                    out.extend_from_slice(&(set.data.len() as u32).to_be_bytes());
                    out.extend_from_slice(&set.data);
                }
            }
        }
        out
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn error(&self, what: &str) -> ZoneError {
        ZoneError::at(
            b"\x00",
            None,
            format!("baked zone data, byte {}: {what}", self.at),
        )
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], ZoneError> {
        let taken = self
            .bytes
            .get(self.at..)
            .and_then(|rest| rest.get(..len))
            .ok_or_else(|| self.error(&format!("{what} is cut short")))?;
        self.at += len;
        Ok(taken)
    }

    fn u16(&mut self, what: &str) -> Result<u16, ZoneError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ZoneError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn name(&mut self) -> Result<&'a [u8], ZoneError> {
        let rest = self.bytes.get(self.at..).unwrap_or_default();
        let len = name::name_len(rest).map_err(|e| self.error(&format!("a node's name: {e}")))?;
        self.take(len, "a name")
    }

    /// A capacity for `count` items of at least `least` bytes each that
    /// the remaining bytes can hold (a lying count allocates nothing big).
    fn capacity(&self, count: u32, least: usize) -> usize {
        (count as usize).min(self.bytes.len().saturating_sub(self.at) / least)
    }
}

fn parse<'a>(
    bytes: &'a [u8],
    keep: impl Fn(&'a [u8]) -> Cow<'static, [u8]>,
) -> Result<Zones, ZoneError> {
    let mut c = Cursor { bytes, at: 0 };
    if c.take(8, "the magic number")? != MAGIC {
        return Err(c.error("not baked zones (the magic number is not LDNSZONE)"));
    }
    let version = c.take(1, "the version")?[0];
    if version != VERSION {
        return Err(c.error(&format!(
            "format version {version}, but this build reads version {VERSION}: rebuild the image"
        )));
    }
    let zone_count = c.u32("the number of zones")?;
    let mut zones = Vec::with_capacity(c.capacity(zone_count, 6));
    for _ in 0..zone_count {
        let class = Class(c.u16("a zone's class")?);
        let node_count = c.u32("a zone's number of names")?;
        let mut nodes = Vec::with_capacity(c.capacity(node_count, 3));
        for _ in 0..node_count {
            let node_name = keep(c.name()?);
            let set_count = c.u16("a node's number of sets")?;
            let mut rrsets = Vec::with_capacity(c.capacity(set_count.into(), 12));
            for _ in 0..set_count {
                let rtype = Rtype(c.u16("a set's type")?);
                let ttl = c.u32("a set's TTL")?;
                let count = c.u16("a set's number of records")?;
                let len = c.u32("a set's length")?;
                let data = keep(c.take(len as usize, "a set's records")?);
                rrsets.push(Rrset {
                    rtype,
                    ttl,
                    count,
                    data,
                });
            }
            nodes.push(Node {
                name: node_name,
                rrsets,
                cut: NO_CUT,
            });
        }
        zones.push(Zone::checked(class, nodes)?);
    }
    if c.at != bytes.len() {
        return Err(c.error("bytes after the last zone"));
    }
    Zones::new(zones)
}
