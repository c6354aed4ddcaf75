//! A stub resolver for applications, generic over the [`Stack`] trait: the
//! addresses of a name (A and AAAA), or the records of any type, asked of
//! the servers the stack knows ([`Stack::dns_servers`]: `--dns=ADDR` or
//! DHCP option 6 on Lamina's stack, `--dns` or `/etc/resolv.conf` on unix)
//! or of servers given in [`Config`].
//!
//! - Queries go over UDP from a random source port with a random ID, to
//!   each server in turn, [`Config::attempts`] rounds, each waiting
//!   [`Config::timeout`]; replies from elsewhere, or whose ID or question
//!   differ from the query's, are ignored (RFC 5452). A server that fails
//!   (SERVFAIL, REFUSED, silence) passes the question to the next.
//! - A truncated answer (TC) is asked again over TCP (RFC 7766).
//! - EDNS(0) offers [`Config::udp_payload_size`] bytes; a server that
//!   answers FORMERR is asked again without it (RFC 6891 7).
//! - CNAME chains are followed, within the response and, where a chain
//!   leaves it, with new queries, up to [`Config::max_chain`] aliases.
//! - Answers are cached for their TTL (at most [`Config::max_ttl`]), in at
//!   most [`Config::cache_entries`] entries; NXDOMAIN and NODATA for the
//!   negative TTL of RFC 2308 (the lesser of the SOA's TTL and MINIMUM).
//!
//! ```no_run
//! # use lamina_dns::resolver::{Config, Resolver};
//! # use lamina_core::device::{Random, Stack};
//! # use lamina_core::runtime::Handle;
//! # async fn run<S: Stack, R: Random>(stack: S, random: R, runtime: Handle) {
//! let resolver = Resolver::new(stack, random, runtime, Config::default());
//! for address in resolver.lookup_ip("example.com").await.unwrap() {
//!     log::info!("example.com has {address}");
//! }
//! let mx = resolver.query("example.com", lamina_dns::Rtype::MX).await.unwrap();
//! for record in mx.records() {
//!     log::info!("mail: {}", record.unwrap());
//! }
//! # }
//! ```

mod cache;
mod exchange;
mod response;

use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use core::net::{IpAddr, SocketAddr};

use lamina_core::device::{NetError, Random, Stack};
use lamina_core::runtime::{Duration, Handle};

use crate::types::{Rcode, Rtype};
use crate::wire::{Message, Name, ParseError, Rdata, MAX_LABEL_LEN, MAX_NAME_LEN};
use cache::{Cache, Cached};
use exchange::{Link, Query, Question};
pub use response::{interpret, Alias, Interpreted, Outcome};

/// How the resolver asks and what it keeps.
#[derive(Debug, Clone)]
pub struct Config {
    /// The servers to ask, first choice first; empty (the default) to ask
    /// the stack's ([`Stack::dns_servers`]) at each query.
    pub servers: Vec<SocketAddr>,
    /// How long to wait for one server's answer.
    pub timeout: Duration,
    /// How many times each server is tried, in rounds over all of them.
    pub attempts: usize,
    /// The most (name, type) entries the cache keeps; 0 keeps none.
    pub cache_entries: usize,
    /// The longest an answer is kept, in seconds, whatever its TTL.
    pub max_ttl: u32,
    /// The UDP payload size offered with EDNS(0); 0 sends no OPT record
    /// (answers are then at most 512 bytes over UDP).
    pub udp_payload_size: u16,
    /// The most CNAMEs followed from a name.
    pub max_chain: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            servers: Vec::new(),
            timeout: Duration::from_secs(2),
            attempts: 2,
            cache_entries: 512,
            max_ttl: 86400,
            // DNS Flag Day 2020: no fragmentation on any path.
            udp_payload_size: 1232,
            max_chain: 8,
        }
    }
}

/// Why a name could not be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveError {
    /// The name is not a domain name (an empty label, a label over 63
    /// bytes, over 255 bytes in all).
    BadName,
    /// Neither the configuration nor the stack names a DNS server.
    NoServers,
    /// The name does not exist (NXDOMAIN).
    NxDomain,
    /// The name exists but has no records of the type (NODATA).
    NoData,
    /// Every server that answered refused or failed, the last with this
    /// response code (SERVFAIL, REFUSED, NOTIMP, ...).
    ServerFailure(Rcode),
    /// No server answered in time.
    TimedOut,
    /// The network failed (no route, no buffers, ...).
    Net(NetError),
    /// An answer could not be read.
    Malformed,
    /// A CNAME chain longer than [`Config::max_chain`], or a loop.
    ChainTooLong,
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::BadName => f.write_str("not a domain name"),
            ResolveError::NoServers => f.write_str("no DNS server configured"),
            ResolveError::NxDomain => f.write_str("no such name"),
            ResolveError::NoData => f.write_str("no records of that type"),
            ResolveError::ServerFailure(rcode) => write!(f, "the DNS servers failed ({rcode})"),
            ResolveError::TimedOut => f.write_str("no DNS server answered"),
            ResolveError::Net(error) => write!(f, "network: {error}"),
            ResolveError::Malformed => f.write_str("malformed DNS answer"),
            ResolveError::ChainTooLong => f.write_str("CNAME chain too long or looping"),
        }
    }
}

/// The records found for a name and a type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The names followed through CNAMEs from the one asked (first), in
    /// order, lowercase uncompressed wire form; empty without aliases.
    pub aliases: Vec<Vec<u8>>,
    /// The name that holds the records (the end of the chain), lowercase
    /// uncompressed wire form.
    pub name: Vec<u8>,
    /// Their type.
    pub rtype: Rtype,
    /// Seconds they stay valid.
    pub ttl: u32,
    /// Each record's data, uncompressed wire form.
    pub rdatas: Vec<Vec<u8>>,
}

impl Answer {
    /// The records' data, typed.
    pub fn records(&self) -> impl Iterator<Item = Result<Rdata<'_>, ParseError>> {
        self.rdatas
            .iter()
            .map(|data| Rdata::from_wire(self.rtype, data))
    }

    /// The addresses among the records (A and AAAA).
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.records().filter_map(|record| match record {
            Ok(Rdata::A(v4)) => Some(IpAddr::V4(v4)),
            Ok(Rdata::Aaaa(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        })
    }
}

/// `text` (`www.example.com`, a final dot optional) in uncompressed wire
/// form. Labels are taken as written: no escapes.
pub fn name_from_text(text: &str) -> Result<Vec<u8>, ResolveError> {
    let text = text.strip_suffix('.').unwrap_or(text);
    let mut wire = Vec::with_capacity(text.len() + 2);
    if !text.is_empty() {
        for label in text.split('.') {
            if label.is_empty() || label.len() > MAX_LABEL_LEN {
                return Err(ResolveError::BadName);
            }
            wire.push(label.len() as u8);
            wire.extend_from_slice(label.as_bytes());
        }
    }
    wire.push(0);
    if wire.len() > MAX_NAME_LEN {
        return Err(ResolveError::BadName);
    }
    Ok(wire)
}

/// A stub resolver over stack `S`, drawing IDs and ports from `R`.
pub struct Resolver<S, R> {
    stack: S,
    random: R,
    runtime: Handle,
    config: Config,
    cache: RefCell<Cache>,
}

impl<S: Stack, R: Random> Resolver<S, R> {
    /// A resolver with an empty cache.
    pub fn new(stack: S, random: R, runtime: Handle, config: Config) -> Self {
        let cache = RefCell::new(Cache::new(config.cache_entries));
        Resolver {
            stack,
            random,
            runtime,
            config,
            cache,
        }
    }

    /// The addresses of `name`: its A and AAAA records, IPv4 first, through
    /// any CNAMEs. [`ResolveError::NxDomain`] if the name does not exist,
    /// [`ResolveError::NoData`] if it has no address.
    pub async fn lookup_ip(&self, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let wire = name_from_text(name)?;
        let v4 = self.query_wire(&wire, Rtype::A).await;
        if v4 == Err(ResolveError::NxDomain) {
            return Err(ResolveError::NxDomain);
        }
        let v6 = self.query_wire(&wire, Rtype::AAAA).await;
        let mut addresses = Vec::new();
        for answer in [&v4, &v6].into_iter().flatten() {
            addresses.extend(answer.addresses());
        }
        match (v4, v6) {
            _ if !addresses.is_empty() => Ok(addresses),
            (Err(error), _) | (_, Err(error)) if error != ResolveError::NoData => Err(error),
            _ => Err(ResolveError::NoData),
        }
    }

    /// The records of type `rtype` of `name` (text), through any CNAMEs.
    pub async fn query(&self, name: &str, rtype: Rtype) -> Result<Answer, ResolveError> {
        self.query_wire(&name_from_text(name)?, rtype).await
    }

    /// [`Resolver::query`] for a name in uncompressed wire form.
    pub async fn query_wire(&self, name: &[u8], rtype: Rtype) -> Result<Answer, ResolveError> {
        Name::from_wire(name).map_err(|_| ResolveError::BadName)?;
        let mut current = name.to_ascii_lowercase();
        let mut aliases: Vec<Vec<u8>> = Vec::new();
        loop {
            if aliases.contains(&current) {
                return Err(ResolveError::ChainTooLong);
            }
            let now = self.runtime.now();
            let cached = self.cache.borrow_mut().get(&current, rtype, now);
            match cached {
                Some((Cached::Records(rdatas), ttl)) => {
                    return Ok(Answer {
                        aliases,
                        name: current,
                        rtype,
                        ttl,
                        rdatas,
                    })
                }
                Some((Cached::NoData, _)) => return Err(ResolveError::NoData),
                Some((Cached::NxDomain, _)) => return Err(ResolveError::NxDomain),
                None => {}
            }
            if rtype != Rtype::CNAME {
                let alias = self.cache.borrow_mut().get(&current, Rtype::CNAME, now);
                if let Some((Cached::Records(targets), _)) = alias {
                    if let Some(target) = targets.into_iter().next() {
                        self.follow(&mut aliases, &mut current, target)?;
                        continue;
                    }
                }
            }
            let room = self.config.max_chain.saturating_sub(aliases.len());
            let response = self.ask(&current, rtype).await?;
            let read = response::interpret(&response, &current, rtype, room)?;
            let now = self.runtime.now();
            let mut cache = self.cache.borrow_mut();
            for alias in &read.chain {
                let value = Cached::Records(alloc::vec![alias.target.clone()]);
                cache.insert(&alias.owner, Rtype::CNAME, value, self.ttl(alias.ttl), now);
                aliases.push(alias.owner.clone());
            }
            current = read.name;
            match read.outcome {
                Outcome::Records { rdatas, ttl } => {
                    let ttl = self.ttl(ttl);
                    let value = Cached::Records(rdatas.clone());
                    cache.insert(&current, rtype, value, ttl, now);
                    return Ok(Answer {
                        aliases,
                        name: current,
                        rtype,
                        ttl,
                        rdatas,
                    });
                }
                Outcome::NoData { ttl } => {
                    let ttl = self.ttl(ttl.unwrap_or(0));
                    cache.insert(&current, rtype, Cached::NoData, ttl, now);
                    return Err(ResolveError::NoData);
                }
                Outcome::NxDomain { ttl } => {
                    let ttl = self.ttl(ttl.unwrap_or(0));
                    cache.insert(&current, rtype, Cached::NxDomain, ttl, now);
                    return Err(ResolveError::NxDomain);
                }
                Outcome::Incomplete => {
                    if aliases.len() >= self.config.max_chain {
                        return Err(ResolveError::ChainTooLong);
                    }
                }
            }
        }
    }

    /// Moves along one cached alias.
    fn follow(
        &self,
        aliases: &mut Vec<Vec<u8>>,
        current: &mut Vec<u8>,
        target: Vec<u8>,
    ) -> Result<(), ResolveError> {
        if aliases.len() >= self.config.max_chain {
            return Err(ResolveError::ChainTooLong);
        }
        aliases.push(core::mem::replace(current, target));
        Ok(())
    }

    /// A TTL as kept: at most [`Config::max_ttl`].
    fn ttl(&self, ttl: u32) -> u32 {
        ttl.min(self.config.max_ttl)
    }

    /// Asks the servers about `name` and `rtype` until one answers with
    /// NOERROR or NXDOMAIN; returns that response.
    async fn ask(&self, name: &[u8], rtype: Rtype) -> Result<Vec<u8>, ResolveError> {
        let servers = if self.config.servers.is_empty() {
            self.stack.dns_servers()
        } else {
            self.config.servers.clone()
        };
        if servers.is_empty() {
            return Err(ResolveError::NoServers);
        }
        let link = Link {
            stack: &self.stack,
            random: &self.random,
            runtime: &self.runtime,
            timeout: self.config.timeout,
        };
        let question = Question { name, rtype };
        let mut last = ResolveError::TimedOut;
        for _ in 0..self.config.attempts.max(1) {
            for &server in &servers {
                match self.ask_one(&link, server, question).await {
                    Ok(response) => return Ok(response),
                    Err(error) => {
                        log::debug!("dns: {server} gave no answer: {error}");
                        last = error;
                    }
                }
            }
        }
        Err(last)
    }

    /// One server's answer: over UDP, then TCP if truncated; without EDNS
    /// if the server does not take it.
    async fn ask_one(
        &self,
        link: &Link<'_, S, R>,
        server: SocketAddr,
        question: Question<'_>,
    ) -> Result<Vec<u8>, ResolveError> {
        let mut payload_size = self.config.udp_payload_size;
        loop {
            let id = self.random.next_u64() as u16;
            let bytes = exchange::build_query(id, question, payload_size)?;
            let query = Query {
                id,
                question,
                bytes,
            };
            let mut response = link.udp(server, &query).await?;
            let mut message =
                Message::new_checked(&response[..]).map_err(|_| ResolveError::Malformed)?;
            if message.truncated() {
                response = link.tcp(server, &query).await?;
                message =
                    Message::new_checked(&response[..]).map_err(|_| ResolveError::Malformed)?;
            }
            let rcode = match message.edns() {
                Ok(Some(opt)) => opt.rcode(message.rcode()),
                Ok(None) => message.rcode(),
                Err(_) => return Err(ResolveError::Malformed),
            };
            match rcode {
                Rcode::NOERROR | Rcode::NXDOMAIN => return Ok(response),
                Rcode::FORMERR if payload_size > 0 => payload_size = 0,
                other => return Err(ResolveError::ServerFailure(other)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    #[test]
    fn text_names_become_wire_names() {
        assert_eq!(
            name_from_text("www.Example.com").unwrap(),
            b"\x03www\x07Example\x03com\x00"
        );
        assert_eq!(
            name_from_text("example.com.").unwrap(),
            b"\x07example\x03com\x00"
        );
        assert_eq!(name_from_text(".").unwrap(), b"\x00");
        assert_eq!(name_from_text("").unwrap(), b"\x00");
        let too_long = String::from_utf8(alloc::vec![b'x'; 64]).unwrap();
        for bad in ["a..b", ".a", "a..", &too_long] {
            assert_eq!(name_from_text(bad), Err(ResolveError::BadName), "{bad}");
        }
        let label = "a".repeat(63);
        let long = [label.as_str(); 4].join(".");
        assert_eq!(
            name_from_text(&long),
            Err(ResolveError::BadName),
            "256 bytes"
        );
        let fits = [label.as_str(), &label, &label, &label[..61]].join(".");
        assert_eq!(name_from_text(&fits).unwrap().len(), 255);
    }
}
