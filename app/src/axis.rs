//! What a loss chart's x axis counts, and a run's losses as chart series
//! on it (the run page and the runs comparison draw the same curves).

use crate::chart::{ChartPoint, Series};
use crate::dto::{TrainPoint, ValPoint};
use crate::pages::format_duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Axis {
    Step,
    Tokens,
    Epoch,
    /// Seconds since the run's first event (wall time, pauses included).
    Time,
}

impl Axis {
    pub const ALL: [Axis; 4] = [Axis::Step, Axis::Tokens, Axis::Epoch, Axis::Time];

    pub fn from_query(value: Option<&str>) -> Self {
        match value {
            Some("tokens") => Axis::Tokens,
            Some("epoch") => Axis::Epoch,
            Some("time") => Axis::Time,
            _ => Axis::Step,
        }
    }

    /// The `?x=` value, the chart's `data-x-axis` for live.js.
    pub fn key(self) -> &'static str {
        match self {
            Axis::Step => "step",
            Axis::Tokens => "tokens",
            Axis::Epoch => "epoch",
            Axis::Time => "time",
        }
    }

    /// The axis title under the chart.
    pub fn label(self) -> &'static str {
        match self {
            Axis::Step => "step",
            Axis::Tokens => "trained tokens",
            Axis::Epoch => "epoch",
            Axis::Time => "wall time (s)",
        }
    }

    /// x in words for a point's marker; `None` on the step axis, where the
    /// step says it already. live.js's `describeX` mirrors it.
    pub fn describe(self, x: f64) -> Option<String> {
        match self {
            Axis::Step => None,
            Axis::Tokens => Some(format!("{x:.0} tokens")),
            Axis::Epoch => Some(format!("epoch {x:.2}")),
            Axis::Time => Some(format_duration(x)),
        }
    }

    fn of(self, point: &TrainPoint) -> f64 {
        match self {
            Axis::Step => point.step as f64,
            Axis::Tokens => point.trained_tokens as f64,
            Axis::Epoch => point.epoch,
            Axis::Time => point.elapsed_seconds,
        }
    }

    /// x at any step: between two reports linearly, before the first and
    /// after the last at the nearest report's rate. Validation happens at
    /// steps without a report of their own.
    pub fn at_step(self, step: f64, train: &[TrainPoint]) -> f64 {
        if self == Axis::Step {
            return step;
        }
        let rate = |point: &TrainPoint| self.of(point) / (point.step.max(1) as f64);
        let after = train.iter().position(|point| point.step as f64 >= step);
        match after {
            None => train.last().map_or(step, |last| {
                self.of(last) + (step - last.step as f64) * rate(last)
            }),
            Some(0) => step * rate(&train[0]),
            Some(i) => {
                let (a, b) = (&train[i - 1], &train[i]);
                let span = (b.step - a.step).max(1) as f64;
                self.of(a) + (self.of(b) - self.of(a)) * (step - a.step as f64) / span
            }
        }
    }

    /// A run's train and validation losses on this axis: series keyed
    /// `{prefix}train` and `{prefix}valid`, classed `train`/`valid` plus
    /// `class`, labelled `{name}train loss`/`{name}validation loss`.
    pub fn loss_series(
        self,
        train: &[TrainPoint],
        valid: &[ValPoint],
        prefix: &str,
        name: &str,
        class: &str,
    ) -> [Series; 2] {
        let valid_x = |point: &ValPoint| match self {
            // An evaluation has a time of its own.
            Axis::Time => point.elapsed_seconds,
            _ => self.at_step(point.step as f64, train),
        };
        let classes = |kind: &str| format!("{kind} {class}").trim().to_string();
        [
            Series {
                key: format!("{prefix}train"),
                label: format!("{name}train loss"),
                class: classes("train"),
                points: train
                    .iter()
                    .map(|point| ChartPoint {
                        step: point.step,
                        x: self.of(point),
                        y: point.train_loss,
                    })
                    .collect(),
            },
            Series {
                key: format!("{prefix}valid"),
                label: format!("{name}validation loss"),
                class: classes("valid"),
                points: valid
                    .iter()
                    .map(|point| ChartPoint {
                        step: point.step,
                        x: valid_x(point),
                        y: point.val_loss,
                    })
                    .collect(),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(step: u64, trained_tokens: u64, epoch: f64) -> TrainPoint {
        TrainPoint {
            step,
            epoch,
            train_loss: 1.0,
            learning_rate: 1e-4,
            tokens_per_sec: 1.0,
            trained_tokens,
            peak_memory_gb: 1.0,
            elapsed_seconds: step as f64 * 2.0,
        }
    }

    #[test]
    fn validation_steps_map_onto_tokens_and_epochs() {
        let train = [report(5, 500, 0.5), report(10, 1100, 1.0)];
        assert_eq!(Axis::Step.at_step(7.0, &train), 7.0);
        assert_eq!(Axis::Tokens.at_step(0.0, &train), 0.0);
        assert_eq!(Axis::Tokens.at_step(4.0, &train), 400.0);
        assert_eq!(Axis::Tokens.at_step(7.5, &train), 800.0);
        assert_eq!(Axis::Tokens.at_step(20.0, &train), 2200.0);
        assert_eq!(Axis::Epoch.at_step(10.0, &train), 1.0);
        assert_eq!(Axis::Epoch.at_step(0.0, &[]), 0.0);
    }

    #[test]
    fn series_carry_steps_and_each_evaluation_its_own_time() {
        let train = [report(5, 500, 0.5), report(10, 1100, 1.0)];
        let valid = [ValPoint {
            step: 0,
            val_loss: 3.0,
            elapsed_seconds: 4.5,
        }];
        let [train_series, valid_series] =
            Axis::Time.loss_series(&train, &valid, "run-2-", "lr 1e-4 ", "run-1");
        assert_eq!(train_series.key, "run-2-train");
        assert_eq!(train_series.class, "train run-1");
        assert_eq!(valid_series.label, "lr 1e-4 validation loss");
        assert_eq!(
            train_series.points[1],
            ChartPoint {
                step: 10,
                x: 20.0,
                y: 1.0
            }
        );
        assert_eq!(
            valid_series.points[0],
            ChartPoint {
                step: 0,
                x: 4.5,
                y: 3.0
            }
        );
        let [plain, _] = Axis::Tokens.loss_series(&train, &valid, "", "", "");
        assert_eq!(
            (plain.key.as_str(), plain.class.as_str()),
            ("train", "train")
        );
    }
}
