//! The attach protocol: frames over a unix stream socket, in docker's multiplexed-stream layout (an
//! 8-byte header: kind, three zero bytes, payload length big-endian u32; then the payload), with
//! berth's control kinds after docker's three streams.

use std::io::{self, Read, Write};

/// Client to monitor: bytes for the container's stdin.
pub const STDIN: u8 = 0;
/// Monitor to client: the container's stdout (everything, with a terminal).
pub const STDOUT: u8 = 1;
/// Monitor to client: the container's stderr.
pub const STDERR: u8 = 2;
/// Client to monitor: terminal size, rows and columns as big-endian u16s.
pub const RESIZE: u8 = 3;
/// Monitor to client: the container exited; payload: exit code, big-endian i32.
pub const EXIT: u8 = 4;
/// Monitor to its starter: the container runs; payload: the init's pid, big-endian i32.
pub const STARTED: u8 = 5;
/// Monitor to its starter: the container could not start; payload: the error text.
pub const ERROR: u8 = 6;
/// Client to monitor: close the container's stdin (end of input).
pub const STDIN_EOF: u8 = 7;
/// Client to monitor: send this signal (big-endian i32) to the container's init.
pub const SIGNAL: u8 = 8;

/// Starter to monitor, after `EXIT`: the starter (a foreground `berth run`) did the clean-up itself,
/// so the monitor just ends instead of exec'ing the clean-up command.
pub const CLEANED: u8 = 9;

/// Starter to monitor, first: `monitor.json` and the bundle are written, go on. The starter spawns
/// the monitor before it prepares them, so that the monitor's start-up overlaps that work; a
/// starter that fails meanwhile closes its socket instead, and the monitor ends without a word.
pub const GO: u8 = 10;

/// Largest payload accepted from a peer.
pub const MAX_PAYLOAD: usize = 1 << 20;

const HEADER: usize = 8;

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it carries (the constants of this module).
    pub kind: u8,
    /// Its payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// The payload as a big-endian i32 (EXIT, STARTED, SIGNAL), if it is four bytes.
    pub fn int(&self) -> Option<i32> {
        Some(i32::from_be_bytes(self.payload.get(..4)?.try_into().ok()?))
    }
}

/// Header + payload bytes of a frame.
pub fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + payload.len());
    v.extend_from_slice(&[kind, 0, 0, 0]);
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    w.write_all(&encode(kind, payload))
}

/// Writes a frame whose payload is a big-endian i32.
pub fn write_int(w: &mut impl Write, kind: u8, v: i32) -> io::Result<()> {
    write_frame(w, kind, &v.to_be_bytes())
}

/// Reads one frame, blocking; `Ok(None)` at a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Frame>> {
    let mut h = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match r.read(&mut h[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("attach frame of {len} bytes"),
        ));
    }
    let mut payload = vec![0; len];
    r.read_exact(&mut payload)?;
    Ok(Some(Frame {
        kind: h[0],
        payload,
    }))
}

/// Reassembles frames from bytes that arrive in arbitrary pieces (the monitor's non-blocking reads).
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Adds bytes read from the peer.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, if any; an error for an oversized frame.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("attach frame of {len} bytes"),
            ));
        }
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        let kind = self.buf[0];
        let payload = self.buf[HEADER..HEADER + len].to_vec();
        self.buf.drain(..HEADER + len);
        Ok(Some(Frame { kind, payload }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_byte_by_byte_delivery() {
        let mut wire = encode(STDOUT, b"hello");
        wire.extend(encode(EXIT, &7i32.to_be_bytes()));
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in &wire {
            d.push(&[*b]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].payload, b"hello");
        assert_eq!(got[1].kind, EXIT);
        assert_eq!(got[1].int(), Some(7));
        let mut r = &wire[..];
        assert_eq!(read_frame(&mut r).unwrap().unwrap().kind, STDOUT);
        assert_eq!(read_frame(&mut r).unwrap().unwrap().int(), Some(7));
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        let mut h = vec![STDIN, 0, 0, 0];
        h.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut d = Decoder::default();
        d.push(&h);
        assert!(d.next_frame().is_err());
        assert!(read_frame(&mut &h[..]).is_err());
        assert!(read_frame(&mut &encode(STDOUT, b"abc")[..5]).is_err());
    }
}
