//! Deterministic file trees for the multi-layer image: many small text files and a few large
//! files mixing text with random bytes, so gzip sees realistically mixed data.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::Result;

/// xorshift64*: small, fast, deterministic.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (a zero seed is replaced: xorshift must not start at 0).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `n` random bytes appended to `out`.
    pub fn bytes(&mut self, out: &mut Vec<u8>, n: usize) {
        let mut left = n;
        while left > 0 {
            let b = self.next_u64().to_le_bytes();
            let k = left.min(8);
            out.extend_from_slice(&b[..k]);
            left -= k;
        }
    }

    /// About `n` bytes of source-like text (words from a fixed vocabulary, lines of varying
    /// length) appended to `out`; gzip shrinks it about 3-4x.
    pub fn text(&mut self, out: &mut Vec<u8>, n: usize) {
        const WORDS: &[&str] = &[
            "fn",
            "let",
            "mut",
            "return",
            "struct",
            "impl",
            "self",
            "match",
            "Some",
            "None",
            "Ok",
            "Err",
            "if",
            "else",
            "for",
            "while",
            "in",
            "pub",
            "use",
            "mod",
            "const",
            "static",
            "config",
            "layer",
            "digest",
            "image",
            "manifest",
            "registry",
            "blob",
            "value",
            "index",
            "buffer",
            "length",
            "offset",
            "result",
            "error",
            "path",
            "file",
            "directory",
            "container",
            "runtime",
            "process",
            "signal",
            "handler",
            "=",
            "{",
            "}",
            "(",
            ")",
            ";",
            "->",
            "::",
            "0",
            "1",
            "42",
            "4096",
            "0x1f",
            "\"hello\"",
            "// note:",
        ];
        let end = out.len() + n;
        while out.len() < end {
            let indent = 4 * self.below(4) as usize;
            out.resize(out.len() + indent, b' ');
            for _ in 0..3 + self.below(10) {
                let w = WORDS[self.below(WORDS.len() as u64) as usize];
                out.extend_from_slice(w.as_bytes());
                out.push(b' ');
            }
            if self.below(50) == 0 {
                // A unique token now and then, as real sources have.
                out.extend_from_slice(format!("id_{:x}", self.next_u64()).as_bytes());
            }
            out.push(b'\n');
        }
        out.truncate(end);
    }
}

/// What [`layer_tree`] wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TreeStats {
    /// Regular files.
    pub files: u64,
    /// Bytes in them.
    pub bytes: u64,
}

/// Write layer `index`'s tree under `dir` (`dir/layerN/...`): `small` text files of 0.5-16 KiB in
/// 64 directories, and `large` files of `large_mib` MiB each, alternating 1 MiB chunks of text
/// and random bytes (random share about 40%). Same arguments, same bytes.
pub fn layer_tree(
    dir: &Path,
    index: u64,
    small: u64,
    large: u64,
    large_mib: u64,
) -> Result<TreeStats> {
    let mut rng = Rng::new(0xbe27_0000 + index);
    let root = dir.join(format!("layer{index}"));
    let mut st = TreeStats::default();
    let mut buf = Vec::new();
    for i in 0..small {
        let sub = root.join(format!("src/d{:02}", i % 64));
        if i < 64 {
            fs::create_dir_all(&sub)?;
        }
        buf.clear();
        let n = 512 + rng.below(16 * 1024 - 512) as usize;
        rng.text(&mut buf, n);
        fs::write(sub.join(format!("f{i:05}.rs")), &buf)?;
        st.files += 1;
        st.bytes += n as u64;
    }
    let big = root.join("data");
    fs::create_dir_all(&big)?;
    for j in 0..large {
        let mut f = std::io::BufWriter::new(fs::File::create(big.join(format!("blob{j}.bin")))?);
        for c in 0..large_mib {
            buf.clear();
            if (c + j) % 5 < 2 {
                rng.bytes(&mut buf, 1 << 20);
            } else {
                rng.text(&mut buf, 1 << 20);
            }
            f.write_all(&buf)?;
        }
        f.flush()?;
        st.files += 1;
        st.bytes += large_mib << 20;
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let (mut x, mut y) = (Vec::new(), Vec::new());
        a.text(&mut x, 5000);
        b.text(&mut y, 5000);
        assert_eq!(x, y);
        assert_eq!(x.len(), 5000);
        a.bytes(&mut x, 13);
        assert_eq!(x.len(), 5013);
        let mut z = Vec::new();
        Rng::new(8).text(&mut z, 5000);
        assert_ne!(x[..5000], z[..]);
    }

    #[test]
    fn tree_is_deterministic_and_counted() {
        let t = tempfile::tempdir().unwrap();
        let a = layer_tree(&t.path().join("a"), 3, 70, 2, 1).unwrap();
        let b = layer_tree(&t.path().join("b"), 3, 70, 2, 1).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.files, 72);
        let pa = t.path().join("a/layer3/src/d05/f00069.rs");
        let pb = t.path().join("b/layer3/src/d05/f00069.rs");
        assert_eq!(fs::read(&pa).unwrap(), fs::read(&pb).unwrap());
        let big = fs::metadata(t.path().join("a/layer3/data/blob1.bin")).unwrap();
        assert_eq!(big.len(), 1 << 20);
    }
}
