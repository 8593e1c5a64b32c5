//! The seccomp features document against this build and kernel.

use berth_seccomp::features;
use serde_json::{json, Value};

fn names(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[test]
fn features_list_actions_operators_archs_and_flags() {
    let f = features();
    assert_eq!(f["enabled"], json!(true));
    // Every action exists in kernels >= 5.0; this host's kernel is far newer.
    assert_eq!(
        names(&f["actions"]),
        vec![
            "SCMP_ACT_ALLOW",
            "SCMP_ACT_ERRNO",
            "SCMP_ACT_KILL",
            "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_KILL_THREAD",
            "SCMP_ACT_LOG",
            "SCMP_ACT_NOTIFY",
            "SCMP_ACT_TRACE",
            "SCMP_ACT_TRAP",
        ]
    );
    assert_eq!(
        names(&f["operators"]),
        vec![
            "SCMP_CMP_EQ",
            "SCMP_CMP_GE",
            "SCMP_CMP_GT",
            "SCMP_CMP_LE",
            "SCMP_CMP_LT",
            "SCMP_CMP_MASKED_EQ",
            "SCMP_CMP_NE",
        ]
    );
    let archs = names(&f["archs"]);
    for arch in [
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_AARCH64",
    ] {
        assert!(archs.contains(&arch), "{arch} missing from {archs:?}");
    }
    assert!(!archs.contains(&"SCMP_ARCH_NATIVE"));
    let known = names(&f["knownFlags"]);
    assert_eq!(
        known,
        vec![
            "SECCOMP_FILTER_FLAG_LOG",
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
            "SECCOMP_FILTER_FLAG_TSYNC",
        ]
    );
    let supported = names(&f["supportedFlags"]);
    assert!(supported.iter().all(|flag| known.contains(flag)));
    // TSYNC (3.17) and LOG (4.14) are in every kernel this runtime targets.
    assert!(supported.contains(&"SECCOMP_FILTER_FLAG_TSYNC"));
    assert!(supported.contains(&"SECCOMP_FILTER_FLAG_LOG"));
}
