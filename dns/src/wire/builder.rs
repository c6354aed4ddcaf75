//! Writing a message into a caller's buffer, without allocating.
//!
//! The builder writes the header, then questions, then records section by
//! section (answer, authority, additional: never back to an earlier one).
//! Names are compressed against a fixed table of [`COMPRESSION_ENTRIES`]
//! earlier label positions: owner names, and the names inside NS, CNAME,
//! SOA, PTR and MX data (the RFC 1035 types, RFC 3597 4; SRV and every other
//! type's data is written as given). Record data arrives uncompressed.
//!
//! A record that does not fit is not written at all and the call says so
//! ([`BuildError::NoSpace`]): the caller decides whether that means TC. A
//! [`Checkpoint`] lets it take back a whole RRset. With EDNS, room for the
//! OPT record is kept from the start, so it always fits.

use super::edns::{OptRepr, OPT_RECORD_LEN};
use super::header::{flags, Section, HEADER_LEN};
use super::message::Message;
use super::name::{Name, MAX_NAME_LEN};
use super::ParseError;
use crate::types::{Class, Rcode, Rtype};

/// How many earlier label positions the compression table holds. A
/// typical answer has a question, a few owners and a few names in data,
/// of two to four labels each; names written when the table is full are
/// still compressed against it, their own labels just cannot be pointed at.
pub const COMPRESSION_ENTRIES: usize = 64;

/// Why something could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildError {
    /// It does not fit in the buffer within the size limit (room for the
    /// OPT record kept). Nothing was written.
    NoSpace,
    /// A name given is not an uncompressed wire name.
    BadName(ParseError),
    /// Record data does not have its type's shape (for the types whose
    /// names are compressed).
    BadRdata,
    /// A question after records, or a record for a section before the
    /// current one.
    OutOfOrder,
    /// A section would hold more than 65535 entries.
    TooManyEntries,
}

/// A builder's state at one moment, to come back to with
/// [`MessageBuilder::rollback`].
#[derive(Debug, Clone, Copy)]
pub struct Checkpoint {
    len: usize,
    counts: [u16; 4],
    section: Section,
    names: usize,
}

/// Writes a message into a caller's buffer.
#[derive(Debug)]
pub struct MessageBuilder<'b> {
    buf: &'b mut [u8],
    len: usize,
    /// The most bytes the message may take.
    limit: usize,
    /// Kept for the OPT record.
    reserved: usize,
    counts: [u16; 4],
    section: Section,
    rcode: Rcode,
    opt: Option<OptRepr>,
    /// Offsets of labels written, to point at (all below 0x4000).
    names: [u16; COMPRESSION_ENTRIES],
    name_count: usize,
}

impl<'b> MessageBuilder<'b> {
    /// Starts a message in `buf` with a zero header: at most `buf.len()`
    /// bytes (and at most 65535). Fails if the buffer cannot hold a header.
    pub fn new(buf: &'b mut [u8]) -> Result<MessageBuilder<'b>, BuildError> {
        let header = buf.get_mut(..HEADER_LEN).ok_or(BuildError::NoSpace)?;
        header.fill(0);
        let limit = buf.len().min(usize::from(u16::MAX));
        Ok(MessageBuilder {
            buf,
            len: HEADER_LEN,
            limit,
            reserved: 0,
            counts: [0; 4],
            section: Section::Question,
            rcode: Rcode::NOERROR,
            opt: None,
            names: [0; COMPRESSION_ENTRIES],
            name_count: 0,
        })
    }

    /// Lowers the size limit (a UDP requester's payload size). Never below
    /// what is already written, nor above the buffer.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.clamp(
            self.len + self.reserved,
            self.buf.len().min(usize::from(u16::MAX)),
        );
    }

    /// The size limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The header, to set the identifier and flags. The counts and the
    /// rcode are the builder's: [`MessageBuilder::finish`] writes them.
    pub fn header(&mut self) -> Message<&mut [u8]> {
        Message::new_unchecked(&mut self.buf[..HEADER_LEN])
    }

    /// The response code, all 12 bits (the upper 8 go in the OPT record,
    /// so codes over 15 need [`MessageBuilder::set_edns`]).
    pub fn set_rcode(&mut self, rcode: Rcode) {
        self.rcode = rcode;
    }

    /// Adds an OPT record (written last, by [`MessageBuilder::finish`]),
    /// keeping its room from now on. Fails if that room is not there.
    pub fn set_edns(&mut self, opt: OptRepr) -> Result<(), BuildError> {
        if self.opt.is_none() {
            if self.len + self.reserved + OPT_RECORD_LEN > self.limit {
                return Err(BuildError::NoSpace);
            }
            self.reserved += OPT_RECORD_LEN;
        }
        self.opt = Some(opt);
        Ok(())
    }

    /// The bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing but the header is written.
    pub fn is_empty(&self) -> bool {
        self.len == HEADER_LEN
    }

    /// The number of entries written in a section.
    pub fn count(&self, section: Section) -> u16 {
        self.counts[section.index()]
    }

    /// The current state, to [`MessageBuilder::rollback`] to.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            len: self.len,
            counts: self.counts,
            section: self.section,
            names: self.name_count,
        }
    }

    /// Takes back everything written since `checkpoint`.
    pub fn rollback(&mut self, checkpoint: Checkpoint) {
        self.len = checkpoint.len;
        self.counts = checkpoint.counts;
        self.section = checkpoint.section;
        self.name_count = checkpoint.names;
    }

    /// Writes a question. `name` is uncompressed and written as given (case
    /// kept), compressed against earlier names.
    pub fn question(&mut self, name: &[u8], qtype: Rtype, qclass: Class) -> Result<(), BuildError> {
        if self.section != Section::Question {
            return Err(BuildError::OutOfOrder);
        }
        Name::from_wire(name).map_err(BuildError::BadName)?;
        self.atomically(Section::Question, |b| {
            b.name(name)?;
            b.put(&qtype.0.to_be_bytes())?;
            b.put(&qclass.0.to_be_bytes())
        })
    }

    /// Writes a record into `section` (not before the current one). The
    /// owner and the data are uncompressed; an owner equal to an earlier
    /// name (the question's, say) becomes a pointer to it, so it takes the
    /// earlier one's case.
    pub fn record(
        &mut self,
        section: Section,
        owner: &[u8],
        rtype: Rtype,
        class: Class,
        ttl: u32,
        rdata: &[u8],
    ) -> Result<(), BuildError> {
        if section < self.section || section == Section::Question {
            return Err(BuildError::OutOfOrder);
        }
        Name::from_wire(owner).map_err(BuildError::BadName)?;
        self.atomically(section, |b| {
            b.name(owner)?;
            b.put(&rtype.0.to_be_bytes())?;
            b.put(&class.0.to_be_bytes())?;
            b.put(&ttl.to_be_bytes())?;
            let length_at = b.len;
            b.put(&[0, 0])?;
            b.rdata(rtype, rdata)?;
            let length = u16::try_from(b.len - length_at - 2).map_err(|_| BuildError::NoSpace)?;
            b.buf[length_at..length_at + 2].copy_from_slice(&length.to_be_bytes());
            Ok(())
        })
    }

    /// Writes the counts, the rcode and the OPT record; returns the
    /// message's length.
    pub fn finish(mut self) -> usize {
        if let Some(opt) = self.opt {
            // The room was kept: this cannot fail.
            if opt.emit(self.rcode, &mut self.buf[self.len..]).is_some() {
                self.len += OPT_RECORD_LEN;
                self.counts[Section::Additional.index()] += 1;
            }
        }
        let counts = self.counts;
        let rcode = self.rcode;
        let mut header = self.header();
        for (index, count) in counts.into_iter().enumerate() {
            header.set_count(Section::from_index(index), count);
        }
        header.set_rcode(rcode);
        self.len
    }

    /// Sets TC (a convenience for [`MessageBuilder::header`]).
    pub fn set_truncated(&mut self) {
        self.header().set_flag(flags::TC, true);
    }

    /// Runs `write` for one entry of `section`; on failure puts everything
    /// back as it was.
    fn atomically(
        &mut self,
        section: Section,
        write: impl FnOnce(&mut Self) -> Result<(), BuildError>,
    ) -> Result<(), BuildError> {
        if self.counts[section.index()] == u16::MAX
            || section == Section::Additional
                && self.opt.is_some()
                && self.counts[3] == u16::MAX - 1
        {
            return Err(BuildError::TooManyEntries);
        }
        let checkpoint = self.checkpoint();
        match write(self) {
            Ok(()) => {
                self.section = section;
                self.counts[section.index()] += 1;
                Ok(())
            }
            Err(error) => {
                self.rollback(checkpoint);
                Err(error)
            }
        }
    }

    /// Appends bytes within the limit.
    fn put(&mut self, bytes: &[u8]) -> Result<(), BuildError> {
        let end = self.len + bytes.len();
        if end + self.reserved > self.limit {
            return Err(BuildError::NoSpace);
        }
        self.buf[self.len..end].copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// Writes record data, compressing the names in the RFC 1035 types.
    fn rdata(&mut self, rtype: Rtype, rdata: &[u8]) -> Result<(), BuildError> {
        // The end of the uncompressed name at `at`.
        let name_end = |at: usize| -> Result<usize, BuildError> {
            match Name::parse_uncompressed(rdata, at) {
                Ok((_, end)) => Ok(end),
                Err(_) => Err(BuildError::BadRdata),
            }
        };
        match rtype {
            Rtype::NS | Rtype::CNAME | Rtype::PTR => {
                if name_end(0)? != rdata.len() {
                    return Err(BuildError::BadRdata);
                }
                self.name(rdata)
            }
            Rtype::MX => {
                if rdata.len() < 2 || name_end(2)? != rdata.len() {
                    return Err(BuildError::BadRdata);
                }
                self.put(&rdata[..2])?;
                self.name(&rdata[2..])
            }
            Rtype::SOA => {
                let mname_end = name_end(0)?;
                let rname_end = name_end(mname_end)?;
                if rdata.len() - rname_end != 20 {
                    return Err(BuildError::BadRdata);
                }
                self.name(&rdata[..mname_end])?;
                self.name(&rdata[mname_end..rname_end])?;
                self.put(&rdata[rname_end..])
            }
            _ => self.put(rdata),
        }
    }

    /// Writes a checked uncompressed name: its labels up to the longest
    /// suffix written before, then a pointer to that (or the root byte).
    /// Remembers where its new labels are while the table has room.
    fn name(&mut self, wire: &[u8]) -> Result<(), BuildError> {
        let mut suffix = 0;
        let mut pointer = None;
        while wire.get(suffix).is_some_and(|&len| len != 0) {
            if let Some(offset) = self.find(&wire[suffix..]) {
                pointer = Some(offset);
                break;
            }
            suffix += 1 + usize::from(wire[suffix]);
        }
        let start = self.len;
        self.put(&wire[..suffix])?;
        match pointer {
            Some(offset) => self.put(&(0xc000 | offset).to_be_bytes())?,
            None => self.put(&[0])?,
        }
        let mut label = 0;
        while label < suffix && self.name_count < COMPRESSION_ENTRIES {
            // Pointers have 14 bits.
            let Ok(offset) = u16::try_from(start + label) else {
                break;
            };
            if offset >= 0x4000 {
                break;
            }
            self.names[self.name_count] = offset;
            self.name_count += 1;
            label += 1 + usize::from(wire[label]);
        }
        Ok(())
    }

    /// The offset of an earlier name equal to `suffix` (uncompressed,
    /// non-root), ignoring case.
    fn find(&self, suffix: &[u8]) -> Option<u16> {
        let written = &self.buf[..self.len];
        self.names[..self.name_count]
            .iter()
            .copied()
            .find(|&offset| written_equals(written, usize::from(offset), suffix))
    }
}

/// Whether the name at `at` in what the builder wrote (its own labels and
/// backward pointers) equals the checked uncompressed `name`, ignoring
/// case. Walks the builder's output directly: bounded, and panic-free
/// whatever the bytes.
fn written_equals(written: &[u8], mut at: usize, name: &[u8]) -> bool {
    let mut pos = 0;
    for _ in 0..MAX_NAME_LEN {
        let Some(&len) = written.get(at) else {
            return false;
        };
        if len & 0xc0 == 0xc0 {
            let Some(&low) = written.get(at + 1) else {
                return false;
            };
            at = usize::from(len & 0x3f) << 8 | usize::from(low);
            continue;
        }
        if name.get(pos) != Some(&len) {
            return false;
        }
        if len == 0 {
            return true;
        }
        let end = 1 + usize::from(len);
        match (written.get(at + 1..at + end), name.get(pos + 1..pos + end)) {
            (Some(theirs), Some(ours)) if theirs.eq_ignore_ascii_case(ours) => {}
            _ => return false,
        }
        at += end;
        pos += end;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::tests::{hex, DNSPYTHON_RESPONSE};
    use crate::wire::Rdata;
    use alloc::string::{String, ToString};
    use alloc::vec::Vec;

    const QNAME: &[u8] = b"\x03www\x07Example\x03com\x00";

    fn records(bytes: &[u8]) -> Vec<String> {
        let message = Message::new_checked(bytes).unwrap();
        message.records().map(|r| r.unwrap().to_string()).collect()
    }

    #[test]
    fn compresses_owners_and_names_in_data() {
        let mut buf = [0u8; 512];
        let mut b = MessageBuilder::new(&mut buf).unwrap();
        b.header().set_id(0x1234);
        b.header().set_flag(flags::QR | flags::AA, true);
        b.question(QNAME, Rtype::A, Class::IN).unwrap();
        b.record(
            Section::Answer,
            b"\x03www\x07example\x03com\x00",
            Rtype::CNAME,
            Class::IN,
            300,
            b"\x03web\x07example\x03com\x00",
        )
        .unwrap();
        b.record(
            Section::Answer,
            b"\x03web\x07example\x03com\x00",
            Rtype::A,
            Class::IN,
            300,
            &[192, 0, 2, 1],
        )
        .unwrap();
        b.record(
            Section::Authority,
            b"\x07example\x03com\x00",
            Rtype::NS,
            Class::IN,
            3600,
            b"\x03ns1\x07example\x03com\x00",
        )
        .unwrap();
        let mut soa = b"\x03ns1\x07example\x03com\x00\x0ahostmaster\x07example\x03com\x00".to_vec();
        soa.extend_from_slice(&[0; 20]);
        b.record(
            Section::Additional,
            b"\x07example\x03com\x00",
            Rtype::SOA,
            Class::IN,
            60,
            &soa,
        )
        .unwrap();
        b.record(
            Section::Additional,
            b"\x03sip\x07example\x03com\x00",
            Rtype::SRV,
            Class::IN,
            60,
            b"\x00\x01\x00\x02\x00\x03\x03sip\x07example\x03com\x00",
        )
        .unwrap();
        b.record(
            Section::Additional,
            b"\x07example\x03com\x00",
            Rtype::MX,
            Class::IN,
            60,
            b"\x00\x0a\x04mail\x07example\x03com\x00",
        )
        .unwrap();
        b.set_edns(OptRepr {
            udp_payload_size: 1232,
            version: 0,
            dnssec_ok: true,
        })
        .unwrap();
        let len = b.finish();
        let out = &buf[..len];
        // The owner equal to the question is a pointer to offset 12.
        let answer = 12 + QNAME.len() + 4;
        assert_eq!(out[answer..answer + 2], [0xc0, 12]);
        assert_eq!(
            records(out),
            [
                "www.Example.com. 300 IN CNAME web.Example.com.",
                "web.Example.com. 300 IN A 192.0.2.1",
                "Example.com. 3600 IN NS ns1.Example.com.",
                "Example.com. 60 IN SOA ns1.Example.com. hostmaster.Example.com. 0 0 0 0 0",
                "sip.Example.com. 60 IN SRV 1 2 3 sip.example.com.",
                "Example.com. 60 IN MX 10 mail.Example.com.",
                ". 32768 CLASS1232 OPT \\# 0",
            ]
        );
        let message = Message::new_checked(out).unwrap();
        assert_eq!(message.id(), 0x1234);
        assert_eq!(message.count(Section::Additional), 4);
        assert!(message.edns().unwrap().unwrap().dnssec_ok());
        // Every name in data that may be compressed was; SRV's was not.
        let srv = message.records().nth(4).unwrap().unwrap();
        assert_eq!(
            srv.rdata(),
            b"\x00\x01\x00\x02\x00\x03\x03sip\x07example\x03com\x00"
        );
        let ns = message.records().nth(2).unwrap().unwrap();
        assert_eq!(ns.rdata(), [3, b'n', b's', b'1', 0xc0, 16]);
        assert_eq!(len, 203);
    }

    #[test]
    fn rebuilds_dnspythons_response_to_the_same_text() {
        let bytes = hex(DNSPYTHON_RESPONSE);
        let original = Message::new_checked(&bytes[..]).unwrap();
        let mut buf = [0u8; 1024];
        let mut b = MessageBuilder::new(&mut buf).unwrap();
        b.header().set_id(original.id());
        b.header().set_flags(original.flags());
        let mut wire = [0u8; MAX_NAME_LEN];
        for question in original.questions() {
            let question = question.unwrap();
            let len = question.name.write_wire(&mut wire);
            b.question(&wire[..len], question.qtype, question.qclass)
                .unwrap();
        }
        for record in original.records() {
            let record = record.unwrap();
            if record.rtype == Rtype::OPT {
                let opt = original.edns().unwrap().unwrap();
                b.set_edns(OptRepr {
                    udp_payload_size: opt.udp_payload_size,
                    version: 0,
                    dnssec_ok: false,
                })
                .unwrap();
                continue;
            }
            let len = record.name.write_wire(&mut wire);
            let data = uncompressed(&record.data().unwrap());
            b.record(
                record.section,
                &wire[..len],
                record.rtype,
                record.class,
                record.ttl,
                &data,
            )
            .unwrap();
        }
        let len = b.finish();
        assert_eq!(records(&buf[..len]), records(&bytes));
        // As tight as dnspython's compression.
        assert!(len <= bytes.len(), "{len} > {}", bytes.len());
    }

    /// Record data in uncompressed wire form (what a zone would hold).
    fn uncompressed(data: &Rdata<'_>) -> Vec<u8> {
        let mut out = alloc::vec![0u8; 65535];
        let len = data.emit(&mut out).unwrap();
        out.truncate(len);
        out
    }

    #[test]
    fn a_record_that_does_not_fit_is_not_written_and_opt_still_fits() {
        let mut buf = [0u8; 512];
        let mut b = MessageBuilder::new(&mut buf).unwrap();
        b.set_limit(100);
        b.set_edns(OptRepr {
            udp_payload_size: 512,
            version: 0,
            dnssec_ok: false,
        })
        .unwrap();
        b.question(QNAME, Rtype::TXT, Class::IN).unwrap();
        let txt = [40u8; 41];
        // 12 + 21 (question) + 11 (OPT) = 44; each TXT record is 2 + 10 + 41 = 53.
        b.record(Section::Answer, QNAME, Rtype::TXT, Class::IN, 60, &txt)
            .unwrap();
        let before = b.len();
        assert_eq!(
            b.record(Section::Answer, QNAME, Rtype::TXT, Class::IN, 60, &txt),
            Err(BuildError::NoSpace)
        );
        assert_eq!(b.len(), before);
        assert_eq!(b.count(Section::Answer), 1);
        b.set_truncated();
        let len = b.finish();
        assert_eq!(len, 97);
        let message = Message::new_checked(&buf[..len]).unwrap();
        assert!(message.truncated());
        assert_eq!(message.records().count(), 2);
        assert!(message.edns().unwrap().is_some());
    }

    #[test]
    fn rollback_takes_back_a_whole_rrset_and_its_compression_entries() {
        let mut buf = [0u8; 512];
        let mut b = MessageBuilder::new(&mut buf).unwrap();
        b.question(QNAME, Rtype::NS, Class::IN).unwrap();
        let checkpoint = b.checkpoint();
        b.record(
            Section::Answer,
            QNAME,
            Rtype::NS,
            Class::IN,
            60,
            b"\x02ns\x04zone\x00",
        )
        .unwrap();
        b.rollback(checkpoint);
        assert_eq!(b.count(Section::Answer), 0);
        // `zone.` is not pointed at: the bytes it was in are gone.
        b.record(
            Section::Authority,
            b"\x04zone\x00",
            Rtype::NS,
            Class::IN,
            60,
            b"\x02ns\x04zone\x00",
        )
        .unwrap();
        let len = b.finish();
        assert_eq!(records(&buf[..len]), ["zone. 60 IN NS ns.zone."]);
    }

    #[test]
    fn refuses_bad_input_and_sections_out_of_order() {
        let mut buf = [0u8; 512];
        let mut b = MessageBuilder::new(&mut buf).unwrap();
        assert_eq!(
            b.question(b"\x03www", Rtype::A, Class::IN),
            Err(BuildError::BadName(ParseError::Truncated))
        );
        b.question(QNAME, Rtype::A, Class::IN).unwrap();
        assert_eq!(
            b.record(Section::Answer, QNAME, Rtype::NS, Class::IN, 1, b"\x02ns"),
            Err(BuildError::BadRdata)
        );
        assert_eq!(
            b.record(Section::Answer, QNAME, Rtype::MX, Class::IN, 1, b"\x00"),
            Err(BuildError::BadRdata)
        );
        assert_eq!(
            b.record(
                Section::Answer,
                QNAME,
                Rtype::SOA,
                Class::IN,
                1,
                b"\x00\x00\x00"
            ),
            Err(BuildError::BadRdata)
        );
        b.record(
            Section::Authority,
            QNAME,
            Rtype::A,
            Class::IN,
            1,
            &[1, 2, 3, 4],
        )
        .unwrap();
        assert_eq!(
            b.record(
                Section::Answer,
                QNAME,
                Rtype::A,
                Class::IN,
                1,
                &[1, 2, 3, 4]
            ),
            Err(BuildError::OutOfOrder)
        );
        assert_eq!(
            b.question(QNAME, Rtype::A, Class::IN),
            Err(BuildError::OutOfOrder)
        );
        assert_eq!(
            MessageBuilder::new(&mut [0u8; 11]).unwrap_err(),
            BuildError::NoSpace
        );
        let mut small = [0u8; 20];
        let mut b = MessageBuilder::new(&mut small).unwrap();
        let opt = OptRepr {
            udp_payload_size: 512,
            version: 0,
            dnssec_ok: false,
        };
        assert_eq!(b.set_edns(opt), Err(BuildError::NoSpace));
        assert_eq!(
            b.question(QNAME, Rtype::A, Class::IN),
            Err(BuildError::NoSpace)
        );
        assert_eq!(b.finish(), HEADER_LEN);
    }

    #[test]
    fn extended_rcodes_go_into_the_opt_record() {
        let mut buf = [0u8; 64];
        let mut b = MessageBuilder::new(&mut buf).unwrap();
        b.set_edns(OptRepr {
            udp_payload_size: 1232,
            version: 0,
            dnssec_ok: false,
        })
        .unwrap();
        b.set_rcode(Rcode::BADVERS);
        let len = b.finish();
        let message = Message::new_checked(&buf[..len]).unwrap();
        assert_eq!(message.rcode(), Rcode::NOERROR);
        assert_eq!(
            message.edns().unwrap().unwrap().rcode(message.rcode()),
            Rcode::BADVERS
        );
    }
}
