//! `quality=auto` end to end: a client that reads too slowly is stepped down (quality, then
//! size) by the server without reconnecting, and stepped back up once it keeps up. Real
//! producer and bridge processes; the client is camring-client's WebSocket connection with
//! a small receive buffer, and every image it gets is verified.

mod common;

use std::time::{Duration, Instant};

use camring_client::ws::{WsClient, WsTarget};
use camring_client::{Link, Received};
use camring_protocol::control::{CameraDescription, ServerMessage, SettingsUpdate};
use camring_protocol::wire;
use camring_reader::{Verdict, Verifier};
use common::*;

#[derive(Debug, Default)]
struct Seen {
    /// `stats.connection.quality` values, in order.
    qualities: Vec<u8>,
    /// Width of camera 0 in each binary message, in order.
    widths: Vec<u32>,
    verified: u64,
    corrupt: Vec<String>,
}

#[test]
fn auto_quality_steps_down_for_a_slow_client_and_back_up() {
    let ring = ring_name("autoq");
    let _guard = RingGuard(ring.clone());
    let _producer = produce(
        &ring,
        &[
            "--cameras",
            "2",
            "--size",
            "640x480",
            "--fps",
            "30",
            "--format",
            "rgb8",
        ],
    );
    let bridge = Bridge::start(&ring, &[]);
    let url = bridge.ws_url("/ws?quality=auto");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (slow, fast) = rt.block_on(async move {
        let client = WsClient {
            target: WsTarget::new(&url, None, &SettingsUpdate::default()).unwrap(),
            // A receive buffer of a few frames, so reading slowly is felt by the server
            // soon (much smaller ones make loopback TCP itself stall on delayed ACKs).
            rcvbuf: Some(256 * 1024),
        };
        let mut ws = client.open().await.expect("connected");
        let mut verifier = Verifier::new();
        let mut cameras: Vec<CameraDescription> = Vec::new();
        let mut read = |seen: &mut Seen, received: Received| -> bool {
            match received {
                Received::Text(text) => match ServerMessage::from_json(&text) {
                    Ok(ServerMessage::Stats(s)) => {
                        seen.qualities.extend(s.connection.quality);
                    }
                    Ok(ServerMessage::State(s)) => cameras = s.cameras,
                    _ => {}
                },
                Received::Message { data, .. } => {
                    let m = wire::parse(&data).expect("a valid message");
                    for c in &m.cameras {
                        if c.info.camera_id == 0 {
                            seen.widths.push(c.info.width);
                        }
                        let ring = cameras.iter().find(|d| d.id == c.info.camera_id);
                        match verifier.check_received(&c.info, c.payload, ring) {
                            Verdict::Verified => seen.verified += 1,
                            Verdict::Corrupt(e) => seen.corrupt.push(e),
                            _ => {}
                        }
                    }
                    return true;
                }
            }
            false
        };
        // Slow: ~5 messages a second against a 30 fps ring.
        let mut slow = Seen::default();
        let end = Instant::now() + Duration::from_secs(12);
        while Instant::now() < end {
            let message = ws.recv().await.expect("open");
            if read(&mut slow, message) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        // Fast: read everything, until the server has stepped back up (or 40 s).
        let mut fast = Seen::default();
        let low = slow.qualities.iter().copied().min().unwrap_or(80);
        let low_width = slow.widths.iter().copied().min().unwrap_or(640);
        let end = Instant::now() + Duration::from_secs(40);
        while Instant::now() < end {
            let message = ws.recv().await.expect("open");
            read(&mut fast, message);
            let raised_quality = fast.qualities.last().is_some_and(|&q| q > low);
            let raised_size = fast.widths.last().is_some_and(|&w| w > low_width);
            if raised_quality || (low_width < 640 && raised_size) {
                break;
            }
        }
        (slow, fast)
    });
    eprintln!(
        "slow phase: qualities {:?}, widths {:?}..{:?}; fast phase: qualities {:?}, last width {:?}",
        slow.qualities,
        slow.widths.iter().min(),
        slow.widths.iter().max(),
        fast.qualities,
        fast.widths.last()
    );
    assert!(
        slow.corrupt.is_empty() && fast.corrupt.is_empty(),
        "{:?} {:?}",
        slow.corrupt,
        fast.corrupt
    );
    assert!(slow.verified > 0 && fast.verified > 0);
    // Stepped down: the quality fell from where auto starts (80) by several steps.
    let low = *slow.qualities.iter().min().expect("stats messages");
    assert!(
        low <= 50,
        "quality never fell below {low}: {:?}",
        slow.qualities
    );
    assert!(
        slow.qualities.windows(2).all(|w| w[1] <= w[0]),
        "quality went up while the client was slow: {:?}",
        slow.qualities
    );
    // Stepped up again once the client kept up, on the same connection.
    let low_width = *slow.widths.iter().min().unwrap();
    let raised =
        fast.qualities.iter().any(|&q| q > low) || fast.widths.iter().any(|&w| w > low_width);
    assert!(
        raised,
        "never stepped up: fast phase qualities {:?}",
        fast.qualities
    );
    // Downscaled images keep the aspect ratio (640x480) whatever the step.
    assert!(slow.widths.iter().all(|&w| (8..=640).contains(&w)));
}
