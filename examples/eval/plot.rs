//! The SVG figures: fraction of nodes informed over time (in seconds and in
//! gossip rounds) with the push-pull bound, and detection time against
//! cluster size.

use std::error::Error;
use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;

/// The mean fraction-informed curve of one (size, loss) cell.
pub struct Curve {
    /// Cluster size.
    pub nodes: usize,
    /// Loss rate.
    pub loss: f64,
    /// Mean fraction informed at every sample after the write.
    pub points: Vec<f64>,
    /// The push-pull bound in rounds.
    pub bound_rounds: f64,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Writes `propagation_{seconds,rounds}_loss{P}.svg` into `dir`, one per
/// loss rate: a line per cluster size, the bound as a dashed vertical
/// line of the same colour.
pub fn propagation(
    dir: &Path,
    curves: &[Curve],
    round_secs: f64,
    sample: Duration,
) -> Result<(), Box<dyn Error>> {
    std::fs::create_dir_all(dir)?;
    let mut losses: Vec<f64> = curves.iter().map(|c| c.loss).collect();
    losses.dedup();
    for loss in losses {
        let cells: Vec<&Curve> = curves.iter().filter(|c| c.loss == loss).collect();
        for (unit, scale) in [("seconds", 1.0), ("rounds", 1.0 / round_secs)] {
            let path = dir.join(format!("propagation_{unit}_loss{:.0}.svg", loss * 100.0));
            let xmax = cells
                .iter()
                .map(|c| {
                    let done = c
                        .points
                        .iter()
                        .position(|f| *f >= 1.0)
                        .unwrap_or(c.points.len());
                    (done as f64 * sample.as_secs_f64() * scale)
                        .max(1.1 * c.bound_rounds * round_secs * scale)
                })
                .fold(0.0, f64::max)
                * 1.05;
            let root = SVGBackend::new(&path, (800, 480)).into_drawing_area();
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    format!(
                        "Fraction of nodes holding a new key, {:.0}% loss (LAN preset)",
                        loss * 100.0
                    ),
                    ("sans-serif", 18),
                )
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d(0f64..xmax, 0f64..1.02f64)?;
            chart
                .configure_mesh()
                .x_desc(if unit == "seconds" {
                    "simulated seconds since the write"
                } else {
                    "gossip rounds since the write"
                })
                .y_desc("fraction informed (mean over seeds)")
                .draw()?;
            for (k, c) in cells.iter().enumerate() {
                let color = COLORS[k % COLORS.len()];
                let pts = c
                    .points
                    .iter()
                    .enumerate()
                    .map(|(i, f)| (i as f64 * sample.as_secs_f64() * scale, *f))
                    .take_while(|(x, _)| *x <= xmax);
                chart
                    .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
                    .label(format!("N = {}", c.nodes))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                let b = c.bound_rounds * round_secs * scale;
                chart.draw_series(DashedLineSeries::new(
                    vec![(b, 0.0), (b, 1.02)],
                    5,
                    4,
                    color.stroke_width(1),
                ))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .draw()?;
            root.present()?;
        }
    }
    Ok(())
}

/// Writes `detection.svg` into `dir`: mean and p99 time until every member
/// declared a crashed node dead, against N (log scale).
pub fn detection(dir: &Path, points: &[(usize, f64, f64)]) -> Result<(), Box<dyn Error>> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("detection.svg");
    let xmin = points.iter().map(|p| p.0).min().unwrap_or(10) as f64 / 1.5;
    let xmax = points.iter().map(|p| p.0).max().unwrap_or(10_000) as f64 * 1.5;
    let ymax = points.iter().map(|p| p.2).fold(10.0, f64::max) * 1.15;
    let root = SVGBackend::new(&path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Time until every member declares a crashed node dead (LAN preset)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((xmin..xmax).log_scale(), 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("cluster size N")
        .y_desc("simulated seconds")
        .draw()?;
    for (k, (label, pick)) in [("mean", 1usize), ("p99", 2)].into_iter().enumerate() {
        let color = COLORS[k];
        let pts: Vec<(f64, f64)> = points
            .iter()
            .map(|p| (p.0 as f64, if pick == 1 { p.1 } else { p.2 }))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .draw_series(DashedLineSeries::new(
            vec![(xmin, 10.0), (xmax, 10.0)],
            5,
            4,
            BLACK.stroke_width(1),
        ))?
        .label("target p99 < 10 s (N = 1000)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Redraws `detection.svg` from the `"scenario": "detection"` lines of
/// JSON-lines files written with `--json-file` (later lines for the same
/// N win).
pub fn detection_from(dir: &Path, files: &[std::path::PathBuf]) -> Result<(), Box<dyn Error>> {
    let mut by_n = std::collections::BTreeMap::new();
    for f in files {
        for line in std::fs::read_to_string(f)?.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            if v["scenario"] != "detection" {
                continue;
            }
            let (Some(n), Some(m), Some(p)) = (
                v["nodes"].as_u64(),
                v["seconds_mean"].as_f64(),
                v["seconds_p99"].as_f64(),
            ) else {
                continue;
            };
            by_n.insert(n as usize, (m, p));
        }
    }
    let points: Vec<(usize, f64, f64)> = by_n.into_iter().map(|(n, (m, p))| (n, m, p)).collect();
    detection(dir, &points)
}
