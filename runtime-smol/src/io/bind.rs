//! Binding a listening address. `[::]:PORT`, the unspecified IPv6 address (what `--listen`
//! defaults to), means every interface, IPv4 and IPv6: two sockets on one port, an IPv4 one
//! on `0.0.0.0` and an IPv6-only one on `[::]`. Two sockets rather than one dual-stack
//! socket, so an IPv4 peer is seen at its IPv4 address (not `::ffff:a.b.c.d`), and per-address
//! limits count it as the address it is; and it works the same whatever the host's
//! `bindv6only` setting. A host without IPv6 gets the IPv4 socket alone.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};

/// Free ports tried for every interface before giving up, when the one the kernel chose
/// for IPv4 is taken on IPv6.
const FREE_PORT_ATTEMPTS: u32 = 8;
/// Connections waiting to be accepted, per socket (the kernel caps it at `somaxconn`).
const BACKLOG: i32 = 1024;

/// Whether `addr` asks for every interface (see the module doc).
pub fn is_every_interface(addr: SocketAddr) -> bool {
    addr.ip() == Ipv6Addr::UNSPECIFIED
}

/// Binds `addr` (non-blocking sockets): one socket, or two for every interface (the IPv4
/// one first). The port is the same on all.
pub fn bind(addr: SocketAddr) -> anyhow::Result<Vec<TcpListener>> {
    let listeners = if is_every_interface(addr) {
        bind_every_interface(addr.port())
    } else {
        bind_one(addr, false).map(|listener| vec![listener])
    };
    listeners.with_context(|| format!("cannot listen on {addr}"))
}

fn bind_every_interface(port: u16) -> io::Result<Vec<TcpListener>> {
    let mut attempt = 1;
    loop {
        let v4 = bind_one(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), false)?;
        let bound_port = v4.local_addr()?.port();
        match bind_one(SocketAddr::from((Ipv6Addr::UNSPECIFIED, bound_port)), true) {
            Ok(v6) => return Ok(vec![v4, v6]),
            // The free IPv4 port the kernel chose is taken on IPv6: choose again.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && port == 0 => {
                if attempt == FREE_PORT_ATTEMPTS {
                    return Err(e);
                }
                attempt += 1;
            }
            // The port asked for is taken on IPv6: as taken as on IPv4.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(e),
            Err(e) => {
                // No IPv6 on this host: IPv4 still serves, and tickets list IPv4 alone.
                tracing::info!("listening on IPv4 only: cannot listen on [::]:{bound_port}: {e}");
                return Ok(vec![v4]);
            }
        }
    }
}

fn bind_one(addr: SocketAddr, v6_only: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if v6_only {
        socket.set_only_v6(true)?;
    }
    // As std does: a restarted process can bind its port again at once.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interface_is_ipv4_and_ipv6_on_one_port() {
        let listeners = bind("[::]:0".parse().unwrap()).unwrap();
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        assert!(
            addrs[0].ip().is_unspecified() && addrs[0].is_ipv4(),
            "{addrs:?}"
        );
        if let Some(v6) = addrs.get(1) {
            assert!(v6.is_ipv6() && v6.ip().is_unspecified(), "{addrs:?}");
            assert_eq!(v6.port(), addrs[0].port());
        }
        let one = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(one.len(), 1);
        assert!(one[0].local_addr().unwrap().ip().is_loopback());
    }
}
