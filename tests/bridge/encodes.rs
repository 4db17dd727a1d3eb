use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

/// Connects a client per query, lets each get a few frames, then reads `/metrics` before,
/// and again until the bridge has read `frames` more frames from the ring (or `within`
/// passed), while the clients all keep reading (and checking) at full rate.
async fn metrics_around(
    addr: std::net::SocketAddr,
    queries: &[&'static str],
    frames: f64,
    within: Duration,
) -> (Vec<Checker>, HashMap<String, f64>, HashMap<String, f64>) {
    let (ready_tx, mut ready) = tokio::sync::mpsc::unbounded_channel::<()>();
    let stop = Arc::new(AtomicU64::new(0));
    let tasks = spawn_clients(&tokio::runtime::Handle::current(), addr, queries, {
        let stop = Arc::clone(&stop);
        move |_, mut c, mut ws| {
            let (ready_tx, stop) = (ready_tx.clone(), Arc::clone(&stop));
            async move {
                for _ in 0..3 {
                    next_frame(&mut ws, &mut c).await;
                }
                let _ = ready_tx.send(());
                while stop.load(Ordering::Relaxed) == 0 {
                    read_until(&mut ws, &mut c, Instant::now() + Duration::from_millis(100)).await;
                }
                let _ = ws.close(None).await;
                c
            }
        }
    });
    for _ in queries {
        tokio::time::timeout(PATIENCE, ready.recv())
            .await
            .expect("clients got no frames")
            .expect("a client ended before its frames");
    }
    let before = bridge_metrics(addr, None).await;
    let end = Instant::now() + within;
    let read = "camring_bridge_frames_read_total";
    let after = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = bridge_metrics(addr, None).await;
        if delta(&before, &now, read) >= frames || Instant::now() >= end {
            break now;
        }
    };
    stop.store(1, Ordering::Relaxed);
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.expect("client"));
    }
    (clients, before, after)
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, key: &str) -> f64 {
    metric(after, key) - metric(before, key)
}

#[test]
fn encodes_grow_with_distinct_settings_not_with_clients() {
    const CAMERAS: f64 = 2.0;
    const WINDOW: Duration = Duration::from_secs(5);
    let rig = Rig::start("wsenc", (2, "320x240", 20, "rgb8"), &[]);
    let addr = rig.addr();
    let rt = runtime();
    let same = ["?quality=70"; 10];
    let spread = [
        "?quality=50",
        "?quality=50",
        "?quality=50",
        "?quality=50",
        "?quality=70",
        "?quality=70",
        "?quality=70",
        // fps and skip do not make another variant; a size limit does.
        "?quality=70&max_width=160",
        "?quality=70&max_width=160&fps=0",
        "?quality=70&max_width=160&skip=1",
    ];
    let mut figures = Vec::new();
    for (what, queries, low, high) in [
        ("10 clients, 1 setting", &same, 0.8, 1.2),
        ("10 clients, 3 settings", &spread, 2.5, 3.6),
    ] {
        let (clients, before, after) = rt.block_on(metrics_around(addr, queries, 80.0, WINDOW));
        let read = delta(&before, &after, "camring_bridge_frames_read_total");
        let encodes = delta(&before, &after, "camring_bridge_encodes_total");
        let forwarded = delta(&before, &after, "camring_bridge_forwarded_total");
        let sent = delta(
            &before,
            &after,
            r#"camring_bridge_frames_sent_total{kind="ws"}"#,
        );
        let per_frame = encodes / read / CAMERAS;
        let spans: Vec<u64> = clients.iter().map(|c| span(&c.frames)).collect();
        let encode_ms = delta(&before, &after, "camring_bridge_encode_seconds_sum") * 1000.0
            / delta(&before, &after, "camring_bridge_encode_seconds_count");
        figures.push(format!(
            "{what}: {read} frames read, {encodes} encodes ({per_frame:.2} x cameras per frame), \
             {sent} messages sent, {encode_ms:.1} ms per encode; client spans {spans:?}"
        ));
        assert!(
            read >= 20.0,
            "{what}: only {read} frames read in {WINDOW:?}"
        );
        assert_eq!(
            forwarded, 0.0,
            "{what}: nothing to forward from an rgb8 ring"
        );
        assert!(
            (low..=high).contains(&per_frame),
            "{what}: {encodes} encodes for {read} frames of {CAMERAS} cameras: {per_frame:.2} \
             per camera and frame, expected {low}..{high}"
        );
        // The frames read went to clients (each client's own share, with drops on a
        // starved machine, is checked by its count below).
        assert!(
            sent >= read,
            "{what}: {sent} messages sent for {read} frames read"
        );
        for c in &clients {
            assert!(
                c.frames.len() >= 10,
                "{}: {} frames",
                c.name,
                c.frames.len()
            );
        }
    }
    eprintln!("{}", figures.join("\n"));
}

#[test]
fn jpeg_ring_at_default_quality_is_forwarded_as_is() {
    let rig = Rig::start("wsfwd", (2, "320x240", 20, "jpeg"), &[]);
    let addr = rig.addr();
    // One variant (the default quality, no size limit) whatever the cameras asked for.
    let queries = ["", "", "", "?quality=80", "?cameras=1", "?cameras=0,1"];
    let (clients, before, after) =
        runtime().block_on(metrics_around(addr, &queries, 60.0, Duration::from_secs(4)));
    let read = delta(&before, &after, "camring_bridge_frames_read_total");
    let encodes = delta(&before, &after, "camring_bridge_encodes_total");
    let forwarded = delta(&before, &after, "camring_bridge_forwarded_total");
    eprintln!("jpeg ring: {read} frames read, {forwarded} images forwarded, {encodes} encodes");
    assert!(read >= 20.0, "only {read} frames read");
    assert_eq!(
        encodes, 0.0,
        "a JPEG at a quality at least the ring's is never encoded"
    );
    // Once per camera and frame, whatever the number of clients.
    assert!(
        forwarded >= read * 2.0 * 0.8 && forwarded <= read * 2.0 * 1.2,
        "{forwarded} forwarded for {read} frames of 2 cameras"
    );
    for c in &clients {
        assert!(c.frames.len() >= 10, "{}", c.name);
    }
}
