//! The loss chart: an SVG drawn in plot coordinates (x as is, y as is or
//! its log10), so that the live script extends a series by appending to a
//! polyline's `points` and widening the `viewBox`. Strokes keep their width
//! under the non-uniform scaling (`vector-effect: non-scaling-stroke`);
//! tick labels, grid lines and the point markers are HTML placed over the
//! SVG in percent of the plot, so text is never stretched.
//!
//! Every point has a marker that shows its step and value on hover and on
//! keyboard focus with CSS alone (`:hover`, `:focus`), so the chart is
//! readable without JavaScript; live.js adds the nearest point under the
//! pointer and arrow keys between points. live.js mirrors `Scale::plot`,
//! `Bounds::covering`, `ticks`, `format_tick` and `point_text`.

use leptos::prelude::*;

use crate::axis::Axis;

/// One measured point: the step it was taken at, where it sits on the x
/// axis (step, tokens, epoch or seconds) and its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartPoint {
    pub step: u64,
    pub x: f64,
    pub y: f64,
}

/// One line of the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The `data-series` key the live script matches.
    pub key: String,
    pub label: String,
    /// CSS classes that pick colour and dash (`train`, `valid`, `run-3`).
    pub class: String,
    pub points: Vec<ChartPoint>,
}

/// How y maps onto the plot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    Linear,
    Log,
}

impl Scale {
    pub const ALL: [Scale; 2] = [Scale::Linear, Scale::Log];

    /// `?y=linear|log`; anything else is the automatic choice.
    pub fn from_query(value: Option<&str>, series: &[Series]) -> Self {
        match value {
            Some("linear") => Scale::Linear,
            Some("log") => Scale::Log,
            _ => Scale::automatic(series),
        }
    }

    /// Log when the values span more than a factor of 10 (a loss that
    /// falls from 3 to 0.05 is a flat line on a linear axis after the
    /// first steps).
    pub fn automatic(series: &[Series]) -> Self {
        let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
        for point in series.iter().flat_map(|series| &series.points) {
            if point.y > 0.0 {
                low = low.min(point.y);
                high = high.max(point.y);
            }
        }
        if low.is_finite() && high / low > 10.0 {
            Scale::Log
        } else {
            Scale::Linear
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Scale::Linear => "linear",
            Scale::Log => "log",
        }
    }

    /// A value in plot units; `None` where the scale cannot show it (zero
    /// or below on a log axis).
    fn plot(self, y: f64) -> Option<f64> {
        match self {
            Scale::Linear => y.is_finite().then_some(y),
            Scale::Log => (y > 0.0 && y.is_finite()).then(|| y.log10()),
        }
    }

    fn value(self, plotted: f64) -> f64 {
        match self {
            Scale::Linear => plotted,
            Scale::Log => 10f64.powf(plotted),
        }
    }
}

/// The visible range in plot units: x from 0 to `x_max`, y from `y_min`
/// to `y_max` (log10 of the values on a log scale).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub x_max: f64,
    pub y_min: f64,
    pub y_max: f64,
}

impl Bounds {
    /// Covers every point and at least `0..=x_extent` horizontally, with a
    /// little vertical margin so lines do not touch the frame.
    pub fn covering(series: &[Series], x_extent: f64, scale: Scale) -> Self {
        let (mut y_min, mut y_max, mut x_max) = (f64::INFINITY, f64::NEG_INFINITY, x_extent);
        for point in series.iter().flat_map(|series| &series.points) {
            let Some(y) = scale.plot(point.y) else {
                continue;
            };
            y_min = y_min.min(y);
            y_max = y_max.max(y);
            x_max = x_max.max(point.x);
        }
        if !y_min.is_finite() {
            (y_min, y_max) = (0.0, 1.0);
        }
        let margin = ((y_max - y_min) * 0.08).max(match scale {
            Scale::Linear => 1e-3,
            Scale::Log => 0.02,
        });
        let y_min = y_min - margin;
        Self {
            x_max: x_max.max(1.0),
            y_min: if scale == Scale::Linear {
                y_min.max(0.0)
            } else {
                y_min
            },
            y_max: y_max + margin,
        }
    }

    /// `viewBox` in plot units; y is flipped by the group transform.
    fn view_box(&self) -> String {
        format!(
            "0 {} {} {}",
            -self.y_max,
            self.x_max,
            self.y_max - self.y_min
        )
    }

    /// Where a point sits, in percent of the plot from its left and top.
    fn percent(&self, x: f64, plotted_y: f64) -> (f64, f64) {
        (
            100.0 * x / self.x_max,
            100.0 * (self.y_max - plotted_y) / (self.y_max - self.y_min),
        )
    }
}

/// 1, 2 or 5 times a power of ten: the step for about `count` ticks over `span`.
fn nice_step(span: f64, count: f64) -> f64 {
    let raw = (span / count).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .find(|factor| factor * magnitude >= raw)
        .unwrap_or(10.0);
    step * magnitude
}

/// Ticks at multiples of a nice step within `low..=high`, each with the
/// step its label is written to.
fn linear_ticks(low: f64, high: f64) -> Vec<(f64, f64)> {
    let step = nice_step(high - low, 5.0);
    let first = (low / step - 1e-9).ceil() as i64;
    let last = (high / step + 1e-9).floor() as i64;
    // Multiples, not sums, so 0.1 * 3 does not drift to 0.30000000000000004.
    (first..=last).map(|i| (i as f64 * step, step)).collect()
}

/// The y ticks (values, not plot units) with the precision of each label.
/// A log axis gets powers of ten; over less than three decades also 2 and
/// 5 times them; over less than a factor of ~5 the linear ticks of the
/// value range, placed on the log axis.
pub fn ticks(low: f64, high: f64, scale: Scale) -> Vec<(f64, f64)> {
    if scale == Scale::Linear {
        return linear_ticks(low, high);
    }
    let (low_value, high_value) = (scale.value(low), scale.value(high));
    let inside =
        |value: f64| value >= low_value * (1.0 - 1e-9) && value <= high_value * (1.0 + 1e-9);
    let decades = (low.floor() as i32)..=(high.ceil() as i32);
    let powers: Vec<(f64, f64)> = decades
        .clone()
        .map(|d| (10f64.powi(d), 10f64.powi(d)))
        .filter(|(value, _)| inside(*value))
        .collect();
    if powers.len() >= 3 {
        return powers;
    }
    let multiples: Vec<(f64, f64)> = decades
        .flat_map(|d| [1.0, 2.0, 5.0].map(|m| (m * 10f64.powi(d), 10f64.powi(d))))
        .filter(|(value, _)| inside(*value))
        .collect();
    if multiples.len() >= 3 {
        return multiples;
    }
    linear_ticks(low_value, high_value)
}

/// A tick label written to the precision of its step, without trailing
/// zeros: "30", "1500", "2", "2.5", "0.02".
pub fn format_tick(value: f64, step: f64) -> String {
    let decimals = (-step.log10().floor()).clamp(0.0, 8.0) as usize;
    let text = format!("{value:.decimals$}");
    // A half step leaves "2.0" beside "2.5".
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    // "-0" from a value a hair under zero.
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

/// What a point's marker says: its series, step, x when x is not the step,
/// and value.
pub fn point_text(label: &str, point: &ChartPoint, axis: Axis) -> String {
    let y = format!("{:.3}", point.y);
    match axis.describe(point.x) {
        Some(x) => format!("{label} · step {} · {x} · {y}", point.step),
        None => format!("{label} · step {} · {y}", point.step),
    }
}

fn polyline_points(points: &[(f64, f64)]) -> String {
    points
        .iter()
        .map(|(x, y)| format!("{x},{y}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Which way a marker's text opens, so that it stays inside the plot.
fn tip_side(left: f64) -> &'static str {
    if left < 25.0 {
        "start"
    } else if left > 75.0 {
        "end"
    } else {
        "middle"
    }
}

/// A chart of the given series with a legend. `id` names it for the script.
#[component]
pub fn LineChart(
    id: &'static str,
    series: Vec<Series>,
    x_extent: f64,
    /// What x counts, for the label and for live.js.
    x_axis: Axis,
    scale: Scale,
) -> impl IntoView {
    let bounds = Bounds::covering(&series, x_extent, scale);
    let legend = series
        .iter()
        .map(|series| {
            view! {
                <span class=format!("legend {}", series.class) data-series=series.key.clone()>
                    <svg class="swatch" viewBox="0 0 20 8" aria-hidden="true">
                        <line class=format!("line {}", series.class) x1="0" y1="4" x2="20" y2="4"></line>
                    </svg>
                    <span class="legend-label">{series.label.clone()}</span>
                </span>
            }
        })
        .collect_view();
    let mut markers = Vec::new();
    let mut lines = Vec::new();
    for series in &series {
        let mut plotted = Vec::new();
        for point in &series.points {
            let Some(y) = scale.plot(point.y) else {
                continue;
            };
            plotted.push((point.x, y));
            let (left, top) = bounds.percent(point.x, y);
            let text = point_text(&series.label, point, x_axis);
            let label = text.clone();
            markers.push(view! {
                <span
                    class=format!("point {}", series.class)
                    data-series=series.key.clone()
                    data-step=point.step
                    data-x=point.x
                    data-y=point.y
                    data-side=tip_side(left)
                    style=format!("left:{left:.3}%;top:{top:.3}%")
                    tabindex="0"
                    role="img"
                    aria-label=label
                >
                    <span class="tip" aria-hidden="true">{text}</span>
                </span>
            });
        }
        lines.push(view! {
            <polyline
                class=format!("line {}", series.class)
                data-series=series.key.clone()
                data-label=series.label.clone()
                points=polyline_points(&plotted)
            ></polyline>
        });
    }
    let y_ticks = ticks(bounds.y_min, bounds.y_max, scale)
        .into_iter()
        .filter_map(|(value, step)| {
            let (_, top) = bounds.percent(0.0, scale.plot(value)?);
            Some(view! {
                <span class="tick" style=format!("top:{top:.3}%")>
                    <span>{format_tick(value, step)}</span>
                </span>
            })
        })
        .collect_view();
    let x_ticks = linear_ticks(0.0, bounds.x_max)
        .into_iter()
        .map(|(value, step)| {
            let (left, _) = bounds.percent(value, bounds.y_max);
            view! {
                <span class="tick" style=format!("left:{left:.3}%")>
                    <span>{format_tick(value, step)}</span>
                </span>
            }
        })
        .collect_view();
    let log_note = (scale == Scale::Log).then_some(" · log scale");
    view! {
        <figure
            class="chart"
            id=id
            data-x-axis=x_axis.key()
            data-scale=scale.key()
            data-x-extent=x_extent
            data-x-max=bounds.x_max
            data-y-min=bounds.y_min
            data-y-max=bounds.y_max
        >
            <div class="chart-legend">{legend}</div>
            <div class="plot">
                <div class="y-ticks">{y_ticks}</div>
                <div class="x-ticks">{x_ticks}</div>
                <svg viewBox=bounds.view_box() preserveAspectRatio="none" role="img" aria-label=format!("Loss by {}", x_axis.key())>
                    <g transform="scale(1,-1)">{lines}</g>
                </svg>
                <div class="points">{markers}</div>
            </div>
            <div class="x-label">{x_axis.label()}{log_note}</div>
        </figure>
    }
}

/// Links that redraw the chart on another x axis or y scale (plain links,
/// so they work without JavaScript). `query` is the page's other
/// parameters, each followed by `&`.
#[component]
pub fn AxisChoice(query: String, axis: Axis, scale: Scale) -> impl IntoView {
    let x_links = Axis::ALL
        .iter()
        .map(|&choice| {
            let current = (choice == axis).then_some("true");
            let href = format!("?{query}x={}&y={}", choice.key(), scale.key());
            view! { <a href=href data-x=choice.key() aria-current=current>{choice.key()}</a> }
        })
        .collect_view();
    let y_links = Scale::ALL
        .iter()
        .map(|&choice| {
            let current = (choice == scale).then_some("true");
            let href = format!("?{query}x={}&y={}", axis.key(), choice.key());
            view! { <a href=href data-y=choice.key() aria-current=current>{choice.key()}</a> }
        })
        .collect_view();
    view! {
        <nav class="axis-choice muted small">
            <span>"x-axis: " {x_links}</span>
            <span>"y-axis: " {y_links}</span>
        </nav>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[(f64, f64)]) -> Vec<Series> {
        vec![Series {
            key: "train".into(),
            label: "train loss".into(),
            class: "train".into(),
            points: values
                .iter()
                .map(|&(x, y)| ChartPoint {
                    step: x as u64,
                    x,
                    y,
                })
                .collect(),
        }]
    }

    #[test]
    fn bounds_cover_points_with_margin_and_extent() {
        let bounds = Bounds::covering(&series(&[(1.0, 3.0), (5.0, 2.0)]), 100.0, Scale::Linear);
        assert_eq!(bounds.x_max, 100.0);
        assert!((bounds.y_max - 3.08).abs() < 1e-9);
        assert!((bounds.y_min - 1.92).abs() < 1e-9);
        assert_eq!(bounds.view_box(), "0 -3.08 100 1.1600000000000001");
    }

    #[test]
    fn log_bounds_are_in_decades_around_the_values() {
        let bounds = Bounds::covering(&series(&[(0.0, 3.0), (50.0, 0.03)]), 50.0, Scale::Log);
        // log10(3) = 0.477, log10(0.03) = -1.523: a span of 2, margin 0.16.
        assert!((bounds.y_max - (3f64.log10() + 0.16)).abs() < 1e-9);
        assert!((bounds.y_min - (0.03f64.log10() - 0.16)).abs() < 1e-9);
        let (left, top) = bounds.percent(25.0, 0.3f64.log10());
        assert!((left - 50.0).abs() < 1e-9);
        assert!(
            (top - 50.0).abs() < 1e-9,
            "0.3 is halfway between 3 and 0.03: {top}"
        );
    }

    #[test]
    fn empty_chart_has_a_unit_range() {
        let bounds = Bounds::covering(&[], 0.0, Scale::Linear);
        assert_eq!((bounds.x_max, bounds.y_min), (1.0, 0.0));
        assert!(bounds.y_max > 1.0);
    }

    #[test]
    fn log_is_the_default_beyond_a_factor_of_ten() {
        assert_eq!(
            Scale::automatic(&series(&[(0.0, 3.2), (10.0, 0.31)])),
            Scale::Log
        );
        assert_eq!(
            Scale::automatic(&series(&[(0.0, 3.2), (10.0, 0.33)])),
            Scale::Linear
        );
        assert_eq!(Scale::automatic(&[]), Scale::Linear);
        // A zero cannot be drawn on a log axis and does not count.
        assert_eq!(
            Scale::automatic(&series(&[(0.0, 0.0), (1.0, 2.0)])),
            Scale::Linear
        );
        let wide = series(&[(0.0, 3.2), (10.0, 0.1)]);
        assert_eq!(Scale::from_query(Some("linear"), &wide), Scale::Linear);
        assert_eq!(
            Scale::from_query(Some("log"), &series(&[(0.0, 2.0)])),
            Scale::Log
        );
        assert_eq!(Scale::from_query(Some("bogus"), &wide), Scale::Log);
    }

    #[test]
    fn log_scale_leaves_out_what_it_cannot_draw() {
        assert_eq!(Scale::Log.plot(0.0), None);
        assert_eq!(Scale::Log.plot(-1.0), None);
        assert_eq!(Scale::Log.plot(100.0), Some(2.0));
        assert_eq!(Scale::Linear.plot(f64::NAN), None);
    }

    #[test]
    fn linear_ticks_are_nice_multiples() {
        let values = |ticks: Vec<(f64, f64)>| {
            ticks
                .into_iter()
                .map(|(v, s)| format_tick(v, s))
                .collect::<Vec<_>>()
        };
        assert_eq!(values(linear_ticks(1.92, 3.08)), ["2", "2.5", "3"]);
        assert_eq!(values(linear_ticks(0.0, 60.0)), ["0", "20", "40", "60"]);
        assert_eq!(
            values(linear_ticks(0.0, 1500.0)),
            ["0", "500", "1000", "1500"]
        );
        assert_eq!(values(linear_ticks(0.0, 0.35)), ["0", "0.1", "0.2", "0.3"]);
    }

    #[test]
    fn log_ticks_are_powers_of_ten_then_multiples() {
        let values = |low: f64, high: f64| {
            ticks(low.log10(), high.log10(), Scale::Log)
                .into_iter()
                .map(|(v, s)| format_tick(v, s))
                .collect::<Vec<_>>()
        };
        assert_eq!(values(0.003, 40.0), ["0.01", "0.1", "1", "10"]);
        assert_eq!(values(0.04, 3.5), ["0.05", "0.1", "0.2", "0.5", "1", "2"]);
        // Less than a factor of five: the linear ticks of the values.
        assert_eq!(values(2.1, 3.3), ["2.5", "3"]);
    }

    #[test]
    fn ticks_have_no_spurious_decimals() {
        let labels: Vec<String> = [
            (30.0, 10.0),
            (1500.0, 500.0),
            (5.5, 0.5),
            (2.4, 0.2),
            (0.0, 0.1),
            (0.05, 0.01),
            (-1e-17, 0.1),
        ]
        .map(|(value, step)| format_tick(value, step))
        .into();
        assert_eq!(labels, ["30", "1500", "5.5", "2.4", "0", "0.05", "0"]);
    }

    #[test]
    fn markers_say_step_x_and_value() {
        let point = ChartPoint {
            step: 30,
            x: 1234.0,
            y: 2.31449,
        };
        assert_eq!(
            point_text("train loss", &point, Axis::Step),
            "train loss · step 30 · 2.314"
        );
        assert_eq!(
            point_text("train loss", &point, Axis::Tokens),
            "train loss · step 30 · 1234 tokens · 2.314"
        );
        let later = ChartPoint {
            step: 30,
            x: 0.756,
            y: 1.0,
        };
        assert_eq!(
            point_text("valid", &later, Axis::Epoch),
            "valid · step 30 · epoch 0.76 · 1.000"
        );
        let timed = ChartPoint {
            step: 30,
            x: 125.0,
            y: 1.0,
        };
        assert_eq!(
            point_text("valid", &timed, Axis::Time),
            "valid · step 30 · 2 min 5 s · 1.000"
        );
    }

    #[test]
    fn points_are_space_separated_pairs() {
        assert_eq!(polyline_points(&[(1.0, 2.5), (2.0, 2.25)]), "1,2.5 2,2.25");
    }
}
