//! A view over a whole message: the header's fields, and iterators over its
//! questions and records that check each item before handing it out.

use core::fmt;

use super::edns::Opt;
use super::header::{field, flags, Section, HEADER_LEN};
use super::name::Name;
use super::rdata::Rdata;
use super::{read_u16, read_u32, ParseError};
use crate::types::{Class, Opcode, Rcode, Rtype};

/// A DNS message: a view over its bytes (smoltcp style). Made with
/// [`Message::new_checked`], every header accessor is panic-free; the
/// sections are read through [`Message::questions`] and
/// [`Message::records`], which check as they go.
#[derive(Debug, Clone)]
pub struct Message<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Message<T> {
    /// A view without checks: header accessors panic if the buffer is
    /// shorter than [`HEADER_LEN`].
    pub const fn new_unchecked(buffer: T) -> Message<T> {
        Message { buffer }
    }

    /// A view over a buffer that holds at least a header.
    pub fn new_checked(buffer: T) -> Result<Message<T>, ParseError> {
        let message = Message::new_unchecked(buffer);
        message.check_len()?;
        Ok(message)
    }

    /// Whether the buffer holds at least a header.
    pub fn check_len(&self) -> Result<(), ParseError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(ParseError::Truncated)
        } else {
            Ok(())
        }
    }

    /// The buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The message's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn u16_at(&self, range: core::ops::Range<usize>) -> u16 {
        let bytes = &self.buffer.as_ref()[range];
        u16::from_be_bytes([bytes[0], bytes[1]])
    }

    /// The identifier.
    pub fn id(&self) -> u16 {
        self.u16_at(field::ID)
    }

    /// The whole flags field (see [`flags`]).
    pub fn flags(&self) -> u16 {
        self.u16_at(field::FLAGS)
    }

    /// QR: a response rather than a query.
    pub fn is_response(&self) -> bool {
        self.flags() & flags::QR != 0
    }

    /// The kind of query.
    pub fn opcode(&self) -> Opcode {
        Opcode(((self.flags() & flags::OPCODE_MASK) >> flags::OPCODE_SHIFT) as u8)
    }

    /// AA: the answer comes from an authority for the name.
    pub fn authoritative(&self) -> bool {
        self.flags() & flags::AA != 0
    }

    /// TC: the message was truncated.
    pub fn truncated(&self) -> bool {
        self.flags() & flags::TC != 0
    }

    /// RD: recursion desired.
    pub fn recursion_desired(&self) -> bool {
        self.flags() & flags::RD != 0
    }

    /// RA: recursion available.
    pub fn recursion_available(&self) -> bool {
        self.flags() & flags::RA != 0
    }

    /// AD: authentic data.
    pub fn authentic_data(&self) -> bool {
        self.flags() & flags::AD != 0
    }

    /// CD: checking disabled.
    pub fn checking_disabled(&self) -> bool {
        self.flags() & flags::CD != 0
    }

    /// The low 4 bits of the response code (an OPT record holds the rest).
    pub fn rcode(&self) -> Rcode {
        Rcode(self.flags() & flags::RCODE_MASK)
    }

    /// The number of entries a section's count claims.
    pub fn count(&self, section: Section) -> u16 {
        let at = field::QDCOUNT.start + 2 * section.index();
        self.u16_at(at..at + 2)
    }

    /// The questions, checked one by one.
    pub fn questions(&self) -> Questions<'_> {
        Questions::new(self.buffer.as_ref())
    }

    /// The records of the answer, authority and additional sections in
    /// order, checked one by one (the questions are walked first to find
    /// where they start; an error there is the first item).
    pub fn records(&self) -> Records<'_> {
        Records::new(self.buffer.as_ref())
    }

    /// The OPT record, if there is one. Reads every record: an error in
    /// any, an OPT outside the additional section or a second OPT is an
    /// error.
    pub fn edns(&self) -> Result<Option<Opt<'_>>, ParseError> {
        self.records().edns()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Message<T> {
    fn set_u16_at(&mut self, range: core::ops::Range<usize>, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the identifier.
    pub fn set_id(&mut self, id: u16) {
        self.set_u16_at(field::ID, id)
    }

    /// Sets the whole flags field.
    pub fn set_flags(&mut self, value: u16) {
        self.set_u16_at(field::FLAGS, value)
    }

    /// Sets or clears flag bits (see [`flags`]).
    pub fn set_flag(&mut self, bits: u16, on: bool) {
        let value = if on {
            self.flags() | bits
        } else {
            self.flags() & !bits
        };
        self.set_flags(value)
    }

    /// Sets the opcode.
    pub fn set_opcode(&mut self, opcode: Opcode) {
        let value = self.flags() & !flags::OPCODE_MASK
            | (u16::from(opcode.0) << flags::OPCODE_SHIFT) & flags::OPCODE_MASK;
        self.set_flags(value)
    }

    /// Sets the low 4 bits of the response code.
    pub fn set_rcode(&mut self, rcode: Rcode) {
        self.set_flags(self.flags() & !flags::RCODE_MASK | rcode.0 & flags::RCODE_MASK)
    }

    /// Sets a section's count.
    pub fn set_count(&mut self, section: Section, count: u16) {
        let at = field::QDCOUNT.start + 2 * section.index();
        self.set_u16_at(at..at + 2, count)
    }
}

/// One question.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    /// The name asked about.
    pub name: Name<'a>,
    /// The type asked for.
    pub qtype: Rtype,
    /// The class.
    pub qclass: Class,
}

/// The questions of a message. After an error item, nothing more.
#[derive(Debug, Clone)]
pub struct Questions<'a> {
    message: &'a [u8],
    pos: usize,
    remaining: u16,
    /// The error that ended the walk (or, before it starts, the header's).
    error: Option<ParseError>,
    /// Whether `error` was handed out yet.
    reported: bool,
}

impl<'a> Questions<'a> {
    fn new(message: &'a [u8]) -> Questions<'a> {
        let remaining = read_u16(message, field::QDCOUNT.start);
        Questions {
            message,
            pos: HEADER_LEN,
            remaining: remaining.unwrap_or(0),
            error: remaining.is_none().then_some(ParseError::Truncated),
            reported: false,
        }
    }

    /// The records after the questions: the questions not walked yet are
    /// walked first (an error there, or one met already, is the records'
    /// first item). Saves reading the questions twice.
    pub fn records(self) -> Records<'a> {
        Records {
            message: self.message,
            questions: Some(self),
            pos: 0,
            section: 0,
            remaining: 0,
            done: false,
        }
    }

    /// Where the next question starts (after the last, the answer section).
    pub fn offset(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Questions<'a> {
    type Item = Result<Question<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(error) = self.error {
            if self.reported {
                return None;
            }
            self.reported = true;
            self.remaining = 0;
            return Some(Err(error));
        }
        if self.remaining == 0 {
            return None;
        }
        let parsed = (|| {
            let (name, end) = Name::parse(self.message, self.pos)?;
            let qtype = read_u16(self.message, end).ok_or(ParseError::Truncated)?;
            let qclass = read_u16(self.message, end + 2).ok_or(ParseError::Truncated)?;
            Ok((
                Question {
                    name,
                    qtype: Rtype(qtype),
                    qclass: Class(qclass),
                },
                end + 4,
            ))
        })();
        match parsed {
            Ok((question, end)) => {
                self.pos = end;
                self.remaining -= 1;
                Some(Ok(question))
            }
            Err(error) => {
                self.remaining = 0;
                self.error = Some(error);
                self.reported = true;
                Some(Err(error))
            }
        }
    }
}

/// One resource record, as found in a message.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The section it is in.
    pub section: Section,
    /// Its owner.
    pub name: Name<'a>,
    /// Its type.
    pub rtype: Rtype,
    /// Its class (an OPT record's payload size).
    pub class: Class,
    /// Its time to live (an OPT record's extended rcode, version, flags).
    pub ttl: u32,
    message: &'a [u8],
    rdata_start: usize,
    rdata_len: usize,
}

impl<'a> Record<'a> {
    /// The data as it is in the message (names inside may be compressed).
    pub fn rdata(&self) -> &'a [u8] {
        &self.message[self.rdata_start..self.rdata_start + self.rdata_len]
    }

    /// The data, typed.
    pub fn data(&self) -> Result<Rdata<'a>, ParseError> {
        Rdata::parse(self.rtype, self.message, self.rdata_start, self.rdata_len)
    }
}

/// `owner TTL class type data`, as in a master file; data that does not
/// parse is shown opaque.
impl fmt::Display for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} ",
            self.name, self.ttl, self.class, self.rtype
        )?;
        match self.data() {
            Ok(data) => write!(f, "{data}"),
            Err(_) => write!(
                f,
                "{}",
                Rdata::Opaque {
                    rtype: self.rtype,
                    data: self.rdata()
                }
            ),
        }
    }
}

/// The records of a message, section after section. After an error item,
/// nothing more.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    message: &'a [u8],
    /// The questions, until they are walked.
    questions: Option<Questions<'a>>,
    /// Where the next record starts, once the questions are walked.
    pos: usize,
    /// The section of the next record (1..=3), 4 when all are read.
    section: usize,
    remaining: u16,
    done: bool,
}

impl<'a> Records<'a> {
    fn new(message: &'a [u8]) -> Records<'a> {
        Questions::new(message).records()
    }

    /// The OPT record, if there is one, reading the records left: an
    /// error in any, an OPT outside the additional section or a second OPT
    /// is an error.
    pub fn edns(self) -> Result<Option<Opt<'a>>, ParseError> {
        let mut found = None;
        for record in self {
            let record = record?;
            if record.rtype == Rtype::OPT {
                if record.section != Section::Additional {
                    return Err(ParseError::BadOpt);
                }
                if found.is_some() {
                    return Err(ParseError::DuplicateOpt);
                }
                found = Some(Opt::from_record(&record)?);
            }
        }
        Ok(found)
    }

    fn read(&self, pos: usize, section: Section) -> Result<(Record<'a>, usize), ParseError> {
        let (name, end) = Name::parse(self.message, pos)?;
        let truncated = ParseError::Truncated;
        let rtype = read_u16(self.message, end).ok_or(truncated)?;
        let class = read_u16(self.message, end + 2).ok_or(truncated)?;
        let ttl = read_u32(self.message, end + 4).ok_or(truncated)?;
        let rdata_len = usize::from(read_u16(self.message, end + 8).ok_or(truncated)?);
        let rdata_start = end + 10;
        if self.message.len() < rdata_start + rdata_len {
            return Err(truncated);
        }
        let record = Record {
            section,
            name,
            rtype: Rtype(rtype),
            class: Class(class),
            ttl,
            message: self.message,
            rdata_start,
            rdata_len,
        };
        Ok((record, rdata_start + rdata_len))
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(mut questions) = self.questions.take() {
            for _ in questions.by_ref() {}
            if let Some(error) = questions.error {
                self.done = true;
                return Some(Err(error));
            }
            self.pos = questions.offset();
        }
        let pos = self.pos;
        while self.remaining == 0 {
            self.section += 1;
            if self.section > 3 {
                self.done = true;
                return None;
            }
            self.remaining =
                read_u16(self.message, field::QDCOUNT.start + 2 * self.section).unwrap_or(0);
        }
        match self.read(pos, Section::from_index(self.section)) {
            Ok((record, end)) => {
                self.pos = end;
                self.remaining -= 1;
                Some(Ok(record))
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::string::{String, ToString};
    use alloc::vec::Vec;

    /// Bytes from hex (test vectors).
    pub(crate) fn hex(text: &str) -> Vec<u8> {
        let text: String = text.split_whitespace().collect();
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// `dig @127.0.0.1 Example.COM A` (BIND 9.18), captured on a socket:
    /// RD and AD set, EDNS payload 1232, a client cookie.
    pub(crate) const DIG_A: &str =
        "d49f01200001000000000001074578616d706c6503434f4d000001000100002904d0\
                                    00000000000c000a0008e5d97779567333d1";
    /// `dig +noedns www.example.com AAAA`.
    pub(crate) const DIG_NOEDNS_AAAA: &str =
        "848d0120000100000000000003777777076578616d706c6503636f6d00001c0001";
    /// `dig +dnssec +bufsize=512 example.com MX`: DO set.
    pub(crate) const DIG_DNSSEC_MX: &str =
        "e48001200001000000000001076578616d706c6503636f6d00000f00010000290200\
                                            00008000000c000a00088ec8d8d71ba969d9";
    /// A response dnspython 2.9 wrote (`Message.to_wire`, compressed): a
    /// CNAME and two A in the answer, two NS in authority, and AAAA, TXT,
    /// MX, SRV, CAA, SOA, PTR, TYPE65280 and OPT in additional.
    pub(crate) const DNSPYTHON_RESPONSE: &str = "\
        12348500000100030002000903777777074578616d706c6503636f6d0000010001c00c000500010000012c000603776562c010c0\
        2d000100010000012c0004c0000201c02d000100010000012c0004c0000202c0100002000100000e100006036e7331c010c01000\
        02000100000e100011036e7332076578616d706c65036e657400c05f001c000100000e10001020010db800000000000000000000\
        0053c010001000010000003c001a0b763d73706631202d616c6c0d7365636f6e6420737472696e67c010000f00010000003c0009\
        000a046d61696cc010045f736970045f746370c010002100010000003c0017000a001413c403736970076578616d706c6503636f\
        6d00c010010100010000003c0016000569737375656c657473656e63727970742e6f7267c010000600010000003c0023c05f0a68\
        6f73746d6173746572c01078c4078500001c2000000384001275000000012c0131013201300331393207696e2d61646472046172\
        706100000c00010000003c0002c02dc010ff0000010000003c0003abcdef0000292000000000000000";

    /// What dnspython's `to_text` says of the same response, owners taking
    /// the question's case through their pointers.
    const DNSPYTHON_TEXT: [&str; 14] = [
        "www.Example.com. 300 IN CNAME web.Example.com.",
        "web.Example.com. 300 IN A 192.0.2.1",
        "web.Example.com. 300 IN A 192.0.2.2",
        "Example.com. 3600 IN NS ns1.Example.com.",
        "Example.com. 3600 IN NS ns2.example.net.",
        "ns1.Example.com. 3600 IN AAAA 2001:db8::53",
        "Example.com. 60 IN TXT \"v=spf1 -all\" \"second string\"",
        "Example.com. 60 IN MX 10 mail.Example.com.",
        "_sip._tcp.Example.com. 60 IN SRV 10 20 5060 sip.example.com.",
        "Example.com. 60 IN CAA 0 issue \"letsencrypt.org\"",
        "Example.com. 60 IN SOA ns1.Example.com. hostmaster.Example.com. 2026112901 7200 900 1209600 300",
        "1.2.0.192.in-addr.arpa. 60 IN PTR web.Example.com.",
        "Example.com. 60 IN TYPE65280 \\# 3 ABCDEF",
        ". 0 CLASS8192 OPT \\# 0",
    ];

    #[test]
    fn reads_a_query_from_dig() {
        let bytes = hex(DIG_A);
        let message = Message::new_checked(&bytes[..]).unwrap();
        assert_eq!(message.id(), 0xd49f);
        assert!(!message.is_response());
        assert!(message.recursion_desired() && message.authentic_data());
        assert!(!message.checking_disabled() && !message.truncated() && !message.authoritative());
        assert_eq!(message.opcode(), Opcode::QUERY);
        assert_eq!(message.rcode(), Rcode::NOERROR);
        assert_eq!(message.count(Section::Question), 1);
        assert_eq!(message.count(Section::Additional), 1);
        let questions: Vec<_> = message.questions().collect::<Result<_, _>>().unwrap();
        assert_eq!(questions.len(), 1);
        assert_eq!(questions[0].name.to_string(), "Example.COM.");
        assert_eq!(
            (questions[0].qtype, questions[0].qclass),
            (Rtype::A, Class::IN)
        );
        let records: Vec<_> = message.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].section, Section::Additional);
        assert_eq!(message.edns().unwrap().unwrap().udp_payload_size, 1232);

        let bytes = hex(DIG_NOEDNS_AAAA);
        let message = Message::new_checked(&bytes[..]).unwrap();
        assert!(message.edns().unwrap().is_none());
        assert_eq!(
            message.questions().next().unwrap().unwrap().qtype,
            Rtype::AAAA
        );

        let bytes = hex(DIG_DNSSEC_MX);
        let message = Message::new_checked(&bytes[..]).unwrap();
        let opt = message.edns().unwrap().unwrap();
        assert!(opt.dnssec_ok());
        assert_eq!(opt.udp_payload_size, 512);
    }

    #[test]
    fn reads_every_record_of_a_dnspython_response() {
        let bytes = hex(DNSPYTHON_RESPONSE);
        let message = Message::new_checked(&bytes[..]).unwrap();
        assert!(message.is_response() && message.authoritative() && message.recursion_desired());
        let records: Vec<_> = message.records().collect::<Result<_, _>>().unwrap();
        let text: Vec<String> = records.iter().map(|r| r.to_string()).collect();
        assert_eq!(text, DNSPYTHON_TEXT);
        let sections: Vec<Section> = records.iter().map(|r| r.section).collect();
        assert_eq!(
            sections[..4],
            [
                Section::Answer,
                Section::Answer,
                Section::Answer,
                Section::Authority
            ]
        );
        assert_eq!(sections[5], Section::Additional);
        assert!(records.iter().all(|r| r.data().is_ok()));
    }

    #[test]
    fn every_truncation_of_a_valid_message_is_an_error() {
        for vector in [DIG_A, DIG_NOEDNS_AAAA, DIG_DNSSEC_MX, DNSPYTHON_RESPONSE] {
            let bytes = hex(vector);
            for cut in 0..bytes.len() {
                let Ok(message) = Message::new_checked(&bytes[..cut]) else {
                    assert!(cut < HEADER_LEN);
                    continue;
                };
                let questions = message.questions().find_map(Result::err);
                let records = message.records().find_map(Result::err);
                assert!(
                    questions.is_some() || records.is_some(),
                    "cut at {cut} of {vector}"
                );
                assert!(message.edns().is_err());
            }
        }
    }

    #[test]
    fn records_resume_after_the_questions_walked() {
        let bytes = hex(DIG_A);
        let message = Message::new_checked(&bytes[..]).unwrap();
        let mut questions = message.questions();
        assert!(questions.next().unwrap().is_ok());
        let records = questions.records();
        assert_eq!(records.clone().count(), 1);
        assert_eq!(records.edns().unwrap().unwrap().udp_payload_size, 1232);
        // An error met in the questions is the records' first item.
        let mut bytes = hex(DIG_A);
        bytes[12] = 0xc0;
        let message = Message::new_checked(&bytes[..]).unwrap();
        let mut questions = message.questions();
        assert_eq!(
            questions.next().unwrap().unwrap_err(),
            ParseError::BadPointer
        );
        assert!(questions.next().is_none());
        let mut records = questions.records();
        assert_eq!(records.next().unwrap().unwrap_err(), ParseError::BadPointer);
        assert!(records.next().is_none());
        assert_eq!(
            Questions::new(&[0u8; 3]).records().edns().unwrap_err(),
            ParseError::Truncated
        );
    }

    #[test]
    fn counts_that_lie_are_truncation() {
        let mut bytes = hex(DIG_NOEDNS_AAAA);
        bytes[5] = 2;
        let message = Message::new_checked(&bytes[..]).unwrap();
        let items: Vec<_> = message.questions().collect();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].unwrap_err(), ParseError::Truncated);
        assert_eq!(
            message.records().next().unwrap().unwrap_err(),
            ParseError::Truncated
        );
        let mut bytes = hex(DIG_NOEDNS_AAAA);
        bytes[7] = 0xff;
        let message = Message::new_checked(&bytes[..]).unwrap();
        assert_eq!(message.records().collect::<Vec<_>>().len(), 1);
        assert_eq!(
            message.records().next().unwrap().unwrap_err(),
            ParseError::Truncated
        );
        // Fewer than claimed is fine for the iterators: what is after the
        // last counted record is not read.
        let mut bytes = hex(DIG_A);
        bytes[11] = 0;
        let message = Message::new_checked(&bytes[..]).unwrap();
        assert_eq!(message.records().count(), 0);
        assert!(message.edns().unwrap().is_none());
    }

    #[test]
    fn two_opt_records_and_misplaced_ones_are_errors() {
        let mut bytes = hex(DIG_A);
        let opt = bytes[bytes.len() - 23..].to_vec();
        bytes.extend_from_slice(&opt);
        bytes[11] = 2;
        let message = Message::new_checked(&bytes[..]).unwrap();
        assert_eq!(message.edns().unwrap_err(), ParseError::DuplicateOpt);
        let mut bytes = hex(DIG_A);
        bytes[7] = 1;
        bytes[11] = 0;
        let message = Message::new_checked(&bytes[..]).unwrap();
        assert_eq!(message.edns().unwrap_err(), ParseError::BadOpt);
        // An owner other than the root.
        let mut bytes = hex(DIG_NOEDNS_AAAA);
        bytes[11] = 1;
        bytes.extend_from_slice(&[1, b'a', 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        let message = Message::new_checked(&bytes[..]).unwrap();
        assert_eq!(message.edns().unwrap_err(), ParseError::BadOpt);
    }

    #[test]
    fn setters_write_the_header() {
        let mut message = Message::new_checked([0u8; HEADER_LEN]).unwrap();
        message.set_id(0xbeef);
        message.set_flag(flags::QR | flags::AA, true);
        message.set_opcode(Opcode::NOTIFY);
        message.set_rcode(Rcode::BADVERS);
        message.set_count(Section::Authority, 3);
        assert_eq!(message.id(), 0xbeef);
        assert!(message.is_response() && message.authoritative());
        assert_eq!(message.opcode(), Opcode::NOTIFY);
        assert_eq!(message.rcode(), Rcode(0));
        message.set_rcode(Rcode::REFUSED);
        assert_eq!(message.rcode(), Rcode::REFUSED);
        assert_eq!(message.count(Section::Authority), 3);
        message.set_flag(flags::AA, false);
        assert!(!message.authoritative());
        assert_eq!(
            Message::new_checked(&[0u8; 11][..]).unwrap_err(),
            ParseError::Truncated
        );
    }
}
