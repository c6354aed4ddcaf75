//! A TLS connection over a TCP stream: the handshake, then records both ways.
//!
//! rustls runs "unbuffered": it never owns a buffer, we hand it the bytes
//! received and a place for the bytes to send. That keeps the memory of a
//! connection in our hands: what arrived and is not yet a whole record
//! (bounded by [`MAX_INCOMING`]), plaintext the application has not read
//! yet, and nothing at all between records, which is what lets thousands of
//! idle connections fit in a small guest.
//!
//! The two directions share one [`Session`] (a `RefCell` borrowed only
//! between awaits, never across one), so a stream splits into a read half and
//! a write half like a TCP stream does.

use crate::TlsError;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::net::SocketAddr;
use lamina_core::device::{NetError, TcpRead, TcpStream, TcpWrite};
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};

/// Most bytes held that are not yet a whole TLS message: one handshake
/// message (at most 64 KiB, split across records) and the record being
/// assembled. A peer that sends more is refused.
pub const MAX_INCOMING: usize = 64 * 1024 + 18 * 1024;

/// Largest TLS record on the wire (16 KiB of plaintext, 2 KiB of expansion
/// allowed by TLS 1.2, and the 5-byte header).
const MAX_RECORD: usize = 16 * 1024 + 2048 + 5;

/// Plaintext taken per `write` call: four full records, so bulk transfers
/// hand TCP large writes while memory per connection stays bounded.
const MAX_WRITE_PLAINTEXT: usize = 4 * 16 * 1024;

/// Smallest TCP read: enough for a typical request in one go, small enough
/// to hold while idle.
const MIN_READ: usize = 2048;

/// Most plaintext in one record (rustls's default fragment size, which the
/// acceptor and connector keep).
const MAX_FRAGMENT: usize = 16 * 1024;

/// Most bytes a record adds to its plaintext with the suites offered: the
/// 5-byte header, then TLS 1.3's content type and 16-byte tag (22 in all),
/// TLS 1.2 AES-GCM's 8-byte explicit nonce and tag (29), or TLS 1.2
/// ChaCha20-Poly1305's tag (21).
const MAX_RECORD_OVERHEAD: usize = 29;

/// Room enough for `len` bytes of application data once encrypted, so that
/// rustls encrypts it at the first attempt (it asks for more, and encrypts
/// nothing, when the room is short).
fn encrypted_size(len: usize) -> usize {
    let records = len.div_ceil(MAX_FRAGMENT).max(1);
    len + records * MAX_RECORD_OVERHEAD
}

/// First room tried for a handshake message or an alert: rustls asks for
/// more when it needs it.
const FIRST_ENCODE_ROOM: usize = 512;

/// A rustls connection of either side, as the record loop drives it.
pub trait Side: 'static {
    /// rustls's per-side connection data.
    type Data;
    /// Processes the records in `incoming` until rustls needs something.
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
    /// rustls's state common to both sides (ALPN, version, suite).
    fn common(&self) -> &rustls::CommonState;
}

impl Side for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
    fn common(&self) -> &rustls::CommonState {
        self
    }
}

impl Side for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
    fn common(&self) -> &rustls::CommonState {
        self
    }
}

/// What the record loop needs next.
#[derive(Debug, PartialEq, Eq)]
enum Need {
    /// More bytes from the peer.
    Read,
    /// Nothing: application data may be sent (and more read).
    Nothing,
    /// The peer sent close_notify (already noted in the session).
    PeerClosed,
    /// Both sides have sent close_notify.
    Closed,
}

/// One connection's TLS state and buffers, shared by the two halves.
pub(crate) struct Session<C> {
    conn: C,
    /// Received bytes not yet processed (never a whole record between calls).
    incoming: Vec<u8>,
    /// Decrypted bytes the application has not read, from `plain_at` on.
    plaintext: Vec<u8>,
    plain_at: usize,
    /// TLS bytes made and not yet sent (handshake messages, alerts, records).
    outgoing: Vec<u8>,
    peer_closed: bool,
    sent_close: bool,
    /// The error that ended the connection, returned from then on.
    failed: Option<NetError>,
}

impl<C: Side> Session<C> {
    pub(crate) fn new(conn: C) -> Self {
        Session {
            conn,
            incoming: Vec::new(),
            plaintext: Vec::new(),
            plain_at: 0,
            outgoing: Vec::new(),
            peer_closed: false,
            sent_close: false,
            failed: None,
        }
    }

    /// Runs rustls over what has arrived until it needs more input or has
    /// nothing more to say. Decrypted data goes to `plaintext`, bytes to send
    /// to `outgoing`. If `encrypt` is given, as much of it as fits in one
    /// call is encrypted once application data may be sent; returns how much.
    fn pump(&mut self, mut encrypt: Option<&[u8]>) -> Result<(Need, usize), TlsError> {
        let mut taken = 0;
        loop {
            let UnbufferedStatus { discard, state } = self.conn.process(&mut self.incoming);
            let need = match state {
                Err(e) => {
                    self.incoming.drain(..discard);
                    self.collect_alert();
                    return Err(TlsError::Protocol(e));
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(TlsError::Protocol)?;
                        if self.plain_at == self.plaintext.len() {
                            self.plaintext.clear();
                            self.plain_at = 0;
                        }
                        self.plaintext.extend_from_slice(record.payload);
                    }
                    None
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    encode(&mut self.outgoing, |out| data.encode(out))?;
                    None
                }
                Ok(ConnectionState::TransmitTlsData(data)) => {
                    // The bytes are in `outgoing`, sent before anything
                    // made after them.
                    data.done();
                    None
                }
                Ok(ConnectionState::BlockedHandshake) => Some(Need::Read),
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    None
                }
                Ok(ConnectionState::Closed) => Some(Need::Closed),
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    if let Some(data) = encrypt.take() {
                        let data = &data[..data.len().min(MAX_WRITE_PLAINTEXT)];
                        encrypt_into(&mut self.outgoing, encrypted_size(data.len()), |out| {
                            traffic.encrypt(data, out)
                        })?;
                        taken = data.len();
                    }
                    Some(if self.conn_handshaking() {
                        Need::Read
                    } else {
                        Need::Nothing
                    })
                }
                Ok(_) => {
                    // Early data is never enabled; nothing else exists today.
                    return Err(TlsError::Protocol(rustls::Error::General(
                        "unexpected TLS state".into(),
                    )));
                }
            };
            self.incoming.drain(..discard);
            if let Some(need) = need {
                let need = match need {
                    Need::Nothing | Need::Read if self.peer_closed => Need::PeerClosed,
                    other => other,
                };
                return Ok((need, taken));
            }
        }
    }

    fn conn_handshaking(&self) -> bool {
        self.conn.common().is_handshaking()
    }

    /// After an error rustls queues an alert for the peer: put it in
    /// `outgoing` so that it is sent on the way out. One call: rustls hands
    /// out a queued alert before it looks at input again, and sends at most
    /// one fatal alert (asking again would make it deframe, fail and alert
    /// a second time). It is handed the same buffer, less what it said to
    /// discard: it keeps offsets into it between calls.
    fn collect_alert(&mut self) {
        let UnbufferedStatus { discard, state } = self.conn.process(&mut self.incoming);
        if let Ok(ConnectionState::EncodeTlsData(mut data)) = state {
            let _ = encode(&mut self.outgoing, |out| data.encode(out));
        }
        self.incoming.drain(..discard);
    }

    /// How many bytes the next TCP read should ask for: the rest of the
    /// record being assembled (at least [`MIN_READ`]).
    fn read_size(&self) -> usize {
        let have = self.incoming.len();
        let record_end = match self.incoming.get(3..5) {
            Some(len) => 5 + usize::from(u16::from_be_bytes([len[0], len[1]])),
            None => 0,
        };
        record_end.saturating_sub(have).clamp(MIN_READ, MAX_RECORD)
    }

    /// How many bytes a handshake read asks for: the rest of the record
    /// being assembled, or a typical ClientHello's worth for a new one.
    fn handshake_read_size(&self) -> usize {
        let have = self.incoming.len();
        let at = self.unfinished_record_start();
        match self.incoming.get(at + 3..at + 5) {
            Some(len) => (at + 5 + usize::from(u16::from_be_bytes([len[0], len[1]])))
                .saturating_sub(have)
                .max(1),
            None => 512,
        }
    }

    /// Where the last, unfinished record in `incoming` starts (rustls may
    /// keep whole earlier records there, parts of a handshake message).
    fn unfinished_record_start(&self) -> usize {
        let mut at = 0;
        while let Some(len) = self.incoming.get(at + 3..at + 5) {
            let end = at + 5 + usize::from(u16::from_be_bytes([len[0], len[1]]));
            if end > self.incoming.len() {
                break;
            }
            at = end;
        }
        at
    }

    /// Appends bytes read from the peer.
    fn received(&mut self, bytes: &[u8]) -> Result<(), TlsError> {
        if self.incoming.len() + bytes.len() > MAX_INCOMING {
            return Err(TlsError::TooLarge);
        }
        self.incoming.extend_from_slice(bytes);
        Ok(())
    }

    /// Copies decrypted bytes into `buf`.
    fn take_plaintext(&mut self, buf: &mut [u8]) -> usize {
        let ready = &self.plaintext[self.plain_at..];
        let n = ready.len().min(buf.len());
        buf[..n].copy_from_slice(&ready[..n]);
        self.plain_at += n;
        if self.plain_at == self.plaintext.len() {
            // Nothing buffered while the application thinks: idle
            // connections hold no plaintext buffer.
            self.plaintext = Vec::new();
            self.plain_at = 0;
        }
        n
    }

    fn has_plaintext(&self) -> bool {
        self.plain_at < self.plaintext.len()
    }

    /// Releases buffers that hold nothing (before waiting for the peer).
    fn shrink_idle(&mut self) {
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
        if self.outgoing.is_empty() {
            self.outgoing = Vec::new();
        }
    }

    /// Queues close_notify, once.
    fn close_notify(&mut self) -> Result<(), TlsError> {
        if self.sent_close {
            return Ok(());
        }
        loop {
            let UnbufferedStatus { discard, state } = self.conn.process(&mut self.incoming);
            let done = match state {
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    encrypt_into(&mut self.outgoing, encrypted_size(2), |out| {
                        traffic.queue_close_notify(out)
                    })?;
                    true
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    encode(&mut self.outgoing, |out| data.encode(out))?;
                    false
                }
                Ok(ConnectionState::TransmitTlsData(data)) => {
                    data.done();
                    false
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    while let Some(record) = traffic.next_record() {
                        record.map_err(TlsError::Protocol)?;
                    }
                    false
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    false
                }
                // Closed already, or nothing that can carry an alert.
                Ok(_) => true,
                Err(e) => return Err(TlsError::Protocol(e)),
            };
            self.incoming.drain(..discard);
            if done {
                self.sent_close = true;
                return Ok(());
            }
        }
    }
}

/// Appends what `f` encodes to `out`, growing it as rustls asks.
fn encode(
    out: &mut Vec<u8>,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<(), TlsError> {
    grow_and_write(out, FIRST_ENCODE_ROOM, |spare| match f(spare) {
        Ok(n) => Ok(n),
        Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
            Err(Some(required_size))
        }
        Err(EncodeError::AlreadyEncoded) => Err(None),
    })
}

/// Appends what `f` encrypts to `out`, trying `room` bytes first (see
/// [`encrypted_size`]) and growing it as rustls asks.
fn encrypt_into(
    out: &mut Vec<u8>,
    room: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), TlsError> {
    let mut failure = None;
    let result = grow_and_write(out, room, |spare| match f(spare) {
        Ok(n) => Ok(n),
        Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
            Err(Some(required_size))
        }
        Err(e) => {
            failure = Some(e);
            Err(None)
        }
    });
    match failure {
        Some(EncryptError::EncryptExhausted) => {
            Err(TlsError::Protocol(rustls::Error::EncryptError))
        }
        Some(_) => Err(TlsError::Protocol(rustls::Error::General(
            "cannot encrypt".into(),
        ))),
        None => result,
    }
}

/// Calls `f` on `room` bytes at the end of `out`, then on as many as it
/// asks for until it fits; `Err(Some(n))` asks for `n` bytes, `Err(None)`
/// is a failure.
fn grow_and_write(
    out: &mut Vec<u8>,
    mut room: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> Result<(), TlsError> {
    let start = out.len();
    loop {
        out.resize(start + room, 0);
        match f(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(Some(required)) if required > room => room = required,
            Err(_) => {
                out.truncate(start);
                return Err(TlsError::Protocol(rustls::Error::General(
                    "cannot encode a TLS record".into(),
                )));
            }
        }
    }
}

/// Runs the handshake on `tcp` until application data may flow both ways.
pub(crate) async fn handshake<C: Side, S: TcpStream>(
    conn: C,
    tcp: &mut S,
) -> Result<Session<C>, TlsError> {
    let mut session = Session::new(conn);
    loop {
        let step = session.pump(None);
        if !session.outgoing.is_empty() {
            // Sent even after an error: it is the alert that says why.
            let sent = tcp.write_all(&session.outgoing).await;
            session.outgoing.clear();
            sent.map_err(TlsError::Net)?;
        }
        match step?.0 {
            // Done: the peer may already have said all it had to say in the
            // same flight (request and close_notify behind its Finished);
            // that waits in the session for the first read.
            Need::Nothing | Need::PeerClosed if !session.conn_handshaking() => {
                session.shrink_idle();
                return Ok(session);
            }
            Need::Read => {
                // Straight into `incoming`, and only the rest of the record
                // being assembled: a stalled handshake holds what its peer
                // sent and little more (thousands of them may wait at once).
                let have = session.incoming.len();
                let want = session.handshake_read_size();
                if have + want > MAX_INCOMING {
                    return Err(TlsError::TooLarge);
                }
                session.incoming.resize(have + want, 0);
                let read = tcp.read(&mut session.incoming[have..]).await;
                let n = *read.as_ref().unwrap_or(&0);
                session.incoming.truncate(have + n);
                if read.map_err(TlsError::Net)? == 0 {
                    return Err(TlsError::Net(NetError::ConnectionReset));
                }
            }
            // The peer closed before the handshake ended (pump never says
            // Nothing while handshaking).
            Need::Nothing | Need::PeerClosed | Need::Closed => {
                return Err(TlsError::Net(NetError::ConnectionReset))
            }
        }
    }
}

/// An established TLS connection: reads and writes application data, like
/// the TCP stream under it. Made by [`crate::TlsAcceptor::accept`] or
/// [`crate::TlsConnector::connect`].
pub struct TlsStream<S: TcpStream, C: Side> {
    reader: TlsReadHalf<S::ReadHalf, C>,
    writer: TlsWriteHalf<S::WriteHalf, C>,
}

/// The receiving half of a [`TlsStream`].
pub struct TlsReadHalf<R, C> {
    tcp: R,
    session: Rc<RefCell<Session<C>>>,
}

/// The sending half of a [`TlsStream`].
pub struct TlsWriteHalf<W, C> {
    tcp: W,
    session: Rc<RefCell<Session<C>>>,
}

impl<S: TcpStream, C: Side> TlsStream<S, C> {
    pub(crate) fn new(tcp: S, session: Session<C>) -> Self {
        let session = Rc::new(RefCell::new(session));
        let (read, write) = tcp.into_split();
        TlsStream {
            reader: TlsReadHalf {
                tcp: read,
                session: session.clone(),
            },
            writer: TlsWriteHalf {
                tcp: write,
                session,
            },
        }
    }

    /// The application protocol agreed by ALPN (`b"http/1.1"`), if any.
    pub fn alpn_protocol(&self) -> Option<Vec<u8>> {
        let session = self.reader.session.borrow();
        session.conn.common().alpn_protocol().map(<[u8]>::to_vec)
    }

    /// The TLS version agreed (`TLSv1_3` or `TLSv1_2`).
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.reader
            .session
            .borrow()
            .conn
            .common()
            .protocol_version()
    }

    /// The cipher suite agreed.
    pub fn cipher_suite(&self) -> Option<rustls::CipherSuite> {
        let session = self.reader.session.borrow();
        session
            .conn
            .common()
            .negotiated_cipher_suite()
            .map(|s| s.suite())
    }
}

impl<R: TcpRead, C: Side> TcpRead for TlsReadHalf<R, C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let want = {
                let mut session = self.session.borrow_mut();
                if session.has_plaintext() {
                    return Ok(session.take_plaintext(buf));
                }
                if let Some(e) = session.failed {
                    return Err(e);
                }
                match session.pump(None) {
                    Err(e) => {
                        let e = e.net_error();
                        session.failed = Some(e);
                        return Err(e);
                    }
                    Ok(_) if session.has_plaintext() => continue,
                    Ok((Need::PeerClosed | Need::Closed, _)) => return Ok(0),
                    Ok(_) => {}
                }
                session.shrink_idle();
                session.read_size()
            };
            // The caller's buffer holds the ciphertext while we wait (it
            // gets the plaintext afterwards), so an idle connection waits
            // holding no buffer of its own; a small one gets a scratch one.
            let mut scratch = Vec::new();
            let landing: &mut [u8] = if buf.len() >= MIN_READ {
                let len = buf.len().min(want);
                &mut buf[..len]
            } else {
                scratch.resize(want, 0);
                &mut scratch
            };
            let n = self.tcp.read(landing).await?;
            let chunk = &landing[..n];
            let mut session = self.session.borrow_mut();
            if n == 0 {
                // TCP ended without close_notify: the data may be cut short,
                // which a reader must not take for the whole.
                session.failed = Some(NetError::ConnectionReset);
                return Err(NetError::ConnectionReset);
            }
            if let Err(e) = session.received(chunk) {
                let e = e.net_error();
                session.failed = Some(e);
                return Err(e);
            }
        }
    }

    fn peer_addr(&self) -> SocketAddr {
        self.tcp.peer_addr()
    }
}

impl<W: TcpWrite, C: Side> TlsWriteHalf<W, C> {
    /// Sends what the session has made (records, alerts, handshake messages).
    async fn flush(&mut self) -> Result<(), NetError> {
        let out = core::mem::take(&mut self.session.borrow_mut().outgoing);
        if out.is_empty() {
            return Ok(());
        }
        let sent = self.tcp.write_all(&out).await;
        if let Err(e) = sent {
            self.session.borrow_mut().failed = Some(e);
        }
        sent
    }
}

impl<W: TcpWrite, C: Side> TcpWrite for TlsWriteHalf<W, C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let taken = {
            let mut session = self.session.borrow_mut();
            if let Some(e) = session.failed {
                return Err(e);
            }
            if session.sent_close {
                return Err(NetError::Closed);
            }
            match session.pump(Some(buf)) {
                Ok((_, taken)) => taken,
                Err(e) => {
                    let e = e.net_error();
                    session.failed = Some(e);
                    return Err(e);
                }
            }
        };
        self.flush().await?;
        if taken == 0 {
            // Still handshaking (a renegotiation attempt or a peer that
            // closed): nothing can be sent.
            return Err(NetError::Closed);
        }
        Ok(taken)
    }

    async fn shutdown(&mut self) -> Result<(), NetError> {
        let queued = self.session.borrow_mut().close_notify();
        let flushed = self.flush().await;
        let closed = self.tcp.shutdown().await;
        queued.map_err(|e| e.net_error())?;
        flushed?;
        closed
    }
}

impl<S: TcpStream, C: Side> TcpRead for TlsStream<S, C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        self.reader.read(buf).await
    }
    fn peer_addr(&self) -> SocketAddr {
        self.reader.peer_addr()
    }
}

impl<S: TcpStream, C: Side> TcpWrite for TlsStream<S, C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        self.writer.write(buf).await
    }
    async fn shutdown(&mut self) -> Result<(), NetError> {
        self.writer.shutdown().await
    }
}

impl<S: TcpStream, C: Side> TcpStream for TlsStream<S, C> {
    type ReadHalf = TlsReadHalf<S::ReadHalf, C>;
    type WriteHalf = TlsWriteHalf<S::WriteHalf, C>;
    fn into_split(self) -> (Self::ReadHalf, Self::WriteHalf) {
        (self.reader, self.writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_size_covers_every_record() {
        // TLS 1.2 AES-GCM, the largest expansion: 29 bytes a record.
        let tls12_gcm = |len: usize| len + len.div_ceil(MAX_FRAGMENT).max(1) * 29;
        for len in [
            0,
            1,
            1540,
            MAX_FRAGMENT - 1,
            MAX_FRAGMENT,
            MAX_FRAGMENT + 1,
            MAX_WRITE_PLAINTEXT,
        ] {
            assert!(encrypted_size(len) >= tls12_gcm(len), "{len} bytes");
            // And not much more: one allocation of about the right size.
            assert!(encrypted_size(len) <= len + 29 * (len / MAX_FRAGMENT + 1));
        }
        assert_eq!(encrypted_size(1540), 1540 + 29);
        assert_eq!(encrypted_size(MAX_FRAGMENT + 1), MAX_FRAGMENT + 1 + 2 * 29);
    }

    #[test]
    fn grow_and_write_tries_the_room_given_first() {
        // Enough room: one call, nothing left over.
        let mut out = b"old".to_vec();
        let mut calls = 0;
        grow_and_write(&mut out, 100, |spare| {
            calls += 1;
            assert_eq!(spare.len(), 100);
            spare[..4].copy_from_slice(b"abcd");
            Ok(4)
        })
        .unwrap();
        assert_eq!((calls, &out[..]), (1, &b"oldabcd"[..]));
        // Too little: the size asked for, then success.
        let mut calls = 0;
        grow_and_write(&mut out, 2, |spare| {
            calls += 1;
            if spare.len() < 6 {
                return Err(Some(6));
            }
            spare[..6].copy_from_slice(b"efghij");
            Ok(6)
        })
        .unwrap();
        assert_eq!((calls, &out[..]), (2, &b"oldabcdefghij"[..]));
        // A failure leaves `out` as it was.
        assert!(grow_and_write(&mut out, 8, |_| Err(None)).is_err());
        assert_eq!(&out[..], b"oldabcdefghij");
    }
}
