//! The network options every MQTT connection of the gateway shares: the alert session and telemetry, the Sparkplug
//! B edge node, and the command line's commands and alert viewer.
//!
//! Nagle's algorithm is off. The messages are small and each one's latency matters; with Nagle on, a small write
//! waits while an earlier one is unacknowledged, and a peer with nothing to send acknowledges only when its
//! delayed-ACK timer fires (40 ms on Linux). rumqttc writes what one turn of its event loop queued in one write, so
//! a burst sent at once does not meet it (a Sparkplug B commit's DDATA for five devices arrived within 0.4 ms with
//! Nagle on too); a write that follows an unacknowledged one in a later turn would — as a subscriber that writes
//! each PUBACK on its own did, measured: docs/mqtt.md, "Subscriber note".

use rumqttc::{AsyncClient, EventLoop, MqttOptions};

/// A client and its event loop (`cap` requests queued at most), with Nagle off; rumqttc's other network defaults
/// (5 s to connect) stay.
pub fn client(opts: MqttOptions, cap: usize) -> (AsyncClient, EventLoop) {
    let (client, mut ev) = AsyncClient::new(opts, cap);
    let mut net = ev.network_options();
    net.set_tcp_nodelay(true);
    ev.set_network_options(net);
    (client, ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this process's TCP socket from local `port` to remote `peer` (both on 127.0.0.1) has TCP_NODELAY
    /// set; `None` when no such socket is open.
    fn nodelay(port: u16, peer: u16) -> Option<bool> {
        let ipv4 = |get: unsafe extern "C" fn(
            libc::c_int,
            *mut libc::sockaddr,
            *mut libc::socklen_t,
        ) -> libc::c_int,
                    fd: libc::c_int| {
            // SAFETY: an all-zero sockaddr_in is a valid value (plain integers).
            let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            // SAFETY: getsockname/getpeername write at most `len` bytes into `a`, and fail on a descriptor that is
            // not a socket (any descriptor number may be passed).
            let r = unsafe { get(fd, (&mut a as *mut libc::sockaddr_in).cast(), &mut len) };
            (r == 0 && i32::from(a.sin_family) == libc::AF_INET).then(|| u16::from_be(a.sin_port))
        };
        for fd in 0..4096 {
            if ipv4(libc::getsockname, fd) != Some(port)
                || ipv4(libc::getpeername, fd) != Some(peer)
            {
                continue;
            }
            let mut v: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: `v` is a c_int and `len` its size, as TCP_NODELAY's value is.
            let r = unsafe {
                libc::getsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&mut v as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            if r == 0 {
                return Some(v != 0);
            }
        }
        None
    }

    #[tokio::test]
    async fn a_connection_has_nagle_off() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        // The look at the socket can tell: a plain connection has Nagle on.
        let plain = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (_, plain_local) = l.accept().await.expect("accept");
        assert_eq!(nodelay(plain_local.port(), port), Some(false));
        drop(plain);
        let (_c, mut ev) = client(MqttOptions::new("nodelay", "127.0.0.1", port), 4);
        // The event loop connects, sends CONNECT and waits for a CONNACK that never comes: the socket stays open
        // meanwhile (up to the 5 s connection timeout).
        let polling = tokio::spawn(async move {
            let _ = ev.poll().await;
        });
        let (_broker_side, local) = l.accept().await.expect("accept");
        assert_eq!(nodelay(local.port(), port), Some(true));
        polling.abort();
    }
}
