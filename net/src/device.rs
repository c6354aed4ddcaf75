//! smoltcp's `Device` over a [`Netif`]: receive with `try_receive`, transmit
//! with `transmit`, one frame buffer each way.

use alloc::vec::Vec;
use lamina_core::device::Netif;
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Borrowed for one `Interface::poll`.
pub struct NetifDevice<'a, N: Netif> {
    /// The interface.
    pub netif: &'a N,
    /// Receive buffer; `pending` bytes of it hold a frame already received.
    pub rx: &'a mut Vec<u8>,
    /// Length of the frame waiting in `rx`, if any.
    pub pending: &'a mut Option<usize>,
    /// Transmit buffer.
    pub tx: &'a mut Vec<u8>,
    /// Frames that could not be received (too large, device errors).
    pub rx_errors: &'a mut u64,
}

/// A received frame.
pub struct RxToken<'a> {
    frame: &'a mut [u8],
}

/// Room to build a frame to send.
pub struct TxToken<'a, N: Netif> {
    netif: &'a N,
    buf: &'a mut Vec<u8>,
}

impl<N: Netif> phy::Device for NetifDevice<'_, N> {
    type RxToken<'b>
        = RxToken<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = TxToken<'b, N>
    where
        Self: 'b;

    fn receive(&mut self, _: Instant) -> Option<(RxToken<'_>, TxToken<'_, N>)> {
        let len = match self.pending.take() {
            Some(len) => len,
            None => loop {
                match self.netif.try_receive(self.rx) {
                    Ok(Some(len)) => break len,
                    Ok(None) => return None,
                    Err(_) => *self.rx_errors += 1, // dropped; try the next frame
                }
            },
        };
        let rx = RxToken {
            frame: &mut self.rx[..len],
        };
        let tx = TxToken {
            netif: self.netif,
            buf: self.tx,
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_, N>> {
        Some(TxToken {
            netif: self.netif,
            buf: self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.netif.mtu() + 14;
        caps
    }
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

impl<N: Netif> phy::TxToken for TxToken<'_, N> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        self.buf.clear();
        self.buf.resize(len, 0);
        let result = f(self.buf);
        // A frame the link refuses is lost, as on Ethernet; TCP retransmits.
        if let Err(e) = self.netif.transmit(self.buf) {
            log::debug!("net: transmit failed: {e}");
        }
        result
    }
}
