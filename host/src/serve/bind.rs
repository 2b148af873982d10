//! Binding the serving port, for this process and for each secondary worker.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// Connections the kernel queues for each worker before it accepts them; what
/// `TcpListener::bind` uses.
const LISTEN_BACKLOG: i32 = 1024;

/// Binds `addr` for `workers` processes: this one's listener, and a socket for each
/// other worker to accept from. Those are bound but not yet listening where the kernel
/// allows that, so that no connection is queued for a worker before it listens.
pub async fn bind_workers(addr: SocketAddr, workers: u32) -> Result<(TcpListener, Vec<OwnedFd>)> {
    if workers > 1 {
        match bind_reusing_port(addr, workers) {
            Ok(bound) => return Ok(bound),
            // gVisor refuses a second socket on the port; sharing one works everywhere,
            // though whichever process wakes first takes each new connection.
            Err(error) => tracing::info!(
                "SO_REUSEPORT refused ({error}); the workers share one listening socket"
            ),
        }
    }
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr}: is another server using that port? (set PORT or --addr)")
    })?;
    let copies = (1..workers)
        .map(|_| listener.as_fd().try_clone_to_owned())
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot share the listening socket with the workers")?;
    Ok((listener, copies))
}

/// One socket per worker on the same port, with `SO_REUSEPORT`: the kernel spreads new
/// connections over them.
fn bind_reusing_port(
    addr: SocketAddr,
    workers: u32,
) -> std::io::Result<(TcpListener, Vec<OwnedFd>)> {
    let own = reusing_port(addr)?;
    let local = own
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("the bound address is not an IP address"))?;
    own.listen(LISTEN_BACKLOG)?;
    let others = (1..workers)
        .map(|_| reusing_port(local).map(OwnedFd::from))
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok((TcpListener::from_std(own.into())?, others))
}

/// Listens on `socket`, which a primary bound for this secondary: a socket of its own
/// (the kernel then sends it its share of new connections), or a copy of the primary's,
/// which already listens.
pub fn listen_on(socket: OwnedFd) -> Result<TcpListener> {
    let socket = Socket::from(socket);
    socket
        .listen(LISTEN_BACKLOG)
        .and_then(|()| socket.set_nonblocking(true))
        .and_then(|()| TcpListener::from_std(socket.into()))
        .context("stdin is not the listening socket a primary worker passes")
}

/// A socket bound to `addr` with `SO_REUSEPORT`, not yet listening.
fn reusing_port(addr: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // What `TcpListener::bind` sets, so a restart need not wait out TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}
