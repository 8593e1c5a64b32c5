//! cgroup v2 device control: a BPF_PROG_TYPE_CGROUP_DEVICE program built
//! from the emulated rule state ([`crate::devices::DeviceState`]), loaded
//! with bpf(BPF_PROG_LOAD) and attached to the cgroup with
//! BPF_F_ALLOW_MULTI, atomically replacing (BPF_F_REPLACE) the program a
//! previous apply/update attached.
//!
//! The instructions are assembled by hand and the bpf(2) calls are made
//! directly: the program is a straight list of compare-and-return blocks
//! (about 10 instructions per rule), and the eBPF crates (aya, libbpf-rs,
//! redbpf) are built around ELF objects, a C toolchain or async loaders -
//! far more than this small job needs, and slower to start.
//!
//! Program semantics (same as the v1 kernel controller): the context is
//! `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`
//! with `access_type = access << 16 | dev_type`. Each exception rule is a
//! block; the first matching block returns the exception's verdict, and
//! falling off the end returns the default. In a deny-by-default list an
//! exception matches when the requested access is a subset of the rule's;
//! in an allow-by-default list when the two overlap (any denied bit denies).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::LinuxDeviceCgroup;

use crate::devices::{DevType, DeviceState, ACC_ALL};
use crate::error::{CgroupError, Result};

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    pub code: u8,
    /// dst register in the low nibble, src in the high nibble.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Instruction classes, sizes, modes, operations (linux/bpf_common.h, bpf.h).
const BPF_LDX: u8 = 0x01;
const BPF_ALU64: u8 = 0x07;
const BPF_JMP: u8 = 0x05;
const BPF_JMP32: u8 = 0x06;
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
const BPF_JEQ: u8 = 0x10;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

/// BPF_DEVCG_DEV_BLOCK / BPF_DEVCG_DEV_CHAR.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

/// `dst = *(u32 *)(src + off)`
fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
    insn(BPF_LDX | BPF_W | BPF_MEM, dst, src, off, 0)
}

fn alu64_imm(op: u8, dst: u8, imm: i32) -> Insn {
    insn(BPF_ALU64 | op | BPF_K, dst, 0, 0, imm)
}

fn mov64_reg(dst: u8, src: u8) -> Insn {
    insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)
}

/// Conditional jump against an immediate; the offset is patched later.
fn jmp_imm(op: u8, dst: u8, value: u32) -> Insn {
    // Values above i32::MAX would be sign-extended by a 64-bit compare, so
    // compare the low 32 bits only (JMP32, Linux 5.1+) for those.
    let class = if value > i32::MAX as u32 {
        BPF_JMP32
    } else {
        BPF_JMP
    };
    insn(class | op | BPF_K, dst, 0, 0, value as i32)
}

fn exit() -> Insn {
    insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
}

/// Generates the device filter for `state`.
pub(crate) fn program(state: &DeviceState) -> Vec<Insn> {
    let mut p = vec![
        ldx_w(R2, R1, 0),
        alu64_imm(BPF_AND, R2, 0xffff), // r2 = device type
        ldx_w(R3, R1, 0),
        alu64_imm(BPF_RSH, R3, 16), // r3 = requested access
        ldx_w(R4, R1, 4),           // r4 = major
        ldx_w(R5, R1, 8),           // r5 = minor
    ];
    let verdict = i32::from(!state.default_allow);
    for rule in &state.exceptions {
        let mut block = Vec::with_capacity(10);
        let ty = match rule.ty {
            DevType::Block => DEV_BLOCK,
            DevType::Char => DEV_CHAR,
        };
        block.push(jmp_imm(BPF_JNE, R2, ty as u32));
        if rule.access != ACC_ALL {
            block.push(mov64_reg(R1, R3));
            if state.default_allow {
                // Deny when the request overlaps the denied bits.
                block.push(alu64_imm(BPF_AND, R1, i32::from(rule.access)));
                block.push(jmp_imm(BPF_JEQ, R1, 0));
            } else {
                // Allow when the request is a subset of the allowed bits.
                block.push(alu64_imm(BPF_AND, R1, i32::from(ACC_ALL & !rule.access)));
                block.push(jmp_imm(BPF_JNE, R1, 0));
            }
        }
        if let Some(major) = rule.major {
            block.push(jmp_imm(BPF_JNE, R4, major));
        }
        if let Some(minor) = rule.minor {
            block.push(jmp_imm(BPF_JNE, R5, minor));
        }
        block.push(alu64_imm(BPF_MOV, R0, verdict));
        block.push(exit());
        // Every conditional jump skips to the end of its block.
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            let class = ins.code & 0x07;
            if (class == BPF_JMP || class == BPF_JMP32) && ins.code & 0xf0 != BPF_EXIT {
                ins.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(alu64_imm(BPF_MOV, R0, i32::from(state.default_allow)));
    p.push(exit());
    p
}

// bpf(2) commands, program and attach types, flags (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;
const BPF_F_REPLACE: u32 = 4;

/// The BPF_PROG_LOAD part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The BPF_PROG_ATTACH / BPF_PROG_DETACH part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// The BPF_PROG_QUERY part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    pad: u32,
}

/// The BPF_PROG_GET_FD_BY_ID part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

fn sys_bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: attr is a live, fully initialised repr(C) prefix of union bpf_attr for cmd, and its size is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned_fd(fd: libc::c_long) -> OwnedFd {
    // SAFETY: fd was just returned by a successful bpf(2) call and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) }
}

fn bpf_err(op: &'static str, path: &Path, source: io::Error, log: String) -> CgroupError {
    CgroupError::Bpf {
        op,
        path: path.to_owned(),
        source,
        log,
    }
}

/// Loads `insns` as a cgroup device program; on failure the verifier log
/// is fetched and included in the error. `path` only labels errors.
pub(crate) fn load(insns: &[Insn], path: &Path) -> Result<OwnedFd> {
    const LICENSE: &[u8] = b"Apache-2.0\0";
    let mut name = [0u8; 16];
    name[..10].copy_from_slice(b"berth_dev\0");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    match sys_bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(owned_fd(fd)),
        Err(first) => {
            let mut log = vec![0u8; 64 * 1024];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let _ = sys_bpf(BPF_PROG_LOAD, &mut attr);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]).trim().to_string();
            let log = if text.is_empty() {
                String::new()
            } else {
                format!("\nverifier log:\n{text}")
            };
            Err(bpf_err("BPF_PROG_LOAD", path, first, log))
        }
    }
}

/// Ids of the device programs attached directly to the cgroup `cg`.
fn query(cg: &File, path: &Path) -> Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    sys_bpf(BPF_PROG_QUERY, &mut attr)
        .map_err(|e| bpf_err("BPF_PROG_QUERY", path, e, String::new()))?;
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}

fn prog_fd_by_id(id: u32, path: &Path) -> Result<OwnedFd> {
    let mut attr = GetFdAttr {
        prog_id: id,
        ..Default::default()
    };
    sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)
        .map(owned_fd)
        .map_err(|e| bpf_err("BPF_PROG_GET_FD_BY_ID", path, e, String::new()))
}

fn attach_op(
    cmd: libc::c_int,
    cg: &File,
    prog: &OwnedFd,
    flags: u32,
    replace: Option<&OwnedFd>,
) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: flags,
        replace_bpf_fd: replace.map_or(0, |f| f.as_raw_fd() as u32),
    };
    sys_bpf(cmd, &mut attr).map(|_| ())
}

/// Attaches `prog` to the cgroup directory `dir`, replacing the device
/// program(s) a previous call attached there.
pub(crate) fn attach(dir: &Path, prog: &OwnedFd) -> Result<()> {
    let cg = File::open(dir).map_err(|source| CgroupError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let old = query(&cg, dir)?;
    if let [only] = old.as_slice() {
        let old_fd = prog_fd_by_id(*only, dir)?;
        return attach_op(
            BPF_PROG_ATTACH,
            &cg,
            prog,
            BPF_F_ALLOW_MULTI | BPF_F_REPLACE,
            Some(&old_fd),
        )
        .map_err(|e| bpf_err("BPF_PROG_ATTACH", dir, e, String::new()));
    }
    attach_op(BPF_PROG_ATTACH, &cg, prog, BPF_F_ALLOW_MULTI, None)
        .map_err(|e| bpf_err("BPF_PROG_ATTACH", dir, e, String::new()))?;
    for id in old {
        let fd = prog_fd_by_id(id, dir)?;
        attach_op(BPF_PROG_DETACH, &cg, &fd, 0, None)
            .map_err(|e| bpf_err("BPF_PROG_DETACH", dir, e, String::new()))?;
    }
    Ok(())
}

/// Number of device programs attached directly to `dir`.
#[cfg(test)]
pub(crate) fn attached_count(dir: &Path) -> Result<usize> {
    let cg = File::open(dir).map_err(|source| CgroupError::Read {
        path: dir.to_owned(),
        source,
    })?;
    Ok(query(&cg, dir)?.len())
}

/// Builds, loads and attaches the device filter for the spec's rules.
pub(crate) fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let state = DeviceState::from_spec(rules)?;
    let prog = load(&program(&state), dir)?;
    attach(dir, &prog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::tests::spec_rule;

    fn state(rules: &[LinuxDeviceCgroup]) -> DeviceState {
        DeviceState::from_spec(rules).unwrap()
    }

    /// Checks that every jump lands inside the program on an instruction.
    fn jumps_in_range(p: &[Insn]) {
        for (i, ins) in p.iter().enumerate() {
            let class = ins.code & 0x07;
            if (class == BPF_JMP || class == BPF_JMP32) && ins.code & 0xf0 != BPF_EXIT {
                let target = i as i64 + 1 + i64::from(ins.off);
                assert!(target > i as i64 && (target as usize) < p.len(), "jump {i}");
            }
        }
        assert_eq!(p.last().unwrap().code, BPF_JMP | BPF_EXIT);
    }

    #[test]
    fn deny_all_is_two_returns() {
        let p = program(&state(&[spec_rule(false, "a", None, None, "rwm")]));
        assert_eq!(p.len(), 8);
        assert_eq!(p[6], alu64_imm(BPF_MOV, R0, 0));
        jumps_in_range(&p);
    }

    #[test]
    fn whitelist_blocks() {
        let p = program(&state(&[
            spec_rule(false, "a", None, None, "rwm"),
            spec_rule(true, "c", Some(1), Some(3), "rwm"),
            spec_rule(true, "c", Some(1), Some(5), "r"),
            spec_rule(true, "b", None, None, "m"),
        ]));
        jumps_in_range(&p);
        // Block 1 (/dev/null, rwm): type, major, minor, mov, exit.
        assert_eq!(
            p[6],
            Insn {
                code: 0x55,
                regs: R2,
                off: 4,
                imm: DEV_CHAR
            }
        );
        assert_eq!(
            p[7],
            Insn {
                code: 0x55,
                regs: R4,
                off: 3,
                imm: 1
            }
        );
        assert_eq!(
            p[8],
            Insn {
                code: 0x55,
                regs: R5,
                off: 2,
                imm: 3
            }
        );
        assert_eq!(p[9], alu64_imm(BPF_MOV, R0, 1));
        // Block 2 (/dev/zero, r): access check masks the bits not granted.
        assert_eq!(p[12], mov64_reg(R1, R3));
        assert_eq!(p[13], alu64_imm(BPF_AND, R1, 0b101));
        assert_eq!(p[14].code, 0x55);
        // Block 3 (b *:* m) has no number checks; default deny at the end.
        assert_eq!(p.len(), 6 + 5 + 8 + 6 + 2);
        assert_eq!(p[p.len() - 2], alu64_imm(BPF_MOV, R0, 0));
    }

    #[test]
    fn blacklist_uses_overlap_and_jmp32() {
        let p = program(&state(&[
            spec_rule(true, "a", None, None, "rwm"),
            spec_rule(false, "c", Some(3_000_000_000), None, "w"),
        ]));
        jumps_in_range(&p);
        assert_eq!(p[8], alu64_imm(BPF_AND, R1, 4));
        assert_eq!(p[9].code, BPF_JMP | BPF_JEQ | BPF_K);
        assert_eq!(p[10].code, BPF_JMP32 | BPF_JNE | BPF_K);
        assert_eq!(p[11], alu64_imm(BPF_MOV, R0, 0));
        assert_eq!(p[p.len() - 2], alu64_imm(BPF_MOV, R0, 1));
    }

    #[test]
    fn kernel_accepts_programs() {
        // Runs as root on the test hosts; the verifier must accept each one.
        for rules in [
            vec![spec_rule(false, "a", None, None, "rwm")],
            vec![spec_rule(true, "a", None, None, "rwm")],
            {
                let mut v = vec![spec_rule(false, "a", None, None, "rwm")];
                v.extend(crate::devices::default_device_rules());
                v
            },
            vec![
                spec_rule(true, "a", None, None, "rwm"),
                spec_rule(false, "b", Some(8), Some(0), "rw"),
                spec_rule(false, "c", Some(4_000_000_000), Some(1), "m"),
            ],
        ] {
            let p = program(&state(&rules));
            load(&p, Path::new("(test)")).unwrap();
        }
    }

    #[test]
    fn load_error_has_verifier_log() {
        // A program that reads an uninitialised register.
        let bad = vec![mov64_reg(R0, R7_UNINIT), exit()];
        let e = load(&bad, Path::new("(test)")).unwrap_err().to_string();
        assert!(e.contains("BPF_PROG_LOAD"), "{e}");
        assert!(e.contains("verifier log"), "{e}");
    }

    const R7_UNINIT: u8 = 7;
}
