//! The memif control channel: Unix SOCK_SEQPACKET sockets, one 128-byte message per datagram,
//! region and interrupt fds passed as SCM_RIGHTS.
//!
//! Rules: every socket is non-blocking and close-on-exec; sends use MSG_NOSIGNAL (a dead peer
//! is an EPIPE error, never a signal); a received datagram that is not exactly 128 bytes is a
//! protocol error, not a panic; fds we did not ask for are closed as soon as the message is
//! handled (they are owned values). Server sockets: parent directories are created (0755), a
//! stale socket file (connect gives ECONNREFUSED) is replaced, a live one is an error; abstract
//! names (`@name`) get a leading NUL and no file.
use crate::memif::wire::{self, Msg, MSG_SIZE};
use crate::memif::MemifError;
use crate::shm::{accept_owned, recv_owned};
use nix::sys::socket::{
    bind, connect as nix_connect, listen as nix_listen, sendmsg, socket, AddressFamily, Backlog,
    ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::PathBuf;

/// Where a memif socket lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SockPath {
    File(PathBuf),
    /// Linux abstract name (without the leading NUL / `@`).
    Abstract(Vec<u8>),
}

impl SockPath {
    pub fn parse(s: &str) -> SockPath {
        match s.strip_prefix('@') {
            Some(name) => SockPath::Abstract(name.as_bytes().to_vec()),
            None => SockPath::File(PathBuf::from(s)),
        }
    }
    fn addr(&self) -> nix::Result<UnixAddr> {
        match self {
            SockPath::File(p) => UnixAddr::new(p.as_path()),
            SockPath::Abstract(n) => UnixAddr::new_abstract(n),
        }
    }
}

impl std::fmt::Display for SockPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SockPath::File(p) => write!(f, "{}", p.display()),
            SockPath::Abstract(n) => write!(f, "@{}", String::from_utf8_lossy(n)),
        }
    }
}

fn seqpacket() -> nix::Result<OwnedFd> {
    socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
}

fn err(path: &SockPath, what: &str, e: impl std::fmt::Display) -> MemifError {
    MemifError::Socket {
        path: path.to_string(),
        msg: format!("{what}: {e}"),
    }
}

/// Creates the listening socket of a server-role port.
pub fn listen(path: &SockPath) -> Result<OwnedFd, MemifError> {
    let addr = path
        .addr()
        .map_err(|e| err(path, "bad socket address", e))?;
    if let SockPath::File(p) = path {
        if let Some(dir) = p.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(dir)
                    .map_err(|e| err(path, "cannot create directory", e))?;
            }
        }
        if let Ok(md) = std::fs::symlink_metadata(p) {
            if !md.file_type().is_socket() {
                return Err(err(
                    path,
                    "exists and is not a socket",
                    "refusing to replace it",
                ));
            }
            let probe = seqpacket().map_err(|e| err(path, "socket", e))?;
            match nix_connect(probe.as_raw_fd(), &addr) {
                Err(nix::errno::Errno::ECONNREFUSED) => {
                    tracing::info!(socket = %path, "removing stale memif socket");
                    std::fs::remove_file(p)
                        .map_err(|e| err(path, "cannot remove stale socket", e))?;
                }
                Ok(()) | Err(nix::errno::Errno::EAGAIN) => {
                    return Err(err(path, "in use", "another process is listening on it"));
                }
                Err(e) => return Err(err(path, "cannot probe existing socket", e)),
            }
        }
    }
    let fd = seqpacket().map_err(|e| err(path, "socket", e))?;
    bind(fd.as_raw_fd(), &addr).map_err(|e| match e {
        nix::errno::Errno::EADDRINUSE => err(path, "in use", e),
        _ => err(path, "bind", e),
    })?;
    if let SockPath::File(p) = path {
        // Best effort: group members (the CNI / pod side) may connect.
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o660));
    }
    let backlog = Backlog::new(8).map_err(|e| err(path, "listen", e))?;
    nix_listen(&fd, backlog).map_err(|e| err(path, "listen", e))?;
    Ok(fd)
}

/// Connects a client-role port (non-blocking socket; unix connects complete at once or fail).
pub fn connect(path: &SockPath) -> std::io::Result<OwnedFd> {
    let addr = path.addr()?;
    let fd = seqpacket()?;
    nix_connect(fd.as_raw_fd(), &addr)?;
    Ok(fd)
}

/// Accepts a pending connection, if any.
pub fn accept(listener: &OwnedFd) -> std::io::Result<Option<OwnedFd>> {
    accept_owned(listener.as_fd())
}

/// Sends one message, with an optional fd attached.
pub fn send(sock: &OwnedFd, msg: &Msg, fd: Option<BorrowedFd<'_>>) -> std::io::Result<()> {
    let frame = wire::emit(msg);
    let iov = [IoSlice::new(&frame)];
    let raw;
    let cmsg_store;
    let cmsgs: &[ControlMessage] = match fd {
        Some(f) => {
            raw = [f.as_raw_fd()];
            cmsg_store = [ControlMessage::ScmRights(&raw)];
            &cmsg_store
        }
        None => &[],
    };
    let n = sendmsg::<UnixAddr>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
    if n != MSG_SIZE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "short control send",
        ));
    }
    Ok(())
}

/// What arrived on a control socket.
pub enum Incoming {
    /// A well-formed message and the first fd sent with it (others are closed).
    Msg(Msg, Option<OwnedFd>),
    /// A datagram that is not a valid message (reason for the DISCONNECT).
    Bad(String),
    /// Orderly shutdown or a connection error (EOF, ECONNRESET, ...).
    Closed(String),
}

/// Receives one message; `None` when nothing is pending.
pub fn recv(sock: &OwnedFd) -> Option<Incoming> {
    let mut buf = [0u8; MSG_SIZE + 1];
    match recv_owned(sock.as_fd(), &mut buf) {
        Ok(None) => None,
        Err(e) => Some(Incoming::Closed(format!("control socket error: {e}"))),
        Ok(Some(r)) if r.len == 0 && !r.truncated => Some(Incoming::Closed(
            "peer closed the control connection".into(),
        )),
        Ok(Some(r)) => {
            if r.truncated || r.len != MSG_SIZE {
                return Some(Incoming::Bad("Invalid message size".into()));
            }
            match wire::parse(&buf[..MSG_SIZE]) {
                Ok(m) => Some(Incoming::Msg(m, r.fds.into_iter().next())),
                Err(e) => Some(Incoming::Bad(e.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_socket_is_replaced_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = SockPath::File(dir.path().join("sub/dir/a.sock"));
        let l = listen(&p).unwrap();
        // Live listener: refused.
        let e = listen(&p).unwrap_err().to_string();
        assert!(e.contains("in use"), "{e}");
        drop(l);
        // Socket file left behind without a listener: stale, replaced.
        let _l2 = listen(&p).unwrap();
        // A regular file in the way is not touched.
        let f = dir.path().join("plain");
        std::fs::write(&f, b"x").unwrap();
        assert!(listen(&SockPath::File(f.clone())).is_err());
        assert_eq!(std::fs::read(&f).unwrap(), b"x");
    }

    #[test]
    fn send_recv_with_fd_and_garbage() {
        let name = format!("uswitch-sock-test-{}", std::process::id());
        let p = SockPath::parse(&format!("@{name}"));
        let l = listen(&p).unwrap();
        let c = connect(&p).unwrap();
        let s = accept(&l).unwrap().expect("pending connection");
        let (region, _) = crate::shm::MmapRegion::alloc(4096, "x").unwrap();
        send(&c, &Msg::Ack, Some(region.fd())).unwrap();
        match recv(&s) {
            Some(Incoming::Msg(Msg::Ack, Some(_fd))) => {}
            _ => panic!("expected ACK with fd"),
        }
        assert!(recv(&s).is_none());
        nix::sys::socket::send(c.as_raw_fd(), &[1, 2, 3], MsgFlags::empty()).unwrap();
        assert!(matches!(recv(&s), Some(Incoming::Bad(_))));
        drop(c);
        assert!(matches!(recv(&s), Some(Incoming::Closed(_))));
    }
}
