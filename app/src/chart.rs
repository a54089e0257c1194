//! The loss chart: an SVG drawn in data coordinates, so that the live script
//! extends a series by appending to a polyline's `points` and widening the
//! `viewBox`, with no scale arithmetic of its own. Strokes keep their width
//! under the non-uniform scaling (`vector-effect: non-scaling-stroke`), and
//! the tick labels are HTML around the SVG, so text is never stretched.

use leptos::prelude::*;

/// One line of the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Also the CSS class and the `data-series` key the live script matches.
    pub key: &'static str,
    pub label: &'static str,
    pub points: Vec<(f64, f64)>,
}

/// The visible data range: x from 0 to `x_max`, y from `y_min` to `y_max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub x_max: f64,
    pub y_min: f64,
    pub y_max: f64,
}

impl Bounds {
    /// Covers every point and at least `0..=x_extent` horizontally, with a
    /// little vertical margin so lines do not touch the frame.
    pub fn covering(series: &[Series], x_extent: f64) -> Self {
        let points = series.iter().flat_map(|series| series.points.iter());
        let (mut y_min, mut y_max, mut x_max) = (f64::INFINITY, f64::NEG_INFINITY, x_extent);
        for &(x, y) in points {
            y_min = y_min.min(y);
            y_max = y_max.max(y);
            x_max = x_max.max(x);
        }
        if !y_min.is_finite() {
            (y_min, y_max) = (0.0, 1.0);
        }
        let margin = ((y_max - y_min) * 0.08).max(1e-3);
        Self {
            x_max: x_max.max(1.0),
            y_min: (y_min - margin).max(0.0),
            y_max: y_max + margin,
        }
    }

    /// `viewBox` in data units; y is flipped by the group transform.
    fn view_box(&self) -> String {
        format!(
            "0 {} {} {}",
            -self.y_max,
            self.x_max,
            self.y_max - self.y_min
        )
    }
}

fn polyline_points(points: &[(f64, f64)]) -> String {
    points
        .iter()
        .map(|(x, y)| format!("{x},{y}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A tick label without spurious decimals: "30", "1500", "5.5", "2.31".
/// live.js's `formatTick` mirrors it.
fn tick(value: f64) -> String {
    if value.abs() >= 100.0 {
        return format!("{value:.0}");
    }
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A chart of the given series with a legend. `id` names it for the script.
#[component]
pub fn LineChart(
    id: &'static str,
    series: Vec<Series>,
    x_extent: f64,
    /// What x counts, for the label and for live.js: `step`, `tokens` or `epoch`.
    x_axis: &'static str,
) -> impl IntoView {
    let bounds = Bounds::covering(&series, x_extent);
    let y_mid = (bounds.y_min + bounds.y_max) / 2.0;
    let legend = series
        .iter()
        .map(|series| {
            view! {
                <span class=format!("legend {}", series.key)>{series.label}</span>
            }
        })
        .collect_view();
    let lines = series
        .into_iter()
        .map(|series| {
            view! {
                <polyline
                    class=format!("line {}", series.key)
                    data-series=series.key
                    points=polyline_points(&series.points)
                ></polyline>
            }
        })
        .collect_view();
    view! {
        <figure class="chart" id=id data-x-axis=x_axis data-x-max=bounds.x_max data-y-min=bounds.y_min data-y-max=bounds.y_max>
            <div class="chart-legend">{legend}</div>
            <div class="chart-body">
                <div class="y-ticks">
                    <span data-tick="y-max">{tick(bounds.y_max)}</span>
                    <span data-tick="y-mid">{tick(y_mid)}</span>
                    <span data-tick="y-min">{tick(bounds.y_min)}</span>
                </div>
                <svg viewBox=bounds.view_box() preserveAspectRatio="none" role="img" aria-label=format!("Loss by {x_axis}")>
                    <g transform="scale(1,-1)">{lines}</g>
                </svg>
            </div>
            <div class="x-ticks">
                <span>"0"</span>
                <span data-tick="x-mid">{tick(bounds.x_max / 2.0)}</span>
                <span data-tick="x-max">{tick(bounds.x_max)}</span>
            </div>
            <div class="x-label">{x_axis}</div>
        </figure>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_cover_points_with_margin_and_extent() {
        let series = vec![Series {
            key: "train",
            label: "train",
            points: vec![(1.0, 3.0), (5.0, 2.0)],
        }];
        let bounds = Bounds::covering(&series, 100.0);
        assert_eq!(bounds.x_max, 100.0);
        assert!((bounds.y_max - 3.08).abs() < 1e-9);
        assert!((bounds.y_min - 1.92).abs() < 1e-9);
        assert_eq!(bounds.view_box(), "0 -3.08 100 1.1600000000000001");
    }

    #[test]
    fn empty_chart_has_a_unit_range() {
        let bounds = Bounds::covering(&[], 0.0);
        assert_eq!((bounds.x_max, bounds.y_min), (1.0, 0.0));
        assert!(bounds.y_max > 1.0);
    }

    #[test]
    fn ticks_have_no_spurious_decimals() {
        let ticks: Vec<String> = [30.0, 1500.0, 5.5, 2.314, 0.0, 0.05].map(tick).into();
        assert_eq!(ticks, ["30", "1500", "5.5", "2.31", "0", "0.05"]);
    }

    #[test]
    fn points_are_space_separated_pairs() {
        assert_eq!(polyline_points(&[(1.0, 2.5), (2.0, 2.25)]), "1,2.5 2,2.25");
    }
}
