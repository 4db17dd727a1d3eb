//! One WebSocket client: its control messages ([`WsControl`]) and its writer, a thin pump
//! over the shared [`Driver`].

use super::*;

pub(super) async fn ws_handler(
    State(app): State<Arc<App>>,
    Query(pairs): Pairs,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, Refusal> {
    authorize(&app, &pairs, &headers)?;
    let update = settings_from(&app, &pairs)?;
    let slot = take_slot(&app, "ws")?;
    let mut settings = Settings::default();
    settings.apply(&update);
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| connection(app, socket, settings, slot)))
}

/// The close frame a session's [`Close`] is sent as (none when the connection is gone).
fn close_frame(close: &Close) -> Option<CloseFrame> {
    let (code, reason) = match close {
        Close::Stopping => (1001, "server stopping".into()),
        Close::Done => (1000, "bye".into()),
        Close::Violation { code, reason } => (u16::try_from(*code).unwrap_or(1008), reason.clone()),
        Close::Lost => return None,
    };
    Some(CloseFrame {
        code,
        reason: reason.into(),
    })
}

/// Whether a read error is a message over the size limit.
fn too_big(e: axum::Error) -> bool {
    e.into_inner()
        .downcast_ref::<tokio_tungstenite::tungstenite::Error>()
        .is_some_and(|e| matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_)))
}

/// A WebSocket client's control messages: its text messages.
struct WsControl<'a> {
    stream: futures_util::stream::SplitStream<WebSocket>,
    metrics: &'a Metrics,
}

impl ControlSource for WsControl<'_> {
    async fn next(&mut self) -> Incoming {
        match self.stream.next().await {
            None | Some(Ok(Message::Close(_))) => Incoming::End(None),
            Some(Ok(Message::Text(text))) => Incoming::Text(text.as_str().to_owned()),
            Some(Ok(Message::Binary(_))) => {
                self.metrics.protocol_errors.inc();
                Incoming::End(Some(Close::Violation {
                    code: CLOSE_UNSUPPORTED_DATA.into(),
                    reason: "binary messages are not accepted".into(),
                }))
            }
            Some(Ok(_)) => Incoming::Nothing, // ping and pong: tungstenite answers pings
            Some(Err(e)) => {
                self.metrics.protocol_errors.inc();
                if too_big(e) {
                    return Incoming::End(Some(Close::Violation {
                        code: CLOSE_MESSAGE_TOO_BIG.into(),
                        reason: format!("messages are limited to {MAX_CLIENT_MESSAGE} bytes"),
                    }));
                }
                Incoming::End(None)
            }
        }
    }
}

async fn connection(app: Arc<App>, socket: WebSocket, settings: Settings, _slot: ClientSlot) {
    let (sink, stream) = socket.split();
    let status = app.feed.status.borrow().clone();
    let driver = Arc::new(Driver::new(
        &app.config.ring,
        status,
        settings,
        Cadence::default(),
        Arc::clone(&app.metrics),
        "ws",
    ));
    let _demand = app.feed.demand();
    let mut writer = tokio::spawn(write_loop(
        Arc::clone(&driver),
        sink,
        Arc::clone(&app.metrics),
    ));
    let mut control = WsControl {
        stream,
        metrics: &app.metrics,
    };
    driver
        .run_feed(&app.feed, &mut control, app.shutdown.clone())
        .await;
    if timeout(Duration::from_secs(2), &mut writer).await.is_err() {
        writer.abort();
    }
}

/// Sends what the session gives until it closes or the connection fails.
async fn write_loop(
    driver: Arc<Driver<Arc<CachedFrame>>>,
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    metrics: Arc<Metrics>,
) {
    loop {
        let output = loop {
            if let Some(o) = driver.poll(|s| s.poll_output()) {
                break o;
            }
            driver.wake.notified().await;
        };
        let message = match output {
            Output::Close(close) => {
                if let Some(frame) = close_frame(&close) {
                    let _ = timeout(
                        Duration::from_secs(1),
                        sink.send(Message::Close(Some(frame))),
                    )
                    .await;
                    let _ = timeout(Duration::from_secs(1), sink.close()).await;
                }
                return;
            }
            Output::Text(text) => Message::Text(text.to_json().into()),
            Output::Frame(job) => {
                let Some(built) = job.frame.message(job.variant, job.mask, &metrics).await else {
                    driver.lost(&job.frame);
                    continue;
                };
                if matches!(
                    timeout(
                        SEND_TIMEOUT,
                        sink.send(Message::Binary(built.bytes.clone()))
                    )
                    .await,
                    Ok(Ok(()))
                ) {
                    driver.sent(&built);
                    continue;
                }
                driver.writer_gone();
                return;
            }
        };
        if !matches!(timeout(SEND_TIMEOUT, sink.send(message)).await, Ok(Ok(()))) {
            driver.writer_gone();
            return;
        }
    }
}
