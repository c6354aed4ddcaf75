//! The numbers every part of DNS shares: record types, classes, opcodes and
//! response codes, as newtypes so that an unknown value is still a value.

use core::fmt;

macro_rules! code {
    ($(#[$doc:meta])* $name:ident($repr:ty) { $($(#[$vdoc:meta])* $konst:ident = $value:expr, $text:expr;)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $repr);

        impl $name {
            $($(#[$vdoc])* pub const $konst: $name = $name($value);)*

            /// The mnemonic, for the values this crate knows.
            pub fn mnemonic(self) -> Option<&'static str> {
                match self {
                    $(Self::$konst => Some($text),)*
                    _ => None,
                }
            }

            /// The value for a mnemonic (case-insensitive).
            pub fn from_mnemonic(text: &str) -> Option<Self> {
                $(if text.eq_ignore_ascii_case($text) { return Some(Self::$konst); })*
                None
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    };
}

code! {
    /// A resource record type (RFC 1035 3.2.2, and the registry since).
    Rtype(u16) {
        /// IPv4 address.
        A = 1, "A";
        /// Authoritative name server.
        NS = 2, "NS";
        /// Canonical name (an alias).
        CNAME = 5, "CNAME";
        /// Start of a zone of authority.
        SOA = 6, "SOA";
        /// Domain name pointer.
        PTR = 12, "PTR";
        /// Host information (kept opaque; answered by RFC 8482 minimal ANY).
        HINFO = 13, "HINFO";
        /// Mail exchange.
        MX = 15, "MX";
        /// Text strings.
        TXT = 16, "TXT";
        /// IPv6 address.
        AAAA = 28, "AAAA";
        /// Service location (RFC 2782).
        SRV = 33, "SRV";
        /// EDNS(0) pseudo-record (RFC 6891).
        OPT = 41, "OPT";
        /// Zone transfer (a query type only).
        AXFR = 252, "AXFR";
        /// Any type (a query type only).
        ANY = 255, "ANY";
        /// Certification authority authorisation (RFC 8659).
        CAA = 257, "CAA";
    }
}

impl fmt::Display for Rtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mnemonic() {
            Some(m) => f.write_str(m),
            // RFC 3597's generic presentation.
            None => write!(f, "TYPE{}", self.0),
        }
    }
}

code! {
    /// A class (RFC 1035 3.2.4).
    Class(u16) {
        /// The Internet.
        IN = 1, "IN";
        /// Chaos (version.bind and friends).
        CH = 3, "CH";
        /// Any class (a query class only).
        ANY = 255, "ANY";
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mnemonic() {
            Some(m) => f.write_str(m),
            None => write!(f, "CLASS{}", self.0),
        }
    }
}

code! {
    /// The kind of query in a message header (4 bits).
    Opcode(u8) {
        /// A standard query.
        QUERY = 0, "QUERY";
        /// Server status request.
        STATUS = 2, "STATUS";
        /// Zone change notification (RFC 1996).
        NOTIFY = 4, "NOTIFY";
        /// Dynamic update (RFC 2136).
        UPDATE = 5, "UPDATE";
    }
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mnemonic() {
            Some(m) => f.write_str(m),
            None => write!(f, "OPCODE{}", self.0),
        }
    }
}

code! {
    /// A response code: 4 bits in the header, 12 with EDNS(0)'s extension.
    Rcode(u16) {
        /// No error.
        NOERROR = 0, "NOERROR";
        /// The server could not interpret the query.
        FORMERR = 1, "FORMERR";
        /// The server failed.
        SERVFAIL = 2, "SERVFAIL";
        /// The name does not exist.
        NXDOMAIN = 3, "NXDOMAIN";
        /// The server does not implement this kind of query.
        NOTIMP = 4, "NOTIMP";
        /// The server refuses (here: a name outside its zones, or AXFR from a stranger).
        REFUSED = 5, "REFUSED";
        /// The requester's EDNS version is not supported (RFC 6891; needs an OPT record).
        BADVERS = 16, "BADVERS";
    }
}

impl fmt::Display for Rcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mnemonic() {
            Some(m) => f.write_str(m),
            None => write!(f, "RCODE{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mnemonics_round_trip_and_unknown_values_print_generically() {
        assert_eq!(Rtype::from_mnemonic("aaaa"), Some(Rtype::AAAA));
        assert_eq!(alloc::format!("{}", Rtype(65280)), "TYPE65280");
        assert_eq!(alloc::format!("{}", Class::IN), "IN");
        assert_eq!(Rcode::from_mnemonic("NXDOMAIN"), Some(Rcode::NXDOMAIN));
        assert_eq!(alloc::format!("{}", Rcode(23)), "RCODE23");
    }
}
