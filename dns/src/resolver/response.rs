//! What a response says about a name and a type: the CNAME chain it gives
//! from the name asked, then the records at the chain's end, or that the
//! end has none of the type (NODATA) or does not exist (NXDOMAIN), with the
//! negative TTL of RFC 2308 (the lesser of the SOA's TTL and its MINIMUM);
//! or that the chain leaves what this server answers, so the last name must
//! be asked again.
//!
//! Only answer-section records of class IN that lie on the chain from the
//! name asked are taken: anything else in a response is not believed.

use alloc::vec;
use alloc::vec::Vec;

use super::ResolveError;
use crate::types::{Class, Rcode, Rtype};
use crate::wire::{Message, Rdata, Section, MAX_NAME_LEN};

/// One step of a CNAME chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// The alias, lowercase wire form.
    pub owner: Vec<u8>,
    /// What it stands for, lowercase wire form.
    pub target: Vec<u8>,
    /// The CNAME record's TTL.
    pub ttl: u32,
}

/// What the response says about the end of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The records there (data in uncompressed wire form) and the least
    /// TTL among them.
    Records {
        /// Each record's data.
        rdatas: Vec<Vec<u8>>,
        /// Their TTL.
        ttl: u32,
    },
    /// The name exists without records of the type; the negative TTL, if
    /// the response had an SOA to take it from.
    NoData {
        /// RFC 2308's negative TTL.
        ttl: Option<u32>,
    },
    /// The name does not exist.
    NxDomain {
        /// RFC 2308's negative TTL.
        ttl: Option<u32>,
    },
    /// The response says nothing of the chain's last name (an
    /// authoritative server whose zone the alias leaves): ask for it.
    Incomplete,
}

/// A response, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreted {
    /// The CNAME chain followed from the name asked, in order.
    pub chain: Vec<Alias>,
    /// The name at the chain's end (the name asked when there is no
    /// chain), lowercase wire form.
    pub name: Vec<u8>,
    /// What is there.
    pub outcome: Outcome,
}

/// A record of the answer section, names decompressed.
struct Answer {
    owner: Vec<u8>,
    rtype: Rtype,
    ttl: u32,
    data: Vec<u8>,
}

/// Decompresses `name` into lowercase wire form.
fn lowercase(name: &crate::wire::Name<'_>) -> Vec<u8> {
    let mut out = [0u8; MAX_NAME_LEN];
    let len = name.write_wire_lowercase(&mut out);
    out[..len].to_vec()
}

/// Reads `response` (already matched to the query for `qname_lower` and
/// `qtype`, with rcode NOERROR or NXDOMAIN). `max_chain` bounds the CNAME
/// steps taken. What the resolver does with every response; public for
/// the fuzz target and for programs that ask servers themselves.
pub fn interpret(
    response: &[u8],
    qname_lower: &[u8],
    qtype: Rtype,
    max_chain: usize,
) -> Result<Interpreted, ResolveError> {
    let message = Message::new_checked(response).map_err(|_| ResolveError::Malformed)?;
    let mut answers = Vec::new();
    let mut soa_ttl = None;
    for record in message.records() {
        let record = record.map_err(|_| ResolveError::Malformed)?;
        if record.class != Class::IN {
            continue;
        }
        match record.section {
            Section::Answer => {
                let data = record.data().map_err(|_| ResolveError::Malformed)?;
                // Decompressed, the data grows by at most two whole names
                // (an SOA's; the other types hold one at most).
                let mut uncompressed = vec![0u8; record.rdata().len() + 2 * MAX_NAME_LEN];
                let len = data
                    .emit(&mut uncompressed)
                    .ok_or(ResolveError::Malformed)?;
                uncompressed.truncate(len);
                answers.push(Answer {
                    owner: lowercase(&record.name),
                    rtype: record.rtype,
                    ttl: record.ttl,
                    data: uncompressed,
                });
            }
            Section::Authority if record.rtype == Rtype::SOA => {
                if let Ok(Rdata::Soa { minimum, .. }) = record.data() {
                    soa_ttl = Some(record.ttl.min(minimum));
                }
            }
            _ => {}
        }
    }
    let mut name = qname_lower.to_vec();
    let mut chain = Vec::new();
    loop {
        let at = name.as_slice();
        let at_name = |rtype: Rtype| {
            answers
                .iter()
                .filter(move |a| a.rtype == rtype && a.owner == at)
        };
        let records: Vec<&Answer> = at_name(qtype).collect();
        if !records.is_empty() {
            let ttl = records.iter().map(|a| a.ttl).min().unwrap_or(0);
            let rdatas = records.into_iter().map(|a| a.data.clone()).collect();
            return Ok(Interpreted {
                chain,
                name,
                outcome: Outcome::Records { rdatas, ttl },
            });
        }
        let alias = match qtype {
            Rtype::CNAME => None,
            _ => at_name(Rtype::CNAME).next(),
        };
        let Some(alias) = alias else { break };
        if chain.len() == max_chain {
            return Err(ResolveError::ChainTooLong);
        }
        // A CNAME's data is one name; lowercase it as keys are.
        let target = alias.data.to_ascii_lowercase();
        if target == qname_lower || chain.iter().any(|a: &Alias| a.owner == target) {
            return Err(ResolveError::ChainTooLong);
        }
        let ttl = alias.ttl;
        chain.push(Alias {
            owner: core::mem::replace(&mut name, target.clone()),
            target,
            ttl,
        });
    }
    let outcome = match message.rcode() {
        Rcode::NXDOMAIN => Outcome::NxDomain { ttl: soa_ttl },
        _ if chain.is_empty() || soa_ttl.is_some() => Outcome::NoData { ttl: soa_ttl },
        _ => Outcome::Incomplete,
    };
    Ok(Interpreted {
        chain,
        name,
        outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MessageBuilder;

    const WWW: &[u8] = b"\x03www\x07example\x00";
    const WEB: &[u8] = b"\x03web\x07example\x00";
    const HOST: &[u8] = b"\x04host\x07example\x00";
    const APEX: &[u8] = b"\x07example\x00";

    /// A response to `qname`/`qtype` with `rcode`, the `answers` (owner,
    /// type, TTL, data) and, if given, an SOA with TTL and MINIMUM.
    fn response(
        qname: &[u8],
        qtype: Rtype,
        rcode: Rcode,
        answers: &[(&[u8], Rtype, u32, &[u8])],
        soa: Option<(u32, u32)>,
    ) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let mut builder = MessageBuilder::new(&mut buf).unwrap();
        builder.header().set_flags(0x8180);
        builder.question(qname, qtype, Class::IN).unwrap();
        for &(owner, rtype, ttl, data) in answers {
            builder
                .record(Section::Answer, owner, rtype, Class::IN, ttl, data)
                .unwrap();
        }
        if let Some((ttl, minimum)) = soa {
            let mut data = Vec::new();
            data.extend_from_slice(b"\x02ns\x07example\x00\x05admin\x07example\x00");
            for value in [1u32, 3600, 600, 86400, minimum] {
                data.extend_from_slice(&value.to_be_bytes());
            }
            builder
                .record(Section::Authority, APEX, Rtype::SOA, Class::IN, ttl, &data)
                .unwrap();
        }
        builder.set_rcode(rcode);
        let len = builder.finish();
        buf.truncate(len);
        buf
    }

    #[test]
    fn a_chain_is_followed_to_its_records_case_folded() {
        let bytes = response(
            b"\x03WWW\x07example\x00",
            Rtype::A,
            Rcode::NOERROR,
            &[
                (
                    b"\x03WWW\x07example\x00",
                    Rtype::CNAME,
                    300,
                    b"\x03Web\x07example\x00",
                ),
                (WEB, Rtype::CNAME, 200, HOST),
                (HOST, Rtype::A, 60, &[192, 0, 2, 1]),
                (HOST, Rtype::A, 50, &[192, 0, 2, 2]),
                // Not on the chain: not believed.
                (b"\x05other\x07example\x00", Rtype::A, 60, &[192, 0, 2, 9]),
            ],
            None,
        );
        let read = interpret(&bytes, WWW, Rtype::A, 8).unwrap();
        assert_eq!(read.name, HOST);
        assert_eq!(
            read.chain,
            [
                Alias {
                    owner: WWW.to_vec(),
                    target: WEB.to_vec(),
                    ttl: 300
                },
                Alias {
                    owner: WEB.to_vec(),
                    target: HOST.to_vec(),
                    ttl: 200
                },
            ]
        );
        assert_eq!(
            read.outcome,
            Outcome::Records {
                rdatas: vec![vec![192, 0, 2, 1], vec![192, 0, 2, 2]],
                ttl: 50
            }
        );
    }

    #[test]
    fn negative_answers_take_the_lesser_of_the_soa_ttl_and_minimum() {
        let nx = response(WWW, Rtype::A, Rcode::NXDOMAIN, &[], Some((3600, 300)));
        let read = interpret(&nx, WWW, Rtype::A, 8).unwrap();
        assert_eq!(read.outcome, Outcome::NxDomain { ttl: Some(300) });
        let nodata = response(WWW, Rtype::AAAA, Rcode::NOERROR, &[], Some((30, 300)));
        let read = interpret(&nodata, WWW, Rtype::AAAA, 8).unwrap();
        assert_eq!(read.outcome, Outcome::NoData { ttl: Some(30) });
        let bare = response(WWW, Rtype::AAAA, Rcode::NOERROR, &[], None);
        let read = interpret(&bare, WWW, Rtype::AAAA, 8).unwrap();
        assert_eq!(read.outcome, Outcome::NoData { ttl: None });
    }

    #[test]
    fn a_chain_leaving_the_response_is_incomplete_and_loops_are_refused() {
        let partial = response(
            WWW,
            Rtype::A,
            Rcode::NOERROR,
            &[(WWW, Rtype::CNAME, 60, HOST)],
            None,
        );
        let read = interpret(&partial, WWW, Rtype::A, 8).unwrap();
        assert_eq!(
            (read.name.as_slice(), read.outcome),
            (HOST, Outcome::Incomplete)
        );
        // Asked for the CNAME itself: that is the answer, not followed.
        let read = interpret(&partial, WWW, Rtype::CNAME, 8).unwrap();
        assert_eq!(
            read.outcome,
            Outcome::Records {
                rdatas: vec![HOST.to_vec()],
                ttl: 60
            }
        );
        let looped = response(
            WWW,
            Rtype::A,
            Rcode::NOERROR,
            &[(WWW, Rtype::CNAME, 60, WEB), (WEB, Rtype::CNAME, 60, WWW)],
            None,
        );
        assert_eq!(
            interpret(&looped, WWW, Rtype::A, 8),
            Err(ResolveError::ChainTooLong)
        );
        assert_eq!(
            interpret(&partial, WWW, Rtype::A, 0),
            Err(ResolveError::ChainTooLong)
        );
    }

    #[test]
    fn a_malformed_response_is_refused() {
        let mut bytes = response(
            WWW,
            Rtype::A,
            Rcode::NOERROR,
            &[(WWW, Rtype::A, 60, &[192, 0, 2, 1])],
            None,
        );
        bytes.truncate(bytes.len() - 2);
        assert_eq!(
            interpret(&bytes, WWW, Rtype::A, 8),
            Err(ResolveError::Malformed)
        );
    }
}
