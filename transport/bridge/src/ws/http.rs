//! The plain HTTP routes: the viewer's files, snapshots, MJPEG, metrics and the health
//! check.

use super::*;

pub(super) const VIEWER_HTML: &str = include_str!("../../../../consumers/viewer/index.html");
pub(super) const VIEWER_JS: &str = include_str!("../../../../consumers/viewer/viewer.js");
pub(super) const WORKER_JS: &str = include_str!("../../../../consumers/viewer/worker.js");

pub(super) fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The variant a snapshot or MJPEG request asks for (auto means the default quality).
fn request_variant(update: &SettingsUpdate) -> Variant {
    Variant {
        quality: match update.quality {
            Some(Quality::Fixed(q)) => q,
            _ => DEFAULT_QUALITY,
        },
        max_width: update.max_width.unwrap_or(0),
        max_height: update.max_height.unwrap_or(0),
    }
}

/// The newest frame: one at least as new as the ring's newest when asked, waiting up to
/// `wait` for the ring thread to copy it (it copies only while some client wants frames).
async fn fresh_frame(app: &Arc<App>, wait: Duration) -> Option<Arc<CachedFrame>> {
    let newest = app.feed.ring_head().map_or(0, |(frame, _)| frame);
    let mut frames = app.feed.frames.subscribe();
    let fresh = |f: &Option<Arc<CachedFrame>>| f.as_ref().is_some_and(|f| f.number() >= newest);
    let found = match timeout(wait, frames.wait_for(fresh)).await {
        Ok(Ok(f)) => f.clone(),
        _ => None,
    };
    found
}

fn camera_index(frame: &CachedFrame, id: u32) -> Option<usize> {
    frame
        .ring
        .cameras
        .iter()
        .position(|c| c.info.camera_id == id)
}

pub(super) async fn snapshot(
    State(app): State<Arc<App>>,
    Path(file): Path<String>,
    Query(pairs): Pairs,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let Some(id) = file
        .strip_suffix(".jpg")
        .and_then(|s| s.parse::<u32>().ok())
    else {
        return Ok((StatusCode::NOT_FOUND, "use /snapshot/{camera}.jpg\n").into_response());
    };
    authorize(&app, &pairs, &headers)?;
    let update = settings_from(&app, &pairs)?;
    let _demand = app.feed.demand();
    let Some(frame) = fresh_frame(&app, Duration::from_secs(2)).await else {
        let producer = app.feed.status.borrow().producer;
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no recent frame in ring {:?} (producer {producer:?})\n",
                app.config.ring
            ),
        )
            .into_response());
    };
    let Some(index) = camera_index(&frame, id) else {
        let count = frame.ring.cameras.len();
        return Ok((
            StatusCode::NOT_FOUND,
            format!("no camera {id}: the ring has {count}\n"),
        )
            .into_response());
    };
    let image = frame
        .image(request_variant(&update), index, &app.metrics)
        .await;
    if image.payload.is_empty() {
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            format!("camera {id} has no image in frame {}\n", frame.number()),
        )
            .into_response());
    }
    let kind = metrics::kind("snapshot");
    app.metrics.frames_sent.get_or_create(&kind).inc();
    app.metrics
        .bytes_sent
        .get_or_create(&kind)
        .inc_by(image.payload.len() as u64);
    let mut response = (
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from(image.payload.clone()),
    )
        .into_response();
    let h = response.headers_mut();
    h.insert("x-camring-frame", HeaderValue::from(frame.number()));
    h.insert(
        "x-camring-capture-ns",
        HeaderValue::from(image.info.capture_ns),
    );
    h.insert("x-camring-sequence", HeaderValue::from(image.info.sequence));
    Ok(response)
}

pub(super) async fn mjpeg(
    State(app): State<Arc<App>>,
    Path(camera): Path<String>,
    Query(pairs): Pairs,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let Ok(id) = camera.parse::<u32>() else {
        return Ok((StatusCode::NOT_FOUND, "use /mjpeg/{camera}\n").into_response());
    };
    authorize(&app, &pairs, &headers)?;
    let update = settings_from(&app, &pairs)?;
    let cameras = app.feed.status.borrow().cameras.len();
    if cameras > 0 && id as usize >= cameras {
        return Ok((
            StatusCode::NOT_FOUND,
            format!("no camera {id}: the ring has {cameras}\n"),
        )
            .into_response());
    }
    let slot = take_slot(&app, "mjpeg")?;
    let mut settings = Settings::default();
    settings.apply(&update);
    let status = app.feed.status.borrow().clone();
    let stream = MjpegStream {
        variant: request_variant(&update),
        session: Session::new(
            &app.config.ring,
            status,
            settings,
            Cadence::default(),
            driver::now(),
        ),
        id,
        last: None,
        frames: app.feed.frames.subscribe(),
        shutdown: app.shutdown.clone(),
        _demand: app.feed.demand(),
        _slot: slot,
        app,
    };
    let body = futures_util::stream::unfold(stream, |mut s| async move {
        let part = s.next_part().await?;
        Some((Ok::<_, Infallible>(part), s))
    });
    Ok((
        [
            (
                header::CONTENT_TYPE,
                format!("multipart/x-mixed-replace; boundary={BOUNDARY}"),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// One `/mjpeg` client. Its body is polled only when the connection can take more, so
/// each part is the newest frame at that moment; the frames in between are dropped.
struct MjpegStream {
    app: Arc<App>,
    variant: Variant,
    session: Session<Arc<CachedFrame>>,
    id: u32,
    last: Option<u64>,
    frames: watch::Receiver<Option<Arc<CachedFrame>>>,
    shutdown: watch::Receiver<bool>,
    _demand: ring::Demand,
    _slot: ClientSlot,
}

impl MjpegStream {
    async fn next_part(&mut self) -> Option<Bytes> {
        let kind = metrics::kind("mjpeg");
        loop {
            tokio::select! {
                changed = self.frames.changed() => changed.ok()?,
                _ = self.shutdown.changed() => return None,
            }
            let Some(frame) = self.frames.borrow_and_update().clone() else {
                continue;
            };
            // The session decides by skip factor and frame-rate cap; it also passes a
            // frame without this camera, which `camera_index` would skip anyway.
            if self.session.handle_frame(driver::now(), Arc::clone(&frame)) == Offer::Pass {
                continue;
            }
            self.session.poll_frame();
            let Some(index) = camera_index(&frame, self.id) else {
                continue;
            };
            let image = frame.image(self.variant, index, &self.app.metrics).await;
            if image.payload.is_empty() {
                continue;
            }
            if let Some(last) = self.last {
                let skipped = frame.number().saturating_sub(last + 1);
                if skipped > 0 {
                    self.app
                        .metrics
                        .frames_dropped
                        .get_or_create(&kind)
                        .inc_by(skipped);
                }
            }
            self.last = Some(frame.number());
            let mut part = format!(
                "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nX-Camring-Frame: {}\r\n\r\n",
                image.payload.len(),
                frame.number()
            )
            .into_bytes();
            part.extend_from_slice(&image.payload);
            part.extend_from_slice(b"\r\n");
            self.app.metrics.frames_sent.get_or_create(&kind).inc();
            self.app
                .metrics
                .bytes_sent
                .get_or_create(&kind)
                .inc_by(part.len() as u64);
            return Some(Bytes::from(part));
        }
    }
}

/// OpenMetrics for scrapers that ask for it (Prometheus does), plain text otherwise (a
/// browser shows it instead of downloading it).
fn metrics_type(headers: &HeaderMap) -> &'static str {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("application/openmetrics-text") {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    }
}

pub(super) async fn metrics_page(
    State(app): State<Arc<App>>,
    Query(pairs): Pairs,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    authorize(&app, &pairs, &headers)?;
    Ok((
        [(header::CONTENT_TYPE, metrics_type(&headers))],
        app.metrics.render(),
    )
        .into_response())
}

/// A producer whose last publish is older than this is reported stalled by `/healthz`.
const STALLED_NS: u64 = 5_000_000_000;

pub(super) async fn healthz(State(app): State<Arc<App>>) -> Response {
    let producer = app.feed.status.borrow().producer;
    let head = app.feed.ring_head();
    let age_ms = head.map(|(_, hb)| now_ns().saturating_sub(hb) / 1_000_000);
    let stalled = age_ms.is_none_or(|a| a * 1_000_000 > STALLED_NS);
    let status = match (producer, stalled) {
        (ProducerStatus::Live, false) => "ok",
        (ProducerStatus::Live, true) => "stalled",
        _ => "unavailable",
    };
    let body = serde_json::json!({
        "status": status,
        "ring": app.config.ring,
        "producer": producer,
        "frame": head.map(|(frame, _)| frame),
        "frame_age_ms": age_ms,
        "clients": app.clients.count(),
    });
    let code = if status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}
