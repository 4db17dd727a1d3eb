//! `--plot FILE`: two panels of grouped bars per transport, log axes. Top: latency p50,
//! p99 and p99.9 at 30 fps with one consumer (medium, or the first profile run). Bottom:
//! multi-frames per second at the maximum rate, one bar per profile. SVG, whose text needs
//! no font file; PNG rasterized from it (resvg), its text in a system font.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::combinators::IntoLogRange;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::profile::{Profile, Rate, Transport};
use crate::report::{num, CellResult};

/// One bar per transport, in one colour.
#[derive(Debug)]
struct Series {
    label: String,
    color: RGBColor,
    /// Per transport, in the panel's order; `None` for a failed or missing cell.
    values: Vec<Option<f64>>,
}

const COLORS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(214, 39, 40),
];

/// Writes the plot of `results` to `path` (`.svg` or `.png`).
pub fn write(path: &Path, results: &[CellResult]) -> Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let bytes = match ext.as_deref() {
        Some("svg") => svg(results)?.into_bytes(),
        Some("png") => png(&svg(results)?)?,
        _ => bail!("{}: the plot must be a .svg or .png file", path.display()),
    };
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Rasterizes `svg` to PNG; its text in the system's fonts (DejaVu, Liberation or Noto
/// Sans when there, else the first font found; no text without any).
pub fn png(svg: &str) -> Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let mut opt = usvg::Options::default();
    let fonts = opt.fontdb_mut();
    fonts.load_system_fonts();
    let families: Vec<&str> = fonts
        .faces()
        .flat_map(|f| f.families.iter().map(|(name, _)| name.as_str()))
        .collect();
    let sans = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "Arial"]
        .into_iter()
        .find(|f| families.contains(f))
        .or(families.first().copied())
        .map(str::to_owned);
    if let Some(sans) = sans {
        fonts.set_sans_serif_family(sans);
    }
    let tree = usvg::Tree::from_str(svg, &opt).context("parsing the plot's SVG")?;
    let size = tree.size().to_int_size();
    let mut pixmap =
        tiny_skia::Pixmap::new(size.width(), size.height()).context("the plot's size is empty")?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.encode_png().context("encoding the PNG")
}

/// The plot as an SVG document.
pub fn svg(results: &[CellResult]) -> Result<String> {
    let transports: Vec<Transport> = Transport::ALL
        .into_iter()
        .filter(|t| results.iter().any(|r| r.transport == *t))
        .collect();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1100, 900)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (top, bottom) = root.split_vertically(450);
        latency_panel(&top, results, &transports)?;
        throughput_panel(&bottom, results, &transports)?;
        root.present().map_err(plot_err)?;
    }
    Ok(out)
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing the plot: {e}")
}

/// The successful result of a cell, if any.
fn find(results: &[CellResult], t: Transport, profile: Profile, rate: Rate) -> Option<&CellResult> {
    results
        .iter()
        .filter(|r| r.transport == t && r.profile == profile && r.rate == rate && r.ok())
        .min_by_key(|r| r.consumers)
}

/// Latency percentiles per transport at 30 fps, one consumer, for medium (or the first
/// profile that was run).
fn latency_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    results: &[CellResult],
    transports: &[Transport],
) -> Result<()> {
    let profile = if results.iter().any(|r| r.profile == Profile::Medium) {
        Profile::Medium
    } else {
        results.first().map_or(Profile::Small, |r| r.profile)
    };
    let pick = |f: fn(&CellResult) -> f64| {
        transports
            .iter()
            .map(|t| find(results, *t, profile, Rate::Fixed).map(f))
            .collect()
    };
    let series = [
        ("p50", pick(|r| r.latency_us.p50)),
        ("p99", pick(|r| r.latency_us.p99)),
        ("p99.9", pick(|r| r.latency_us.p999)),
    ];
    let series: Vec<Series> = series
        .into_iter()
        .zip(COLORS)
        .map(|((label, values), color)| Series {
            label: label.into(),
            color,
            values,
        })
        .collect();
    let title = format!(
        "Latency, capture to consumer: {profile} ({}) at 30 fps",
        profile.describe()
    );
    bars(area, &title, "latency µs (log)", transports, &series)
}

/// Multi-frames per second at the maximum rate per transport, one bar per profile.
fn throughput_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    results: &[CellResult],
    transports: &[Transport],
) -> Result<()> {
    let series: Vec<Series> = Profile::ALL
        .into_iter()
        .filter(|p| results.iter().any(|r| r.profile == *p))
        .zip(COLORS)
        .map(|(p, color)| Series {
            label: format!("{p} ({})", p.describe()),
            color,
            values: transports
                .iter()
                .map(|t| find(results, *t, p, Rate::Max).map(|r| r.fps))
                .collect(),
        })
        .collect();
    bars(
        area,
        "Throughput at the maximum rate, per consumer",
        "multi-frames/s (log)",
        transports,
        &series,
    )
}

/// Grouped bars on a log axis: one group per transport, one bar per series.
fn bars(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    y_desc: &str,
    transports: &[Transport],
    series: &[Series],
) -> Result<()> {
    let values = series.iter().flat_map(|s| s.values.iter().flatten());
    let (lo, hi) = values
        .filter(|v| **v > 0.0)
        .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let (lo, hi) = if hi > 0.0 {
        (lo / 2.0, hi * 2.0)
    } else {
        (1.0, 10.0)
    };
    let n = transports.len();
    let x = -0.5f64..n as f64 - 0.5;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(x, (lo..hi).log_scale())
        .map_err(plot_err)?;
    // One tick per transport (a range n wide with n labels: a step of 1), named.
    let label = |x: &f64| {
        let i = x.round();
        let at = (i >= 0.0 && (x - i).abs() < 1e-6).then(|| transports.get(i as usize));
        at.flatten().map_or(String::new(), |t| t.name().to_owned())
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&label)
        .y_desc(y_desc)
        .y_label_formatter(&|y| num(*y))
        .draw()
        .map_err(plot_err)?;
    let width = 0.8 / series.len().max(1) as f64;
    for (j, s) in series.iter().enumerate() {
        let color = s.color;
        let rects = s.values.iter().enumerate().filter_map(|(i, v)| {
            let v = v.filter(|v| *v > 0.0)?;
            let x0 = i as f64 - 0.4 + j as f64 * width;
            Some(Rectangle::new(
                [(x0, lo), (x0 + width * 0.9, v)],
                color.filled(),
            ))
        });
        chart
            .draw_series(rects)
            .map_err(plot_err)?
            .label(s.label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::LatencyUs;

    fn result(transport: Transport, rate: Rate, error: Option<&str>) -> CellResult {
        CellResult {
            transport,
            profile: Profile::Small,
            rate,
            consumers: 1,
            frames: 100,
            fps: if rate == Rate::Max { 5000.0 } else { 30.0 },
            bytes_per_s: 1e6,
            latency_us: LatencyUs {
                p50: 10.0,
                p99: 50.0,
                p999: 200.0,
            },
            cpu_us_per_frame: 3.0,
            cpu_us_per_frame_sender: 2.0,
            cpu_us_per_frame_consumer: 1.0,
            dropped: 0,
            corrupt: 0,
            published: 100,
            missed_ticks: 0,
            ack_timeouts: 0,
            rounds: 1,
            vs_memcpy: None,
            vs_tcp: None,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn svg_has_text_and_bars() {
        let results = [
            result(Transport::Memcpy, Rate::Fixed, None),
            result(Transport::Memcpy, Rate::Max, None),
            result(Transport::ShmCopy, Rate::Fixed, None),
            result(Transport::Quic, Rate::Max, Some("failed")),
        ];
        let svg = svg(&results).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
        assert!(svg.contains("<text"));
        for name in ["memcpy", "shm-copy", "quic", "p99.9", "Latency"] {
            assert!(svg.contains(name), "{name} missing");
        }
        // 3 latency bars for each of 2 transports, 1 throughput bar (quic failed), plus
        // legend marks and the background.
        assert!(svg.matches("<rect").count() >= 7);
    }

    #[test]
    fn png_is_the_svg_rasterized() {
        let results = [result(Transport::Tcp, Rate::Fixed, None)];
        let png = png(&svg(&results).unwrap()).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // Width and height (IHDR) are the SVG's.
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 1100);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 900);
    }

    #[test]
    fn only_svg_and_png_files() {
        let e = write(&std::env::temp_dir().join("x.txt"), &[]).unwrap_err();
        assert!(e.to_string().contains(".svg or .png"), "{e}");
    }
}
