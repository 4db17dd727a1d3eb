//! The quality a JPEG was made with, read from its quantisation tables.

/// The IJG quality (1..=100) a JPEG's luminance quantisation table was made with, or
/// `None` when it has none or one that no IJG quality gives (within 2 %).
pub fn jpeg_quality(jpeg: &[u8]) -> Option<u8> {
    const STD_LUMA: [u32; 64] = [
        16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69,
        56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81,
        104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
    ];
    let table = luma_table(jpeg)?;
    // The sum of a table does not depend on its (zigzag) order.
    let sum: u32 = table.iter().sum();
    let (best, diff) = (1..=100u32)
        .map(|q| {
            let scale = if q < 50 { 5000 / q } else { 200 - 2 * q };
            let s: u32 = STD_LUMA
                .iter()
                .map(|&v| ((v * scale + 50) / 100).clamp(1, 255))
                .sum();
            (q, s.abs_diff(sum))
        })
        .min_by_key(|&(q, d)| (d, std::cmp::Reverse(q)))?;
    (diff * 50 <= sum).then_some(best as u8)
}

/// The first quantisation table with id 0 (luminance), in file order, before the scan.
fn luma_table(jpeg: &[u8]) -> Option<[u32; 64]> {
    let mut found = None;
    let _ = crate::markers::walk_segments(jpeg, 0, None, &mut |marker, body| {
        if marker == 0xDB && found.is_none() {
            found = luma_in_dqt(body);
        }
    });
    found
}

/// Table 0 of a define-quantisation-table segment's body, if it has one.
fn luma_in_dqt(body: &[u8]) -> Option<[u32; 64]> {
    let mut t = body;
    while let Some((&pq_tq, rest)) = t.split_first() {
        let wide = pq_tq >> 4 != 0;
        let n = if wide { 128 } else { 64 };
        let values = rest.get(..n)?;
        if pq_tq & 0x0F == 0 {
            let mut out = [0u32; 64];
            for (i, v) in out.iter_mut().enumerate() {
                *v = if wide {
                    u32::from(u16::from_be_bytes([values[2 * i], values[2 * i + 1]]))
                } else {
                    u32::from(values[i])
                };
            }
            return Some(out);
        }
        t = &rest[n..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_is_read_back_from_turbojpeg_output() {
        let (w, h) = (64u32, 48u32);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        for q in [10u8, 30, 50, 75, 80, 90, 95, 100] {
            let mut c = turbojpeg::Compressor::new().unwrap();
            c.set_quality(i32::from(q)).unwrap();
            let image = turbojpeg::Image {
                pixels: &rgb[..],
                width: w as usize,
                pitch: w as usize * 3,
                height: h as usize,
                format: turbojpeg::PixelFormat::RGB,
            };
            let jpeg = c.compress_to_vec(image).unwrap();
            let got = jpeg_quality(&jpeg).unwrap();
            assert!(got.abs_diff(q) <= 1, "q{q}: estimated {got}");
        }
        assert_eq!(jpeg_quality(b"not a jpeg"), None);
        assert_eq!(jpeg_quality(&[0xFF, 0xD8, 0xFF, 0xDB, 0xFF, 0xFF]), None);
    }
}
