use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

/// How a vanishing client goes.
#[derive(Debug, Clone, Copy)]
enum Vanish {
    /// `SO_LINGER` 0: the kernel answers with RST.
    Reset,
    /// A plain close with unread data (the kernel sends RST or FIN as it sees fit).
    Drop,
    /// FIN first (shutdown of the write side), then close.
    Shutdown,
    /// Right after the upgrade, before any frame.
    Early,
}

const KINDS_OF_VANISHING: [Vanish; 4] =
    [Vanish::Reset, Vanish::Drop, Vanish::Shutdown, Vanish::Early];

#[test]
fn clients_vanishing_mid_frame_cost_only_their_connection() {
    const FPS: u32 = 30;
    const ROUNDS: usize = 36;
    let mut rig = Rig::start("wsgone", (2, "320x240", FPS, "jpeg"), &[]);
    let addr = rig.addr();
    let rt = runtime();
    let good = rt.block_on(async {
        let good = Bystander::start(addr, "");
        for round in 0..ROUNDS {
            let how = KINDS_OF_VANISHING[round % KINDS_OF_VANISHING.len()];
            // Three at once, each at its own point of a frame.
            let gone: Vec<_> = (0..3)
                .map(|k| {
                    tokio::spawn(async move {
                        let query = ["/ws", "/ws?quality=50", "/ws?max_width=100"][k];
                        let (mut tcp, mut pending) = raw_upgrade(addr, query).await;
                        if !matches!(how, Vanish::Early) {
                            let len = skip_to_binary(&mut tcp, &mut pending).await;
                            // Somewhere inside the payload: a quarter, a half, three quarters.
                            let part = 48 + (len as usize - 48) * (k + 1) / 4;
                            fill(&mut tcp, &mut pending, part).await;
                            assert_eq!(&pending[..4], b"CAMF", "a binary message starts CAMF");
                        }
                        match how {
                            Vanish::Reset => tcp.set_zero_linger().expect("SO_LINGER"),
                            Vanish::Shutdown => {
                                use tokio::io::AsyncWriteExt;
                                let _ = tcp.shutdown().await;
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            Vanish::Drop | Vanish::Early => {}
                        }
                        drop(tcp);
                    })
                })
                .collect();
            for g in gone {
                g.await.expect("vanishing client");
            }
            // Spread over a few seconds, so that the good client's rate means something.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        good.stop().await
    });
    good.assert_kept_up(&format!(
        "{} clients vanished ({KINDS_OF_VANISHING:?})",
        ROUNDS * 3
    ));
    rig.assert_healthy();
    let Bystood { mut c, mut ws, .. } = good;
    rt.block_on(async {
        let h = http_get(addr, "/healthz", &[]).await.expect("healthz");
        assert_eq!(h.status, 200, "{}", h.text());
        // A new client is served...
        let mut c2 = Checker::new("new client");
        let mut ws2 = connect(addr, "/ws?max_width=160").await;
        for _ in 0..5 {
            next_frame(&mut ws2, &mut c2).await;
        }
        // ...and the old one still is.
        for _ in 0..5 {
            next_frame(&mut ws, &mut c).await;
        }
        // Every vanished client is gone from the count: two remain.
        let deadline = Instant::now() + PATIENCE;
        let clients = loop {
            let m = bridge_metrics(addr, None).await;
            let n = metric(&m, r#"camring_bridge_clients{kind="ws"}"#);
            if n == 2.0 || Instant::now() > deadline {
                let accepted = metric(&m, r#"camring_bridge_connections_total{kind="ws"}"#);
                assert_eq!(accepted, (ROUNDS * 3 + 2) as f64, "connections accepted");
                break n;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(clients, 2.0, "clients gauge after the vanished ones left");
        let h = http_get(addr, "/healthz", &[]).await.expect("healthz");
        let v: serde_json::Value = serde_json::from_slice(&h.body).expect("healthz JSON");
        assert_eq!(v["clients"], 2, "{v}");
    });
    rig.assert_healthy();
}
