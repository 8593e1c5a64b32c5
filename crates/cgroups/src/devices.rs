//! Device access rules: parsing the spec's `linux.resources.devices` and
//! emulating the cgroup v1 devices controller, so that a rule list means
//! the same thing on v1 (written to devices.allow/deny) and on v2 (compiled
//! into a BPF program by [`crate::devices_bpf`]).
//!
//! Kernel v1 semantics: a cgroup has a default (allow all or deny all) and
//! a list of exceptions. A rule of type `a` resets both; a rule whose action
//! differs from the default adds (merges) an exception; a rule whose action
//! equals the default removes access bits from the exception with exactly
//! the same type, major and minor.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::{CgroupError, Result};

/// mknod access bit (same value as the kernel's BPF_DEVCG_ACC_MKNOD).
pub(crate) const ACC_MKNOD: u8 = 1;
/// read access bit (BPF_DEVCG_ACC_READ).
pub(crate) const ACC_READ: u8 = 2;
/// write access bit (BPF_DEVCG_ACC_WRITE).
pub(crate) const ACC_WRITE: u8 = 4;
/// All access bits.
pub(crate) const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// Block or character device (type `a` never survives emulation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum DevType {
    Block,
    Char,
}

impl DevType {
    fn letter(self) -> char {
        match self {
            DevType::Block => 'b',
            DevType::Char => 'c',
        }
    }
}

/// One exception: a device class and the access bits it grants or denies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DevRule {
    pub ty: DevType,
    /// `None` is the wildcard `*`.
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u8,
}

impl DevRule {
    fn same_device(&self, other: &DevRule) -> bool {
        self.ty == other.ty && self.major == other.major && self.minor == other.minor
    }

    /// The line the v1 devices.allow/deny files take, e.g. `c 1:3 rwm`.
    pub(crate) fn v1_line(&self, access: u8) -> String {
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |v| v.to_string());
        format!(
            "{} {}:{} {}",
            self.ty.letter(),
            num(self.major),
            num(self.minor),
            access_string(access)
        )
    }
}

/// Access bits as "rwm" letters.
pub(crate) fn access_string(access: u8) -> String {
    let mut s = String::with_capacity(3);
    if access & ACC_READ != 0 {
        s.push('r');
    }
    if access & ACC_WRITE != 0 {
        s.push('w');
    }
    if access & ACC_MKNOD != 0 {
        s.push('m');
    }
    s
}

fn parse_access(field: &str, s: &str) -> Result<u8> {
    if s.is_empty() {
        return Ok(ACC_ALL);
    }
    let mut acc = 0;
    for c in s.chars() {
        acc |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => {
                return Err(CgroupError::Invalid {
                    field: field.to_owned(),
                    reason: format!("access {s:?} may only contain r, w and m"),
                })
            }
        };
    }
    Ok(acc)
}

fn parse_num(field: &str, what: &str, n: Option<i64>) -> Result<Option<u32>> {
    match n {
        None | Some(-1) => Ok(None),
        Some(v) => u32::try_from(v)
            .map(Some)
            .map_err(|_| CgroupError::Invalid {
                field: field.to_owned(),
                reason: format!("{what} number {v} is out of range"),
            }),
    }
}

/// A parsed spec rule: `None` is a type-`a` (all devices) rule.
pub(crate) fn parse_rule(idx: usize, r: &LinuxDeviceCgroup) -> Result<(bool, Option<DevRule>)> {
    let field = format!("linux.resources.devices[{idx}]");
    let ty = match r.typ() {
        None | Some(LinuxDeviceType::A) => return Ok((r.allow(), None)),
        Some(LinuxDeviceType::B) => DevType::Block,
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => DevType::Char,
        Some(LinuxDeviceType::P) => {
            return Err(CgroupError::Invalid {
                field,
                reason: "type 'p' (FIFO) cannot be used in a device cgroup rule; use a, b or c"
                    .into(),
            })
        }
    };
    let rule = DevRule {
        ty,
        major: parse_num(&field, "major", r.major())?,
        minor: parse_num(&field, "minor", r.minor())?,
        access: parse_access(&field, r.access().as_deref().unwrap_or(""))?,
    };
    Ok((r.allow(), Some(rule)))
}

/// The state of a devices controller: default plus exceptions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DeviceState {
    pub default_allow: bool,
    pub exceptions: Vec<DevRule>,
}

impl DeviceState {
    /// Emulates the spec's rules in order, starting (like runc) from deny-all.
    pub(crate) fn from_spec(rules: &[LinuxDeviceCgroup]) -> Result<Self> {
        let mut st = DeviceState {
            default_allow: false,
            exceptions: Vec::new(),
        };
        for (i, r) in rules.iter().enumerate() {
            let (allow, rule) = parse_rule(i, r)?;
            st.apply(allow, rule);
        }
        Ok(st)
    }

    /// Applies one rule with kernel v1 semantics.
    pub(crate) fn apply(&mut self, allow: bool, rule: Option<DevRule>) {
        let Some(rule) = rule else {
            self.default_allow = allow;
            self.exceptions.clear();
            return;
        };
        let pos = self.exceptions.iter().position(|e| e.same_device(&rule));
        if allow != self.default_allow {
            match pos {
                Some(i) => self.exceptions[i].access |= rule.access,
                None => self.exceptions.push(rule),
            }
        } else if let Some(i) = pos {
            self.exceptions[i].access &= !rule.access;
            if self.exceptions[i].access == 0 {
                self.exceptions.remove(i);
            }
        }
    }

    /// Access bits the exception for exactly this device class holds.
    fn access_of(&self, rule: &DevRule) -> u8 {
        self.exceptions
            .iter()
            .find(|e| e.same_device(rule))
            .map_or(0, |e| e.access)
    }
}

/// What a v1 `devices.list` tells: allow-all (the kernel hides the deny
/// exceptions then), or deny-all with the listed allow exceptions.
pub(crate) fn parse_devices_list(content: &str) -> Option<DeviceState> {
    let mut st = DeviceState {
        default_allow: false,
        exceptions: Vec::new(),
    };
    for line in content.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut it = line.split(' ');
        let (ty, nums, acc) = (it.next()?, it.next()?, it.next().unwrap_or("rwm"));
        let ty = match ty {
            "a" => {
                st.default_allow = true;
                st.exceptions.clear();
                continue;
            }
            "b" => DevType::Block,
            "c" => DevType::Char,
            _ => return None,
        };
        let (ma, mi) = nums.split_once(':')?;
        let num = |s: &str| -> Option<Option<u32>> {
            if s == "*" {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        st.exceptions.push(DevRule {
            ty,
            major: num(ma)?,
            minor: num(mi)?,
            access: parse_access("devices.list", acc).ok()?,
        });
    }
    Some(st)
}

/// One write to a v1 devices file: to devices.allow when `allow`, else to
/// devices.deny.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct V1Write {
    pub allow: bool,
    pub line: String,
}

/// The writes taking a v1 cgroup from `current` (None: unknown) to
/// `target`. When both deny by default and the current list is known, only
/// the difference is written, so a running container never loses access to
/// a device it keeps; otherwise the default is reset with a type-`a` rule and
/// the exceptions are written in order.
pub(crate) fn v1_transition(current: Option<&DeviceState>, target: &DeviceState) -> Vec<V1Write> {
    let mut out = Vec::new();
    match current {
        Some(cur) if !cur.default_allow && !target.default_allow => {
            for t in &target.exceptions {
                let add = t.access & !cur.access_of(t);
                if add != 0 {
                    out.push(V1Write {
                        allow: true,
                        line: t.v1_line(add),
                    });
                }
            }
            for c in &cur.exceptions {
                let remove = c.access & !target.access_of(c);
                if remove != 0 {
                    out.push(V1Write {
                        allow: false,
                        line: c.v1_line(remove),
                    });
                }
            }
        }
        _ => {
            out.push(V1Write {
                allow: target.default_allow,
                line: "a *:* rwm".into(),
            });
            for e in &target.exceptions {
                out.push(V1Write {
                    allow: !target.default_allow,
                    line: e.v1_line(e.access),
                });
            }
        }
    }
    out
}

/// The device rules runc grants every container on top of a deny-all
/// (mknod of any device; null, zero, full, random, urandom, tty, ptmx,
/// /dev/pts/*, and /dev/net/tun). A runtime appends these to the spec's
/// rules where it wants runc's behaviour.
pub fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    let rule = |ty, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(ty));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_owned()));
        r
    };
    use LinuxDeviceType::{B, C};
    vec![
        rule(C, None, None, "m"),
        rule(B, None, None, "m"),
        rule(C, Some(1), Some(3), "rwm"),
        rule(C, Some(1), Some(8), "rwm"),
        rule(C, Some(1), Some(7), "rwm"),
        rule(C, Some(5), Some(0), "rwm"),
        rule(C, Some(1), Some(5), "rwm"),
        rule(C, Some(1), Some(9), "rwm"),
        rule(C, Some(136), None, "rwm"),
        rule(C, Some(5), Some(2), "rwm"),
        rule(C, Some(10), Some(200), "rwm"),
    ]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a spec rule: `ty` "a"/"b"/"c", major/minor `None` = wildcard.
    pub(crate) fn spec_rule(
        allow: bool,
        ty: &str,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(Some(match ty {
            "a" => LinuxDeviceType::A,
            "b" => LinuxDeviceType::B,
            "p" => LinuxDeviceType::P,
            _ => LinuxDeviceType::C,
        }));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_owned()));
        r
    }

    #[test]
    fn emulates_whitelist() {
        let rules = vec![
            spec_rule(false, "a", None, None, "rwm"),
            spec_rule(true, "c", Some(1), Some(3), "rw"),
            spec_rule(true, "c", Some(1), Some(3), "m"),
            spec_rule(true, "c", Some(1), Some(5), "rwm"),
            spec_rule(false, "c", Some(1), Some(5), "w"),
            spec_rule(true, "b", Some(8), None, "r"),
        ];
        let st = DeviceState::from_spec(&rules).unwrap();
        assert!(!st.default_allow);
        let lines: Vec<_> = st.exceptions.iter().map(|e| e.v1_line(e.access)).collect();
        assert_eq!(lines, vec!["c 1:3 rwm", "c 1:5 rm", "b 8:* r"]);
    }

    #[test]
    fn emulates_blacklist_and_reset() {
        let rules = vec![
            spec_rule(true, "c", Some(1), Some(3), "rwm"),
            spec_rule(true, "a", None, None, "rwm"),
            spec_rule(false, "c", Some(10), Some(200), "rwm"),
            spec_rule(true, "c", Some(10), Some(200), "m"),
        ];
        let st = DeviceState::from_spec(&rules).unwrap();
        assert!(st.default_allow);
        let lines: Vec<_> = st.exceptions.iter().map(|e| e.v1_line(e.access)).collect();
        assert_eq!(lines, vec!["c 10:200 rw"]);
    }

    #[test]
    fn rejects_bad_rules() {
        assert!(DeviceState::from_spec(&[spec_rule(true, "c", Some(1), Some(3), "rx")]).is_err());
        assert!(DeviceState::from_spec(&[spec_rule(true, "p", Some(1), Some(3), "r")]).is_err());
        assert!(DeviceState::from_spec(&[spec_rule(true, "c", Some(-7), None, "r")]).is_err());
        // Empty access means rwm, -1 is a wildcard.
        let st = DeviceState::from_spec(&[spec_rule(true, "c", Some(-1), Some(3), "")]).unwrap();
        assert_eq!(
            st.exceptions[0].v1_line(st.exceptions[0].access),
            "c *:3 rwm"
        );
    }

    #[test]
    fn transitions() {
        let target = DeviceState::from_spec(&[
            spec_rule(false, "a", None, None, "rwm"),
            spec_rule(true, "c", Some(1), Some(3), "rwm"),
            spec_rule(true, "c", Some(1), Some(5), "r"),
        ])
        .unwrap();
        // Unknown or allow-all current state: full reset.
        let full = v1_transition(parse_devices_list("a *:* rwm\n").as_ref(), &target);
        assert_eq!(
            full[0],
            V1Write {
                allow: false,
                line: "a *:* rwm".into()
            }
        );
        assert_eq!(full.len(), 3);
        // Known deny-all state: only the difference.
        let cur = parse_devices_list("c 1:3 rwm\nc 1:5 rwm\nc 1:9 rwm\n").unwrap();
        let diff = v1_transition(Some(&cur), &target);
        assert_eq!(
            diff,
            vec![
                V1Write {
                    allow: false,
                    line: "c 1:5 wm".into()
                },
                V1Write {
                    allow: false,
                    line: "c 1:9 rwm".into()
                },
            ]
        );
        assert!(v1_transition(Some(&target), &target).is_empty());
    }

    #[test]
    fn default_rules_parse() {
        let mut rules = vec![spec_rule(false, "a", None, None, "rwm")];
        rules.extend(default_device_rules());
        let st = DeviceState::from_spec(&rules).unwrap();
        assert_eq!(st.exceptions.len(), 11);
    }
}
