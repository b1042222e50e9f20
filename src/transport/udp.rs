//! Plain UDP over a tokio socket, IPv4 and IPv6.
//!
//! UDP already has the semantics the [`Transport`] trait asks for — whole
//! datagrams, loss and reordering allowed — so this file is mostly about
//! the edges: refusing payloads over the configured budget, receiving into
//! a buffer one byte larger than [`MAX_DATAGRAM`] so an oversized datagram
//! shows up as oversized instead of silently cut to a plausible length, and
//! passing OS errors up as transient [`TransportError::Io`] so an ICMP
//! "port unreachable" from one dead peer never stops the node.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::sync::Mutex;

use bytes::Bytes;
use tokio::net::UdpSocket;

use super::{MAX_DATAGRAM, Transport, TransportError};

/// Settings of a [`Udp`] transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpConfig {
    /// Largest payload `send` accepts, in bytes; the budget the engine packs
    /// packets into. Range [`UdpConfig::MIN_MAX_PAYLOAD`]..=[`MAX_DATAGRAM`]
    /// (64..=65,507); default [`UdpConfig::DEFAULT_MAX_PAYLOAD`] (1,400),
    /// which fits a 1,500-byte Ethernet MTU under IPv6 and UDP headers with
    /// room for a tunnel, so datagrams are never fragmented on common paths.
    pub max_payload: usize,
}

impl UdpConfig {
    /// Default of [`UdpConfig::max_payload`], in bytes.
    pub const DEFAULT_MAX_PAYLOAD: usize = 1_400;

    /// Smallest accepted [`UdpConfig::max_payload`], in bytes: below this
    /// not even a probe with its headers fits.
    pub const MIN_MAX_PAYLOAD: usize = 64;

    /// Checks every field; the error names the field and its valid range.
    pub fn validate(&self) -> Result<(), TransportError> {
        if !(Self::MIN_MAX_PAYLOAD..=MAX_DATAGRAM).contains(&self.max_payload) {
            return Err(TransportError::Setup(format!(
                "UdpConfig.max_payload is {} bytes, must be in {}..={}",
                self.max_payload,
                Self::MIN_MAX_PAYLOAD,
                MAX_DATAGRAM
            )));
        }
        Ok(())
    }
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            max_payload: Self::DEFAULT_MAX_PAYLOAD,
        }
    }
}

/// A [`Transport`] over one UDP socket.
///
/// # Receiving
///
/// `recv` returns datagrams larger than [`Transport::max_payload`] as they
/// arrived: the peer may have a larger budget, and the layer above decides
/// (it counts and drops them). The receive buffer is `MAX_DATAGRAM + 1`
/// bytes, so a datagram returned longer than [`MAX_DATAGRAM`] is oversized
/// and may have been truncated by the OS (possible over IPv6, whose limit
/// is higher); treat it as hostile.
///
/// # Addresses
///
/// On an IPv6 socket, IPv4-mapped sources (`::ffff:a.b.c.d`) are reported as
/// plain IPv4 addresses and IPv4 destinations are mapped back on `send`, so
/// a peer has one address whichever socket family sees it.
///
/// The OS default socket receive buffer is kept: neither std nor tokio can
/// set `SO_RCVBUF` on a UDP socket. To tune it, configure a socket yourself
/// (e.g. with `socket2`) and hand it to [`Udp::from_std`].
pub struct Udp {
    socket: UdpSocket,
    local_addr: SocketAddr,
    max_payload: usize,
    /// One receive buffer reused for every datagram; only locked around the
    /// non-blocking `try_recv_from`, never across an `.await`.
    buf: Mutex<Box<[u8]>>,
    /// The socket's inode, which names its row in `/proc/net/udp` (Linux).
    inode: Option<u64>,
}

impl Udp {
    /// Binds a UDP socket at `addr` with [`UdpConfig::default`].
    /// Port 0 lets the OS pick a free port; see [`Transport::local_addr`].
    pub async fn bind(addr: SocketAddr) -> Result<Udp, TransportError> {
        Self::bind_with(addr, UdpConfig::default()).await
    }

    /// Binds a UDP socket at `addr` with `config`. Fails with
    /// [`TransportError::Setup`] if the config is invalid or the bind fails.
    pub async fn bind_with(addr: SocketAddr, config: UdpConfig) -> Result<Udp, TransportError> {
        config.validate()?;
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|e| TransportError::Setup(format!("bind UDP {addr}: {e}")))?;
        Self::from_tokio(socket, &config)
    }

    /// Wraps a bound std socket, for socket options this type does not set.
    /// The socket is switched to non-blocking mode. Must be called inside a
    /// tokio runtime with I/O enabled, else it fails with
    /// [`TransportError::Setup`].
    pub fn from_std(socket: std::net::UdpSocket, config: UdpConfig) -> Result<Udp, TransportError> {
        config.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(TransportError::Setup(
                "Udp::from_std needs a tokio runtime".to_owned(),
            ));
        }
        let setup = |e: io::Error| TransportError::Setup(format!("UDP socket: {e}"));
        socket.set_nonblocking(true).map_err(setup)?;
        Self::from_tokio(UdpSocket::from_std(socket).map_err(setup)?, &config)
    }

    fn from_tokio(socket: UdpSocket, config: &UdpConfig) -> Result<Udp, TransportError> {
        let local_addr = socket
            .local_addr()
            .map_err(|e| TransportError::Setup(format!("UDP local address: {e}")))?;
        let inode = socket_inode(&socket);
        Ok(Udp {
            socket,
            local_addr,
            max_payload: config.max_payload,
            buf: Mutex::new(vec![0; MAX_DATAGRAM + 1].into_boxed_slice()),
            inode,
        })
    }
}

/// The inode of a socket, from its `/proc/self/fd` link (`socket:[N]`);
/// `None` off Linux.
#[cfg(target_os = "linux")]
fn socket_inode(socket: &UdpSocket) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let link = std::fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd())).ok()?;
    let link = link.to_str()?;
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn socket_inode(_: &UdpSocket) -> Option<u64> {
    None
}

/// The `drops` column of the row of socket `inode` in a `/proc/net/udp`
/// table (`inode` is the tenth column, `drops` the last).
fn drops_in(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(9)?.parse::<u64>().ok()? != inode {
            return None;
        }
        cols.last()?.parse().ok()
    })
}

impl fmt::Debug for Udp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Udp")
            .field("local_addr", &self.local_addr)
            .field("max_payload", &self.max_payload)
            .finish_non_exhaustive()
    }
}

impl Transport for Udp {
    /// Sends one datagram. Empty payloads are sent as empty datagrams.
    async fn send(&self, to: SocketAddr, payload: Bytes) -> Result<(), TransportError> {
        TransportError::check_len(payload.len(), self.max_payload)?;
        let to = destination(self.local_addr, to);
        let sent = self.socket.send_to(&payload, to).await?;
        if sent != payload.len() {
            // UDP sends all or nothing; anything else is an OS oddity.
            return Err(io::Error::other(format!("sent {sent} of {} bytes", payload.len())).into());
        }
        Ok(())
    }

    /// Cancellation safe: waiting for readiness holds no data, and the read
    /// itself never awaits.
    async fn recv(&self) -> Result<(SocketAddr, Bytes), TransportError> {
        loop {
            self.socket.readable().await?;
            let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
            match self.socket.try_recv_from(&mut buf) {
                Ok((len, from)) => {
                    let bytes = buf.get(..len).unwrap_or(&buf[..]);
                    return Ok((source(from), Bytes::copy_from_slice(bytes)));
                }
                // Readiness was spurious (or another receiver won the race).
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn max_payload(&self) -> usize {
        self.max_payload
    }

    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Reads the socket's row of `/proc/net/udp` (or `udp6`) on Linux.
    fn os_receive_drops(&self) -> Option<u64> {
        let inode = self.inode?;
        let table = match self.local_addr {
            SocketAddr::V4(_) => "/proc/net/udp",
            SocketAddr::V6(_) => "/proc/net/udp6",
        };
        drops_in(&std::fs::read_to_string(table).ok()?, inode)
    }
}

/// Reports an IPv4-mapped IPv6 source as the IPv4 address it stands for.
fn source(from: SocketAddr) -> SocketAddr {
    SocketAddr::new(from.ip().to_canonical(), from.port())
}

/// Maps `to` into the family of the local socket where possible: IPv4 to
/// IPv4-mapped IPv6 on an IPv6 socket and back on an IPv4 socket. Anything
/// else is left for the OS to refuse as a transient error.
fn destination(local: SocketAddr, to: SocketAddr) -> SocketAddr {
    match (local, to.ip()) {
        (SocketAddr::V6(_), IpAddr::V4(ip)) => {
            SocketAddr::V6(SocketAddrV6::new(ip.to_ipv6_mapped(), to.port(), 0, 0))
        }
        (SocketAddr::V4(_), IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), to.port()),
            None => to,
        },
        _ => to,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_drops_column_is_read_from_the_sockets_row() {
        let table = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 1234: 0100007F:A1B2 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 0
 1235: 0100007F:A1B3 00000000:0000 07 00000000:00034000 00:00000000 00000000     0        0 4343 2 0000000000000000 117
";
        assert_eq!(drops_in(table, 4343), Some(117));
        assert_eq!(drops_in(table, 4242), Some(0));
        assert_eq!(drops_in(table, 99), None);
    }

    /// A socket nobody reads from drops what overflows its buffer, and the
    /// transport reports it (Linux only: elsewhere it says `None`).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_full_receive_buffer_shows_as_os_drops() {
        let rx = Udp::bind(V4.parse().unwrap()).await.unwrap();
        let tx = Udp::bind(V4.parse().unwrap()).await.unwrap();
        assert_eq!(rx.os_receive_drops(), Some(0));
        let payload = Bytes::from(vec![7u8; 1_400]);
        // Far more than any default receive buffer holds (~200 KiB).
        for _ in 0..2_000 {
            tx.send(rx.local_addr(), payload.clone()).await.unwrap();
        }
        let drops = rx.os_receive_drops().expect("read on Linux");
        assert!(drops > 0, "no drops after 2.8 MB into an unread socket");
        assert_eq!(tx.os_receive_drops(), Some(0));
    }

    const V4: &str = "127.0.0.1:0";
    const V6: &str = "[::1]:0";

    async fn recv(t: &Udp) -> (SocketAddr, Bytes) {
        tokio::time::timeout(Duration::from_secs(5), t.recv())
            .await
            .expect("no datagram within 5 s")
            .expect("recv failed")
    }

    async fn round_trip(local: &str) {
        let a = Udp::bind(local.parse().unwrap()).await.unwrap();
        let b = Udp::bind(local.parse().unwrap()).await.unwrap();
        assert_ne!(a.local_addr().port(), 0);
        a.send(b.local_addr(), Bytes::from_static(b"ping"))
            .await
            .unwrap();
        let (from, bytes) = recv(&b).await;
        assert_eq!((from, &bytes[..]), (a.local_addr(), &b"ping"[..]));
        b.send(from, Bytes::from_static(b"ack")).await.unwrap();
        assert_eq!(recv(&a).await, (b.local_addr(), Bytes::from_static(b"ack")));
    }

    /// Binds `[::1]:0`, or `None` where the host has no IPv6 loopback.
    async fn bind_v6() -> Option<Udp> {
        match Udp::bind(V6.parse().unwrap()).await {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("skipping IPv6 test: {e}");
                None
            }
        }
    }

    #[tokio::test]
    async fn round_trip_ipv4() {
        round_trip(V4).await;
    }

    #[tokio::test]
    async fn round_trip_ipv6() {
        if bind_v6().await.is_some() {
            round_trip(V6).await;
        }
    }

    #[tokio::test]
    async fn config_out_of_range_names_the_field() {
        for bad in [0, 63, MAX_DATAGRAM + 1] {
            let config = UdpConfig { max_payload: bad };
            let err = Udp::bind_with(V4.parse().unwrap(), config)
                .await
                .unwrap_err();
            assert!(
                matches!(&err, TransportError::Setup(m) if m.contains("max_payload")),
                "{err}"
            );
        }
        for good in [64, MAX_DATAGRAM] {
            UdpConfig { max_payload: good }.validate().unwrap();
        }
    }

    #[tokio::test]
    async fn send_refuses_payload_over_budget() {
        let config = UdpConfig { max_payload: 100 };
        let a = Udp::bind_with(V4.parse().unwrap(), config).await.unwrap();
        let err = a
            .send(a.local_addr(), Bytes::from(vec![1; 101]))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            TransportError::TooLarge { len: 101, max: 100 }
        ));
    }

    #[tokio::test]
    async fn datagram_over_max_payload_is_returned_whole() {
        let a = Udp::bind(V4.parse().unwrap()).await.unwrap();
        let raw = std::net::UdpSocket::bind(V4).unwrap();
        raw.send_to(&[7; 2_000], a.local_addr()).unwrap();
        assert_eq!(recv(&a).await.1.len(), 2_000);
    }

    #[tokio::test]
    async fn datagram_over_max_datagram_is_visible_as_oversized() {
        // Only IPv6 can carry more than MAX_DATAGRAM bytes of UDP payload.
        let Some(a) = bind_v6().await else { return };
        let raw = std::net::UdpSocket::bind(V6).unwrap();
        if raw
            .send_to(&[7; MAX_DATAGRAM + 10], a.local_addr())
            .is_err()
        {
            return; // the host refuses such datagrams outright
        }
        assert!(recv(&a).await.1.len() > MAX_DATAGRAM);
    }

    #[test]
    fn ipv4_mapped_addresses_are_normalised() {
        let v4: SocketAddr = "10.0.0.1:7".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:7".parse().unwrap();
        let v6_local: SocketAddr = "[::]:1".parse().unwrap();
        let v4_local: SocketAddr = "0.0.0.0:1".parse().unwrap();
        assert_eq!(source(mapped), v4);
        assert_eq!(destination(v6_local, v4), mapped);
        assert_eq!(destination(v4_local, mapped), v4);
        assert_eq!(destination(v4_local, v4), v4);
    }
}
