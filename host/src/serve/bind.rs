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
/// other worker to accept from.
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
    let others = (1..workers)
        .map(|_| reusing_port(local).map(OwnedFd::from))
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok((TcpListener::from_std(own.into())?, others))
}

fn reusing_port(addr: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // What `TcpListener::bind` sets, so a restart need not wait out TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket)
}
