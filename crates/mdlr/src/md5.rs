//! MD5 (RFC 1321), only to check the `Content-MD5` the result host may send. Not for
//! security: it verifies that the bytes on disk are the bytes the host holds.

/// An incremental MD5 digest.
#[derive(Clone)]
pub(crate) struct Md5 {
    state: [u32; 4],
    buffer: [u8; 64],
    buffered: usize,
    length: u64,
}

/// `floor(abs(sin(i + 1)) * 2^32)`.
const K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

impl Md5 {
    pub(crate) fn new() -> Md5 {
        Md5 {
            state: [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476],
            buffer: [0; 64],
            buffered: 0,
            length: 0,
        }
    }

    pub(crate) fn update(&mut self, mut data: &[u8]) {
        self.length = self.length.wrapping_add(data.len() as u64);
        if self.buffered > 0 {
            let take = (64 - self.buffered).min(data.len());
            self.buffer[self.buffered..self.buffered + take].copy_from_slice(&data[..take]);
            self.buffered += take;
            data = &data[take..];
            if self.buffered < 64 {
                return;
            }
            let block = self.buffer;
            self.block(&block);
            self.buffered = 0;
        }
        let mut chunks = data.chunks_exact(64);
        for chunk in &mut chunks {
            let mut block = [0u8; 64];
            block.copy_from_slice(chunk);
            self.block(&block);
        }
        let rest = chunks.remainder();
        self.buffer[..rest.len()].copy_from_slice(rest);
        self.buffered = rest.len();
    }

    pub(crate) fn finish(mut self) -> [u8; 16] {
        let bits = self.length.wrapping_mul(8);
        self.update(&[0x80]);
        while self.buffered != 56 {
            self.update(&[0]);
        }
        self.update(&bits.to_le_bytes());
        let mut out = [0u8; 16];
        for (i, word) in self.state.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
        }
        out
    }

    fn block(&mut self, block: &[u8; 64]) {
        let mut m = [0u32; 16];
        for (i, word) in m.iter_mut().enumerate() {
            *word = u32::from_le_bytes([
                block[i * 4],
                block[i * 4 + 1],
                block[i * 4 + 2],
                block[i * 4 + 3],
            ]);
        }
        let [mut a, mut b, mut c, mut d] = self.state;
        // Written out four steps at a time, with macros rather than closures: the shifts
        // are constants and nothing is left out of line at opt-level "z". (One step per
        // loop turn, the release build hashed about 240 MB/s.)
        macro_rules! step {
            ($w:ident, $x:ident, $y:ident, $z:ident, $f:expr, $i:expr, $g:expr, $s:expr) => {
                $w = $x.wrapping_add(
                    $w.wrapping_add($f)
                        .wrapping_add(K[$i])
                        .wrapping_add(m[$g & 15])
                        .rotate_left($s),
                );
            };
        }
        for i in (0..16).step_by(4) {
            step!(a, b, c, d, (b & c) | (!b & d), i, i, 7);
            step!(d, a, b, c, (a & b) | (!a & c), i + 1, i + 1, 12);
            step!(c, d, a, b, (d & a) | (!d & b), i + 2, i + 2, 17);
            step!(b, c, d, a, (c & d) | (!c & a), i + 3, i + 3, 22);
        }
        for i in (16..32).step_by(4) {
            step!(a, b, c, d, (d & b) | (!d & c), i, 5 * i + 1, 5);
            step!(d, a, b, c, (c & a) | (!c & b), i + 1, 5 * i + 6, 9);
            step!(c, d, a, b, (b & d) | (!b & a), i + 2, 5 * i + 11, 14);
            step!(b, c, d, a, (a & c) | (!a & d), i + 3, 5 * i + 16, 20);
        }
        for i in (32..48).step_by(4) {
            step!(a, b, c, d, b ^ c ^ d, i, 3 * i + 5, 4);
            step!(d, a, b, c, a ^ b ^ c, i + 1, 3 * i + 8, 11);
            step!(c, d, a, b, d ^ a ^ b, i + 2, 3 * i + 11, 16);
            step!(b, c, d, a, c ^ d ^ a, i + 3, 3 * i + 14, 23);
        }
        for i in (48..64).step_by(4) {
            step!(a, b, c, d, c ^ (b | !d), i, 7 * i, 6);
            step!(d, a, b, c, b ^ (a | !c), i + 1, 7 * i + 7, 10);
            step!(c, d, a, b, a ^ (d | !b), i + 2, 7 * i + 14, 15);
            step!(b, c, d, a, d ^ (c | !a), i + 3, 7 * i + 21, 21);
        }
        self.state[0] = self.state[0].wrapping_add(a);
        self.state[1] = self.state[1].wrapping_add(b);
        self.state[2] = self.state[2].wrapping_add(c);
        self.state[3] = self.state[3].wrapping_add(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(d: [u8; 16]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn rfc_1321_vectors() {
        for (input, want) in [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ] {
            let mut m = Md5::new();
            m.update(input.as_bytes());
            assert_eq!(hex(m.finish()), want, "{input:?}");
        }
        // Fed in uneven pieces.
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut whole = Md5::new();
        whole.update(&data);
        let mut pieces = Md5::new();
        for chunk in data.chunks(37) {
            pieces.update(chunk);
        }
        assert_eq!(whole.finish(), pieces.finish());
    }
}
