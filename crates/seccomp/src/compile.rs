//! Compiling a runtime-spec `linux.seccomp` object into a BPF program with libseccomp.
//!
//! Behaviour follows runc where the spec leaves room:
//! - `SCMP_ACT_KILL` means kill the thread; `errnoRet`/`defaultErrnoRet` default to `EPERM` for
//!   `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` (for TRACE it is the value the tracer sees);
//! - a rule whose action (with its errno/trace value) equals the default action is skipped;
//! - a syscall name libseccomp does not know is skipped, not an error;
//! - conditions on distinct argument indexes are ANDed in one rule; if two conditions share an
//!   index, every condition becomes a rule of its own (ORed), since libseccomp refuses a rule
//!   with a repeated index;
//! - `SCMP_ACT_NOTIFY` needs `listenerPath`, cannot be the default action and cannot be used on
//!   the syscalls in [`NOTIFY_FORBIDDEN_SYSCALLS`].

use std::io::{Read, Seek, SeekFrom};

use libc::{c_ulong, sock_filter};
use libseccomp::{ScmpAction, ScmpArgCompare, ScmpFilterContext, ScmpSyscall};
use nix::sys::memfd::{memfd_create, MFdFlags};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSyscall};

use crate::filter::CompiledFilter;
use crate::names::{kernel_action, kernel_flag, scmp_arch, scmp_compare, spec_name};
use crate::{kernel, SeccompError};

/// Syscalls that may not use `SCMP_ACT_NOTIFY`: the container's init hands the notify fd over
/// with one of them (`write` to a pipe, or `sendmsg` with `SCM_RIGHTS`) after loading the filter
/// and before anyone can answer notifications, so notifying them would hang the container.
pub const NOTIFY_FORBIDDEN_SYSCALLS: &[&str] = &["write", "sendmsg"];

/// The errno a rule returns when `errnoRet` is not given.
const DEFAULT_ERRNO: u32 = libc::EPERM as u32;

/// Most syscall arguments a condition can look at.
const MAX_ARGS: usize = 6;

/// Above this many syscall names, ask libseccomp for a binary-tree filter (as runc does; small
/// filters stay linear, where libseccomp <= 2.5.4 has had bugs with an empty tree).
const OPTIMIZE_ABOVE: usize = 32;

/// Compiles `spec` into a BPF program. Call it in the runtime before forking the container's
/// init, so profile errors are reported early; the result is loaded in the init with
/// [`CompiledFilter::load`].
pub fn compile(spec: &LinuxSeccomp) -> Result<CompiledFilter, SeccompError> {
    let rules: &[LinuxSyscall] = spec.syscalls().as_deref().unwrap_or_default();
    check_notify(spec, rules)?;
    check_actions_available(spec, rules)?;

    let default_action = scmp_action(
        spec.default_action(),
        spec.default_errno_ret(),
        "the default action",
    )?;
    let mut ctx = ScmpFilterContext::new(default_action).map_err(|source| SeccompError::Init {
        action: spec_name(&spec.default_action()),
        source,
    })?;
    for arch in spec.architectures().iter().flatten() {
        ctx.add_arch(scmp_arch(*arch))
            .map_err(|source| SeccompError::Arch {
                arch: spec_name(arch),
                source,
            })?;
    }
    let mut flags = requested_flags(spec)?;

    let names: usize = rules.iter().map(|rule| rule.names().len()).sum();
    if names > OPTIMIZE_ABOVE {
        // Only an optimization: a libseccomp without it still builds a correct, linear filter.
        let _ = ctx.set_ctl_optimize(2);
    }
    for rule in rules {
        add_rule(&mut ctx, rule, default_action)?;
    }
    let program = export(&ctx)?;

    let notify = rules
        .iter()
        .any(|rule| rule.action() == LinuxSeccompAction::ScmpActNotify);
    if notify {
        flags |= kernel::FLAG_NEW_LISTENER;
        if flags & kernel::FLAG_TSYNC != 0 {
            // The kernel refuses TSYNC with a listener unless TSYNC failures report ESRCH.
            flags |= kernel::FLAG_TSYNC_ESRCH;
        }
    }
    if !kernel::flags_supported(flags) {
        return Err(SeccompError::FlagsUnsupported {
            flags: kernel::flag_names(flags),
        });
    }
    Ok(CompiledFilter::new(program, flags, notify))
}

/// Checks the `SCMP_ACT_NOTIFY` rules of the spec.
fn check_notify(spec: &LinuxSeccomp, rules: &[LinuxSyscall]) -> Result<(), SeccompError> {
    if spec.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::NotifyDefaultAction);
    }
    let has_listener = spec
        .listener_path()
        .as_ref()
        .is_some_and(|path| !path.as_os_str().is_empty());
    for rule in rules {
        if rule.action() != LinuxSeccompAction::ScmpActNotify {
            continue;
        }
        for name in rule.names() {
            if NOTIFY_FORBIDDEN_SYSCALLS.contains(&name.as_str()) {
                return Err(SeccompError::NotifyForbiddenSyscall {
                    syscall: name.clone(),
                });
            }
            if !has_listener {
                return Err(SeccompError::NotifyWithoutListener {
                    syscall: name.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Fails on the first action of the spec that the running kernel does not implement.
fn check_actions_available(
    spec: &LinuxSeccomp,
    rules: &[LinuxSyscall],
) -> Result<(), SeccompError> {
    if !kernel::action_available(libc::SECCOMP_RET_ALLOW) {
        return Err(SeccompError::KernelUnsupported);
    }
    let actions = std::iter::once(spec.default_action()).chain(rules.iter().map(|r| r.action()));
    for action in actions {
        if !kernel::action_available(kernel_action(action)) {
            return Err(SeccompError::ActionUnsupported {
                action: spec_name(&action),
            });
        }
    }
    Ok(())
}

/// The kernel flag bits for the spec's `flags`, each checked against the running kernel.
fn requested_flags(spec: &LinuxSeccomp) -> Result<c_ulong, SeccompError> {
    let mut flags = 0;
    for flag in spec.flags().iter().flatten() {
        let bit = kernel_flag(*flag);
        if !kernel::flags_supported(bit) {
            return Err(SeccompError::FlagUnsupported {
                flag: spec_name(flag),
            });
        }
        flags |= bit;
    }
    Ok(flags)
}

/// libseccomp's action for a spec action; `target` names the rule in errors.
fn scmp_action(
    action: LinuxSeccompAction,
    ret: Option<u32>,
    target: &str,
) -> Result<ScmpAction, SeccompError> {
    let value = || {
        let value = ret.unwrap_or(DEFAULT_ERRNO);
        u16::try_from(value).map_err(|_| SeccompError::ReturnValueOutOfRange {
            target: target.to_string(),
            action: spec_name(&action),
            value,
        })
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(value()?)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(value()?),
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
    })
}

/// Adds the libseccomp rules for one spec rule (one per syscall name, or more when conditions
/// have to be split).
fn add_rule(
    ctx: &mut ScmpFilterContext,
    rule: &LinuxSyscall,
    default_action: ScmpAction,
) -> Result<(), SeccompError> {
    let args: &[LinuxSeccompArg] = rule.args().as_deref().unwrap_or_default();
    for name in rule.names() {
        if name.is_empty() {
            return Err(SeccompError::EmptySyscallName);
        }
        let action = scmp_action(rule.action(), rule.errno_ret(), &format!("syscall {name}"))?;
        let groups = condition_groups(name, args)?;
        if action == default_action {
            continue;
        }
        let Ok(syscall) = ScmpSyscall::from_name(name) else {
            continue; // unknown to libseccomp: skipped, as runc does
        };
        for group in &groups {
            ctx.add_rule_conditional(action, syscall, group)
                .map_err(|source| SeccompError::Rule {
                    syscall: name.clone(),
                    action: spec_name(&rule.action()),
                    source,
                })?;
        }
    }
    Ok(())
}

/// The condition sets to add for one syscall: a single set (ANDed) when every argument index
/// appears once, else one single-condition set per condition (ORed).
pub(crate) fn condition_groups(
    syscall: &str,
    args: &[LinuxSeccompArg],
) -> Result<Vec<Vec<ScmpArgCompare>>, SeccompError> {
    let mut seen = [0usize; MAX_ARGS];
    let mut conditions = Vec::with_capacity(args.len());
    for arg in args {
        let index = arg.index();
        let slot = seen
            .get_mut(index)
            .ok_or_else(|| SeccompError::ArgIndexOutOfRange {
                syscall: syscall.to_string(),
                index,
            })?;
        *slot += 1;
        let (op, datum) = match arg.op() {
            oci_spec::runtime::LinuxSeccompOperator::ScmpCmpMaskedEq => (
                scmp_compare(arg.op(), arg.value()),
                arg.value_two().unwrap_or(0),
            ),
            other => (scmp_compare(other, arg.value()), arg.value()),
        };
        // `index` < MAX_ARGS was checked above, so it fits u32.
        conditions.push(ScmpArgCompare::new(index as u32, op, datum));
    }
    if seen.iter().any(|count| *count > 1) {
        Ok(conditions.into_iter().map(|c| vec![c]).collect())
    } else {
        Ok(vec![conditions])
    }
}

/// Exports the filter's BPF program through a memfd (libseccomp 2.5 can only write to an fd).
fn export(ctx: &ScmpFilterContext) -> Result<Vec<sock_filter>, SeccompError> {
    let fd = memfd_create(c"berth-seccomp-bpf", MFdFlags::MFD_CLOEXEC)
        .map_err(|errno| SeccompError::Export(format!("memfd_create: {errno}")))?;
    ctx.export_bpf(&fd)
        .map_err(|err| SeccompError::Export(err.to_string()))?;
    let mut file = std::fs::File::from(fd);
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|err| SeccompError::Export(format!("reading the program back: {err}")))?;
    let program = parse_program(&bytes)?;
    let max = libc::BPF_MAXINSNS as usize;
    if program.len() > max {
        return Err(SeccompError::TooLarge {
            len: program.len(),
            max,
        });
    }
    Ok(program)
}

/// Splits exported bytes into `struct sock_filter` instructions (native endian, 8 bytes each).
pub(crate) fn parse_program(bytes: &[u8]) -> Result<Vec<sock_filter>, SeccompError> {
    if bytes.is_empty() || !bytes.chunks_exact(8).remainder().is_empty() {
        return Err(SeccompError::Export(format!(
            "libseccomp produced {} bytes, not a whole number of 8-byte instructions",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|ins| sock_filter {
            code: u16::from_ne_bytes([ins[0], ins[1]]),
            jt: ins[2],
            jf: ins[3],
            k: u32::from_ne_bytes([ins[4], ins[5], ins[6], ins[7]]),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSeccompOperator};

    fn arg(index: usize, value: u64, op: LinuxSeccompOperator) -> LinuxSeccompArg {
        LinuxSeccompArgBuilder::default()
            .index(index)
            .value(value)
            .op(op)
            .build()
            .unwrap()
    }

    #[test]
    fn distinct_indexes_make_one_anded_rule() {
        let args = [
            arg(0, 1, LinuxSeccompOperator::ScmpCmpEq),
            arg(2, 3, LinuxSeccompOperator::ScmpCmpNe),
        ];
        let groups = condition_groups("lseek", &args).unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].len(), 2);
    }

    #[test]
    fn repeated_index_splits_every_condition() {
        let args = [
            arg(0, 8, LinuxSeccompOperator::ScmpCmpEq),
            arg(0, 0x20008, LinuxSeccompOperator::ScmpCmpEq),
            arg(1, 2, LinuxSeccompOperator::ScmpCmpEq),
        ];
        let groups = condition_groups("personality", &args).unwrap();
        assert_eq!(groups.len(), 3);
        assert!(groups.iter().all(|g| g.len() == 1));
    }

    #[test]
    fn index_past_sixth_argument_is_an_error() {
        let err =
            condition_groups("openat", &[arg(6, 0, LinuxSeccompOperator::ScmpCmpEq)]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("openat") && msg.contains('6'), "{msg}");
    }

    #[test]
    fn parse_program_rejects_partial_instructions() {
        assert!(parse_program(&[0; 7]).is_err());
        assert!(parse_program(&[]).is_err());
        let ins = parse_program(&[6, 0, 1, 2, 0, 0, 0xff, 0x7f]).unwrap();
        assert_eq!(ins.len(), 1);
        assert_eq!((ins[0].code, ins[0].jt, ins[0].jf), (6, 1, 2));
        assert_eq!(ins[0].k, u32::from_ne_bytes([0, 0, 0xff, 0x7f]));
    }

    #[test]
    fn errno_and_trace_default_to_eperm() {
        let errno = scmp_action(LinuxSeccompAction::ScmpActErrno, None, "x").unwrap();
        assert_eq!(errno, ScmpAction::Errno(libc::EPERM));
        let trace = scmp_action(LinuxSeccompAction::ScmpActTrace, None, "x").unwrap();
        assert_eq!(trace, ScmpAction::Trace(libc::EPERM as u16));
        let kill = scmp_action(LinuxSeccompAction::ScmpActKill, Some(5), "x").unwrap();
        assert_eq!(kill, ScmpAction::KillThread);
    }
}
