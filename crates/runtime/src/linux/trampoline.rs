//! The last step into the container: the user's program is exec'd by a tiny sealed trampoline, never by the
//! runtime's own image.
//!
//! The runtime's clone children run the runtime binary. If they exec'd the user's program directly, a
//! program whose interpreter is `/proc/self/exe` (a `#!/proc/self/exe` script, or an ELF with that
//! PT_INTERP) would start the *host's* runtime binary inside the container, where it could be reopened for
//! writing once the runtime exits (the CVE-2019-5736 class). runc and crun avoid this by re-executing
//! themselves from a memfd copy of their whole binary on every command (~1.5-4 ms here). Berth instead
//! writes a 160-byte static ELF into a sealed memfd and execs the program through it: `/proc/self/exe` then
//! names that sealed memfd, which cannot be written. Together with the runtime's processes being
//! non-dumpable while they are set up (so /proc/<pid>/exe of them needs CAP_SYS_PTRACE), no container
//! process can reach the installed binary. Hand-written because it is a few instructions of machine code,
//! not something a crate provides.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

use crate::error::Context;
use crate::{Error, Result};

/// x86_64: execve(envp[0], argv, &envp[1]), and exit_group(127) if that returns. The program's path
/// travels as the first environment entry so that the trampoline's own argv (its /proc/<pid>/cmdline, for
/// the microseconds it lives) is already the program's.
#[cfg(target_arch = "x86_64")]
const CODE: &[u8] = &[
    0x48, 0x8b, 0x04, 0x24, // mov rax, [rsp]            argc
    0x48, 0x8d, 0x74, 0x24, 0x08, // lea rsi, [rsp+8]          argv
    0x48, 0x8d, 0x54, 0xc4, 0x10, // lea rdx, [rsp+rax*8+16]   envp = &argv[argc+1]
    0x48, 0x8b, 0x3a, // mov rdi, [rdx]            path = envp[0]
    0x48, 0x83, 0xc2, 0x08, // add rdx, 8                envp + 1
    0xb8, 0x3b, 0x00, 0x00, 0x00, // mov eax, 59 (execve)
    0x0f, 0x05, // syscall
    0xbf, 0x7f, 0x00, 0x00, 0x00, // mov edi, 127
    0xb8, 0xe7, 0x00, 0x00, 0x00, // mov eax, 231 (exit_group)
    0x0f, 0x05, // syscall
];

/// A minimal ELF64 executable: one header, one PT_LOAD segment (R+X) mapping the file at 0x400000, code at
/// offset 0x78.
#[cfg(target_arch = "x86_64")]
fn elf() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const CODE_OFF: u64 = 64 + 56;
    let total = CODE_OFF + CODE.len() as u64;
    let mut e = Vec::with_capacity(total as usize);
    e.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    e.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    e.extend_from_slice(&(BASE + CODE_OFF).to_le_bytes()); // e_entry
    e.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    e.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    e.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    e.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    e.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    e.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e.extend_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
    e.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    e.extend_from_slice(&BASE.to_le_bytes()); // p_vaddr
    e.extend_from_slice(&BASE.to_le_bytes()); // p_paddr
    e.extend_from_slice(&total.to_le_bytes()); // p_filesz
    e.extend_from_slice(&total.to_le_bytes()); // p_memsz
    e.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    e.extend_from_slice(CODE);
    e
}

/// The trampoline in a sealed memfd, or `None` on architectures without one (callers then need the
/// runtime to run from a sealed copy of itself, see `cloned_binary`).
pub fn create() -> Result<Option<OwnedFd>> {
    #[cfg(target_arch = "x86_64")]
    {
        let fd = memfd_create(
            "berth-exec",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )
        .ctx(|| "memfd_create for the exec trampoline".into())?;
        let image = elf();
        nix::unistd::write(&fd, &image).ctx(|| "writing the exec trampoline".into())?;
        fcntl(
            fd.as_fd(),
            FcntlArg::F_ADD_SEALS(
                SealFlag::F_SEAL_SEAL
                    | SealFlag::F_SEAL_SHRINK
                    | SealFlag::F_SEAL_GROW
                    | SealFlag::F_SEAL_WRITE,
            ),
        )
        .ctx(|| "sealing the exec trampoline".into())?;
        Ok(Some(fd))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Ok(None)
    }
}

/// Checks that `program` can be exec'd (AT_EXECVE_CHECK, Linux 6.14+; skipped on older kernels), so the
/// error is reported while the runtime still listens rather than lost in the trampoline.
pub fn check(program: &CStr) -> Result<()> {
    const AT_EXECVE_CHECK: libc::c_int = 0x10000;
    let argv: [*const libc::c_char; 2] = [program.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: execveat with AT_EXECVE_CHECK only checks; the arrays are NULL-terminated and outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_execveat,
            libc::AT_FDCWD,
            program.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            AT_EXECVE_CHECK,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let mut e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINVAL) {
        // A kernel before 6.14: check what execve most often fails on (a missing file, a directory,
        // no execute permission for the effective ids) by hand.
        match precheck(program) {
            Ok(()) => return Ok(()),
            Err(errno) => e = std::io::Error::from_raw_os_error(errno as i32),
        }
    }
    Err(Error::Invalid(format!(
        "exec {:?}: {e}",
        program.to_string_lossy()
    )))
}

/// The part of execve's checks that stat and faccessat can tell: the file exists, is a regular file
/// (execve answers EACCES for anything else) and the effective ids may execute it.
fn precheck(program: &CStr) -> std::result::Result<(), nix::errno::Errno> {
    use nix::sys::stat::{stat, SFlag};
    let st = stat(program)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(nix::errno::Errno::EACCES);
    }
    nix::unistd::faccessat(
        nix::fcntl::AT_FDCWD,
        program,
        nix::unistd::AccessFlags::X_OK,
        nix::fcntl::AtFlags::AT_EACCESS,
    )
}

/// Execs `program` with `args` and `env` through the trampoline; only returns on failure. The trampoline
/// is started with execve("/proc/self/fd/N") rather than execveat(), so that a seccomp profile that allows
/// execve (as any profile that starts a program must) but not execveat does not stop it.
pub fn exec(trampoline: &OwnedFd, program: &CString, args: &[CString], env: &[CString]) -> Error {
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = Vec::with_capacity(env.len() + 2);
    envp.push(program.as_ptr());
    envp.extend(env.iter().map(|e| e.as_ptr()));
    envp.push(std::ptr::null());
    let via_proc = CString::new(format!("/proc/self/fd/{}", trampoline.as_raw_fd()));
    // SAFETY: execve/execveat with NULL-terminated arrays of pointers into CStrings that outlive the call;
    // the trampoline is our sealed memfd.
    unsafe {
        if let Ok(p) = &via_proc {
            libc::execve(p.as_ptr(), argv.as_ptr(), envp.as_ptr());
        }
        // No /proc in the container: execveat on the descriptor itself.
        let empty = c"";
        libc::syscall(
            libc::SYS_execveat,
            trampoline.as_raw_fd(),
            empty.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    Error::Invalid(format!(
        "exec {:?} through the trampoline: {}",
        program.to_string_lossy(),
        std::io::Error::last_os_error()
    ))
}

/// Makes the calling process non-dumpable, so that its /proc/<pid>/exe (the runtime's binary) can only be
/// opened with CAP_SYS_PTRACE in the initial user namespace.
pub fn set_non_dumpable() -> Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "prctl(PR_SET_DUMPABLE, 0)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prints its positional arguments, an environment variable and its own command line.
    const SCRIPT: &str = r#"printf '%s\n' "$0 $1 $X $(tr '\0' ' ' < /proc/$$/cmdline)""#;

    /// The by-hand check used before Linux 6.14 gives execve's own errors for its common failures.
    #[test]
    fn precheck_gives_execves_errors() {
        use nix::errno::Errno;
        assert_eq!(precheck(c"/no/such/bin"), Err(Errno::ENOENT));
        assert_eq!(precheck(c"/"), Err(Errno::EACCES));
        assert_eq!(precheck(c"/bin/sh"), Ok(()));
        let f = tempfile::NamedTempFile::new().unwrap();
        let p = CString::new(f.path().as_os_str().as_encoded_bytes()).unwrap();
        // Not executable by anyone: even root may not run it.
        assert_eq!(precheck(&p), Err(Errno::EACCES));
    }

    #[test]
    fn trampoline_execs_the_program_with_its_argv_and_env() {
        let Some(t) = create().unwrap() else { return };
        // A child execs `sh -c 'echo "$0 $1 $X"' zero one` through the trampoline.
        let out = tempfile::NamedTempFile::new().unwrap();
        let out_path = out.path().to_path_buf();
        // SAFETY: fork in a test; the child only calls async-signal-safe syscalls and exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let f = std::fs::File::create(&out_path).unwrap();
                // SAFETY: dup2 onto stdout in the forked child.
                unsafe { libc::dup2(f.as_raw_fd(), 1) };
                let prog = CString::new("/bin/sh").unwrap();
                let args = [
                    CString::new("sh").unwrap(),
                    CString::new("-c").unwrap(),
                    CString::new(SCRIPT).unwrap(),
                    CString::new("zero").unwrap(),
                    CString::new("one").unwrap(),
                ];
                let env = [CString::new("X=ex").unwrap()];
                let _ = exec(&t, &prog, &args, &env);
                // SAFETY: _exit in the forked child.
                unsafe { libc::_exit(99) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let st = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(st, nix::sys::wait::WaitStatus::Exited(child, 0));
                let got = std::fs::read_to_string(out.path()).unwrap();
                assert_eq!(got, format!("zero one ex sh -c {SCRIPT} zero one \n"));
            }
        }
    }

    #[test]
    fn check_reports_missing_and_non_executable_programs() {
        assert!(check(&CString::new("/bin/sh").unwrap()).is_ok());
        let e = check(&CString::new("/nonexistent-program").unwrap()).unwrap_err();
        assert!(e.to_string().contains("No such file"), "{e}");
        let f = tempfile::NamedTempFile::new().unwrap();
        let p = CString::new(f.path().to_str().unwrap()).unwrap();
        assert!(check(&p).is_err(), "a 0600 empty file is not executable");
    }
}
