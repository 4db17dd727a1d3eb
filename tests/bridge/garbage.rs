use futures_util::SinkExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;
use crate::support::*;

#[test]
fn garbage_from_clients_is_refused_and_harms_nobody_else() {
    let mut rig = Rig::start("wsjunk", (2, "320x240", 30, "jpeg"), &[]);
    let addr = rig.addr();
    let rt = runtime();
    let good = rt.block_on(async {
        let good = Bystander::start(addr, "?cameras=1");
        // Half handshakes, then silence, for the whole test.
        let mut silent = Vec::new();
        for _ in 0..10 {
            use tokio::io::AsyncWriteExt;
            let mut tcp = TcpStream::connect(addr).await.expect("connect");
            tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
                .await
                .expect("half a request");
            silent.push(tcp);
        }

        // Malformed control messages: an `error` each, nothing changes, frames go on.
        let mut c = Checker::new("client sending bad JSON");
        let mut ws = connect(addr, "/ws?max_width=160").await;
        next_frame(&mut ws, &mut c).await;
        let bad = [
            "not json at all",
            r#"{"type":"settings","maxwidth":10}"#,
            r#"{"type":"settings","quality":0}"#,
            r#"{"type":"settings","cameras":[0,0]}"#,
            r#"{"type":"settings","fps":-1}"#,
            r#"{"type":"frobnicate"}"#,
            r#"{"no":"type"}"#,
            "[1,2,3]",
            "",
        ];
        for text in bad {
            let states = c.states.len();
            send_json(&mut ws, text).await;
            let event = read_for(&mut ws, &mut c, |e| matches!(e, Event::Error(_))).await;
            let Event::Error(why) = event else {
                unreachable!()
            };
            assert!(!why.is_empty(), "{text:?}: an empty error");
            assert_eq!(c.states.len(), states, "{text:?} was answered by a state");
            for _ in 0..3 {
                next_frame(&mut ws, &mut c).await;
            }
        }
        assert_eq!(c.settings.as_ref().map(|s| s.max_width), Some(160));
        assert!(
            c.frames
                .iter()
                .all(|g| g.sizes.iter().all(|&(w, _)| w == 160)),
            "settings changed by a refused message"
        );
        // And a good one still works after them.
        send_for_state(&mut ws, &mut c, r#"{"type":"settings","max_width":80}"#).await;
        let g = next_frame(&mut ws, &mut c).await;
        assert!(g.sizes.iter().all(|&(w, _)| w == 80), "{g:?}");
        let _ = ws.close(None).await;

        // A binary message: closed with 1003.
        let mut c = Checker::new("client sending binary");
        let mut ws = connect(addr, "/ws").await;
        next_frame(&mut ws, &mut c).await;
        ws.send(Message::binary(vec![0u8; 16]))
            .await
            .expect("send binary");
        let code = read_to_close(&mut ws, &mut c).await;
        assert_eq!(code, Some(1003), "close code for a binary message");

        // A text message over 4096 bytes: closed with 1009, in one frame or in fragments.
        let mut c = Checker::new("client sending a long text");
        let mut ws = connect(addr, "/ws").await;
        next_frame(&mut ws, &mut c).await;
        let long = format!(r#"{{"type":"pause","pad":"{}"}}"#, "x".repeat(5000));
        ws.send(Message::text(long)).await.expect("send long text");
        let code = read_to_close(&mut ws, &mut c).await;
        assert_eq!(code, Some(1009), "close code for a text over 4096 bytes");
        // Exactly 4096 bytes is allowed: a valid (empty) settings message padded with
        // blanks is answered with a state, and frames go on.
        let mut c = Checker::new("client sending 4096 bytes");
        let mut ws = connect(addr, "/ws").await;
        next_frame(&mut ws, &mut c).await;
        let open = r#"{"type":"settings""#;
        let at_limit = format!("{open}{}}}", " ".repeat(4096 - open.len() - 1));
        assert_eq!(at_limit.len(), 4096);
        let states = c.states.len();
        send_for_state(&mut ws, &mut c, &at_limit).await;
        assert_eq!(c.states.len(), states + 1);
        next_frame(&mut ws, &mut c).await;
        let _ = ws.close(None).await;

        // Bad URL parameters: 400 before any upgrade, the body naming the culprit.
        for query in [
            "?quality=200",
            "?quality=0",
            "?bogus=1",
            "?fps=-1",
            "?fps=1001",
            "?skip=0",
            "?cameras=0,0",
            "?cameras=16",
            "?max_width=-5",
            "?max_width=abc",
        ] {
            let status = refused_status(addr, &format!("/ws{query}"), &Dial::default()).await;
            assert_eq!(status, 400, "/ws{query}");
            let key = query[1..].split('=').next().expect("name");
            let r = http_get(
                addr,
                &format!("/ws{query}"),
                &[
                    ("Upgrade", "websocket"),
                    ("Connection", "close, Upgrade"),
                    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                    ("Sec-WebSocket-Version", "13"),
                ],
            )
            .await
            .expect("GET");
            assert_eq!(r.status, 400, "/ws{query}");
            assert!(r.text().contains(key), "/ws{query}: {}", r.text());
        }

        // Not HTTP at all, and HTTP with absurd headers: an error status or a closed
        // connection, never an upgrade.
        let garbage: Vec<u8> = (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let mut with_newlines = garbage.clone();
        with_newlines.extend_from_slice(b"\r\n\r\n");
        let huge_header = format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "y".repeat(200_000)
        );
        let many_headers = format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\n{}\r\n",
            (0..2000)
                .map(|i| format!("X-H{i}: v\r\n"))
                .collect::<String>()
        );
        let requests: [(&str, &[u8]); 6] = [
            ("binary garbage", &garbage),
            ("binary garbage and a blank line", &with_newlines),
            (
                "an absurd request line",
                b"FROB /ws?\x01\x02 HTTP/9.9\r\n\r\n",
            ),
            ("a 200 kB header", huge_header.as_bytes()),
            ("2000 headers", many_headers.as_bytes()),
            (
                "a TLS client hello",
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            ),
        ];
        for (what, bytes) in requests {
            let status = raw_exchange(addr, bytes).await;
            assert!(
                status.is_none_or(|s| (400..500).contains(&s)),
                "{what}: answered {status:?}"
            );
            eprintln!("{what}: {status:?}");
        }
        // The half handshakes are not kept open for ever: the server closes each (with a
        // 408 or without a word) once it gave up waiting for the rest of its headers. The
        // good client reads all along.
        for mut tcp in silent {
            use tokio::io::AsyncReadExt;
            let mut answer = Vec::new();
            let read = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut answer)).await;
            assert!(
                read.is_ok(),
                "a half handshake still open after {PATIENCE:?}"
            );
            let status = answer_status(&answer);
            assert!(
                status.is_none_or(|s| (400..500).contains(&s)),
                "a half handshake answered {status:?}"
            );
        }

        good.stop().await
    });
    good.assert_kept_up("others sent garbage");
    rig.assert_healthy();
    rt.block_on(async {
        let h = http_get(addr, "/healthz", &[]).await.expect("healthz");
        assert_eq!(h.status, 200, "{}", h.text());
        let m = bridge_metrics(addr, None).await;
        assert!(metric(&m, "camring_bridge_control_errors_total") >= 9.0);
        assert!(metric(&m, "camring_bridge_protocol_errors_total") >= 2.0);
        assert!(metric(&m, r#"camring_bridge_refused_total{reason="parameter"}"#) >= 20.0);
    });
    rig.assert_healthy();
}
