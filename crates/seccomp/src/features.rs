//! The `"linux"."seccomp"` part of the runtime-spec features document (`runc features`),
//! computed from this build and the running kernel.

use libseccomp::{ScmpAction, ScmpFilterContext};
use serde_json::{json, Value};

use crate::kernel;
use crate::names::{
    kernel_action, kernel_flag, scmp_arch, spec_name, ACTIONS, ARCHS, FLAGS, OPERATORS,
};

/// The seccomp features object:
/// - `enabled`: the kernel has seccomp filters;
/// - `actions`: the spec actions the kernel implements (`SECCOMP_GET_ACTION_AVAIL`);
/// - `operators`: every comparison operator;
/// - `archs`: the spec architectures libseccomp can build filters for;
/// - `knownFlags`: the filter flags this build understands;
/// - `supportedFlags`: those of `knownFlags` the running kernel accepts.
///
/// Lists are sorted. When the kernel has no seccomp, every list but `operators`, `archs` and
/// `knownFlags` is empty.
pub fn features() -> Value {
    let enabled = kernel::action_available(libc::SECCOMP_RET_ALLOW);
    let actions = sorted(
        ACTIONS
            .iter()
            .filter(|action| kernel::action_available(kernel_action(**action)))
            .map(spec_name),
    );
    let operators = sorted(OPERATORS.iter().map(spec_name));
    let archs = sorted(
        ARCHS
            .iter()
            .filter(|arch| {
                ScmpFilterContext::new(ScmpAction::Allow)
                    .and_then(|mut ctx| ctx.add_arch(scmp_arch(**arch)).map(|_| ()))
                    .is_ok()
            })
            .map(spec_name),
    );
    let known_flags = sorted(FLAGS.iter().map(spec_name));
    let supported_flags = sorted(
        FLAGS
            .iter()
            .filter(|flag| enabled && kernel::flags_supported(kernel_flag(**flag)))
            .map(spec_name),
    );
    json!({
        "enabled": enabled,
        "actions": actions,
        "operators": operators,
        "archs": archs,
        "knownFlags": known_flags,
        "supportedFlags": supported_flags,
    })
}

fn sorted(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut names: Vec<String> = names.collect();
    names.sort();
    names
}
