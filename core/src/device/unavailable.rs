use super::*;
use alloc::vec::Vec;
use core::net::SocketAddr;

/// The device type of a family a target does not have: it has no values,
/// so a target names it in its [`Platform`](crate::Platform) and returns
/// [`DeviceError::Unsupported`](crate::DeviceError::Unsupported) when asked
/// for one; its methods can never run.
#[derive(Debug, Clone, Copy)]
pub enum Unavailable {}

impl Stack for Unavailable {
    type TcpListener = Unavailable;
    type TcpStream = Unavailable;
    type UdpSocket = Unavailable;
    async fn tcp_listen(&self, _: SocketAddr) -> Result<Unavailable, NetError> {
        match *self {}
    }
    async fn tcp_connect(&self, _: SocketAddr) -> Result<Unavailable, NetError> {
        match *self {}
    }
    async fn udp_bind(&self, _: SocketAddr) -> Result<Unavailable, NetError> {
        match *self {}
    }
}

impl TcpListener for Unavailable {
    type Stream = Unavailable;
    async fn accept(&self) -> Result<(Unavailable, SocketAddr), NetError> {
        match *self {}
    }
    fn local_addr(&self) -> SocketAddr {
        match *self {}
    }
}

impl TcpStream for Unavailable {
    type ReadHalf = Unavailable;
    type WriteHalf = Unavailable;
    fn into_split(self) -> (Unavailable, Unavailable) {
        match self {}
    }
}

impl TcpRead for Unavailable {
    async fn read(&mut self, _: &mut [u8]) -> Result<usize, NetError> {
        match *self {}
    }
    fn peer_addr(&self) -> SocketAddr {
        match *self {}
    }
}

impl TcpWrite for Unavailable {
    async fn write(&mut self, _: &[u8]) -> Result<usize, NetError> {
        match *self {}
    }
    async fn shutdown(&mut self) -> Result<(), NetError> {
        match *self {}
    }
}

impl UdpSocket for Unavailable {
    async fn send_to(&self, _: &[u8], _: SocketAddr) -> Result<(), NetError> {
        match *self {}
    }
    async fn recv_from(&self, _: &mut [u8]) -> Result<(usize, SocketAddr), NetError> {
        match *self {}
    }
    fn local_addr(&self) -> SocketAddr {
        match *self {}
    }
}

impl KvRead for Unavailable {
    type Value = Vec<u8>;
    async fn get(&self, _: &str) -> Result<Vec<u8>, KvError> {
        match *self {}
    }
    async fn size(&self, _: &str) -> Result<u64, KvError> {
        match *self {}
    }
    async fn list(&self, _: &str) -> Result<Vec<KvEntry>, KvError> {
        match *self {}
    }
}

impl KvWrite for Unavailable {
    async fn set(&self, _: &str, _: &[u8]) -> Result<(), KvError> {
        match *self {}
    }
    async fn remove(&self, _: &str) -> Result<(), KvError> {
        match *self {}
    }
}

impl Netif for Unavailable {
    fn mac(&self) -> [u8; 6] {
        match *self {}
    }
    fn mtu(&self) -> usize {
        match *self {}
    }
    async fn receive(&self, _: &mut [u8]) -> Result<usize, NetError> {
        match *self {}
    }
    fn try_receive(&self, _: &mut [u8]) -> Result<Option<usize>, NetError> {
        match *self {}
    }
    fn transmit(&self, _: &[u8]) -> Result<(), NetError> {
        match *self {}
    }
}

impl Block for Unavailable {
    fn info(&self) -> BlockInfo {
        match *self {}
    }
    async fn read(&self, _: u64, _: &mut [u8]) -> Result<(), BlockError> {
        match *self {}
    }
    async fn write(&self, _: u64, _: &[u8]) -> Result<(), BlockError> {
        match *self {}
    }
    async fn flush(&self) -> Result<(), BlockError> {
        match *self {}
    }
}
