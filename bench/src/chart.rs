//! The capacity chart: p99 latency against offered load, one line per server, as SVG.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;

/// One server's measured steps: (offered deliveries/s, p99 ms).
pub type Series<'a> = (&'a str, Vec<(u64, f64)>);

/// Writes the chart to `path`. The latency axis is logarithmic: the servers differ by orders
/// of magnitude once one of them saturates.
pub fn write(path: &Path, title: &str, p99_limit_ms: f64, series: &[Series<'_>]) -> Result<()> {
    let max_load = series.iter().flat_map(|(_, s)| s.iter().map(|p| p.0)).max().unwrap_or(1);
    let max_p99 =
        series.iter().flat_map(|(_, s)| s.iter().map(|p| p.1)).fold(p99_limit_ms, f64::max);
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).context("background")?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0u64..max_load + max_load / 20, (0.5f64..max_p99 * 1.5).log_scale())
        .context("axes")?;
    chart
        .configure_mesh()
        .x_desc("offered deliveries per second")
        .y_desc("p99 latency, ms (log)")
        .x_label_formatter(&|x| format!("{}k", x / 1000))
        .draw()
        .context("grid")?;
    let limit = [(0, p99_limit_ms), (max_load + max_load / 20, p99_limit_ms)];
    chart
        .draw_series(LineSeries::new(limit, BLACK.mix(0.4)))
        .context("limit line")?
        .label(format!("p99 limit {p99_limit_ms} ms"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.4)));
    for (index, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .context("series")?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|&point| Circle::new(point, 3, color.filled())))
            .context("points")?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK.mix(0.3))
        .background_style(WHITE.mix(0.9))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .context("legend")?;
    root.present().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
