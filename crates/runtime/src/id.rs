//! Container ids: the name of a directory under the state root, so they must never be path-like.

use crate::{Error, Result};

/// Checks an id as runc does: 1..=1024 characters of `[A-Za-z0-9_.-]`, not `.` or `..`.
pub fn validate(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_plain_ids() {
        for id in ["a", "ctr-1", "x_y.z", "0123456789abcdef"] {
            assert!(validate(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn rejects_path_like_ids() {
        for id in ["", ".", "..", "../x", "a/b", "/abs", "a b", "tab\t", "ü"] {
            assert!(validate(id).is_err(), "{id:?}");
        }
        assert!(validate(&"a".repeat(1025)).is_err());
    }
}
