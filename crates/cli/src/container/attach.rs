//! The client side of a monitor's attach protocol: copies the container's output to our stdout and
//! stderr, our stdin to the container (`-i`), forwards signals (docker's sig-proxy) and terminal
//! size changes, and returns the exit code the monitor reports.

use std::io::{IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use berth_monitor::frame;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::termios;

/// Signals passed on to the container while attached.
const PROXIED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Puts our terminal in raw mode while alive.
struct RawMode {
    saved: termios::Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let saved = termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), termios::SetArg::TCSANOW, &self.saved);
    }
}

fn winsize() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes into the winsize struct we pass; fd 1 is only queried.
    let r = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

fn send_resize(w: &mut UnixStream) {
    if let Some((r, c)) = winsize() {
        let mut p = r.to_be_bytes().to_vec();
        p.extend_from_slice(&c.to_be_bytes());
        let _ = frame::write_frame(w, frame::RESIZE, &p);
    }
}

/// What to relay.
#[derive(Debug, Clone, Copy)]
pub struct Relay {
    /// Copy our stdin to the container.
    pub stdin: bool,
    /// The container has a terminal (raw mode here, resize forwarded).
    pub tty: bool,
    /// After the exit code, wait for the monitor to close the socket (its clean-up is over).
    pub wait_for_cleanup: bool,
}

/// Relays until the container exits; its exit code (None if the stream ended without one).
pub fn relay(sock: UnixStream, r: Relay) -> Result<Option<i32>> {
    relay_inner(sock, r).map(|(code, _)| code)
}

/// Relays until the `EXIT` frame and returns at once with the code and the socket: the caller does
/// the clean-up itself and then sends [`frame::CLEANED`] (see [`cleaned`]); a monitor that gets no
/// such word does the clean-up on its own.
pub fn relay_until_exit(sock: UnixStream, r: Relay) -> Result<(Option<i32>, UnixStream)> {
    relay_inner(
        sock,
        Relay {
            wait_for_cleanup: false,
            ..r
        },
    )
}

/// Tells the monitor the clean-up is done.
pub fn cleaned(sock: &mut UnixStream) {
    let _ = frame::write_frame(sock, frame::CLEANED, &[]);
}

fn relay_inner(mut sock: UnixStream, r: Relay) -> Result<(Option<i32>, UnixStream)> {
    let mut mask = SigSet::empty();
    for s in PROXIED {
        mask.add(s);
    }
    mask.add(Signal::SIGWINCH);
    // Blocked before any thread starts, so every thread inherits the mask and sigwait sees them.
    mask.thread_block().context("blocking signals")?;
    let _raw = if r.tty { RawMode::enter() } else { None };
    if r.tty {
        send_resize(&mut sock);
    }
    let mut sig_w = sock.try_clone().context("attach socket")?;
    std::thread::spawn(move || loop {
        let Ok(sig) = mask.wait() else { return };
        let ok = if sig == Signal::SIGWINCH {
            send_resize(&mut sig_w);
            true
        } else {
            frame::write_int(&mut sig_w, frame::SIGNAL, sig as i32).is_ok()
        };
        if !ok {
            return;
        }
    });
    if r.stdin {
        let mut in_w = sock.try_clone().context("attach socket")?;
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 32 * 1024];
            let mut stdin = std::io::stdin().lock();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = frame::write_frame(&mut in_w, frame::STDIN_EOF, &[]);
                        return;
                    }
                    Ok(n) => {
                        if frame::write_frame(&mut in_w, frame::STDIN, &buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    let mut code = None;
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    loop {
        let f = match frame::read_frame(&mut sock) {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if code.is_some() => {
                let _ = e;
                break;
            }
            Err(e) => return Err(anyhow!("reading from the container's monitor: {e}")),
        };
        match f.kind {
            frame::STDOUT => {
                let _ = out.write_all(&f.payload);
                let _ = out.flush();
            }
            frame::STDERR => {
                let _ = err.write_all(&f.payload);
            }
            frame::EXIT => {
                code = f.int();
                if !r.wait_for_cleanup {
                    break;
                }
                // Our end of the conversation is over: the monitor, seeing it, runs the clean-up
                // and closes when done.
                let _ = sock.shutdown(std::net::Shutdown::Write);
            }
            _ => {}
        }
    }
    Ok((code, sock))
}

/// Connects to a running container's attach socket.
pub fn connect(run_dir: &Path) -> Result<UnixStream> {
    let dir = std::fs::File::open(run_dir)
        .with_context(|| format!("the container's run dir {}", run_dir.display()))?;
    use std::os::fd::AsRawFd;
    let path = berth_monitor::config::short_socket_path(
        dir.as_raw_fd(),
        berth_monitor::config::ATTACH_SOCKET,
    );
    UnixStream::connect(&path).context("connecting to the container's monitor")
}
