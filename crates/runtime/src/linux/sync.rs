//! The parent <-> init channel: a SOCK_SEQPACKET socketpair carrying one-byte tags with an optional text
//! payload and, when needed, a file descriptor (the console master, a seccomp notify fd).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

use crate::error::Context;
use crate::{Error, Result};

/// Steps of the create protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Tag {
    /// parent -> child: cgroups and id maps are in place; go on.
    Continue = 1,
    /// child -> parent: namespaces and mounts are ready: run the createRuntime hooks now.
    RunHooks = 2,
    /// child -> parent: everything is set up; the init now waits to be started.
    Ready = 3,
    /// child -> parent: a seccomp notify fd to pass to the listener (fd attached).
    SeccompFd = 4,
    /// child -> parent: a fatal error (text payload); the child exits.
    Error = 6,
    /// child -> parent: the exec'd process's own pid (for `exec`, which forks once more).
    Pid = 7,
}

impl Tag {
    fn from_u8(b: u8) -> Option<Tag> {
        Some(match b {
            1 => Tag::Continue,
            2 => Tag::RunHooks,
            3 => Tag::Ready,
            4 => Tag::SeccompFd,
            6 => Tag::Error,
            7 => Tag::Pid,
            _ => return None,
        })
    }
}

/// One end of the channel.
pub struct Channel {
    fd: OwnedFd,
}

/// A received message.
pub struct Message {
    pub tag: Tag,
    pub text: String,
    pub fd: Option<OwnedFd>,
}

/// Makes a connected pair (both ends close-on-exec).
pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .ctx(|| "creating the sync socketpair".into())?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    /// Wraps an already connected socket (e.g. our end of a console socketpair).
    pub fn from_fd(fd: OwnedFd) -> Channel {
        Channel { fd }
    }

    /// Receives one message that must carry a descriptor (as the console socket protocol sends it).
    pub fn recv_raw_fd(&self) -> Result<OwnedFd> {
        let mut buf = vec![0u8; 4096];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            self.fd.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .ctx(|| "receiving the pty master".into())?;
        for c in msg.cmsgs().ctx(|| "reading control messages".into())? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&f) = fds.first() {
                    // SAFETY: the kernel just installed this descriptor for us.
                    return Ok(unsafe { OwnedFd::from_raw_fd(f) });
                }
            }
        }
        Err(Error::Child(
            "the console socket message carried no descriptor".into(),
        ))
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn send(&self, tag: Tag, text: &str) -> Result<()> {
        self.send_fd(tag, text, None)
    }

    pub fn send_fd(&self, tag: Tag, text: &str, fd: Option<RawFd>) -> Result<()> {
        let mut buf = Vec::with_capacity(1 + text.len());
        buf.push(tag as u8);
        buf.extend_from_slice(text.as_bytes());
        let iov = [IoSlice::new(&buf)];
        let fds;
        let cmsg: &[ControlMessage] = match fd {
            Some(f) => {
                fds = [f];
                &[ControlMessage::ScmRights(&fds)]
            }
            None => &[],
        };
        sendmsg::<()>(
            self.fd.as_raw_fd(),
            &iov,
            cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .ctx(|| format!("sending {tag:?} on the sync socket"))?;
        Ok(())
    }

    /// Receives one message; `Ok(None)` when the other end has closed (for the init: it exec'd).
    pub fn recv(&self) -> Result<Option<Message>> {
        let mut buf = vec![0u8; 16 * 1024];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let (n, fd) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = loop {
                match recvmsg::<()>(
                    self.fd.as_raw_fd(),
                    &mut iov,
                    Some(&mut space),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                ) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    r => break r.ctx(|| "reading the sync socket".into())?,
                }
            };
            let mut fd = None;
            for c in msg.cmsgs().ctx(|| "reading control messages".into())? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for f in fds {
                        // SAFETY: the kernel just installed this descriptor for us; we own it now.
                        let owned = unsafe { OwnedFd::from_raw_fd(f) };
                        fd.get_or_insert(owned);
                    }
                }
            }
            (msg.bytes, fd)
        };
        if n == 0 {
            return Ok(None);
        }
        let tag = Tag::from_u8(buf[0])
            .ok_or_else(|| Error::Child(format!("bad sync message tag {}", buf[0])))?;
        let text = String::from_utf8_lossy(&buf[1..n]).into_owned();
        Ok(Some(Message { tag, text, fd }))
    }

    /// Receives a message and requires it to be `want`; an `Error` from the child becomes our error.
    pub fn expect(&self, want: Tag) -> Result<Message> {
        match self.recv()? {
            Some(m) if m.tag == want => Ok(m),
            Some(m) if m.tag == Tag::Error => Err(Error::Child(m.text)),
            Some(m) => Err(Error::Child(format!(
                "protocol error: expected {want:?}, got {:?}",
                m.tag
            ))),
            None => Err(Error::Child(format!(
                "the container process exited before {want:?}"
            ))),
        }
    }
}
