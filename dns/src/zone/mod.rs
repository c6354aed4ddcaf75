//! Authoritative zone data: read from RFC 1035 master files at build time,
//! checked, baked into the image, and indexed for lookups at run time.
//!
//! [`Zones`] holds every zone a server answers for; [`Zones::find`] picks
//! the zone of a query name (the longest origin above it) and
//! [`Zone::lookup`] says what the name is there: [`Lookup::Found`],
//! [`Lookup::Wildcard`], [`Lookup::Referral`] or [`Lookup::NxDomain`].
//! Nodes are kept in canonical order (RFC 4034 6.1: the transfer order,
//! and the checks walk it) and found through a hash table of their names
//! built at boot: a lookup of a name that exists is one hash of the name
//! and one probe; otherwise one more per ancestor tried. It allocates
//! nothing. The data is immutable once built.
//!
//! ```
//! use lamina_dns::zone::{Lookup, Record, Zone, Zones};
//! use lamina_dns::{Class, Rtype};
//!
//! let rr = |owner: &[u8], rtype, rdata: &[u8]| Record {
//!     owner: owner.to_vec(), rtype, class: Class::IN, ttl: 3600, rdata: rdata.to_vec(),
//! };
//! let mut soa = b"\x02ns\x07example\x00\x04host\x07example\x00".to_vec();
//! soa.extend_from_slice(&[0, 0, 0, 1, 0, 0, 14, 16, 0, 0, 3, 132, 0, 9, 58, 128, 0, 0, 1, 44]);
//! let zone = Zone::from_records(b"\x07example\x00", vec![
//!     rr(b"\x07example\x00", Rtype::SOA, &soa),
//!     rr(b"\x07example\x00", Rtype::NS, b"\x02ns\x07example\x00"),
//!     rr(b"\x02ns\x07example\x00", Rtype::A, &[192, 0, 2, 1]),
//!     rr(b"\x01*\x07example\x00", Rtype::TXT, b"\x04any!"),
//! ]).unwrap();
//! let zones = Zones::new(vec![zone]).unwrap();
//! // The baked form is what an image carries; from_baked checks it again.
//! let baked: &'static [u8] = Vec::leak(zones.to_baked());
//! let zones = Zones::from_baked(baked).unwrap();
//!
//! let zone = zones.find(b"\x03WWW\x07example\x00").unwrap();
//! assert!(matches!(zone.lookup(b"\x02ns\x07example\x00"), Lookup::Found(n) if n.rrset(Rtype::A).is_some()));
//! assert!(matches!(zone.lookup(b"\x03www\x07example\x00"), Lookup::Wildcard { .. }));
//! assert!(zones.find(b"\x03org\x00").is_none());
//! ```
//!
//! Zone cuts: a node below the apex holding NS records is a delegation;
//! every name at or below it (the highest one, if several nest) is a
//! [`Lookup::Referral`] to it, whatever the type asked: DS at the cut is
//! the caller's business (the cut node is given; this server does not sign
//! zones). Data below a cut is kept for [`Zone::glue`] and [`Zone::axfr`].

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::fmt;

#[cfg(feature = "zonefile")]
mod bake;
mod baked;
mod check;
mod index;
pub mod name;
pub mod rdata;
#[cfg(feature = "zonefile")]
mod text;
#[cfg(feature = "zonefile")]
mod text_rdata;

#[cfg(feature = "zonefile")]
pub use bake::{bake, read_dir};
pub use check::Record;
pub use index::{Lookup, Node, Rdatas, Rrset, Zone, Zones};
#[cfg(feature = "zonefile")]
pub use text::{read_records, read_zone, ReadError};

use crate::Rtype;

/// Why zone data was refused: the name (and type) concerned, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneError {
    /// The owner (or origin) concerned, in wire form; the root for errors
    /// about baked bytes as a whole.
    pub name: Vec<u8>,
    /// The type concerned, if one is.
    pub rtype: Option<Rtype>,
    /// What is wrong.
    pub reason: Cow<'static, str>,
}

impl ZoneError {
    pub(crate) fn at(
        name: &[u8],
        rtype: Option<Rtype>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        ZoneError {
            name: name.to_vec(),
            rtype,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ZoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", name::Display(&self.name))?;
        if let Some(rtype) = self.rtype {
            write!(f, " {rtype}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

#[cfg(test)]
mod tests;
#[cfg(all(test, feature = "zonefile"))]
mod text_tests;
