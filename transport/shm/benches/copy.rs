//! Copying a payload out of the ring: `SharedBytes::copy_to_slice` (volatile loads, the
//! only safe way to read bytes another party may be writing) against a plain memcpy of the
//! same bytes in the same mapping, and against a memcpy between two heap buffers.
//!
//! `cargo bench -p camring-shm --bench copy`. One 1920×1080 RGB image (6.2 MB) and one
//! 100 KB JPEG-sized payload; each variant timed in interleaved rounds, medians reported,
//! with the ratio to the in-mapping memcpy of the same round. Nothing publishes while the
//! bytes are read, which is what makes the memcpy baseline (`as_slice_unchecked`) sound.

use std::time::{Duration, Instant};

use camring_protocol::layout::{CameraEntry, CameraLayout};
use camring_protocol::PixelFormat;
use camring_shm::{ReadMode, Reader, RingConfig, Writer};

use camring_testkit::median;

fn time(mut f: impl FnMut(), bytes: usize) -> f64 {
    // Enough repetitions for ~20 ms, then GB/s.
    let start = Instant::now();
    let mut reps = 0u32;
    while start.elapsed() < Duration::from_millis(20) {
        f();
        reps += 1;
    }
    (bytes as f64 * f64::from(reps)) / start.elapsed().as_secs_f64() / 1e9
}

fn run(len: usize) {
    let name = format!("bench-copy-{}-{len}", std::process::id());
    let layout = CameraLayout {
        width: len as u32,
        height: 1,
        format: PixelFormat::Gray8.code(),
        max_len: len as u32,
    };
    let mut w = Writer::create(&name, &RingConfig::new(2, vec![layout], 30_000)).unwrap();
    let mut loan = w.loan();
    let entry = CameraEntry {
        width: len as u32,
        height: 1,
        stride: len as u32,
        format: PixelFormat::Gray8.code(),
        ..CameraEntry::default()
    };
    let buf = loan.push_camera(entry, len).unwrap();
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i * 31) as u8;
    }
    loan.commit(0, 0).unwrap();
    let mut r = Reader::open(&name).unwrap();
    let frame = r.try_read(ReadMode::Latest).unwrap().unwrap();
    let view = frame.payload(0);
    let mut dst = vec![0u8; len];
    let heap = view.to_vec();
    let (mut racy, mut mapped, mut heap_gbs, mut ratio) = (vec![], vec![], vec![], vec![]);
    for _ in 0..15 {
        let a = time(|| view.copy_to_slice(std::hint::black_box(&mut dst)), len);
        // SAFETY: nothing publishes into the ring while this bench reads it (the only
        // writer, `w`, is idle until the end of this function).
        let slice = unsafe { view.as_slice_unchecked() };
        let b = time(
            || std::hint::black_box(&mut dst).copy_from_slice(slice),
            len,
        );
        let c = time(
            || std::hint::black_box(&mut dst).copy_from_slice(&heap),
            len,
        );
        racy.push(a);
        mapped.push(b);
        heap_gbs.push(c);
        ratio.push(a / b);
    }
    assert!(frame.validate().is_ok());
    println!(
        "{len:>9} B: SharedBytes::copy_to_slice {:.2} GB/s, memcpy from the mapping {:.2} GB/s, heap memcpy {:.2} GB/s; volatile/memcpy median ratio {:.3}",
        median(&racy),
        median(&mapped),
        median(&heap_gbs),
        median(&ratio)
    );
    drop(w);
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("copy: bench");
        return;
    }
    for len in [1920 * 1080 * 3, 100_000] {
        run(len);
    }
}
