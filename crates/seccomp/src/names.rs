//! Mapping between the runtime-spec's seccomp vocabulary (oci-spec types) and libseccomp's or
//! the kernel's, plus the spec spellings used in messages and in the features document.

use libseccomp::{ScmpArch, ScmpCompareOp};
use oci_spec::runtime::{Arch, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator};

use crate::kernel;

/// Every action of the runtime spec.
pub(crate) const ACTIONS: [LinuxSeccompAction; 9] = [
    LinuxSeccompAction::ScmpActKill,
    LinuxSeccompAction::ScmpActKillThread,
    LinuxSeccompAction::ScmpActKillProcess,
    LinuxSeccompAction::ScmpActTrap,
    LinuxSeccompAction::ScmpActErrno,
    LinuxSeccompAction::ScmpActNotify,
    LinuxSeccompAction::ScmpActTrace,
    LinuxSeccompAction::ScmpActLog,
    LinuxSeccompAction::ScmpActAllow,
];

/// Every comparison operator of the runtime spec.
pub(crate) const OPERATORS: [LinuxSeccompOperator; 7] = [
    LinuxSeccompOperator::ScmpCmpNe,
    LinuxSeccompOperator::ScmpCmpLt,
    LinuxSeccompOperator::ScmpCmpLe,
    LinuxSeccompOperator::ScmpCmpEq,
    LinuxSeccompOperator::ScmpCmpGe,
    LinuxSeccompOperator::ScmpCmpGt,
    LinuxSeccompOperator::ScmpCmpMaskedEq,
];

/// Every architecture of the runtime spec except `SCMP_ARCH_NATIVE`.
pub(crate) const ARCHS: [Arch; 17] = [
    Arch::ScmpArchX86,
    Arch::ScmpArchX86_64,
    Arch::ScmpArchX32,
    Arch::ScmpArchArm,
    Arch::ScmpArchAarch64,
    Arch::ScmpArchMips,
    Arch::ScmpArchMips64,
    Arch::ScmpArchMips64n32,
    Arch::ScmpArchMipsel,
    Arch::ScmpArchMipsel64,
    Arch::ScmpArchMipsel64n32,
    Arch::ScmpArchPpc,
    Arch::ScmpArchPpc64,
    Arch::ScmpArchPpc64le,
    Arch::ScmpArchS390,
    Arch::ScmpArchS390x,
    Arch::ScmpArchRiscv64,
];

/// Every filter flag the runtime-spec types (oci-spec) can express.
pub(crate) const FLAGS: [LinuxSeccompFilterFlag; 3] = [
    LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
    LinuxSeccompFilterFlag::SeccompFilterFlagLog,
    LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
];

/// The runtime-spec spelling of a value, e.g. `SCMP_ACT_ERRNO`, `SCMP_ARCH_X86_64`.
pub(crate) fn spec_name<T: serde::Serialize + std::fmt::Debug>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{value:?}"),
    }
}

/// The kernel's `SECCOMP_RET_*` action for a spec action (for `SECCOMP_GET_ACTION_AVAIL`).
pub(crate) fn kernel_action(action: LinuxSeccompAction) -> u32 {
    match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            libc::SECCOMP_RET_KILL_THREAD
        }
        LinuxSeccompAction::ScmpActKillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => libc::SECCOMP_RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => libc::SECCOMP_RET_ERRNO,
        LinuxSeccompAction::ScmpActNotify => libc::SECCOMP_RET_USER_NOTIF,
        LinuxSeccompAction::ScmpActTrace => libc::SECCOMP_RET_TRACE,
        LinuxSeccompAction::ScmpActLog => libc::SECCOMP_RET_LOG,
        LinuxSeccompAction::ScmpActAllow => libc::SECCOMP_RET_ALLOW,
    }
}

/// The kernel's `SECCOMP_FILTER_FLAG_*` bit for a spec flag.
pub(crate) fn kernel_flag(flag: LinuxSeccompFilterFlag) -> libc::c_ulong {
    match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => kernel::FLAG_TSYNC,
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => kernel::FLAG_LOG,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => kernel::FLAG_SPEC_ALLOW,
    }
}

/// libseccomp's architecture token for a spec architecture.
pub(crate) fn scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
    }
}

/// libseccomp's comparison for a spec operator. For `SCMP_CMP_MASKED_EQ` the spec's `value` is
/// the mask and `valueTwo` the value the masked argument must equal (as in runc and crun).
pub(crate) fn scmp_compare(op: LinuxSeccompOperator, value: u64) -> ScmpCompareOp {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_names_are_the_runtime_spec_spellings() {
        assert_eq!(spec_name(&LinuxSeccompAction::ScmpActKill), "SCMP_ACT_KILL");
        assert_eq!(
            spec_name(&LinuxSeccompAction::ScmpActKillProcess),
            "SCMP_ACT_KILL_PROCESS"
        );
        assert_eq!(spec_name(&Arch::ScmpArchX86_64), "SCMP_ARCH_X86_64");
        assert_eq!(spec_name(&Arch::ScmpArchMips64n32), "SCMP_ARCH_MIPS64N32");
        assert_eq!(
            spec_name(&LinuxSeccompOperator::ScmpCmpMaskedEq),
            "SCMP_CMP_MASKED_EQ"
        );
        assert_eq!(
            spec_name(&LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow),
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW"
        );
    }

    #[test]
    fn kernel_flags_are_distinct_bits() {
        let bits: Vec<_> = FLAGS.iter().map(|f| kernel_flag(*f)).collect();
        assert_eq!(bits, vec![1, 2, 4]);
    }
}
