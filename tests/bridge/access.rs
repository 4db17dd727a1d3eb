use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite;

use crate::common::*;
use crate::support::*;

#[test]
fn token_is_required_everywhere_but_healthz() {
    let mut rig = Rig::start(
        "wstoken",
        (2, "320x240", 30, "jpeg"),
        &["--token", "secret"],
    );
    let addr = rig.addr();
    runtime().block_on(async {
        let none = Dial::default();
        let wrong_bearer = Dial {
            bearer: Some("guess".into()),
            ..Dial::default()
        };
        assert_eq!(refused_status(addr, "/ws", &none).await, 401, "no token");
        assert_eq!(refused_status(addr, "/ws?token=guess", &none).await, 401);
        assert_eq!(refused_status(addr, "/ws?token=", &none).await, 401);
        assert_eq!(
            refused_status(addr, "/ws?token=secretsecret", &none).await,
            401
        );
        assert_eq!(refused_status(addr, "/ws?token=secre", &none).await, 401);
        assert_eq!(refused_status(addr, "/ws", &wrong_bearer).await, 401);
        // The token before the parameters: a bad parameter with no token is still a 401.
        assert_eq!(refused_status(addr, "/ws?quality=200", &none).await, 401);
        // The right token: in the URL, or as a bearer header.
        let mut c = Checker::new("token in the URL");
        let mut ws = connect(addr, "/ws?token=secret&quality=60").await;
        for _ in 0..5 {
            next_frame(&mut ws, &mut c).await;
        }
        let bearer = Dial {
            bearer: Some("secret".into()),
            ..Dial::default()
        };
        let mut c2 = Checker::new("token as a bearer header");
        let mut ws2 = dial(addr, "/ws?cameras=1", &bearer)
            .await
            .expect("bearer accepted");
        for _ in 0..5 {
            next_frame(&mut ws2, &mut c2).await;
        }
        assert!(c2.frames.iter().all(|g| g.ids == [1]));
        // HTTP: /metrics, /snapshot and /mjpeg need it, /healthz does not.
        let auth = [("Authorization", "Bearer secret")];
        let bad_auth = [("Authorization", "Bearer nope")];
        for path in ["/metrics", "/snapshot/0.jpg", "/mjpeg/0"] {
            let r = http_get(addr, path, &[]).await.expect("GET");
            assert_eq!(r.status, 401, "{path} without a token: {}", r.text());
            let r = http_get(addr, path, &bad_auth).await.expect("GET");
            assert_eq!(r.status, 401, "{path} with a wrong token");
            let sep = if path.contains('?') { '&' } else { '?' };
            let r = http_get(addr, &format!("{path}{sep}token=wrong"), &[])
                .await
                .expect("GET");
            assert_eq!(r.status, 401, "{path}?token=wrong");
        }
        let r = http_get(addr, "/metrics?token=secret", &[])
            .await
            .expect("GET");
        assert_eq!(r.status, 200);
        assert!(r.text().contains("camring_bridge_frames_read_total"));
        let r = http_get(addr, "/metrics", &auth).await.expect("GET");
        assert_eq!(r.status, 200);
        for (target, headers) in [
            ("/snapshot/0.jpg?token=secret", &[][..]),
            ("/snapshot/0.jpg", &auth[..]),
        ] {
            let r = http_get(addr, target, headers).await.expect("GET");
            assert_eq!(r.status, 200, "{target}: {}", r.text());
            assert_eq!(r.header("content-type"), Some("image/jpeg"));
            let sequence: u64 = number(&r, "x-camring-sequence");
            camring_jpeg::Decoder::new()
                .expect("decoder")
                .verify_pattern(&r.body, 320, 240, 0, sequence)
                .unwrap_or_else(|e| panic!("{target}: {e}"));
        }
        let r = http_get(addr, "/healthz", &[]).await.expect("GET");
        assert_eq!(r.status, 200, "/healthz needs no token: {}", r.text());
        let m = bridge_metrics(addr, Some("secret")).await;
        let refused = metric(&m, r#"camring_bridge_refused_total{reason="token"}"#);
        assert!(refused >= 16.0, "refusals counted: {refused}");
        assert_eq!(metric(&m, r#"camring_bridge_clients{kind="ws"}"#), 2.0);
        // The clients were served all along.
        for _ in 0..3 {
            next_frame(&mut ws, &mut c).await;
            next_frame(&mut ws2, &mut c2).await;
        }
    });
    rig.assert_healthy();
}

#[test]
fn client_limit_refuses_with_503_and_frees_the_place_of_one_that_left() {
    let rig = Rig::start(
        "wsfull",
        (2, "320x240", 30, "jpeg"),
        &["--max-clients", "2"],
    );
    let addr = rig.addr();
    runtime().block_on(async {
        let mut a = Checker::new("first");
        let mut ws_a = connect(addr, "/ws").await;
        next_frame(&mut ws_a, &mut a).await;
        let mut b = Checker::new("second");
        let mut ws_b = connect(addr, "/ws?quality=50").await;
        next_frame(&mut ws_b, &mut b).await;
        for _ in 0..3 {
            assert_eq!(refused_status(addr, "/ws", &Dial::default()).await, 503);
        }
        // MJPEG clients count too.
        let r = http_get(addr, "/mjpeg/0", &[]).await.expect("GET");
        assert_eq!(r.status, 503, "{}", r.text());
        // A refused client takes no place: both are still served.
        next_frame(&mut ws_a, &mut a).await;
        next_frame(&mut ws_b, &mut b).await;
        // One leaves; its place is given to the next one (once the server noticed).
        ws_a.close(None).await.expect("close");
        drop(ws_a);
        let deadline = Instant::now() + PATIENCE;
        let mut refusals_meanwhile = 0;
        let mut ws_c = loop {
            match dial(addr, "/ws?cameras=0", &Dial::default()).await {
                Ok(ws) => break ws,
                Err(tungstenite::Error::Http(r)) if r.status() == 503 => {
                    refusals_meanwhile += 1;
                    assert!(Instant::now() < deadline, "the place never came free");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("third client: {e}"),
            }
        };
        let mut c = Checker::new("third");
        for _ in 0..5 {
            next_frame(&mut ws_c, &mut c).await;
        }
        assert!(c.frames.iter().all(|g| g.ids == [0]));
        // Full again.
        assert_eq!(refused_status(addr, "/ws", &Dial::default()).await, 503);
        next_frame(&mut ws_b, &mut b).await;
        let m = bridge_metrics(addr, None).await;
        assert_eq!(metric(&m, r#"camring_bridge_clients{kind="ws"}"#), 2.0);
        assert!(metric(&m, r#"camring_bridge_refused_total{reason="full"}"#) >= 5.0);
        eprintln!("503s while the first client's place came free: {refusals_meanwhile}");
    });
}
